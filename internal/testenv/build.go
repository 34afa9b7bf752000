package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	buildMu   sync.Mutex
	builtBins = map[string]string{}
	buildDir  string
)

// Build compiles a main package of this module (e.g. "./cmd/jobfleet",
// "./internal/testenv/testjob") once per test binary, without the race
// detector, and returns the binary's path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if path, ok := builtBins[pkg]; ok {
		return path
	}
	if buildDir == "" {
		dir, err := os.MkdirTemp("", "jobfleet-test-bin-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = dir
		onStop(func() { os.RemoveAll(dir) })
	}
	out := filepath.Join(buildDir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = moduleRoot(t)
	if output, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, output)
	}
	builtBins[pkg] = out
	return out
}

// moduleRoot finds the directory of this module's go.mod.
func moduleRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	mod := string(out)
	for len(mod) > 0 && (mod[len(mod)-1] == '\n' || mod[len(mod)-1] == '\r') {
		mod = mod[:len(mod)-1]
	}
	if mod == "" || mod == os.DevNull {
		t.Fatal("not inside the jobfleet module")
	}
	return filepath.Dir(mod)
}
