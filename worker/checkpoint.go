package worker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/jobfleet/jobfleet/internal/contract"
)

// S3API is the S3 calls the worker makes.
type S3API interface {
	contract.S3API
	DeleteObjects(ctx context.Context, in *s3.DeleteObjectsInput, opts ...func(*s3.Options)) (*s3.DeleteObjectsOutput, error)
}

// A checkpoint is stored content-addressed under its run's prefix
// (contract.Store.CheckpointPrefix):
//
//	.../runs/<run>/checkpoint/objects/<sha256>   one object per distinct file content
//	.../runs/<run>/checkpoint/manifest.json      path -> sha256, written last
//
// The manifest names only objects that were uploaded before it, so a
// partial upload is never mistaken for a complete checkpoint: until the new
// manifest lands, the previous one still describes a complete set.

const manifestVersion = 1

type manifest struct {
	Version    int            `json:"version"`
	JobID      string         `json:"job_id"`
	Run        string         `json:"run"`
	Attempt    int            `json:"attempt"`
	Generation int            `json:"generation"`
	CreatedAt  time.Time      `json:"created_at"`
	Files      []manifestFile `json:"files"`
}

type manifestFile struct {
	Path   string      `json:"path"`
	Size   int64       `json:"size"`
	SHA256 string      `json:"sha256"`
	Mode   fs.FileMode `json:"mode"`
}

// checkpointStore syncs one job's checkpoint directory with S3.
type checkpointStore struct {
	s3     S3API
	bucket string
	prefix string // contract.Store.CheckpointPrefix
	dir    string

	// fence, when set, is asked before the manifest is written and before
	// objects are pruned: a worker that lost its attempt writes nothing.
	fence func() error

	last   *manifest            // the latest complete checkpoint
	hashes map[string]fileStamp // path -> what was hashed, to skip unchanged files
	stored map[string]bool      // object hashes known to be in S3

	// beforePut, when set, is called before a file is uploaded (tests).
	beforePut func(path string)
}

// errFileChanged: a file changed or went away between the scan that hashed
// it and its upload, as files a job writes atomically (write a temporary
// file, rename it) do.
var errFileChanged = errors.New("checkpoint file changed while it was uploaded")

// uploadScans bounds the scans of one checkpoint whose files keep changing
// under it; the next interval tries again.
const uploadScans = 5

type fileStamp struct {
	size    int64
	modTime time.Time
	sha     string
}

func newCheckpointStore(api S3API, bucket, prefix, dir string) *checkpointStore {
	return &checkpointStore{
		s3:     api,
		bucket: bucket,
		prefix: prefix,
		dir:    dir,
		hashes: map[string]fileStamp{},
		stored: map[string]bool{},
	}
}

// URI is the checkpoint's location, as job messages record it.
func (c *checkpointStore) URI() string {
	return "s3://" + c.bucket + "/" + c.prefix + "/"
}

func (c *checkpointStore) manifestKey() string { return c.prefix + "/manifest.json" }
func (c *checkpointStore) objectKey(sha string) string {
	return c.prefix + "/objects/" + sha
}

// errCorruptCheckpoint marks a checkpoint that exists but cannot be used.
var errCorruptCheckpoint = errors.New("corrupt checkpoint")

// restore downloads the latest complete checkpoint into the directory. It
// returns false when the job has none.
func (c *checkpointStore) restore(ctx context.Context) (bool, error) {
	out, err := c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(c.bucket), Key: aws.String(c.manifestKey())})
	if contract.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading checkpoint manifest: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(out.Body, 64<<20))
	out.Body.Close()
	if err != nil {
		return false, fmt.Errorf("reading checkpoint manifest: %w", err)
	}
	m, err := decodeManifest(data)
	if err != nil {
		return false, fmt.Errorf("%w: manifest %s: %w", errCorruptCheckpoint, c.manifestKey(), err)
	}
	for _, f := range m.Files {
		if err := c.download(ctx, f); err != nil {
			return false, err
		}
		c.stored[f.SHA256] = true
	}
	c.last = m
	return true, nil
}

