package localstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// S3Server is an S3-compatible server (gofakes3 with an in-memory backend)
// running in this process on a loopback port. Its objects survive Restart,
// so tests can take S3 away and bring it back.
type S3Server struct {
	// Endpoint is the server's URL, for AWS_ENDPOINT_URL_S3. Clients must
	// use path-style addressing.
	Endpoint string

	handler http.Handler
	addr    string

	mu     sync.Mutex
	server *http.Server
	served chan struct{}
}

// StartS3 starts an S3 server on 127.0.0.1:port (zero picks a free port).
func StartS3(port int) (*S3Server, error) {
	backend := checksumless{s3mem.New()}
	faker := gofakes3.New(backend, gofakes3.WithAutoBucket(false), gofakes3.WithTimeSkewLimit(0))
	s := &S3Server{handler: faker.Server()}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		if port != 0 && portTaken(port) {
			return nil, fmt.Errorf("the S3 server could not listen on 127.0.0.1:%d: the port is taken; stop what uses it or choose another port", port)
		}
		return nil, fmt.Errorf("starting the S3 server: %w", err)
	}
	s.addr = ln.Addr().String()
	s.Endpoint = "http://" + s.addr
	s.serve(ln)
	return s, nil
}

func (s *S3Server) serve(ln net.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.server = &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	s.served = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		_ = srv.Serve(ln)
	}(s.server, s.served)
}

// Stop closes the server. Its objects stay in memory for a Restart.
func (s *S3Server) Stop() {
	s.mu.Lock()
	srv, done := s.server, s.served
	s.server = nil
	s.mu.Unlock()
	if srv == nil {
		return
	}
	_ = srv.Close()
	<-done
}

// Restart starts a stopped server again on the same address, with the
// objects it held.
func (s *S3Server) Restart(ctx context.Context) error {
	var lc net.ListenConfig
	for {
		ln, err := lc.Listen(ctx, "tcp", s.addr)
		if err == nil {
			s.serve(ln)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("restarting the S3 server on %s: %w", s.addr, errors.Join(err, ctx.Err()))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// checksumless stores objects without the checksum headers of the request
// that wrote them. gofakes3 keeps every X-Amz-* request header as the
// object's metadata and carries an old object's metadata over to the one
// that replaces it, so a replaced object could answer with its
// predecessor's checksum, which clients reject (and retry) forever.
type checksumless struct{ gofakes3.Backend }

func (b checksumless) PutObject(bucket, key string, meta map[string]string, input io.Reader, size int64, conditions *gofakes3.PutConditions) (gofakes3.PutObjectResult, error) {
	for k := range meta {
		if strings.HasPrefix(k, "X-Amz-Checksum-") {
			delete(meta, k)
		}
	}
	return b.Backend.PutObject(bucket, key, meta, input, size, conditions)
}

// portTaken reports whether something answers on the loopback port.
func portTaken(port int) bool {
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}
