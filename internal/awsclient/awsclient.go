// Package awsclient builds the AWS SDK clients jobfleet uses, from the SDK's
// default configuration chain. The SDK's own settings decide where requests
// go: AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SQS and
// AWS_ENDPOINT_URL_S3 point the same binary at AWS or at the local stack.
package awsclient

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// SQSCalls counts every SQS request of the clients this package builds.
var SQSCalls = &Calls{}

// ResponseHeaderTimeout bounds the wait for a response to start.
const ResponseHeaderTimeout = time.Minute

// DefaultRegion is used when neither the environment nor a profile names a
// region, so that the local stack works with no AWS configuration at all.
const DefaultRegion = "us-east-1"

// Clients are the AWS clients of one jobfleet process.
type Clients struct {
	Config aws.Config
	SQS    *sqs.Client
	S3     *s3.Client
	// SNS publishes completion events; SFN answers task tokens.
	SNS *sns.Client
	SFN *sfn.Client
}

// Load reads the SDK's default configuration and builds the clients. Calls
// are retried by the SDK's standard retryer (exponential backoff with
// jitter) up to maxAttempts times; zero keeps the SDK default.
func Load(ctx context.Context, maxAttempts int, opts ...func(*config.LoadOptions) error) (*Clients, error) {
	opts = append([]func(*config.LoadOptions) error{
		// A request whose response never starts (a connection that went
		// half-open) fails and is retried instead of holding its caller
		// forever. Long polls answer within 20 seconds.
		config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
			t.ResponseHeaderTimeout = ResponseHeaderTimeout
		})),
		config.WithRetryer(func() aws.Retryer {
			// No retry quota: jobfleet's processes must ride out an outage
			// of any length, and the quota would stop retries after a few
			// dozen connection errors.
			r := retry.NewStandard(func(o *retry.StandardOptions) { o.RateLimiter = ratelimit.None })
			if maxAttempts > 0 {
				return retry.AddWithMaxAttempts(r, maxAttempts)
			}
			return r
		}),
	}, opts...)
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	return New(cfg), nil
}

// New builds the clients from a configuration. S3 uses path-style
// addressing when a custom S3 endpoint is configured, as S3-compatible
// servers expect.
func New(cfg aws.Config) *Clients {
	return &Clients{
		Config: cfg,
		SQS: sqs.NewFromConfig(cfg, func(o *sqs.Options) {
			o.APIOptions = append(o.APIOptions, SQSCalls.Middleware)
		}),
		S3: s3.NewFromConfig(cfg, func(o *s3.Options) {
			o.UsePathStyle = customS3Endpoint(cfg)
			// Objects stored without a checksum are still read; saying so
			// on every read is noise.
			o.DisableLogOutputChecksumValidationSkipped = true
		}),
		SNS: sns.NewFromConfig(cfg),
		SFN: sfn.NewFromConfig(cfg),
	}
}

func customS3Endpoint(cfg aws.Config) bool {
	if cfg.BaseEndpoint != nil {
		return true
	}
	return os.Getenv("AWS_ENDPOINT_URL_S3") != "" || os.Getenv("AWS_ENDPOINT_URL") != ""
}

// ParseS3URI splits s3://bucket/key.
func ParseS3URI(uri string) (bucket, key string, err error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return "", "", fmt.Errorf("%q is not an s3://bucket/key URI", uri)
	}
	return u.Host, strings.TrimPrefix(u.Path, "/"), nil
}
