package worker

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jobfleet/jobfleet/internal/testenv"
)

// TestCheckpointOfFilesWrittenAtomically checkpoints a directory whose job
// writes its state the way checkpoint docs advise (a temporary file renamed
// over the real one) while the upload runs: the checkpoint is taken, of
// the directory as it was after the rename, not given up.
func TestCheckpointOfFilesWrittenAtomically(t *testing.T) {
	t.Parallel()
	s3 := testenv.StartS3(t)
	bucket := s3.CreateBucket(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "progress"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "progress.tmp"), []byte("22"), 0o644); err != nil {
		t.Fatal(err)
	}
	store := newCheckpointStore(s3.Client, bucket, "jobfleet/jobs/j/runs/r/checkpoint", dir)
	renames := 0
	store.beforePut = func(path string) {
		if path == "progress.tmp" && renames == 0 {
			renames++
			if err := os.Rename(filepath.Join(dir, "progress.tmp"), filepath.Join(dir, "progress")); err != nil {
				t.Error(err)
			}
		}
	}
	ok, err := store.upload(context.Background(), "j", "r", 1, time.Now())
	if err != nil || !ok {
		t.Fatalf("upload = %v, %v; want a checkpoint", ok, err)
	}
	if renames != 1 {
		t.Fatalf("the job renamed its file %d times during the upload, want 1", renames)
	}
	if got := store.last.Files; len(got) != 1 || got[0].Path != "progress" || got[0].Size != 2 {
		t.Errorf("checkpoint files %+v, want progress of 2 bytes alone", got)
	}
	// It restores to what the job wrote last.
	restored := t.TempDir()
	again := newCheckpointStore(s3.Client, bucket, "jobfleet/jobs/j/runs/r/checkpoint", restored)
	if _, err := again.restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(restored, "progress")); err != nil || string(data) != "22" {
		t.Errorf("restored progress %q, %v; want 22", data, err)
	}
}
