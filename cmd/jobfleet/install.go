package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// InstallCmd copies the jobfleet binary into a directory: the init
// container of every job pod runs it to put the worker into a volume the
// job's own image mounts.
type InstallCmd struct {
	Dir string `arg:"" name:"dir" help:"Directory to copy the jobfleet binary into."`
}

// Run copies the running binary.
func (c *InstallCmd) Run(_ context.Context, g *Globals) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the jobfleet binary: %w", err)
	}
	src, err := os.Open(self)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return err
	}
	target := filepath.Join(c.Dir, "jobfleet")
	tmp, err := os.CreateTemp(c.Dir, ".jobfleet-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return fmt.Errorf("copying the jobfleet binary: %w", err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return err
	}
	g.log.Info().Str("path", target).Msg("installed jobfleet")
	return nil
}
