package contract

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/jobfleet/jobfleet/internal/queue"
)

// BodyRef is the body of a dead letter whose original was too large to
// dead-letter whole: the original is stored in S3 and the dead letter points
// to it (also in the jobfleet-body-ref attribute).
type BodyRef struct {
	Note  string `json:"jobfleet_dead_letter"`
	Body  string `json:"body"`
	Bytes int    `json:"bytes"`
}

// FitDeadLetter returns m unchanged when SQS accepts it, else a dead letter
// by reference: the body stored in S3 under <prefix>/dead-letters/, and a
// small body and attribute pointing to it, so that a message that cannot be
// dead-lettered whole is never retried forever.
func (s Store) FitDeadLetter(ctx context.Context, m queue.Message) (queue.Message, error) {
	if queue.Size(m) <= queue.MaxMessageBytes {
		return m, nil
	}
	sum := sha256.Sum256([]byte(m.Body))
	key := path.Join(s.prefix(), "dead-letters", hex.EncodeToString(sum[:])+".json")
	_, err := s.S3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.Bucket), Key: aws.String(key), Body: bytes.NewReader([]byte(m.Body)),
		ContentType: aws.String("application/json"),
	})
	if err != nil {
		return queue.Message{}, fmt.Errorf("storing a dead letter's body: %w", err)
	}
	ref := s.URI(key)
	body, _ := json.Marshal(BodyRef{Note: "the original body was too large to dead-letter whole; it is stored at body", Body: ref, Bytes: len(m.Body)})
	out := queue.Message{Body: string(body), Attributes: map[string]types.MessageAttributeValue{}}
	// The reason and the pointer first, then what fits of the rest.
	out.Attributes[queue.AttrBodyRef] = queue.StringAttribute(ref)
	if v, ok := m.Attributes[queue.AttrError]; ok {
		out.Attributes[queue.AttrError] = v
	}
	names := make([]string, 0, len(m.Attributes))
	for k := range m.Attributes {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if _, done := out.Attributes[k]; done || len(out.Attributes) >= 10 {
			continue
		}
		out.Attributes[k] = m.Attributes[k]
		if queue.Size(out) > queue.MaxMessageBytes {
			delete(out.Attributes, k)
		}
	}
	return out, nil
}
