// Package jobview shows jobfleet's job state to people and scripts: the
// summary `jobfleet status` prints, waiting for a job to end, and writing
// its outputs as files.
package jobview

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jobfleet/jobfleet"
)

// Print prints a job's state as JSON or as a summary for people.
func Print(w io.Writer, st *jobfleet.JobState, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		}
	}
	row("job", st.JobID)
	row("type", st.Type)
	status := string(st.Status)
	if st.Attempt > 0 && !st.Status.Terminal() {
		status += fmt.Sprintf(" (attempt %d)", st.Attempt)
	}
	row("status", status)
	row("reason", st.Reason)
	if st.ExitCode != nil {
		row("exit code", fmt.Sprint(*st.ExitCode))
	}
	row("run", st.Run)
	row("labels", FormatMap(st.Labels))
	if st.Class != "" {
		row("class", fmt.Sprintf("%s (%s)", st.Class, formatBytes(st.MemoryBytes)))
	}
	if by := st.SizedBy; by != nil {
		row("sized by", sizedBy(by))
		row("  model's group", by.Group)
		if by.Level != "" && by.Runs > 0 {
			row("  level", fmt.Sprintf("%s, %d past runs", by.Level, by.Runs))
		} else {
			row("  level", by.Level)
		}
		if by.ResizeAbove > 0 && st.Status == jobfleet.StatusSized {
			row("  sized again", fmt.Sprintf("if its group's raise passes x%.3f before it starts (model of %s)", by.ResizeAbove, by.Model))
		}
	}
	row("created", FormatTime(st.CreatedAt))
	row("ended", FormatTime(st.EndedAt))
	row("outputs", FormatMap(st.Outputs))
	row("files", st.OutputsURI)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Attempts) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ATTEMPT\tOUTCOME\tEXIT\tCAPACITY\tINSTANCE\tNODE\tALLOCATED\tPEAK\tRESUMED\tSTARTED\tDURATION")
	for _, a := range st.Attempts {
		exit, duration := "-", "-"
		if a.ExitCode != nil {
			exit = fmt.Sprint(*a.ExitCode)
		}
		if !a.EndedAt.IsZero() {
			duration = a.EndedAt.Sub(a.StartedAt).Round(time.Second).String()
		}
		resumed := "no"
		if a.Resumed {
			resumed = "yes"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Attempt, cmp.Or(string(a.Outcome), "running"), exit,
			cmp.Or(a.CapacityType, "-"), cmp.Or(a.InstanceType, "-"), cmp.Or(a.Node, "-"),
			formatBytes(a.AllocatedBytes), formatBytes(a.PeakBytes), resumed, FormatTime(a.StartedAt), duration)
	}
	return tw.Flush()
}

// sizedBy says in words how the dispatcher sized the job.
func sizedBy(by *jobfleet.SizedBy) string {
	var s string
	switch by.Source {
	case jobfleet.SizedByDefault:
		s = "the type's default memory (no model, or nothing in it to size the job by)"
	case jobfleet.SizedByOOM:
		s = "its OOM history: the OOM factor times the memory its last OOM-killed attempt had"
		if by.PredictedBytes > 0 {
			s += fmt.Sprintf(", above the model's %s", formatBytes(by.PredictedBytes))
		}
	default:
		s = fmt.Sprintf("the memory model (%s): %s", by.Source, formatBytes(by.PredictedBytes))
		if by.FloorBytes > by.PredictedBytes {
			s += fmt.Sprintf(", at least its group's %s over about a week's runs", formatBytes(by.FloorBytes))
		}
		if by.Raise > 1 {
			s += fmt.Sprintf(", raised x%.3f after recent OOM kills in its group", by.Raise)
		}
	}
	return s + fmt.Sprintf("; asked %s", formatBytes(by.RequestBytes))
}

// FormatMap prints a map as sorted key=value pairs.
func FormatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

// FormatTime prints a time in the local zone, nothing for none.
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format(time.DateTime)
}

// formatBytes prints a memory size in binary units, "-" for none.
func formatBytes(b int64) string {
	if b <= 0 {
		return "-"
	}
	for _, u := range []struct {
		name string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b >= u.size {
			return fmt.Sprintf("%.1f %s", float64(b)/float64(u.size), u.name)
		}
	}
	return fmt.Sprintf("%d B", b)
}
