package predictor

import (
	"bytes"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
)

// Labels key groups as strings: two users of one type with peaks ten times
// apart get their own sizes; a user never seen, or a job without the
// label, gets the type's.
func TestGroupByLabels(t *testing.T) {
	var ds Dataset
	for i := range 400 {
		user, peak := "a", 1e9
		if i%2 == 1 {
			user, peak = "b", 1e10
		}
		peak *= 1 + float64(i%10)/100
		ds.Samples = append(ds.Samples, Sample{Time: float64(i * 600), Type: "train", Peak: peak, Labels: map[string]string{"user": user}, Allocated: math.NaN()})
	}
	m, err := Train(t.Context(), &ds, Options{GroupBy: []string{"user"}})
	if err != nil {
		t.Fatal(err)
	}
	if m.Strategy() != StrategyGroups || len(m.f.GroupBy) != 1 {
		t.Fatalf("strategy %s, group by %v", m.Strategy(), m.f.GroupBy)
	}
	a, srcA := predictLabels(m, "train", "", map[string]string{"user": "a"}, nil)
	b, _ := predictLabels(m, "train", "", map[string]string{"user": "b"}, nil)
	typ, srcT := predictLabels(m, "train", "", map[string]string{"user": "c"}, nil)
	none, _ := predict(m, "train", "", nil)
	if !(a > 1e9 && a < 2e9) || !(b > 1e10 && b < 2e10) {
		t.Errorf("user a %.3g, user b %.3g: want each near its own peaks", a, b)
	}
	if typ != none || typ < b {
		t.Errorf("an unseen user %.3g and no label %.3g: want the type's quantile, at least user b's peaks", typ, none)
	}
	if srcA != SourceLabels || srcT != SourceType {
		t.Errorf("sources %s, %s", srcA, srcT)
	}
	e := m.Predict(Job{Type: "train", Labels: map[string]string{"user": "a"}})
	if e.Level != "type and user" || e.Group != "train, user=a" || e.Runs != 200 || e.Memory != a {
		t.Errorf("explanation %+v", e)
	}

	// Without GroupBy the labels are not read: one size for the type.
	plain, err := Train(t.Context(), &ds, Options{})
	if err != nil {
		t.Fatal(err)
	}
	pa, _ := predictLabels(plain, "train", "", map[string]string{"user": "a"}, nil)
	if pa != typ {
		t.Errorf("without GroupBy user a got %.3g, want the type's %.3g", pa, typ)
	}
	if _, err := Train(t.Context(), &ds, Options{GroupBy: []string{"user"}, Strategy: StrategyEstimators}); err == nil {
		t.Error("labels with the estimators strategy: no error")
	}
}

// GroupByType keys some types' groups on labels and not others'.
func TestGroupByType(t *testing.T) {
	var ds Dataset
	for i := range 800 {
		typ, user, peak := "keyed", "a", 1e9
		if i%2 == 1 {
			user, peak = "b", 1e10
		}
		if i%4 >= 2 {
			typ = "plain"
		}
		ds.Samples = append(ds.Samples, Sample{Time: float64(i * 600), Type: typ, Peak: peak * (1 + float64(i%10)/100), Labels: map[string]string{"user": user}, Allocated: math.NaN()})
	}
	m, err := Train(t.Context(), &ds, Options{Tuning: Tuning{GroupByType: map[string][]string{"keyed": {"user"}}}})
	if err != nil {
		t.Fatal(err)
	}
	ka, _ := predictLabels(m, "keyed", "", map[string]string{"user": "a"}, nil)
	pa, _ := predictLabels(m, "plain", "", map[string]string{"user": "a"}, nil)
	pb, _ := predictLabels(m, "plain", "", map[string]string{"user": "b"}, nil)
	if !(ka < 2e9) || pa != pb || pa < 1e10 {
		t.Errorf("keyed by user: a %.3g; plain: a %.3g, b %.3g (want one size for both, the type's)", ka, pa, pb)
	}
	if got := m.LabelsFor("keyed"); len(got) != 1 || got[0] != "user" || len(m.LabelsFor("plain")) != 0 {
		t.Errorf("labels for keyed %v, plain %v", got, m.LabelsFor("plain"))
	}
}