// decodeManifest parses a checkpoint manifest and checks everything restore
// relies on: the version, and for every file a path inside the directory
// named once, a SHA-256 and a size.
func decodeManifest(data []byte) (*manifest, error) {
	var m manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m.Version != manifestVersion {
		return nil, fmt.Errorf("version %d, this worker reads version %d", m.Version, manifestVersion)
	}
	if m.Generation < 1 {
		return nil, fmt.Errorf("generation %d", m.Generation)
	}
	seen := make(map[string]bool, len(m.Files))
	for i, f := range m.Files {
		switch {
		case f.Path == "" || !filepath.IsLocal(filepath.FromSlash(f.Path)) || strings.Contains(f.Path, "\\") || path.Clean(f.Path) != f.Path:
			return nil, fmt.Errorf("files[%d]: path %q is not inside the checkpoint directory", i, f.Path)
		case seen[f.Path]:
			return nil, fmt.Errorf("files[%d]: path %q is listed twice", i, f.Path)
		case len(f.SHA256) != sha256.Size*2 || strings.Trim(f.SHA256, "0123456789abcdef") != "":
			return nil, fmt.Errorf("files[%d]: %q is not a SHA-256", i, f.SHA256)
		case f.Size < 0:
			return nil, fmt.Errorf("files[%d]: size %d", i, f.Size)
		case f.Mode&^fs.ModePerm != 0:
			return nil, fmt.Errorf("files[%d]: mode %v is not a permission", i, f.Mode)
		}
		seen[f.Path] = true
	}
	return &m, nil
}

func (c *checkpointStore) download(ctx context.Context, f manifestFile) error {
	target, err := c.localPath(f.Path)
	if err != nil {
		return err
	}
	out, err := c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(c.bucket), Key: aws.String(c.objectKey(f.SHA256))})
	if err != nil {
		if contract.IsNotFound(err) {
			return fmt.Errorf("%w: object of %s is missing", errCorruptCheckpoint, f.Path)
		}
		return fmt.Errorf("downloading checkpoint file %s: %w", f.Path, err)
	}
	defer out.Body.Close()
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return fmt.Errorf("restoring checkpoint file %s: %w", f.Path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(target), ".restore-*")
	if err != nil {
		return fmt.Errorf("restoring checkpoint file %s: %w", f.Path, err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), out.Body)
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("downloading checkpoint file %s: %w", f.Path, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != f.SHA256 || n != f.Size {
		return fmt.Errorf("%w: %s has sha256 %s and %d bytes, the manifest says %s and %d", errCorruptCheckpoint, f.Path, sum, n, f.SHA256, f.Size)
	}
	if err := os.Chmod(tmp.Name(), f.Mode.Perm()); err != nil {
		return fmt.Errorf("restoring checkpoint file %s: %w", f.Path, err)
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return fmt.Errorf("restoring checkpoint file %s: %w", f.Path, err)
	}
	if info, err := os.Stat(target); err == nil {
		c.hashes[f.Path] = fileStamp{size: info.Size(), modTime: info.ModTime(), sha: f.SHA256}
	}
	return nil
}

// localPath maps a manifest path into the directory, refusing paths that
// would escape it.
func (c *checkpointStore) localPath(p string) (string, error) {
	if !filepath.IsLocal(filepath.FromSlash(p)) {
		return "", fmt.Errorf("%w: path %q leaves the checkpoint directory", errCorruptCheckpoint, p)
	}
	return filepath.Join(c.dir, filepath.FromSlash(p)), nil
}

// upload stores the directory as a new checkpoint when it changed since the
// last one. It uploads only file contents S3 does not hold yet, then the
// manifest. It returns whether a new checkpoint was written.
func (c *checkpointStore) upload(ctx context.Context, jobID, run string, attempt int, now time.Time) (bool, error) {
	var files []manifestFile
	for scans := 1; ; scans++ {
		var err error
		if files, err = c.scan(); err != nil {
			return false, err
		}
		if c.last != nil && sameFiles(c.last.Files, files) {
			return false, nil
		}
		if c.last == nil && len(files) == 0 {
			return false, nil
		}
		err = c.putAll(ctx, files)
		if errors.Is(err, errFileChanged) && scans < uploadScans {
			continue // take the directory as it is now
		}
		if err != nil {
			return false, err
		}
		break
	}
	m := &manifest{Version: manifestVersion, JobID: jobID, Run: run, Attempt: attempt, CreatedAt: now.UTC(), Files: files, Generation: 1}
	if c.last != nil {
		m.Generation = c.last.Generation + 1
	}
	data, err := json.Marshal(m)
	if err != nil {
		return false, fmt.Errorf("encoding checkpoint manifest: %w", err)
	}
	if c.fence != nil {
		if err := c.fence(); err != nil {
			return false, err
		}
	}
	_, err = c.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket:      aws.String(c.bucket),
		Key:         aws.String(c.manifestKey()),
		Body:        bytes.NewReader(data),
		ContentType: aws.String("application/json"),
	})
	if err != nil {
		return false, fmt.Errorf("writing checkpoint manifest: %w", err)
	}
	previous := c.last
	c.last = m
	c.prune(ctx, previous)
	return true, nil
}

