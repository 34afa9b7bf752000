package jobview

import (
	"strings"
	"testing"

	"github.com/jobfleet/jobfleet"
)

// TestPrintSizedBy: the summary says how the dispatcher sized the job:
// the model's size and its raise, the type's default, or the OOM history.
func TestPrintSizedBy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		by   jobfleet.SizedBy
		want []string
	}{
		{"a raised model size", jobfleet.SizedBy{Source: "type-features", Level: "type and rows", Group: "export, rows=20000", Runs: 412, PredictedBytes: 1536 << 20, Raise: 1.5, RequestBytes: 2304 << 20},
			[]string{"the memory model (type-features): 1.5 GiB, raised x1.500 after recent OOM kills in its group; asked 2.2 GiB", "export, rows=20000", "type and rows, 412 past runs"}},
		{"a model size under its group's floor", jobfleet.SizedBy{Source: "type-features", PredictedBytes: 256 << 20, FloorBytes: 1 << 30, RequestBytes: 1 << 30},
			[]string{"the memory model (type-features): 256.0 MiB, at least its group's 1.0 GiB over about a week's runs; asked 1.0 GiB"}},
		{"to be sized again", jobfleet.SizedBy{Source: "type", Level: "type", PredictedBytes: 1536 << 20, RequestBytes: 1536 << 20, Model: "2026-11-30T02:00:00Z", ResizeAbove: 1.333},
			[]string{"if its group's raise passes x1.333 before it starts (model of 2026-11-30T02:00:00Z)"}},
		{"the type's default", jobfleet.SizedBy{Source: jobfleet.SizedByDefault, RequestBytes: 1 << 30},
			[]string{"the type's default memory", "asked 1.0 GiB"}},
		{"the OOM history", jobfleet.SizedBy{Source: jobfleet.SizedByOOM, PredictedBytes: 1 << 30, RequestBytes: 3 << 30},
			[]string{"its OOM history", "above the model's 1.0 GiB", "asked 3.0 GiB"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out strings.Builder
			st := &jobfleet.JobState{JobID: "j", Type: "export", Status: jobfleet.StatusSized, Class: "jf-export-cpu-4gi", MemoryBytes: 4 << 30, SizedBy: &tt.by}
			if err := Print(&out, st, false); err != nil {
				t.Fatal(err)
			}
			for _, want := range tt.want {
				if !strings.Contains(out.String(), want) {
					t.Errorf("summary lacks %q:\n%s", want, out.String())
				}
			}
			if tt.by.Raise == 0 && strings.Contains(out.String(), "raised") {
				t.Errorf("summary of a size not raised says raised:\n%s", out.String())
			}
		})
	}
}