// FeaturesByType reads a listed type's jobs by its features alone: a
// feature the type does not list (here one that never repeats) neither
// splits its groups nor counts as missing, in both strategies, while the
// other type still reads it.
func TestFeaturesByType(t *testing.T) {
	ds := Dataset{Features: []string{"rows", "noise"}}
	for i := range 1200 {
		typ := "keyed"
		if i%3 == 2 {
			typ = "plain"
		}
		rows := float64(1 + i%2)
		ds.Samples = append(ds.Samples, Sample{Time: float64(i * 600), Type: typ, Features: []float64{rows, float64(i)},
			Peak: rows * 1e9 * (1 + float64(i%10)/100), Allocated: math.NaN()})
	}
	for _, strategy := range []string{StrategyGroups, StrategyEstimators} {
		opts := Options{Strategy: strategy, Tuning: Tuning{FeaturesByType: map[string][]string{"keyed": {"rows"}}}}
		m, err := Train(t.Context(), &ds, opts)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := m.Write(&buf); err != nil {
			t.Fatal(err)
		}
		// Version 3: a release that cannot read the lists rejects it.
		if !strings.Contains(buf.String(), `"version":3,`) {
			t.Errorf("%s: a model with per-type features written as %.60s, want version 3", strategy, buf.String())
		}
		if m, err = ReadModel(&buf); err != nil {
			t.Fatal(err)
		}
		if g := m.f.Groups; g != nil {
			// Trained as read: the keyed type's most specific groups hold
			// its runs by rows, with noise missing (a noise value never
			// repeats, so read it would leave no group there).
			var keys []string
			for _, l := range g.Levels {
				for key := range l.Groups {
					if strings.HasPrefix(key, "keyed\x1f") && l.Features == 2 {
						keys = append(keys, key)
					}
				}
			}
			slices.Sort(keys)
			if want := []string{"keyed\x1f1\x1f-", "keyed\x1f2\x1f-"}; !slices.Equal(keys, want) {
				t.Errorf("keyed type's groups by both features %q, want %q", keys, want)
			}
		}
		if got := m.FeaturesFor("keyed"); !slices.Equal(got, []string{"rows"}) {
			t.Errorf("%s: keyed reads %v, want [rows]", strategy, got)
		}
		if got := m.FeaturesFor("plain"); !slices.Equal(got, []string{"rows", "noise"}) {
			t.Errorf("%s: plain reads %v, want both", strategy, got)
		}
		small := m.Predict(Job{Type: "keyed", Features: map[string]float64{"rows": 1, "noise": 7}})
		other := m.Predict(Job{Type: "keyed", Features: map[string]float64{"rows": 1, "noise": 1e6}})
		bare := m.Predict(Job{Type: "keyed", Features: map[string]float64{"rows": 1}})
		large := m.Predict(Job{Type: "keyed", Features: map[string]float64{"rows": 2}})
		if small.Memory != other.Memory || small.Memory != bare.Memory {
			t.Errorf("%s: keyed by rows=1 with noise 7, 1e6 and none: %.4g, %.4g, %.4g; want one size", strategy, small.Memory, other.Memory, bare.Memory)
		}
		if strategy == StrategyGroups && (small.Group != "keyed, rows=1" || small.Level != "type and rows") {
			t.Errorf("keyed job explained as %q, %q; want the type and rows alone", small.Level, small.Group)
		}
		if len(bare.Missing) != 0 {
			t.Errorf("%s: keyed job without noise: missing %v, want none (the type does not read it)", strategy, bare.Missing)
		}
		if !(small.Memory < 1.5e9 && large.Memory > 2e9) {
			t.Errorf("%s: keyed rows=1 %.3g, rows=2 %.3g: want each near its own peaks", strategy, small.Memory, large.Memory)
		}
		if p := m.Predict(Job{Type: "plain", Features: map[string]float64{"rows": 1}}); !slices.Equal(p.Missing, []string{"noise"}) {
			t.Errorf("%s: plain job without noise: missing %v, want [noise]", strategy, p.Missing)
		}
	}
}

// At its pool's levels, where every type's runs meet, a job of a type that
// reads some features is explained with the others unset ("-"): two
// groups of the pool never share a name, which the dispatcher's raise
// keys them on.
func TestFeaturesByTypeAtPoolLevels(t *testing.T) {
	ds := Dataset{Features: []string{"rows", "noise", "x"}}
	for i := range 600 {
		typ := []string{"a", "b"}[i%2]
		ds.Samples = append(ds.Samples, Sample{Time: float64(i * 600), Type: typ, Pool: "cpu", Features: []float64{1, float64(i % 3), 2},
			Peak: 1e9 * (1 + float64(i%10)/100), Allocated: math.NaN()})
	}
	byType := map[string][]string{"a": {"rows", "x"}, "b": {"rows"}, "new-a": {"rows", "x"}, "new-b": {"rows"}}
	m, err := Train(t.Context(), &ds, Options{Strategy: StrategyGroups, Tuning: Tuning{FeaturesByType: byType}})
	if err != nil {
		t.Fatal(err)
	}
	// Types with no runs of their own fall to the pool's levels.
	pa := m.Predict(Job{Type: "new-a", Pool: "cpu", Features: map[string]float64{"rows": 1, "noise": 0, "x": 2}})
	pb := m.Predict(Job{Type: "new-b", Pool: "cpu", Features: map[string]float64{"rows": 1, "noise": 0, "x": 2}})
	if pa.Level+pa.Group == pb.Level+pb.Group {
		t.Errorf("two pool groups share the name %q, %q", pa.Level, pa.Group)
	}
	if pa.Group != "cpu, rows=1, noise=-, x=2" || pb.Group != "cpu, rows=1, noise=-, x=-" || pa.Runs != 300 || pb.Runs != 300 {
		t.Errorf("pool groups %q (%d runs) and %q (%d runs); want a's and b's runs, with the unread features unset", pa.Group, pa.Runs, pb.Group, pb.Runs)
	}
}

// TestUncarried: the labels a type groups by that none of its runs
// carries with a value are named, for the types with runs; a label some
// run carries, and types without runs or not listed, are not.
func TestUncarried(t *testing.T) {
	t.Parallel()
	ds := &Dataset{Samples: []Sample{
		{Type: "etl", Labels: map[string]string{"user": "ana", "team": ""}},
		{Type: "etl", Labels: map[string]string{"user": "bo"}},
		{Type: "train"},
		{Type: "other", Labels: map[string]string{"user": "cy"}},
	}}
	got := ds.Uncarried(map[string][]string{"etl": {"user", "team"}, "train": {"user"}, "nightly": {"user"}})
	want := map[string][]string{"etl": {"team"}, "train": {"user"}}
	if !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("uncarried %v, want %v", got, want)
	}
}
