package predictor

import (
	"bytes"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// groupRuns are runs of known groups: type "a" asked for 4 or 8 processors,
// type "b" belongs to pool "p".
func groupRuns() *Dataset {
	ds := &Dataset{Features: []string{"procs"}}
	add := func(typ, pool string, procs float64, peaks ...float64) {
		for _, p := range peaks {
			ds.Samples = append(ds.Samples, Sample{Time: 1000, Type: typ, Pool: pool, Features: []float64{procs}, Peak: p})
		}
	}
	add("a", "", 4, 100, 110, 120, 130, 140, 150, 160, 170, 180, 190)
	add("a", "", 8, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000)
	add("b", "p", 2, 50, 50, 50, 50, 50, 50, 50, 50, 50, 60)
	// A run killed for needing more than it got: not a peak to learn.
	ds.Samples = append(ds.Samples, Sample{Time: 2000, Type: "a", Features: []float64{4}, Peak: 1e9, Allocated: 200, Missed: true})
	return ds
}

func TestGroupModelSizesByTheMostSpecificGroup(t *testing.T) {
	t.Parallel()
	m, err := Train(t.Context(), groupRuns(), Options{Strategy: StrategyGroups})
	if err != nil {
		t.Fatal(err)
	}
	margin := 1.15
	tests := []struct {
		name       string
		typ, pool  string
		procs      float64
		want       float64
		wantSource Source
	}{
		{"same type and features", "a", "", 4, 180, SourceSignature},
		{"same type and features, the other group", "a", "", 8, 1000, SourceSignature},
		{"features never seen with the type", "a", "", 16, 1000, SourceType},
		{"unseen type of a known pool", "c", "p", 2, 50, SourcePool},
		{"unseen type, no pool", "c", "", 2, 1000, SourceGlobal},
	}
	for _, tt := range tests {
		got, src := predict(m, tt.typ, tt.pool, map[string]float64{"procs": tt.procs})
		if src != tt.wantSource || math.Abs(got-tt.want*margin) > 1e-6*got {
			t.Errorf("%s: %v from %s, want %v from %s", tt.name, got, src, tt.want*margin, tt.wantSource)
		}
	}
	if m.Strategy() != StrategyGroups || m.f.Groups.Through != 2000 {
		t.Errorf("strategy %s, trained through %v: want groups, through the last run read, the killed one (2000)", m.Strategy(), m.f.Groups.Through)
	}
}

// TestGroupModelFallsBackThroughLeadingFeatures sizes jobs of two features
// (user, processors) whose exact group is unknown or too small: the type's
// runs with the same leading feature, the type's runs, the runs of other
// types with the same features in the same pool (or of no pool), and all
// runs.
func TestGroupModelFallsBackThroughLeadingFeatures(t *testing.T) {
	t.Parallel()
	ds := &Dataset{Features: []string{"user", "procs"}}
	add := func(typ, pool string, user, procs float64, n int, peak float64) {
		for range n {
			ds.Samples = append(ds.Samples, Sample{Time: 1000, Type: typ, Pool: pool, Features: []float64{user, procs}, Peak: peak})
		}
	}
	add("a", "", 1, 4, 5, 100)
	add("a", "", 1, 8, 5, 200)
	add("a", "", 2, 4, 2, 900) // fewer than minGroupRuns
	add("b", "", 3, 16, 4, 5000)
	add("d", "p", 3, 16, 3, 50)
	m, err := Train(t.Context(), ds, Options{Strategy: StrategyGroups})
	if err != nil {
		t.Fatal(err)
	}
	global := math.Exp(m.f.Groups.Global)
	tests := []struct {
		name        string
		typ, pool   string
		user, procs float64
		want        float64
		wantSource  Source
	}{
		{"same type and features", "a", "", 1, 8, 200, SourceSignature},
		{"same type and user", "a", "", 1, 16, 200, SourceSignature},
		{"a group of two runs is too small", "a", "", 2, 4, 900, SourceType},
		{"unseen type, same features, no pool", "c", "", 3, 16, 5000, SourceFeatures},
		{"unseen type, same features in its pool", "c", "p", 3, 16, 50, SourceFeatures},
		{"unseen type, only the user seen", "c", "", 3, 2, global, SourceGlobal},
	}
	for _, tt := range tests {
		got, src := predict(m, tt.typ, tt.pool, map[string]float64{"user": tt.user, "procs": tt.procs})
		if want := tt.want * 1.15; src != tt.wantSource || math.Abs(got-want) > 1e-6*got {
			t.Errorf("%s: %v from %s, want %v from %s", tt.name, got, src, want, tt.wantSource)
		}
	}
}

func TestDatasetSelect(t *testing.T) {
	t.Parallel()
	ds := &Dataset{Features: []string{"a", "b", "c"}, Samples: []Sample{{Features: []float64{1, 2, 3}}, {Features: []float64{4, 5, 6}}}}
	got, err := ds.Select([]string{"c", "a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Features) != 2 || got.Features[0] != "c" || got.Samples[1].Features[0] != 6 || got.Samples[1].Features[1] != 4 {
		t.Errorf("selected %v with %v, want [c a] with [6 4]", got.Features, got.Samples[1].Features)
	}
	if ds.Samples[1].Features[0] != 4 {
		t.Errorf("the original dataset changed: %v", ds.Samples[1].Features)
	}
	for _, names := range [][]string{{"a", "d"}, {"a", "a"}} {
		if _, err := ds.Select(names); err == nil {
			t.Errorf("Select(%v) succeeded", names)
		}
	}
}

func TestGroupKeysTreatEveryMissingValueAlike(t *testing.T) {
	t.Parallel()
	key := func(x ...float64) string { return string(signature(nil, "t", x)) }
	hash := func(x ...float64) uint64 {
		var h uint64
		for _, v := range x {
			h = mixHash(h, v)
		}
		return h
	}
	for _, x := range [][]float64{{-1, 3}, {math.Inf(1), 3}, {math.Inf(-1), 3}} {
		if key(x...) != key(math.NaN(), 3) || hash(x...) != hash(math.NaN(), 3) {
			t.Errorf("%v: key %q hash %x, want NaN's (%q, %x)", x, key(x...), hash(x...), key(math.NaN(), 3), hash(math.NaN(), 3))
		}
	}
	if key(math.Copysign(0, -1), 3) != key(0, 3) || hash(math.Copysign(0, -1), 3) != hash(0, 3) {
		t.Error("-0 and 0 have different keys or hashes")
	}
	if key(0, 3) == key(math.NaN(), 3) || hash(0, 3) == hash(math.NaN(), 3) {
		t.Error("0 keys or hashes as a missing value")
	}
}

// TestGroupingMatchesKeys groups runs of few distinct values (small
// integers, powers of two, missing values, -0), where hashes of different
// keys are likeliest to collide, and compares every level's groups with
// those a map of the levels' keys finds.
func TestGroupingMatchesKeys(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(15, 16))
	values := []float64{0, math.Copysign(0, -1), 1, 2, 3, 4, 8, 16, 1024, -1, math.NaN(), math.Inf(1)}
	var runs []Sample
	for i := range 5000 {
		x := make([]float64, 3)
		for k := range x {
			x[k] = values[rng.IntN(len(values))]
		}
		runs = append(runs, Sample{
			Time: float64(i), Type: []string{"a", "b", "c"}[rng.IntN(3)], Pool: []string{"", "p", "q"}[rng.IntN(3)],
			Features: x, Peak: 1 + rng.Float64(),
		})
	}
	levels := groupLevels(3, false)
	grouped := newGrouping(runs, levels)
	for li, l := range levels {
		want := map[string][]int32{}
		for i, s := range runs {
			if k, ok := l.key(nil, s.Type, s.group, s.Pool, s.Features); ok {
				want[string(k)] = append(want[string(k)], int32(i))
			}
		}
		for k, r := range want {
			if len(r) < minGroupRuns {
				delete(want, k)
			}
		}
		got := map[string][]int32{}
		for _, g := range grouped.groups[li] {
			if _, dup := got[g.key]; dup {
				t.Errorf("level %d: key %q split into two groups", li, g.key)
			}
			got[g.key] = g.runs
		}
		if len(got) != len(want) {
			t.Errorf("level %d: %d groups, want %d", li, len(got), len(want))
		}
		for k, r := range want {
			if !slices.Equal(got[k], r) {
				t.Errorf("level %d, key %q: runs %v, want %v", li, k, got[k], r)
			}
		}
	}
}

func TestTrainRejectsSamplesWithOtherFeatures(t *testing.T) {
	t.Parallel()
	ds := &Dataset{Features: []string{"a", "b"}, Samples: []Sample{
		{Time: 1, Type: "t", Features: []float64{1, 2}, Peak: 10},
		{Time: 2, Type: "t", Features: []float64{1}, Peak: 10},
	}}
	for _, strategy := range []string{StrategyGroups, StrategyEstimators} {
		if _, err := Train(t.Context(), ds, Options{Strategy: strategy}); err == nil || !strings.Contains(err.Error(), "sample 1 has 1 features, the dataset names 2") {
			t.Errorf("%s: error %v", strategy, err)
		}
	}
}

func TestAdaptMargin(t *testing.T) {
	t.Parallel()
	prev := &groupModel{Margin: math.Log(1.15), Through: 100}
	runs := func(n, missed int) []Sample {
		var out []Sample
		// Runs that ended before the previous model's training do not
		// count, nor runs without a recorded allocation.
		out = append(out, Sample{Time: 50, Peak: 10, Allocated: 1}, Sample{Time: 20, Ended: 100, Peak: 10, Allocated: 1},
			Sample{Time: 150, Peak: 10, Allocated: math.NaN()})
		for i := range n {
			// Half of them started before the training and ended after.
			s := Sample{Time: 200, Peak: 1, Allocated: 2}
			if i%2 == 1 {
				s.Time, s.Ended = 60, 200
			}
			if i < missed {
				s.Missed = true
			}
			out = append(out, s)
		}
		return out
	}
	tests := []struct {
		name          string
		n, missed     int
		perWeek, rate float64
		want          float64
	}{
		{"missed 30% of a typical week", 100, 30, 100, 0.3, math.Log(1.15) + 0.3*0.2},
		{"missed none", 100, 0, 100, 0.3, math.Log(1.15) - 0.3*0.1},
		{"missed exactly the target", 100, 10, 100, 0.3, math.Log(1.15)},
		{"a busy period weighs as a typical week", 200, 60, 100, 0.3, math.Log(1.15) + 0.3*0.2},
		{"a quiet period weighs less", 50, 15, 100, 0.3, math.Log(1.15) + 0.3*0.2*0.5},
		{"never below no margin", 100, 0, 100, 10, 0},
		{"never above the cap", 100, 100, 100, 10, maxMargin},
		{"nothing measured", 0, 0, 100, 0.3, math.Log(1.15)},
	}
	for _, tt := range tests {
		got := adaptMargin(prev, runs(tt.n, tt.missed), tt.perWeek, 0.9, tt.rate)
		if math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("%s: margin %v, want %v", tt.name, got, tt.want)
		}
	}

	// The dispatcher raised these runs' sizes after misses in their
	// group (Allocated 2 covers the peak of 1.5), but the model's own
	// size (Predicted 1) did not: the margin measures the model.
	var raised []Sample
	for range 100 {
		raised = append(raised, Sample{Time: 200, Peak: 1.5, Allocated: 2, Predicted: 1})
	}
	if got, want := adaptMargin(prev, raised, 100, 0.9, 0.3), math.Log(1.15)+0.3*0.9; math.Abs(got-want) > 1e-9 {
		t.Errorf("runs the raise covered and the model missed: margin %v, want %v", got, want)
	}
	// Killed runs missed, whatever the model's size.
	for i := range raised {
		raised[i].Peak, raised[i].Predicted, raised[i].Missed = 2, 3, true
	}
	if got, want := adaptMargin(prev, raised, 100, 0.9, 0.3), math.Log(1.15)+0.3*0.9; math.Abs(got-want) > 1e-9 {
		t.Errorf("killed runs: margin %v, want %v", got, want)
	}
}

