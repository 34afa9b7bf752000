package localstack_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jobfleet/jobfleet/internal/localstack"
)

// TestPortTaken checks that a taken port gets a message that says so and
// what to do, for both servers.
func TestPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	const want = "the port is taken; stop what uses it or choose another port"

	if _, err := localstack.StartS3(port); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("StartS3 on a taken port: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if s, err := localstack.StartSQS(ctx, localstack.SQSOptions{Port: port}); err == nil || !strings.Contains(err.Error(), want) {
		if s != nil {
			s.Stop()
		}
		t.Errorf("StartSQS on a taken port: %v", err)
	}
}
