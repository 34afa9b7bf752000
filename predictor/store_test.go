package predictor_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/rs/zerolog"

	"github.com/jobfleet/jobfleet/internal/testenv"
	"github.com/jobfleet/jobfleet/predictor"
	"github.com/jobfleet/jobfleet/predictor/eval"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func trainedModel(t testing.TB) *predictor.Model {
	t.Helper()
	m, err := predictor.Train(t.Context(), eval.Synthetic(4000, 30, 1), predictor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestModelRoundTrip(t *testing.T) {
	t.Parallel()
	m := trainedModel(t)
	path := filepath.Join(t.TempDir(), "model.json")
	if err := predictor.Save(t.Context(), nil, path, m); err != nil {
		t.Fatal(err)
	}
	loaded, err := predictor.Load(t.Context(), nil, path)
	if err != nil {
		t.Fatal(err)
	}
	job := predictor.Job{Type: "train", Features: map[string]float64{"rows": 2e6, "model_params": 3e8}}
	want, got := m.Predict(job), loaded.Predict(job)
	if want.Source != predictor.SourceType || !reflect.DeepEqual(got, want) || want.Memory <= 0 {
		t.Errorf("loaded model predicts %+v, the trained one %+v", got, want)
	}
	if p := loaded.Predict(predictor.Job{Type: "never-seen"}); p.Source != predictor.SourceGlobal {
		t.Errorf("an unknown type is predicted by %s, want the global model", p.Source)
	}
}

func TestReadModelRejectsCorruptFiles(t *testing.T) {
	t.Parallel()
	var good bytes.Buffer
	if err := trainedModel(t).Write(&good); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, file, want string
	}{
		{name: "truncated", file: good.String()[:good.Len()/2], want: "corrupt JSON"},
		{name: "empty", file: "", want: "corrupt JSON"},
		{name: "other format", file: `{"format":"sklearn","version":1}`, want: "incompatible model file: format"},
		{name: "newer version", file: `{"format":"jobfleet-predictor","version":4}`, want: "incompatible model file: version 4, this reader understands 1 to 3"},
		{name: "bad quantile", file: `{"format":"jobfleet-predictor","version":1,"quantile":1.5}`, want: "quantile 1.5"},
		{name: "unknown kind", file: `{"format":"jobfleet-predictor","version":1,"quantile":0.9,"types":{"a":{"kind":"magic"}}}`, want: `type "a": unknown estimator kind "magic"`},
		{name: "tree cycle", file: `{"format":"jobfleet-predictor","version":1,"quantile":0.9,"features":["x"],"global":{"kind":"gbt","gbt":{"base":1,"rate":0.1,"trees":[[{"f":0,"t":1,"l":0,"r":0}]]}}}`, want: "malformed split"},
		{name: "feature out of range", file: `{"format":"jobfleet-predictor","version":1,"quantile":0.9,"features":["x"],"global":{"kind":"gbt","gbt":{"base":1,"rate":0.1,"trees":[[{"f":3,"t":1,"l":1,"r":2},{"f":-1},{"f":-1}]]}}}`, want: "malformed split"},
		{name: "linear arity", file: `{"format":"jobfleet-predictor","version":1,"quantile":0.9,"features":["x","y"],"global":{"kind":"linear","linear":{"coef":[1,2]}}}`, want: "needs 3 coefficients"},
		{name: "version 1 groups in version 2", file: `{"format":"jobfleet-predictor","version":2,"quantile":0.9,"groups":{"types":{"a":1},"global":1,"margin":0,"through":0}}`, want: "version 1 group fields"},
		{name: "group level by", file: `{"format":"jobfleet-predictor","version":2,"quantile":0.9,"groups":{"levels":[{"by":"user","groups":{}}],"global":1,"margin":0,"through":0}}`, want: `group level 0: by "user"`},
		{name: "group level features", file: `{"format":"jobfleet-predictor","version":2,"quantile":0.9,"features":["x"],"groups":{"levels":[{"by":"type","features":2,"groups":{}}],"global":1,"margin":0,"through":0}}`, want: "keys on 2 features, the model has 1"},
		{name: "floor above ceiling", file: `{"format":"jobfleet-predictor","version":1,"quantile":0.9,"global":{"kind":"quantile","floor":5,"ceiling":1}}`, want: "floor 5 is above ceiling 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := predictor.ReadModel(strings.NewReader(tt.file))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ReadModel() error = %v, want %q", err, tt.want)
			}
		})
	}
	_, err := predictor.ReadModel(strings.NewReader(`{"format":"x","version":1}`))
	if want := `incompatible model file: format "x", want "jobfleet-predictor"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a foreign file: %v, want %q", err, want)
	}
}

// TestReadModelUpgradesVersion1Groups reads a group model written by the
// first format, which held three fixed levels: it sizes jobs as it did.
func TestReadModelUpgradesVersion1Groups(t *testing.T) {
	t.Parallel()
	file := fmt.Sprintf(`{"format":"jobfleet-predictor","version":1,"quantile":0.9,"features":["procs"],`+
		`"groups":{"signatures":{"a\u001f4":%v},"types":{"a":%v},"pools":{"p":%v},"global":%v,"margin":0,"through":1000}}`,
		math.Log(180), math.Log(1000), math.Log(50), math.Log(2000))
	m, err := predictor.ReadModel(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	// Written again, it is a current file that reads the same.
	var rewritten bytes.Buffer
	if err := m.Write(&rewritten); err != nil {
		t.Fatal(err)
	}
	if want := `"version":2,`; !strings.Contains(rewritten.String(), want) {
		t.Errorf("upgraded model written as %s, want %s", rewritten.String(), want)
	}
	m2, err := predictor.ReadModel(&rewritten)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		typ, pool  string
		procs      float64
		want       float64
		wantSource predictor.Source
	}{
		{"same type and features", "a", "", 4, 180, predictor.SourceSignature},
		{"same type", "a", "", 16, 1000, predictor.SourceType},
		{"unseen type of a known pool", "c", "p", 4, 50, predictor.SourcePool},
		{"unseen type, no pool", "c", "", 4, 2000, predictor.SourceGlobal},
	}
	for _, tt := range tests {
		for i, model := range []*predictor.Model{m, m2} {
			p := model.Predict(predictor.Job{Type: tt.typ, Pool: tt.pool, Features: map[string]float64{"procs": tt.procs}})
			got, src := p.Memory, p.Source
			if src != tt.wantSource || math.Abs(got-tt.want) > 1e-6*tt.want {
				t.Errorf("%s (read %d times): %v from %s, want %v from %s", tt.name, i+1, got, src, tt.want, tt.wantSource)
			}
		}
	}
}

// TestReloaderKeepsLastGoodModel publishes models to a real S3 server: a
// new model is picked up, a corrupt one is rejected and the last good one
// stays in use.
func TestReloaderKeepsLastGoodModel(t *testing.T) {
	t.Parallel()
	store := testenv.StartS3(t)
	bucket := store.CreateBucket(t)
	location := "s3://" + bucket + "/models/memory.json"
	m1 := trainedModel(t)
	if err := predictor.Save(t.Context(), store.Client, location, m1); err != nil {
		t.Fatal(err)
	}
	r := predictor.NewReloader(location, store.Client, time.Hour, zerolog.Nop(), nil)
	if changed, err := r.Check(t.Context()); !changed || err != nil {
		t.Fatalf("first check: changed %v, %v", changed, err)
	}
	if changed, err := r.Check(t.Context()); changed || err != nil {
		t.Fatalf("unchanged file reloaded: changed %v, %v", changed, err)
	}
	first := r.Model()

	_, err := store.Client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("models/memory.json"), Body: strings.NewReader(`{"format":"jobfleet-predictor","ver`)})
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := r.Check(t.Context()); changed || err == nil || !strings.Contains(err.Error(), "keeping the last good one") {
		t.Fatalf("corrupt model: changed %v, error %v", changed, err)
	}
	if r.Model() != first {
		t.Fatal("a corrupt file replaced the model in use")
	}

	m2, err := predictor.Train(t.Context(), eval.Synthetic(3000, 30, 2), predictor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := predictor.Save(t.Context(), store.Client, location, m2); err != nil {
		t.Fatal(err)
	}
	if changed, err := r.Check(t.Context()); !changed || err != nil {
		t.Fatalf("new model: changed %v, %v", changed, err)
	}
	if r.Model() == first || r.Model().Runs() != 3000 {
		t.Errorf("the new model was not loaded")
	}
}

func TestLoadRecords(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	rec := func(id, typ, outcome string, peak int64, ended time.Time) string {
		return `{"job_id":"` + id + `","type":"` + typ + `","attempt":1,"outcome":"` + outcome + `","exit_code":0,"allocated_bytes":1073741824,"peak_bytes":` +
			itoa(peak) + `,"features":{"rows":5},"started_at":"` + ended.Add(-time.Minute).Format(time.RFC3339) + `","ended_at":"` + ended.Format(time.RFC3339) + `","resumed":false,"checkpoints":0,"duration_seconds":60}`
	}
	today := filepath.Join(dir, "dt=2026-11-22")
	old := filepath.Join(dir, "dt=2026-09-01")
	for _, d := range []string{today, old} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	plain := strings.Join([]string{
		rec("a", "export", "succeeded", 100, now.Add(-time.Hour)),
		rec("a", "export", "succeeded", 100, now.Add(-time.Hour)), // stored twice
		strings.Replace(rec("b", "export", "oom", 900, now.Add(-time.Hour)), `"allocated_bytes"`, `"predicted_bytes":734003200,"allocated_bytes"`, 1),
		`{"job_id":"broken"`,
		rec("c", "train", "succeeded", 300, now.Add(-40*24*time.Hour)),
		rec("f", "train", "interrupted", 300, now.Add(-time.Hour)),
	}, "\n")
	if err := os.WriteFile(filepath.Join(today, "a.jsonl"), []byte(plain), 0o644); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(rec("d", "train", "succeeded", 200, now.Add(-2*time.Hour)) + "\n"))
	zw.Close()
	if err := os.WriteFile(filepath.Join(today, "b.jsonl.gz"), gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "c.jsonl"), []byte(rec("e", "train", "succeeded", 5, now.Add(-80*24*time.Hour))), 0o644); err != nil {
		t.Fatal(err)
	}
	ds, stats, err := predictor.LoadRecords(context.Background(), nil, dir, 30*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Used != 2 || stats.Missed != 1 || stats.Malformed != 1 || stats.Unusable != 2 || stats.Files != 2 || stats.Duplicates != 1 {
		t.Errorf("stats = %+v, want 2 used, 1 missed, 1 malformed, 2 unusable (too old, interrupted), 1 duplicate, the old partition skipped", stats)
	}
	if len(ds.Samples) != 3 || len(ds.Features) != 1 || ds.Features[0] != "rows" {
		t.Fatalf("dataset = %+v", ds)
	}
	for _, s := range ds.Samples {
		if s.Ended-s.Time != 60 {
			t.Errorf("sample %+v: want it to end a minute after it started", s)
		}
		if s.Allocated != 1<<30 || s.Missed != (s.Peak == 900) {
			t.Errorf("sample %+v: want the allocation, and only the OOM-killed run missed", s)
		}
		if want := map[bool]float64{true: 700 << 20}[s.Missed]; s.Predicted != want {
			t.Errorf("sample %+v: the model's own size %v, want %v (only the OOM-killed run's record carries it)", s, s.Predicted, want)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestModelFilesSizeAsWritten pins the format: model files of format
// version 2 (testdata; the release before the API's reduction reads them
// to the same sizes) size the same jobs to the same bytes, within
// floating-point rounding across architectures, by the same estimator or
// group, in every later release.
func TestModelFilesSizeAsWritten(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		job  predictor.Job
		want float64
		src  predictor.Source
	}{
		{"model-v2-estimators.json", predictor.Job{Type: "train", Features: map[string]float64{"rows": 1e6, "model_params": 2e8}}, 6.350669908904613e+09, predictor.SourceType},
		{"model-v2-estimators.json", predictor.Job{Type: "export", Features: map[string]float64{"rows": 3e6}}, 4.4924152225778335e+08, predictor.SourceType},
		{"model-v2-estimators.json", predictor.Job{Type: "join", Features: map[string]float64{"rows": 1e5, "upstream_bytes": 1e9, "partitions": 8}}, 8.612864802611843e+08, predictor.SourceType},
		{"model-v2-estimators.json", predictor.Job{Type: "new", Features: map[string]float64{"rows": 1e6}}, 5.988505957370672e+08, predictor.SourceGlobal},
		{"model-v2-groups.json", predictor.Job{Type: "etl", Features: map[string]float64{"procs": 4}}, 2.9619899854691663e+09, predictor.SourceSignature},
		{"model-v2-groups.json", predictor.Job{Type: "train", Features: map[string]float64{"procs": 3}}, 2.1100343546210564e+10, predictor.SourceType},
		{"model-v2-groups.json", predictor.Job{Type: "new", Features: map[string]float64{"procs": 8}}, 1.7414080290084194e+10, predictor.SourceGlobal},
	}
	for _, tt := range tests {
		m, err := predictor.Load(t.Context(), nil, filepath.Join("testdata", tt.file))
		if err != nil {
			t.Fatal(err)
		}
		if p := m.Predict(tt.job); math.Abs(p.Memory-tt.want) > 1e-9*tt.want || p.Source != tt.src {
			t.Errorf("%s, type %s: %v from %s, want %v from %s", tt.file, tt.job.Type, p.Memory, p.Source, tt.want, tt.src)
		}
	}
}
