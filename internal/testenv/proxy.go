package testenv

import (
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy is a TCP proxy in front of a real server, for injecting network
// faults: while it is down, it refuses new connections and cuts every open
// one, as an unreachable server would look to a client.
type Proxy struct {
	// Endpoint is the proxy's URL, the target's with the proxy's address.
	Endpoint string
	// Addr is the proxy's host:port.
	Addr string

	target string
	ln     net.Listener
	down   atomic.Bool
	mu     sync.Mutex
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
	// Dropped counts the connections refused or cut.
	Dropped atomic.Int64
}

// NewProxy starts a proxy in front of the server at endpoint (a URL or a
// host:port), stopped when the test ends.
func NewProxy(t testing.TB, endpoint string) *Proxy {
	t.Helper()
	target, scheme := endpoint, ""
	if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
		target, scheme = u.Host, u.Scheme
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]bool{}}
	p.Endpoint = p.Addr
	if scheme != "" {
		p.Endpoint = scheme + "://" + p.Addr
	}
	p.wg.Go(p.serve)
	t.Cleanup(p.close)
	return p
}

// Down cuts every connection and refuses new ones until Up.
func (p *Proxy) Down() {
	p.down.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
		p.Dropped.Add(1)
	}
}

// Up passes connections through again.
func (p *Proxy) Up() { p.down.Store(false) }

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.down.Load() {
			c.Close()
			p.Dropped.Add(1)
			continue
		}
		p.wg.Go(func() { p.pipe(c) })
	}
}

func (p *Proxy) pipe(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.down.Load() {
		p.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	p.conns[c], p.conns[s] = true, true
	p.mu.Unlock()
	var both sync.WaitGroup
	both.Go(func() { _, _ = io.Copy(s, c); s.Close() })
	both.Go(func() { _, _ = io.Copy(c, s); c.Close() })
	both.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, s)
	p.mu.Unlock()
}

func (p *Proxy) close() {
	p.ln.Close()
	p.Down()
	p.wg.Wait()
}
