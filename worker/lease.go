package worker

import (
	"context"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/rs/zerolog"
)

// lease keeps a message invisible while the worker holds it, by extending
// its visibility timeout every third of the timeout. KEDA counts in-flight
// messages, so a held message keeps exactly one Job accounted for.
type lease struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (w *Worker) holdMessage(ctx context.Context, log zerolog.Logger, msg *types.Message) *lease {
	ctx, cancel := context.WithCancel(ctx)
	l := &lease{cancel: cancel}
	every := w.cfg.VisibilityTimeout / 3
	timeout := int32(w.cfg.VisibilityTimeout / time.Second)
	l.wg.Go(func() {
		ticker := w.clock.NewTicker(every)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C():
			}
			_, err := w.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
				QueueUrl:          aws.String(w.cfg.QueueURL),
				ReceiptHandle:     msg.ReceiptHandle,
				VisibilityTimeout: timeout,
			})
			if err != nil && ctx.Err() == nil {
				// The next tick tries again; two more fit before the
				// message would reappear.
				log.Warn().Err(err).Msg("extending the message's visibility")
			}
		}
	})
	return l
}

func (l *lease) stop() {
	l.cancel()
	l.wg.Wait()
}
