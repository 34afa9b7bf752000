package awsclient

import (
	"context"
	"sync"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
)

// Calls counts the API calls a client makes, per operation, as they are
// sent: retries count, since each is a request the service bills.
type Calls struct {
	mu     sync.Mutex
	counts map[string]int64
	// OnCall, if set, is called for every request.
	OnCall func(operation string)
}

// Total returns the number of calls made so far.
func (c *Calls) Total() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, v := range c.counts {
		n += v
	}
	return n
}

// By returns the calls per operation.
func (c *Calls) By() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.counts))
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

// Middleware adds the counter to a client's stack; use it as an APIOptions
// entry: sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.APIOptions = append(o.APIOptions, calls.Middleware) }).
func (c *Calls) Middleware(stack *middleware.Stack) error {
	return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("jobfleetCountCalls",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			op := awsmiddleware.GetOperationName(ctx)
			c.mu.Lock()
			if c.counts == nil {
				c.counts = map[string]int64{}
			}
			c.counts[op]++
			c.mu.Unlock()
			if c.OnCall != nil {
				c.OnCall(op)
			}
			return next.HandleFinalize(ctx, in)
		}), middleware.After)
}