// prune deletes objects the previous manifest used and the new one does
// not. It is best effort: a leftover object costs storage, not correctness.
func (c *checkpointStore) prune(ctx context.Context, previous *manifest) {
	if previous == nil || (c.fence != nil && c.fence() != nil) {
		return
	}
	keep := map[string]bool{}
	for _, f := range c.last.Files {
		keep[f.SHA256] = true
	}
	var objs []s3types.ObjectIdentifier
	for _, f := range previous.Files {
		if !keep[f.SHA256] {
			objs = append(objs, s3types.ObjectIdentifier{Key: aws.String(c.objectKey(f.SHA256))})
			delete(c.stored, f.SHA256)
			keep[f.SHA256] = true // once
		}
	}
	if len(objs) == 0 {
		return
	}
	_, _ = c.s3.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(c.bucket), Delete: &s3types.Delete{Objects: objs, Quiet: aws.Bool(true)}})
}

// putAll uploads the files whose contents S3 does not hold yet.
func (c *checkpointStore) putAll(ctx context.Context, files []manifestFile) error {
	for _, f := range files {
		if c.stored[f.SHA256] {
			continue
		}
		if err := c.put(ctx, f); err != nil {
			return err
		}
		c.stored[f.SHA256] = true
	}
	return nil
}

// put uploads one file as the object of its hash. S3 checks the body
// against the SHA-256 the scan computed, so a file that changed since is
// never stored under the old contents' name; errFileChanged says to scan
// again.
func (c *checkpointStore) put(ctx context.Context, f manifestFile) error {
	local, err := c.localPath(f.Path)
	if err != nil {
		return err
	}
	if c.beforePut != nil {
		c.beforePut(f.Path)
	}
	file, err := os.Open(local)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", f.Path, errFileChanged)
	}
	if err != nil {
		return fmt.Errorf("uploading checkpoint file %s: %w", f.Path, err)
	}
	defer file.Close()
	if info, err := file.Stat(); err != nil || info.Size() != f.Size {
		return fmt.Errorf("%s: %w", f.Path, errFileChanged)
	}
	sum, err := hex.DecodeString(f.SHA256)
	if err != nil {
		return fmt.Errorf("uploading checkpoint file %s: %w", f.Path, err)
	}
	_, err = c.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket:         aws.String(c.bucket),
		Key:            aws.String(c.objectKey(f.SHA256)),
		Body:           file,
		ContentLength:  aws.Int64(f.Size),
		ChecksumSHA256: aws.String(base64.StdEncoding.EncodeToString(sum)),
	})
	if err != nil {
		return fmt.Errorf("uploading checkpoint file %s: %w", f.Path, err)
	}
	// What was sent is still what was hashed (S3 checked it too).
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("uploading checkpoint file %s: %w", f.Path, err)
	}
	h := sha256.New()
	if n, err := io.Copy(h, file); err != nil || n != f.Size || !bytes.Equal(h.Sum(nil), sum) {
		return fmt.Errorf("%s: %w", f.Path, errFileChanged)
	}
	return nil
}

// scan lists the directory's regular files with their hashes, rehashing
// only files whose size or modification time changed.
func (c *checkpointStore) scan() ([]manifestFile, error) {
	var files []manifestFile
	err := filepath.WalkDir(c.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked
			}
			return err
		}
		if !d.Type().IsRegular() || strings.HasPrefix(d.Name(), ".restore-") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, err := filepath.Rel(c.dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		stamp, ok := c.hashes[rel]
		if !ok || stamp.size != info.Size() || !stamp.modTime.Equal(info.ModTime()) {
			sha, err := hashFile(p)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			stamp = fileStamp{size: info.Size(), modTime: info.ModTime(), sha: sha}
			c.hashes[rel] = stamp
		}
		files = append(files, manifestFile{Path: rel, Size: stamp.size, SHA256: stamp.sha, Mode: info.Mode().Perm()})
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading checkpoint directory %s: %w", c.dir, err)
	}
	return files, nil
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func sameFiles(a, b []manifestFile) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
