package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/jobfleet/jobfleet"
)

// A claim makes one attempt of a job run at most once, although SQS
// delivers at least once and the dispatcher may forward a job twice when it
// crashes between sending and deleting. Before running, the worker writes
//
//	<prefix>/<job id>/claims/<attempt>.json
//
// with an S3 conditional put (If-None-Match: *). Whoever writes it first
// owns the attempt. A later message for the same attempt is:
//   - a redelivery of the owner's own message (same SQS message id), after
//     its worker died without finishing: it takes the attempt over;
//   - a duplicate (another message id): deleted without running;
//   - or, once the claim says finished, a message whose delete was lost:
//     deleted without running.
//
// The claim also tells the dispatcher which job a pod runs: it names the
// pod, the queue and the receipt handle, so a pod lost with its node or
// OOM-killed before the worker could report can be rerun at once.

// Claim states.
const (
	ClaimRunning  = "running"
	ClaimFinished = "finished"
)

// Claim is the record of who runs one attempt of a job.
type Claim struct {
	JobID         string           `json:"job_id"`
	Type          string           `json:"type"`
	Attempt       int              `json:"attempt"`
	MessageID     string           `json:"message_id"`
	QueueURL      string           `json:"queue_url"`
	ReceiptHandle string           `json:"receipt_handle"`
	Pod           string           `json:"pod,omitempty"`
	Node          string           `json:"node,omitempty"`
	State         string           `json:"state"`
	Outcome       jobfleet.Outcome `json:"outcome,omitempty"`
	ClaimedAt     time.Time        `json:"claimed_at"`
	FinishedAt    time.Time        `json:"finished_at,omitzero"`
	// Namespace is the pod's namespace.
	Namespace string `json:"namespace,omitempty"`
	// Job is the job message, in the pod index only (see PodKey).
	Job json.RawMessage `json:"job,omitempty"`
}

// PodKey is where a worker running in a pod records which attempt it
// claimed, with the job message: the dispatcher's failure sensor reads it
// when the pod dies without the worker reporting (its container was
// OOM-killed, or its node was lost) to rerun the job at once.
func PodKey(prefix, namespace, pod string) string {
	return path.Join(prefix, "pods", namespace, pod+".json")
}

// ErrNoClaim is returned, wrapped, by ReadClaim when the object does not
// exist: the attempt was never claimed, or the pod never claimed one.
var ErrNoClaim = errors.New("no such claim")

// ReadClaim reads a claim or pod index object.
func ReadClaim(ctx context.Context, api S3API, bucket, key string) (*Claim, error) {
	return (&claims{s3: api, bucket: bucket}).read(ctx, key)
}

// WriteClaim writes a claim, as the failure sensor does to finish the
// attempt of a pod that died.
func WriteClaim(ctx context.Context, api S3API, bucket, key string, cl *Claim) error {
	return (&claims{s3: api, bucket: bucket}).write(ctx, key, cl)
}

// ClaimKey is where the claim of one attempt of a job is stored.
func ClaimKey(prefix, jobID string, attempt int) string {
	return path.Join(prefix, jobID, "claims", strconv.Itoa(attempt)+".json")
}

// claimResult says what claiming found.
type claimResult int

const (
	claimOwned     claimResult = iota // ours: run it
	claimDuplicate                    // another message owns the attempt
	claimDone                         // the attempt finished already
)

type claims struct {
	s3     S3API
	bucket string
	prefix string
}

// claim tries to take the attempt for the message.
func (c *claims) claim(ctx context.Context, cl *Claim) (claimResult, error) {
	key := ClaimKey(c.prefix, cl.JobID, cl.Attempt)
	data, err := json.Marshal(cl)
	if err != nil {
		return 0, fmt.Errorf("encoding claim: %w", err)
	}
	_, err = c.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket:      aws.String(c.bucket),
		Key:         aws.String(key),
		Body:        bytes.NewReader(data),
		IfNoneMatch: aws.String("*"),
		ContentType: aws.String("application/json"),
	})
	if err == nil {
		return claimOwned, nil
	}
	if !isPreconditionFailed(err) {
		return 0, fmt.Errorf("claiming attempt %d of job %s: %w", cl.Attempt, cl.JobID, err)
	}
	existing, err := c.read(ctx, key)
	if err != nil {
		return 0, err
	}
	switch {
	case existing.State == ClaimFinished:
		return claimDone, nil
	case existing.MessageID != cl.MessageID:
		return claimDuplicate, nil
	}
	// Our own message again: its previous holder died. Take over.
	if err := c.write(ctx, key, cl); err != nil {
		return 0, err
	}
	return claimOwned, nil
}

// finish marks the attempt done with its outcome.
func (c *claims) finish(ctx context.Context, cl *Claim) error {
	return c.write(ctx, ClaimKey(c.prefix, cl.JobID, cl.Attempt), cl)
}

func (c *claims) write(ctx context.Context, key string, cl *Claim) error {
	data, err := json.Marshal(cl)
	if err != nil {
		return fmt.Errorf("encoding claim: %w", err)
	}
	_, err = c.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket:      aws.String(c.bucket),
		Key:         aws.String(key),
		Body:        bytes.NewReader(data),
		ContentType: aws.String("application/json"),
	})
	if err != nil {
		return fmt.Errorf("writing claim %s: %w", key, err)
	}
	return nil
}

func (c *claims) read(ctx context.Context, key string) (*Claim, error) {
	out, err := c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(c.bucket), Key: aws.String(key)})
	if isNotFound(err) {
		return nil, fmt.Errorf("reading claim %s: %w", key, ErrNoClaim)
	}
	if err != nil {
		return nil, fmt.Errorf("reading claim %s: %w", key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("reading claim %s: %w", key, err)
	}
	var cl Claim
	if err := json.Unmarshal(data, &cl); err != nil {
		return nil, fmt.Errorf("decoding claim %s: %w", key, err)
	}
	return &cl, nil
}
