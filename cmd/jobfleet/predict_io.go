package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/jobfleet/jobfleet/internal/awsclient"
	"github.com/jobfleet/jobfleet/predictor"
)

// s3For returns an S3 client when a location is in S3, nil otherwise.
func s3For(ctx context.Context, locations ...string) (predictor.S3API, error) {
	for _, l := range locations {
		if strings.HasPrefix(l, "s3://") {
			clients, err := awsclient.Load(ctx, 0)
			if err != nil {
				return nil, err
			}
			return clients.S3, nil
		}
	}
	return nil, nil
}

func loadRecords(ctx context.Context, log zerolog.Logger, source string, window time.Duration, groupBy []string) (*predictor.Dataset, error) {
	api, err := s3For(ctx, source)
	if err != nil {
		return nil, err
	}
	ds, stats, err := predictor.LoadRecords(ctx, api, source, window, time.Now())
	log.Info().Int("files", stats.Files).Int("records", stats.Records).Int("used", stats.Used).Int("missed", stats.Missed).Int("malformed", stats.Malformed).Int("unusable", stats.Unusable).Int("duplicates", stats.Duplicates).Msg("read run records")
	if err != nil {
		return nil, err
	}
	if len(groupBy) == 0 {
		return ds, nil
	}
	// A label no record carries would key no group: a typo, or labels
	// the producers do not send.
	carried := map[string]bool{}
	for _, s := range ds.Samples {
		for key := range s.Labels {
			carried[key] = true
		}
	}
	read := "no run record"
	if window > 0 {
		read = fmt.Sprintf("no run record of the last %v (--window)", window)
	}
	for _, key := range groupBy {
		if !carried[key] {
			return nil, fmt.Errorf("--group-by %s: %s carries the label %q (they carry: %s)", strings.Join(groupBy, ","), read, key, orNone(slices.Sorted(maps.Keys(carried))))
		}
	}
	return ds, nil
}

// orNone joins names, or says none.
func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func loadModel(ctx context.Context, location string) (*predictor.Model, error) {
	api, err := s3For(ctx, location)
	if err != nil {
		return nil, err
	}
	return predictor.Load(ctx, api, location)
}

func saveModel(ctx context.Context, out string, m *predictor.Model) error {
	api, err := s3For(ctx, out)
	if err != nil {
		return err
	}
	return predictor.Save(ctx, api, out, m)
}
