package loadtest

import (
	"context"
	"errors"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/jobfleet/jobfleet/dispatcher"
	"github.com/jobfleet/jobfleet/internal/awsclient"
)

// InProcess runs the dispatcher in this process, without Kubernetes, its
// SQS requests counted. It cannot crash: Kill stops it like Stop does. Use
// Process for a real SIGKILL.
type InProcess struct {
	Config dispatcher.Config
	Client *sqs.Client
	// S3 holds the dispatcher's records (runs and classes), in
	// Config.Bucket.
	S3     dispatcher.S3API
	Log    zerolog.Logger
	Models dispatcher.ModelSource

	calls  awsclient.Calls
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan error
}

// Start starts a dispatcher.
func (p *InProcess) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel != nil {
		return errors.New("already running")
	}
	cfg := p.Config
	client := CountingClient(p.Client, &p.calls)
	opts := []dispatcher.Option{dispatcher.WithRegisterer(prometheus.NewRegistry()), dispatcher.WithLogger(p.Log)}
	if p.Models != nil {
		opts = append(opts, dispatcher.WithModels(p.Models))
	}
	d, err := dispatcher.New(cfg, client, p.S3, nil, opts...)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel, p.done = cancel, make(chan error, 1)
	go func() { p.done <- d.Run(ctx) }()
	return nil
}

// Kill stops the running dispatcher.
func (p *InProcess) Kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel == nil {
		return nil
	}
	p.cancel()
	err := <-p.done
	p.cancel = nil
	return err
}

// Stop stops the dispatcher gracefully.
func (p *InProcess) Stop() error { return p.Kill() }

// SQSCalls returns the requests made so far.
func (p *InProcess) SQSCalls() (int64, error) { return p.calls.Total(), nil }
