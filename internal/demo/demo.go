// Package demo holds the job types of `jobfleet local`: programs that do
// real work and really use memory in proportion to their features, so the
// predictor has something true to learn and the worker something true to
// measure.
package demo

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Kinds of demo job.
const (
	Export    = "export"
	Aggregate = "aggregate"
	Train     = "train"
)

// EnvLog names a directory where train jobs log every epoch they compute,
// one file per job, so the demo can count work redone after interruptions.
const EnvLog = "JOBFLEET_DEMO_LOG"

// Footprint is the memory a demo job uses for its features beyond the
// process's own baseline, in bytes: the model the demo's bootstrap history
// is drawn from. The coefficients are the peaks of the demo jobs measured
// in a memory cgroup of their own, as the worker runs them: the median
// over 100 runs of each, of the peak working set (docs/local.md).
func Footprint(kind string, f map[string]float64) int64 {
	switch kind {
	case Export:
		return int64(f["rows"] * 110) // the 96-byte rows, and the render's garbage
	case Aggregate:
		return int64(f["entities"] * (f["density"]*8 + aggregateEntryBytes))
	case Train:
		// Weights and gradients, the checkpoint's serialization buffer
		// made anew every epoch, and the garbage collector's headroom
		// over them (the checkpoint file's page cache is reclaimable,
		// and not counted).
		return int64(f["model_params"] * 32)
	}
	return 0
}

// Baseline is the memory a demo job's cgroup holds before the job
// allocates anything: the Go runtime's own. The binary's pages are shared
// page cache, charged to whoever read them first. Measured: 9 to 13 MiB.
const Baseline = 12 << 20

const (
	exportRowBytes      = 96
	aggregateEntryBytes = 64
)

// Run runs a demo job of the kind with the environment the worker gives
// jobs. It stops early, saving its progress, when ctx ends.
func Run(ctx context.Context, kind string) error {
	features := map[string]float64{}
	if v := os.Getenv("JOBFLEET_FEATURES"); v != "" && v != "null" {
		if err := json.Unmarshal([]byte(v), &features); err != nil {
			return fmt.Errorf("reading JOBFLEET_FEATURES: %w", err)
		}
	}
	switch kind {
	case Export:
		return export(ctx, features)
	case Aggregate:
		return aggregate(ctx, features)
	case Train:
		return train(ctx, features, os.Getenv("JOBFLEET_CHECKPOINT_DIR"), os.Getenv("JOBFLEET_JOB_ID"))
	}
	return fmt.Errorf("unknown demo job %q", kind)
}

// export renders rows into a buffer and checksums it, in passes.
func export(ctx context.Context, f map[string]float64) error {
	rows := int(f["rows"])
	buf := make([]byte, rows*exportRowBytes)
	h := sha256.New()
	for start := 0; start < rows; start += 50_000 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		for r := start; r < min(start+50_000, rows); r++ {
			row := buf[r*exportRowBytes : (r+1)*exportRowBytes]
			binary.LittleEndian.PutUint64(row, uint64(r))
			copy(row[8:], strconv.Itoa(r*7919))
		}
	}
	h.Write(buf)
	sum := fmt.Sprintf("%x", h.Sum(nil)[:8])
	fmt.Printf("exported %d rows, sha256 %s\n", rows, sum)
	return writeOutputs(map[string]any{"rows": rows, "sha256": sum}, map[string]string{"export.sha256": sum + "\n"})
}

// aggregate builds, per entity, the values of its relationships and sums
// them: memory grows with entities times relationship density.
func aggregate(ctx context.Context, f map[string]float64) error {
	entities, density := int(f["entities"]), int(math.Max(1, f["density"]))
	rng := rand.New(rand.NewPCG(uint64(entities), uint64(density)))
	groups := make(map[int][]float64, entities)
	for e := range entities {
		if e%10_000 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		vals := make([]float64, density)
		for i := range vals {
			vals[i] = rng.Float64()
		}
		groups[e] = vals
	}
	total := 0.0
	for _, vals := range groups {
		for _, v := range vals {
			total += v
		}
	}
	fmt.Printf("aggregated %d entities x %d relationships: %.1f\n", entities, density, total)
	values := map[string]any{"entities": entities, "total": math.Round(total)}
	// As a workflow's evaluation step: the best of the scores it was given.
	var params struct {
		Scores []json.Number `json:"scores"`
	}
	if err := readParams(&params); err != nil {
		return err
	}
	for _, s := range params.Scores {
		v, err := s.Float64()
		if err != nil {
			return fmt.Errorf("params.scores: %w", err)
		}
		if best, ok := values["accuracy"].(float64); !ok || v > best {
			values["accuracy"] = v
		}
	}
	return writeOutputs(values, nil)
}

