// Command image builds jobfleet's container image without Docker: for each
// platform (linux/amd64 and linux/arm64) it cross-compiles the jobfleet
// binary and its small worker build, puts both in one layer on an empty
// base, and writes a multi-platform OCI image index to an OCI layout
// directory, and, with --push, to a registry.
//
//	go run ./deploy/image --out dist/image [--push registry/repo:tag] [--version v1.2.3]
//
// The image runs as the non-root user 65532. Both binaries carry their own
// CA roots (golang.org/x/crypto/x509roots/fallback) and time zone data
// (time/tzdata), so the base can be empty. /jobfleet runs the dispatcher;
// /jobfleet-worker, which the job pods' init container copies in
// (`/jobfleet-worker install /opt/jobfleet`), runs jobs.
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Platforms the image is built for.
var Platforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// MaxWorkerBytes bounds the worker build the init container copies into
// every job pod.
const MaxWorkerBytes = 30 << 20

// User is the image's non-root user and group.
const User = "65532:65532"

// Options configure a build.
type Options struct {
	// Module is the jobfleet module's root directory.
	Module string
	// Version is stamped into the binaries and the image's labels.
	Version string
	// Work holds the compiled binaries.
	Work string
	// Log receives progress.
	Log io.Writer
}

func main() {
	out := flag.String("out", "dist/image", "OCI layout directory to write the image index to")
	push := flag.String("push", "", "also push the image index to this reference (registry/repo:tag)")
	version := flag.String("version", "dev", "version stamped into the binaries and labels")
	insecure := flag.Bool("insecure", false, "push over plain HTTP (a local registry)")
	flag.Parse()
	if err := run(context.Background(), *out, *push, *version, *insecure); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out, push, version string, insecure bool) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "jobfleet-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	idx, err := Build(ctx, Options{Module: root, Version: version, Work: work, Log: os.Stderr})
	if err != nil {
		return err
	}
	if err := WriteLayout(out, idx); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", out)
	if push != "" {
		var opts []name.Option
		if insecure {
			opts = append(opts, name.Insecure)
		}
		ref, err := name.ParseReference(push, opts...)
		if err != nil {
			return fmt.Errorf("--push %q: %w", push, err)
		}
		if err := remote.WriteIndex(ref, idx, remote.WithContext(ctx)); err != nil {
			return fmt.Errorf("pushing to %s: %w", ref, err)
		}
		fmt.Fprintf(os.Stderr, "pushed %s\n", ref)
	}
	return nil
}

// Build compiles the binaries for every platform and assembles the image
// index.
func Build(ctx context.Context, opts Options) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range Platforms {
		files := map[string]string{}
		for bin, pkg := range map[string]string{"jobfleet": "./cmd/jobfleet", "jobfleet-worker": "./cmd/jobfleet-worker"} {
			path := filepath.Join(opts.Work, p.Architecture, bin)
			if err := compile(ctx, opts, p, pkg, path); err != nil {
				return nil, err
			}
			files["/"+bin] = path
		}
		info, err := os.Stat(files["/jobfleet-worker"])
		if err != nil {
			return nil, err
		}
		if info.Size() > MaxWorkerBytes {
			return nil, fmt.Errorf("the %s worker build is %d bytes, more than the %d the init container may copy into every pod", p.Architecture, info.Size(), MaxWorkerBytes)
		}
		img, err := image(files, p, opts.Version)
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	return idx, nil
}

// compile cross-compiles a main package, static and stripped.
func compile(ctx context.Context, opts Options, p v1.Platform, pkg, out string) error {
	if opts.Log != nil {
		fmt.Fprintf(opts.Log, "building %s for %s/%s\n", pkg, p.OS, p.Architecture)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath",
		"-ldflags", "-s -w -X main.version="+opts.Version, "-o", out, pkg)
	cmd.Dir = opts.Module
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s for %s: %w\n%s", pkg, p.Architecture, err, output)
	}
	return nil
}

// image is one platform's image: the files in one layer on an empty base,
// run as the non-root user.
func image(files map[string]string, p v1.Platform, version string) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// A fixed time, so the same binaries give the same layer.
	mtime := time.Unix(0, 0)
	for _, dest := range slices.Sorted(maps.Keys(files)) {
		data, err := os.ReadFile(files[dest])
		if err != nil {
			return nil, err
		}
		hdr := &tar.Header{Name: strings.TrimPrefix(dest, "/"), Mode: 0o755, Size: int64(len(data)), ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Created = p.OS, p.Architecture, v1.Time{Time: mtime}
	cfg.Config.User = User
	cfg.Config.Entrypoint = []string{"/jobfleet"}
	cfg.Config.Env = []string{"PATH=/"}
	cfg.Config.Labels = map[string]string{
		"org.opencontainers.image.title":   "jobfleet",
		"org.opencontainers.image.version": version,
		"org.opencontainers.image.source":  "https://github.com/jobfleet/jobfleet",
	}
	return mutate.ConfigFile(img, cfg)
}

// WriteLayout writes the index to an OCI layout directory, replacing what
// was there.
func WriteLayout(dir string, idx v1.ImageIndex) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if _, err := layout.Write(dir, idx); err != nil {
		return fmt.Errorf("writing the OCI layout %s: %w", dir, err)
	}
	return nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run inside the jobfleet module")
	}
	return filepath.Dir(mod), nil
}