func TestChooseHalfLife(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(13, 14))
	hourly := func(peak func(day float64) float64) []Sample {
		var runs []Sample
		for h := range 30 * 24 {
			day := float64(h) / 24
			runs = append(runs, Sample{Time: float64(h) * 3600, Type: "a", Peak: peak(day)})
		}
		return runs
	}
	// A type whose memory jumped a day before the last week: only the
	// most recent runs say so.
	jumped := hourly(func(day float64) float64 {
		if day >= 22 {
			return 1000
		}
		return 100
	})
	if got := newGrouping(jumped, groupLevels(0, false)).chooseHalfLife(0.9); got != 24*3600 {
		t.Errorf("a type that jumped: half-life %vs, want a day", got)
	}
	// A steady type with noise: every run says the same, and more runs say
	// it more precisely.
	steady := hourly(func(float64) float64 { return 100 * math.Exp(0.5*rng.NormFloat64()) })
	if got := newGrouping(steady, groupLevels(0, false)).chooseHalfLife(0.9); got < 7*86400 {
		t.Errorf("a steady type: half-life %vs, want a week or more", got)
	}
}

// predict is Model.Predict's allocation and source for a job without
// labels.
func predict(m *Model, jobType, pool string, features map[string]float64) (float64, Source) {
	return predictLabels(m, jobType, pool, nil, features)
}

