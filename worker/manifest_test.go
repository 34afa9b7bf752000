package worker

import (
	"path/filepath"
	"testing"
)

// FuzzDecodeManifest feeds the checkpoint manifest decoder anything: it
// never panics, and a manifest it accepts names each path once, inside the
// checkpoint directory, with a SHA-256: restore can trust it.
func FuzzDecodeManifest(f *testing.F) {
	f.Add([]byte(`{"version":1,"job_id":"j","run":"r","attempt":1,"generation":1,"created_at":"2026-11-30T00:00:00Z","files":[{"path":"progress","size":3,"sha256":"` + sha + `","mode":420}]}`))
	f.Add([]byte(`{"version":1,"generation":1,"files":[{"path":"../../etc/passwd","size":1,"sha256":"` + sha + `"}]}`))
	f.Add([]byte(`{"version":1,"generation":2,"files":[{"path":"a/b","size":0,"sha256":"` + sha + `"},{"path":"a/b","size":0,"sha256":"` + sha + `"}]}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeManifest(data)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, file := range m.Files {
			if !filepath.IsLocal(filepath.FromSlash(file.Path)) || seen[file.Path] || len(file.SHA256) != 64 || file.Size < 0 {
				t.Fatalf("accepted %+v", file)
			}
			seen[file.Path] = true
		}
	})
}

const sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