// train runs epochs over a weight vector, checkpointing after each one and
// resuming from the last checkpoint.
func train(ctx context.Context, f map[string]float64, dir, jobID string) error {
	params, epochs := int(f["model_params"]), int(math.Max(1, f["epochs"]))
	weights := make([]float32, params)
	grads := make([]float32, params)
	state := filepath.Join(dir, "state")
	epoch := 0
	if data, err := os.ReadFile(state); err == nil {
		if len(data) != 8+4*params {
			return errors.New("the checkpoint does not match the model size")
		}
		epoch = int(binary.LittleEndian.Uint64(data))
		for i := range weights {
			weights[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[8+4*i:]))
		}
		fmt.Printf("resuming at epoch %d of %d\n", epoch, epochs)
	}
	for ; epoch < epochs; epoch++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// One epoch: a few passes of "gradient" updates, a second or so.
		deadline := time.Now().Add(700 * time.Millisecond)
		for pass := 0; time.Now().Before(deadline); pass++ {
			for i := range weights {
				grads[i] = float32(math.Sin(float64(i+pass+epoch))) * 0.001
				weights[i] -= grads[i]
			}
		}
		if err := save(state, epoch+1, weights); err != nil {
			return err
		}
		if logDir := os.Getenv(EnvLog); logDir != "" {
			if err := appendLine(filepath.Join(logDir, jobID), strconv.Itoa(epoch+1)); err != nil {
				return err
			}
		}
	}
	fmt.Printf("trained %d epochs of %d parameters\n", epochs, params)
	// A made-up metric that improves with epochs and is best at a learning
	// rate of 0.03, for workflows to test.
	var hyper struct {
		LearningRate float64 `json:"learning_rate"`
	}
	if err := readParams(&hyper); err != nil {
		return err
	}
	penalty := 1.0
	if hyper.LearningRate > 0 {
		penalty += math.Abs(math.Log(hyper.LearningRate/0.03)) / 4
	}
	accuracy := math.Round((1-0.5/float64(epochs+1)*penalty)*1000) / 1000
	model := fmt.Sprintf("epochs %d\nparameters %d\nfirst weight %g\n", epochs, params, firstOr(weights))
	return writeOutputs(map[string]any{"accuracy": accuracy, "epochs": epochs}, map[string]string{"model.txt": model})
}

func firstOr(w []float32) float32 {
	if len(w) == 0 {
		return 0
	}
	return w[0]
}

// readParams reads the job's params file, when there is one, into v.
func readParams(v any) error {
	path := os.Getenv("JOBFLEET_PARAMS_FILE")
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading the params: %w", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("reading the params: %w", err)
	}
	return nil
}

// writeOutputs leaves a job's key/value outputs and output files where the
// worker collects them, when it says where.
func writeOutputs(values map[string]any, files map[string]string) error {
	if path := os.Getenv("JOBFLEET_OUTPUTS_FILE"); path != "" {
		data, err := json.Marshal(values)
		if err != nil {
			return err
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return fmt.Errorf("writing the outputs: %w", err)
		}
	}
	if dir := os.Getenv("JOBFLEET_OUTPUTS_DIR"); dir != "" {
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				return fmt.Errorf("writing the outputs: %w", err)
			}
		}
	}
	return nil
}

// save writes the checkpoint atomically: a temporary file, then a rename.
func save(path string, epoch int, weights []float32) error {
	data := make([]byte, 8+4*len(weights))
	binary.LittleEndian.PutUint64(data, uint64(epoch))
	for i, w := range weights {
		binary.LittleEndian.PutUint32(data[8+4*i:], math.Float32bits(w))
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintln(f, line)
	return err
}

// Redone counts the epochs computed more than once across the logs in dir.
func Redone(dir string) (computed, redone int, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return 0, 0, err
		}
		seen := map[string]bool{}
		for _, line := range strings.Fields(string(data)) {
			computed++
			if seen[line] {
				redone++
			}
			seen[line] = true
		}
	}
	return computed, redone, nil
}
