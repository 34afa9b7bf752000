package worker

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// An error text cut for a run record stays valid UTF-8: a cut inside a
// character drops it rather than leaving half of it.
func TestTruncateKeepsCharacters(t *testing.T) {
	s := strings.Repeat("é", 300) // 2 bytes each
	got := truncate(s, 501)
	if !utf8.ValidString(got) || !strings.HasSuffix(got, "...") || len(got) != 500+3 {
		t.Errorf("truncate to 501 bytes: %d bytes, valid UTF-8 %v, %q at the end", len(got), utf8.ValidString(got), got[len(got)-5:])
	}
	if got := truncate("short", 500); got != "short" {
		t.Errorf("a short text changed: %q", got)
	}
}
