package contract

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// JobIDs calls each with every job id the store holds, in key order, one
// page of S3's listing at a time.
func (s Store) JobIDs(ctx context.Context, api s3.ListObjectsV2APIClient, each func(id string) error) error {
	prefix := s.JobsPrefix()
	pages := s3.NewListObjectsV2Paginator(api, &s3.ListObjectsV2Input{Bucket: aws.String(s.Bucket), Prefix: aws.String(prefix), Delimiter: aws.String("/")})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("listing s3://%s/%s: %w", s.Bucket, prefix, err)
		}
		for _, p := range page.CommonPrefixes {
			id := strings.TrimSuffix(strings.TrimPrefix(aws.ToString(p.Prefix), prefix), "/")
			if id == "" {
				continue
			}
			if err := each(id); err != nil {
				return err
			}
		}
	}
	return nil
}

// DownloadAPI is the S3 calls of Download.
type DownloadAPI interface {
	s3.ListObjectsV2APIClient
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// Download copies every object under prefix into dir, by its path below
// prefix. A key whose path would leave dir is refused.
func (s Store) Download(ctx context.Context, api DownloadAPI, prefix, dir string) error {
	prefix = strings.TrimSuffix(prefix, "/") + "/"
	pages := s3.NewListObjectsV2Paginator(api, &s3.ListObjectsV2Input{Bucket: aws.String(s.Bucket), Prefix: aws.String(prefix)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("listing s3://%s/%s: %w", s.Bucket, prefix, err)
		}
		for _, obj := range page.Contents {
			key := aws.ToString(obj.Key)
			rel := filepath.FromSlash(strings.TrimPrefix(key, prefix))
			if !filepath.IsLocal(rel) {
				return fmt.Errorf("s3://%s/%s: the key leaves %s", s.Bucket, key, dir)
			}
			if err := s.downloadFile(ctx, api, key, filepath.Join(dir, rel)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s Store) downloadFile(ctx context.Context, api DownloadAPI, key, dst string) error {
	out, err := api.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)})
	if err != nil {
		return fmt.Errorf("reading s3://%s/%s: %w", s.Bucket, key, err)
	}
	defer out.Body.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(dst), ".download-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := io.Copy(f, out.Body); err != nil {
		f.Close()
		return fmt.Errorf("reading s3://%s/%s: %w", s.Bucket, key, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), dst)
}
