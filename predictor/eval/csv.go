package eval

import (
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/jobfleet/jobfleet/internal/csvtable"
	"github.com/jobfleet/jobfleet/predictor"
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
	// Durations optionally name columns of seconds whose sum, added to
	// the time, is when the run ended (a trace's wait and run times):
	// walking forward, methods are then trained only on runs that had
	// ended. A missing value (-1 or empty) counts as 0.
	Durations []string
	// Wait optionally names the column of seconds a run waited between
	// its submission and its start (Sample.Started): the predictor's size
	// is then looked at again when it starts, as jobfleet's worker does.
	// A missing value (-1 or empty) counts as 0.
	Wait string
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
	t, err := csvtable.Open(r)
	if err != nil {
		return nil, stats, fmt.Errorf("reading CSV: %w", err)
	}
	timeCol, typeCol, targetCol := t.Require("time", cols.Time, false), t.Require("type", cols.Type, false), t.Require("target", cols.Target, false)
	poolCol, baselineCol := t.Column("pool", cols.Pool), t.Column("baseline", cols.Baseline)
	featureCols := make([]int, len(cols.Features))
	for i, f := range cols.Features {
		featureCols[i] = t.Require("feature", f, true)
	}
	waitCol := t.Column("wait", cols.Wait)
	durationCols := make([]int, len(cols.Durations))
	for i, d := range cols.Durations {
		durationCols[i] = t.Require("duration", d, true)
	}
	labelCols := make([]int, len(cols.Labels))
	for i, l := range cols.Labels {
		labelCols[i] = t.Require("label", l, true)
	}
	if err := t.Missing(); err != nil {
		return nil, stats, fmt.Errorf("reading CSV: %w", err)
	}
	ds := &Dataset{Features: slices.Clone(cols.Features)}
	for {
		ok, err := t.Next()
		if err != nil {
			return nil, stats, fmt.Errorf("reading CSV: %w", err)
		}
		if !ok {
			break
		}
		stats.Rows++
		target, err := t.Float(targetCol)
		if err != nil {
			return nil, stats, err
		}
		if math.IsNaN(target) || target <= 0 {
			stats.Skipped++
			continue
		}
		at, err := t.Float(timeCol)
		if err != nil {
			return nil, stats, err
		}
		if math.IsNaN(at) {
			return nil, stats, t.Errorf(timeCol, "no time")
		}
		typ := t.String(typeCol)
		if typ == "" {
			return nil, stats, t.Errorf(typeCol, "empty job type")
		}
		s := Sample{Sample: predictor.Sample{Time: at, Type: typ, Pool: t.String(poolCol), Peak: target, Features: make([]float64, len(featureCols))}, Baseline: math.NaN()}
		for _, c := range durationCols {
			d, err := t.Float(c)
			if err != nil {
				return nil, stats, err
			}
			if d > 0 {
				s.Ended += d
			}
		}
		if len(durationCols) > 0 {
			s.Ended += at
		}
		if waitCol >= 0 {
			w, err := t.Float(waitCol)
			if err != nil {
				return nil, stats, err
			}
			s.Started = at
			if w > 0 {
				s.Started += w
			}
		}
		for j, c := range featureCols {
			v, err := t.Float(c)
			if err != nil {
				return nil, stats, err
			}
			if v < 0 {
				v = math.NaN() // -1 marks a missing value in SWF traces
			}
			s.Features[j] = v
		}
		if len(labelCols) > 0 {
			s.Labels = make(map[string]string, len(labelCols))
			for j, c := range labelCols {
				s.Labels[cols.Labels[j]] = t.String(c)
			}
		}
		if v, err := t.Float(baselineCol); err != nil {
			return nil, stats, err
		} else if v > 0 {
			s.Baseline = v
		}
		ds.Samples = append(ds.Samples, s)
	}
	if len(ds.Samples) == 0 {
		return nil, stats, fmt.Errorf("no usable rows: all %d rows have a missing or non-positive %s", stats.Rows, cols.Target)
	}
	return ds, stats, nil
}
