package loadtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process runs the dispatcher as a separate process, `jobfleet dispatcher`
// with Args, so that Kill is a real SIGKILL. Its SQS calls are read from
// its /metrics (jobfleet_dispatcher_sqs_calls_total), scraped every 100ms
// and summed across restarts; calls made in the last 100ms before a kill
// are not counted.
type Process struct {
	Binary string
	Args   []string
	Env    []string
	// Output receives the process's logs; nil discards them.
	Output *os.File

	mu       sync.Mutex
	cmd      *exec.Cmd
	metrics  string
	base     float64 // calls of earlier processes
	last     float64 // calls of this process, at the last scrape
	stopPoll context.CancelFunc
	polled   sync.WaitGroup
}

// Start starts a dispatcher process and waits until it serves metrics.
func (p *Process) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	args := append([]string{"dispatcher"}, p.Args...)
	args = append(args, "--metrics-addr", addr)
	if os.Getenv("JOBFLEET_LOADTEST_PPROF") != "" {
		args = append(args, "--pprof")
	}
	cmd := exec.Command(p.Binary, args...)
	cmd.Env = append(os.Environ(), p.Env...)
	if p.Output != nil {
		cmd.Stdout, cmd.Stderr = p.Output, p.Output
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the dispatcher: %w", err)
	}
	p.mu.Lock()
	p.cmd, p.metrics, p.last = cmd, "http://"+addr+"/metrics", 0
	p.mu.Unlock()
	if os.Getenv("JOBFLEET_LOADTEST_PPROF") != "" {
		fmt.Fprintf(os.Stderr, "dispatcher profile: http://%s/debug/pprof/profile\n", addr)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := scrapeCalls(ctx, "http://"+addr+"/readyz"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return errors.New("the dispatcher did not become ready within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	pollCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.stopPoll = cancel
	p.polled.Go(func() {
		for pollCtx.Err() == nil {
			if n, err := scrapeCalls(pollCtx, p.metrics); err == nil {
				p.mu.Lock()
				p.last = max(p.last, n)
				p.mu.Unlock()
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	return nil
}

func (p *Process) end(sig syscall.Signal) error {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if sig == syscall.SIGTERM {
		// A last scrape, so a graceful stop loses no count.
		if n, err := scrapeCalls(context.Background(), p.metrics); err == nil {
			p.mu.Lock()
			p.last = max(p.last, n)
			p.mu.Unlock()
		}
	}
	p.stopPoll()
	p.polled.Wait()
	_ = cmd.Process.Signal(sig)
	_ = cmd.Wait()
	p.mu.Lock()
	p.base += p.last
	p.last, p.cmd = 0, nil
	p.mu.Unlock()
	return nil
}

// Kill sends SIGKILL.
func (p *Process) Kill() error { return p.end(syscall.SIGKILL) }

// Stop sends SIGTERM and waits.
func (p *Process) Stop() error { return p.end(syscall.SIGTERM) }

// SQSCalls returns the calls counted so far.
func (p *Process) SQSCalls() (int64, error) {
	p.mu.Lock()
	metrics := p.metrics
	running := p.cmd != nil
	p.mu.Unlock()
	if running {
		if n, err := scrapeCalls(context.Background(), metrics); err == nil {
			p.mu.Lock()
			p.last = max(p.last, n)
			p.mu.Unlock()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return int64(p.base + p.last), nil
}

// Remote is a dispatcher someone else runs; its SQS calls come from its
// /metrics. It cannot be started, stopped or killed.
type Remote struct {
	MetricsURL string
}

func (r *Remote) Start(context.Context) error { return nil }
func (r *Remote) Stop() error                 { return nil }
func (r *Remote) Kill() error {
	return errors.New("a remote dispatcher cannot be killed; --chaos needs --local")
}

// SQSCalls scrapes the remote counter; without a metrics URL it reports
// zero.
func (r *Remote) SQSCalls() (int64, error) {
	if r.MetricsURL == "" {
		return 0, nil
	}
	n, err := scrapeCalls(context.Background(), r.MetricsURL)
	return int64(n), err
}

// scrapeCalls sums jobfleet_dispatcher_sqs_calls_total in a Prometheus
// text exposition; for other URLs it only checks the answer is 200.
func scrapeCalls(ctx context.Context, url string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", url, resp.Status)
	}
	var total float64
	scanner := bufio.NewScanner(resp.Body)
	for scanner.Scan() {
		line := scanner.Text()
		if !strings.HasPrefix(line, "jobfleet_dispatcher_sqs_calls_total") {
			continue
		}
		fields := strings.Fields(line)
		if v, err := strconv.ParseFloat(fields[len(fields)-1], 64); err == nil {
			total += v
		}
	}
	return total, scanner.Err()
}
