// Package units reads the durations and memory sizes people write in
// jobfleet's flags, environment and registry.
package units

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ParseDuration reads a duration as Go writes it (90s, 1h30m), with days
// (d) and weeks (w) as well: 7d, 1w2d, 1d12h.
func ParseDuration(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	bad := fmt.Errorf("%q is not a duration (such as 90s, 30m, 12h, 7d or 1w)", s)
	rest := strings.TrimSpace(s)
	neg := strings.HasPrefix(rest, "-")
	rest = strings.TrimPrefix(strings.TrimPrefix(rest, "-"), "+")
	if rest == "" {
		return 0, bad
	}
	var total time.Duration
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		j := i
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') && rest[j] != '.' {
			j++
		}
		if i == 0 || j == i {
			return 0, bad
		}
		var part time.Duration
		switch unit := rest[i:j]; unit {
		case "d", "w":
			n, err := strconv.ParseFloat(rest[:i], 64)
			day := float64(24 * time.Hour)
			if unit == "w" {
				day *= 7
			}
			if err != nil || n*day >= math.MaxInt64 {
				return 0, bad
			}
			part = time.Duration(n * day)
		default:
			var err error
			if part, err = time.ParseDuration(rest[:j]); err != nil {
				return 0, bad
			}
		}
		if total > math.MaxInt64-part {
			return 0, bad // too long to count in nanoseconds (about 292 years)
		}
		total += part
		rest = rest[j:]
	}
	if neg {
		total = -total
	}
	return total, nil
}

// ParseBytes reads a memory size: a number of bytes, or a number with a
// binary (Ki, Mi, Gi, Ti) or decimal (k, K, M, G, T) unit, as Kubernetes
// writes quantities.
func ParseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}}
	num, mult := s, 1.0
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || f*mult > 1<<62 || strings.ContainsAny(num, "eE+-") && mult != 1 {
		return 0, fmt.Errorf("%q is not a memory size (bytes, or a number with Ki, Mi, Gi, Ti, k, M, G or T)", s)
	}
	return int64(f * mult), nil
}
