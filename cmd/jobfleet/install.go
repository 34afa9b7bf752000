package main

import (
	"context"

	"github.com/jobfleet/jobfleet/internal/workercli"
)

// InstallCmd copies the jobfleet binary into a directory: the init
// container of every job pod runs it to put the worker into a volume the
// job's own image mounts.
type InstallCmd struct {
	Dir string `arg:"" name:"dir" help:"Directory to copy the jobfleet binary into."`
}

// Run copies the running binary.
func (c *InstallCmd) Run(_ context.Context, g *Globals) error {
	return workercli.Install(c.Dir, g.log)
}
