// Package testenv starts the real servers that jobfleet's integration tests
// talk to: the SQS emulator and an S3 server, one of each per test binary,
// with uniquely named queues and buckets per test. There are no mocks here.
//
// A test package that uses it wires TestMain to Main, which stops the shared
// servers after the tests and checks for leaked goroutines:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
package testenv

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"go.uber.org/goleak"
)

// Region and credentials the local servers accept.
const (
	Region    = "us-east-1"
	AccessKey = "jobfleet"
	SecretKey = "jobfleet-secret"
)

var (
	stopMu sync.Mutex
	stops  []func()
)

// onStop registers cleanup of a shared server for Main.
func onStop(f func()) {
	stopMu.Lock()
	defer stopMu.Unlock()
	stops = append(stops, f)
}

// Main runs the tests, stops the shared servers, and fails the run if any
// goroutine outlives the tests.
func Main(m *testing.M, ignore ...goleak.Option) {
	// An interrupted run still stops the servers it started.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-signals:
			fmt.Fprintf(os.Stderr, "testenv: %v: stopping the test servers\n", sig)
			stopAll()
			os.Exit(1)
		case <-done:
		}
	}()
	code := m.Run()
	signal.Stop(signals)
	close(done)
	stopAll()
	if code == 0 {
		opts := append([]goleak.Option{
			// The AWS SDK's HTTP clients keep idle keep-alive connections.
			goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		}, ignore...)
		if err := goleak.Find(opts...); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: goroutines leaked by the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// stopAll stops the shared servers, the last started first.
func stopAll() {
	stopMu.Lock()
	defer stopMu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
	stops = nil
}

// AWSConfig is an SDK configuration for the local servers. Endpoints are set
// per client by the SQS and S3 helpers.
func AWSConfig() aws.Config {
	return aws.Config{
		Region:      Region,
		Credentials: credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
	}
}

var seq atomic.Int64

var unsafeName = regexp.MustCompile(`[^a-z0-9-]+`)

// UniqueName returns a name for a per-test resource: lower case, starting
// with prefix and the test's name, unique within this machine's runs.
func UniqueName(t testing.TB, prefix string, maxLen int) string {
	base := unsafeName.ReplaceAllString(strings.ToLower(t.Name()), "-")
	suffix := fmt.Sprintf("-%d-%04x", seq.Add(1), rand.IntN(1<<16))
	name := prefix + base
	if room := maxLen - len(suffix); len(name) > room {
		name = name[:room]
	}
	return strings.Trim(name, "-") + suffix
}