func predictLabels(m *Model, jobType, pool string, labels map[string]string, features map[string]float64) (float64, Source) {
	p := m.Predict(Job{Type: jobType, Pool: pool, Labels: labels, Features: features})
	return p.Memory, p.Source
}

// TestGroupModelThroughIsTheLastEnd: a model is trained through the last
// end among its runs, not the last start, so that a long run started
// before a retraining and ended after it measures the next margin once.
func TestGroupModelThroughIsTheLastEnd(t *testing.T) {
	t.Parallel()
	ds := &Dataset{}
	for i := range 20 {
		ds.Samples = append(ds.Samples, Sample{Time: float64(i * 60), Type: "a", Peak: 100})
	}
	ds.Samples[3].Ended = 5000 // started early, ended after every other
	m, err := Train(t.Context(), ds, Options{Strategy: StrategyGroups})
	if err != nil {
		t.Fatal(err)
	}
	if m.f.Groups.Through != 5000 {
		t.Errorf("trained through %v, want the last end (5000)", m.f.Groups.Through)
	}
	// An OOM-killed run that ended last measures the margin of the model
	// that reads it, and not again at the next retraining.
	prev := m
	ds.Samples = append(ds.Samples, Sample{Time: 1300, Ended: 9000, Type: "a", Peak: 100, Allocated: 90, Missed: true})
	if m, err = prev.Retrain(t.Context(), ds, Options{Strategy: StrategyGroups}); err != nil {
		t.Fatal(err)
	}
	if m.f.Groups.Through != 9000 {
		t.Errorf("trained through %v, want the killed run's end (9000)", m.f.Groups.Through)
	}
	if m.f.Groups.Margin <= prev.f.Groups.Margin {
		t.Errorf("margin %v after a killed run, want above the replaced model's %v", m.f.Groups.Margin, prev.f.Groups.Margin)
	}
	again, err := m.Retrain(t.Context(), ds, Options{Strategy: StrategyGroups})
	if err != nil {
		t.Fatal(err)
	}
	if again.f.Groups.Margin != m.f.Groups.Margin {
		t.Errorf("margin %v after a retraining on the same runs, want %v: a run was counted twice", again.f.Groups.Margin, m.f.Groups.Margin)
	}
}

