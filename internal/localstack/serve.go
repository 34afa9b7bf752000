package localstack

import (
	"fmt"
	"net"
	"net/http"
	"time"
)

// httpServer is a server of this package's on a loopback port.
type httpServer struct {
	endpoint string
	server   *http.Server
	done     chan struct{}
}

// serveHTTP serves handler on 127.0.0.1:port (zero picks a free port).
func serveHTTP(what string, port int, handler http.Handler) (*httpServer, error) {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, fmt.Errorf("starting the %s server: %w", what, err)
	}
	s := &httpServer{endpoint: "http://" + ln.Addr().String(), done: make(chan struct{})}
	s.server = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		_ = s.server.Serve(ln)
	}()
	return s, nil
}

func (s *httpServer) stop() {
	_ = s.server.Close()
	<-s.done
}
