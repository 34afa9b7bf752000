package main

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestImagePushPull builds the image, pushes it to an in-process registry on
// 127.0.0.1 and pulls each platform back, checking what a cluster would
// run: the platform, the non-root user, the entrypoint, both binaries, and,
// for the host's platform, that the worker build installs itself and runs.
func TestImagePushPull(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles jobfleet for two platforms")
	}
	ctx := context.Background()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	idx, err := Build(ctx, Options{Module: root, Version: "v0.0.0-test", Work: t.TempDir(), Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "layout")
	if err := WriteLayout(out, idx); err != nil {
		t.Fatal(err)
	}
	if _, err := layout.ImageIndexFromPath(out); err != nil {
		t.Fatalf("reading the written OCI layout back: %v", err)
	}

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref, err := name.ParseReference(strings.TrimPrefix(srv.URL, "http://")+"/jobfleet/jobfleet:test", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx, remote.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}

	pulled, err := remote.Index(ref, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	mt, err := pulled.MediaType()
	if err != nil || mt != types.OCIImageIndex {
		t.Fatalf("index media type = %q, %v; want %q", mt, err, types.OCIImageIndex)
	}
	manifest, err := pulled.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(manifest.Manifests) != len(Platforms) {
		t.Fatalf("index has %d manifests, want %d", len(manifest.Manifests), len(Platforms))
	}
	for _, p := range Platforms {
		t.Run(p.Architecture, func(t *testing.T) {
			img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithPlatform(p))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.OS != p.OS || cfg.Architecture != p.Architecture {
				t.Errorf("pulled %s/%s, want %s/%s", cfg.OS, cfg.Architecture, p.OS, p.Architecture)
			}
			if cfg.Config.User != User {
				t.Errorf("user = %q, want %q", cfg.Config.User, User)
			}
			if got := strings.Join(cfg.Config.Entrypoint, " "); got != "/jobfleet" {
				t.Errorf("entrypoint = %q, want /jobfleet", got)
			}
			files := extract(t, img, t.TempDir())
			for _, bin := range []string{"jobfleet", "jobfleet-worker"} {
				if _, ok := files[bin]; !ok {
					t.Fatalf("the image has no /%s; it has %v", bin, files)
				}
			}
			worker := files["jobfleet-worker"]
			if worker.Size() > MaxWorkerBytes {
				t.Errorf("the worker build is %d bytes, more than %d", worker.Size(), MaxWorkerBytes)
			}
			t.Logf("%s: /jobfleet %d bytes, /jobfleet-worker %d bytes", p.Architecture, files["jobfleet"].Size(), worker.Size())
			if p.Architecture != runtime.GOARCH || runtime.GOOS != "linux" {
				return
			}
			// The init container's step, then the job container's binary.
			dir := filepath.Join(t.TempDir(), "opt-jobfleet")
			extracted := filepath.Join(files["jobfleet-worker"].dir, "jobfleet-worker")
			if out, err := exec.Command(extracted, "install", dir).CombinedOutput(); err != nil {
				t.Fatalf("jobfleet-worker install: %v\n%s", err, out)
			}
			out, err := exec.Command(filepath.Join(dir, "jobfleet"), "version").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "v0.0.0-test") {
				t.Fatalf("the installed worker's version: %q, %v", out, err)
			}
			// Both binaries carry their own time zone data and CA roots:
			// an empty base has neither.
			for _, b := range []string{"jobfleet", "jobfleet-worker"} {
				data, err := os.ReadFile(filepath.Join(files[b].dir, b))
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(data), "time/tzdata") || !strings.Contains(string(data), "x509roots/fallback") {
					t.Errorf("/%s does not embed time/tzdata and x509roots/fallback", b)
				}
			}
		})
	}
}

type extracted struct {
	size int64
	dir  string
}

func (e extracted) Size() int64 { return e.size }

// extract writes the image's flattened file system under dir and returns
// its regular files.
func extract(t *testing.T, img v1.Image, dir string) map[string]extracted {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string]extracted{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		if hdr.Uid != 0 || hdr.Mode&0o022 != 0 {
			t.Errorf("/%s: uid %d mode %o; want root-owned, not group or world writable", hdr.Name, hdr.Uid, hdr.Mode)
		}
		path := filepath.Join(dir, filepath.Base(hdr.Name))
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, tr); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		files[hdr.Name] = extracted{size: hdr.Size, dir: dir}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// BenchmarkInitCopy measures the job pods' init container step, `install
// DIR` run as a process, for the worker build the image ships and, as the
// baseline, the full jobfleet binary it replaced.
func BenchmarkInitCopy(b *testing.B) {
	root, err := moduleRoot()
	if err != nil {
		b.Fatal(err)
	}
	work := b.TempDir()
	host := v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	opts := Options{Module: root, Version: "bench", Work: work}
	for _, bin := range []struct{ name, pkg string }{{"worker", "./cmd/jobfleet-worker"}, {"full", "./cmd/jobfleet"}} {
		path := filepath.Join(work, bin.name)
		if err := compile(context.Background(), opts, host, bin.pkg, path); err != nil {
			b.Fatal(err)
		}
		info, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bin.name, func(b *testing.B) {
			b.SetBytes(info.Size())
			dir := b.TempDir()
			for b.Loop() {
				if out, err := exec.Command(path, "install", dir).CombinedOutput(); err != nil {
					b.Fatalf("%s install: %v\n%s", bin.name, err, out)
				}
			}
		})
	}
}