// TestSampleEnd: a run's end is its Ended, or its start when that is
// unknown (0), also on an epoch where times are negative.
func TestSampleEnd(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		s    Sample
		want float64
	}{
		{Sample{Time: 10, Ended: 25}, 25},
		{Sample{Time: 10}, 10},
		{Sample{Time: -50}, -50},
		{Sample{Time: -50, Ended: -20}, -20},
		{Sample{Time: 10, Ended: 5}, 10},
	} {
		if got := tt.s.End(); got != tt.want {
			t.Errorf("%+v: end %v, want %v", tt.s, got, tt.want)
		}
	}
}

// TestRunsPerWeekSpansEnds: a run that started long ago but ended in the
// window does not stretch the span a typical week's runs are counted over.
func TestRunsPerWeekSpansEnds(t *testing.T) {
	t.Parallel()
	const day = 86400.0
	var runs []Sample
	for i := range 140 {
		at := 16*day + float64(i)*day/10 // 14 days of runs
		runs = append(runs, Sample{Time: at})
	}
	runs[0].Time, runs[0].Ended = 0, 16*day // started 16 days before it ended
	if got := runsPerWeek(runs); math.Abs(got-70) > 1 {
		t.Errorf("%v runs per week, want about 70 (140 runs ending over two weeks)", got)
	}
}

