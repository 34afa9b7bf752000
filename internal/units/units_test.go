package units

import (
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	const day = 24 * time.Hour
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"90s", 90 * time.Second},
		{"1h30m", 90 * time.Minute},
		{"7d", 7 * day},
		{"30d", 30 * day},
		{"1w", 7 * day},
		{"1w2d", 9 * day},
		{"1d12h", 36 * time.Hour},
		{"2d30m15s", 2*day + 30*time.Minute + 15*time.Second},
		{"1.5d", 36 * time.Hour},
		{"-2d", -2 * day},
		{" 3d ", 3 * day},
		{"0", 0},
	} {
		got, err := ParseDuration(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "-", "d", "7", "7x", "7dd", "1.2.3d", "d7", "7000w7000w7000w", "100000w", "200000d", "1w2562047h"} {
		if got, err := ParseDuration(in); err == nil || !strings.Contains(err.Error(), "is not a duration") {
			t.Errorf("ParseDuration(%q) = %v, %v; want an error", in, got, err)
		}
	}
}

func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"1024", 1024},
		{"512Mi", 512 << 20},
		{"1.5Gi", 3 << 29},
		{"2Ti", 2 << 40},
		{"1k", 1000},
		{"1G", 1e9},
		{"1e3", 1000},
	} {
		got, err := ParseBytes(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseBytes(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "Mi", "-1", "-1Mi", "1e3Mi", "12Xi", "one", "99999999Ti"} {
		if got, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) = %v; want an error", in, got)
		}
	}
}
