package eval

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// CSVColumns names the columns a CSV trace is read from.
type CSVColumns struct {
	Time     string   // seconds
	Type     string   // the job type (any id)
	Target   string   // peak memory
	Features []string // numeric features; -1 or empty marks a missing value
	// Pool optionally groups types for the fallback model.
	Pool string
	// Labels are columns read as labels (strings), keyed by column name:
	// predictor.Options.GroupBy can key groups on them.
	Labels []string
	// Baseline optionally names what was allocated before (e.g. requested
	// memory), for evaluation.
	Baseline string
}

// CSVStats counts what reading a CSV skipped.
type CSVStats struct {
	Rows int
	// Skipped rows have a missing (-1 or empty) or non-positive target.
	Skipped int
}

// ReadCSV reads runs from a CSV file with a header row. Rows whose target
// is missing or not positive are skipped and counted. Missing columns,
// unreadable numbers, NaN or infinite values and empty types are errors
// that name the line.
func ReadCSV(r io.Reader, cols CSVColumns) (*Dataset, CSVStats, error) {
	var stats CSVStats
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, stats, errors.New("reading CSV: the file is empty")
		}
		return nil, stats, fmt.Errorf("reading CSV header: %w", err)
	}
	index := map[string]int{}
	for i, name := range header {
		index[strings.TrimSpace(name)] = i
	}
	var missing []string
	col := func(name string) int {
		if name == "" {
			return -1
		}
		i, ok := index[name]
		if !ok {
			missing = append(missing, name)
		}
		return i
	}
	timeCol, typeCol, targetCol := col(cols.Time), col(cols.Type), col(cols.Target)
	poolCol, baselineCol := col(cols.Pool), col(cols.Baseline)
	featureCols := make([]int, len(cols.Features))
	for i, f := range cols.Features {
		featureCols[i] = col(f)
	}
	labelCols := make([]int, len(cols.Labels))
	for i, l := range cols.Labels {
		labelCols[i] = col(l)
	}
	for _, req := range []struct{ flag, name string }{{"time", cols.Time}, {"type", cols.Type}, {"target", cols.Target}} {
		if req.name == "" {
			return nil, stats, fmt.Errorf("the %s column is required", req.flag)
		}
	}
	if len(missing) > 0 {
		avail := slices.Clone(header)
		return nil, stats, fmt.Errorf("CSV has no column %s (columns: %s)", strings.Join(quoteAll(missing), ", "), strings.Join(avail, ", "))
	}
	ds := &Dataset{Features: slices.Clone(cols.Features)}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, stats, fmt.Errorf("reading CSV: %w", err)
		}
		stats.Rows++
		num := func(i int, name string, missingOK bool) (float64, error) {
			s := strings.TrimSpace(rec[i])
			if s == "" && missingOK {
				return math.NaN(), nil
			}
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return 0, fmt.Errorf("line %d: column %s: %q is not a number", line, name, rec[i])
			}
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return 0, fmt.Errorf("line %d: column %s: %s is not a finite number", line, name, s)
			}
			return v, nil
		}
		target, err := num(targetCol, cols.Target, true)
		if err != nil {
			return nil, stats, err
		}
		if math.IsNaN(target) || target <= 0 {
			stats.Skipped++
			continue
		}
		t, err := num(timeCol, cols.Time, false)
		if err != nil {
			return nil, stats, err
		}
		typ := strings.TrimSpace(rec[typeCol])
		if typ == "" {
			return nil, stats, fmt.Errorf("line %d: column %s: empty job type", line, cols.Type)
		}
		s := Sample{Time: t, Type: typ, Peak: target, Baseline: math.NaN(), Features: make([]float64, len(featureCols))}
		for j, c := range featureCols {
			v, err := num(c, cols.Features[j], true)
			if err != nil {
				return nil, stats, err
			}
			if v < 0 {
				v = math.NaN() // -1 marks a missing value in SWF traces
			}
			s.Features[j] = v
		}
		if poolCol >= 0 {
			s.Pool = strings.TrimSpace(rec[poolCol])
		}
		if len(labelCols) > 0 {
			s.Labels = make(map[string]string, len(labelCols))
			for j, c := range labelCols {
				s.Labels[cols.Labels[j]] = strings.TrimSpace(rec[c])
			}
		}
		if baselineCol >= 0 {
			v, err := num(baselineCol, cols.Baseline, true)
			if err != nil {
				return nil, stats, err
			}
			if v > 0 {
				s.Baseline = v
			}
		}
		ds.Samples = append(ds.Samples, s)
	}
	if len(ds.Samples) == 0 {
		return nil, stats, fmt.Errorf("no usable rows: all %d rows have a missing or non-positive %s", stats.Rows, cols.Target)
	}
	return ds, stats, nil
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}