// TestGroupFloor: a group whose last days were a fortieth of its usual
// size keeps a floor at about its usual (its quantile over a week's
// half-life), under a quantile that followed the dip; a steady group has
// none; the floor survives the model file.
func TestGroupFloor(t *testing.T) {
	t.Parallel()
	ds := &Dataset{Features: []string{"procs"}}
	add := func(typ string, day, peak float64) {
		ds.Samples = append(ds.Samples, Sample{Time: day * 86400, Type: typ, Features: []float64{4}, Peak: peak})
	}
	for h := range 30 * 24 {
		day := float64(h) / 24
		usual := 100.0
		if day >= 25 {
			usual = 2.5 // five days of tiny jobs
		}
		add("dipped", day, usual)
		add("steady", day, 50)
	}
	m, err := Train(t.Context(), ds, Options{Strategy: StrategyGroups, Tuning: Tuning{GroupHalfLife: 24 * time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	dipped := m.Predict(Job{Type: "dipped", Features: map[string]float64{"procs": 4}})
	if dipped.Memory > 10*1.15 || dipped.Floor < 90*1.15 || dipped.Allocation() != dipped.Floor {
		t.Errorf("a group after five days of tiny jobs: its own %v, floor %v, allocation %v; want about 2.9, a floor of about its usual 115, and the floor", dipped.Memory, dipped.Floor, dipped.Allocation())
	}
	if steady := m.Predict(Job{Type: "steady", Features: map[string]float64{"procs": 4}}); steady.Floor != 0 || steady.Allocation() != steady.Memory {
		t.Errorf("a steady group: floor %v, allocation %v, want none and its own %v", steady.Floor, steady.Allocation(), steady.Memory)
	}
	var file bytes.Buffer
	if err := m.Write(&file); err != nil {
		t.Fatal(err)
	}
	read, err := ReadModel(&file)
	if err != nil {
		t.Fatal(err)
	}
	if got := read.Predict(Job{Type: "dipped", Features: map[string]float64{"procs": 4}}); got.Floor != dipped.Floor {
		t.Errorf("read back, the floor is %v, want %v", got.Floor, dipped.Floor)
	}
	// A type never seen is sized by all runs, whose last five days were
	// half tiny: their floor is the dipped group's usual.
	for name, model := range map[string]*Model{"trained": m, "read back": read} {
		if got := model.Predict(Job{Type: "new", Features: map[string]float64{"procs": 4}}); got.Source != SourceGlobal || got.Floor < 90*1.15 || got.Memory > 60*1.15 {
			t.Errorf("%s, a new type: %v from %s, floor %v; want all runs' 50ish under a floor of about 115", name, got.Memory, got.Source, got.Floor)
		}
	}
	// With a week's half-life or longer, the quantile is its own floor.
	m, err = Train(t.Context(), ds, Options{Strategy: StrategyGroups, Tuning: Tuning{GroupHalfLife: 7 * 24 * time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Predict(Job{Type: "dipped", Features: map[string]float64{"procs": 4}}); got.Floor != 0 {
		t.Errorf("with a week's half-life, a floor of %v, want none", got.Floor)
	}
}
