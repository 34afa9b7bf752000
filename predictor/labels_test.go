package predictor

import (
	"fmt"
	"math"
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
		ds.Samples = append(ds.Samples, Sample{Time: float64(i * 600), Type: "train", Peak: peak, Labels: map[string]string{"user": user}, Baseline: math.NaN(), Allocated: math.NaN()})
	}
	m, err := Train(&ds, Options{GroupBy: []string{"user"}})
	if err != nil {
		t.Fatal(err)
	}
	if m.Strategy() != StrategyGroups || len(m.GroupBy) != 1 {
		t.Fatalf("strategy %s, group by %v", m.Strategy(), m.GroupBy)
	}
	a, srcA := m.PredictLabels("train", "", map[string]string{"user": "a"}, nil)
	b, _ := m.PredictLabels("train", "", map[string]string{"user": "b"}, nil)
	typ, srcT := m.PredictLabels("train", "", map[string]string{"user": "c"}, nil)
	none, _ := m.Predict("train", "", nil)
	if !(a > 1e9 && a < 2e9) || !(b > 1e10 && b < 2e10) {
		t.Errorf("user a %.3g, user b %.3g: want each near its own peaks", a, b)
	}
	if typ != none || typ < b {
		t.Errorf("an unseen user %.3g and no label %.3g: want the type's quantile, at least user b's peaks", typ, none)
	}
	if srcA != SourceSignature && srcA != SourceType || srcT != SourceType {
		t.Errorf("sources %s, %s", srcA, srcT)
	}
	e := m.Explain("train", "", map[string]string{"user": "a"}, nil)
	if e.Level != "type and user" || e.Group != "train, user=a" || e.Runs != 200 {
		t.Errorf("explanation %+v", e)
	}

	// Without GroupBy the labels are not read: one size for the type.
	plain, err := Train(&ds, Options{})
	if err != nil {
		t.Fatal(err)
	}
	pa, _ := plain.PredictLabels("train", "", map[string]string{"user": "a"}, nil)
	if pa != typ {
		t.Errorf("without GroupBy user a got %.3g, want the type's %.3g", pa, typ)
	}
	if _, err := Train(&ds, Options{GroupBy: []string{"user"}, Strategy: StrategyEstimators}); err == nil {
		t.Error("labels with the estimators strategy: no error")
	}
}

// A label and the same values as a first numeric feature give the same
// groups, so the same sizes.
func TestGroupByMatchesFirstFeature(t *testing.T) {
	var asLabel, asFeature Dataset
	asLabel.Features, asFeature.Features = []string{"rows"}, []string{"user", "rows"}
	for i := range 3000 {
		user, rows := float64(i%7), float64(i%5)
		peak := (1 + user) * (1 + rows) * (1 + float64(i%13)/20) * 1e8
		asLabel.Samples = append(asLabel.Samples, Sample{Time: float64(i * 300), Type: fmt.Sprint("t", i%3), Peak: peak, Features: []float64{rows},
			Labels: map[string]string{"user": fmt.Sprint(user)}, Baseline: math.NaN(), Allocated: math.NaN()})
		asFeature.Samples = append(asFeature.Samples, Sample{Time: float64(i * 300), Type: fmt.Sprint("t", i%3), Peak: peak, Features: []float64{user, rows},
			Baseline: math.NaN(), Allocated: math.NaN()})
	}
	opts := EvalOptions{RetrainEvery: 86400 * 1e9, Window: 3 * 86400 * 1e9}
	byLabel := opts
	byLabel.Train.GroupBy = []string{"user"}
	byLabel.Train.Strategy, opts.Train.Strategy = StrategyGroups, StrategyGroups
	r1, err := Evaluate(&asLabel, byLabel, 0)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Evaluate(&asFeature, opts, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Methods[0].Coverage != r2.Methods[0].Coverage || r1.Methods[0].Slack != r2.Methods[0].Slack {
		t.Errorf("by label %+v, as a first feature %+v", r1.Methods[0], r2.Methods[0])
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
		ds.Samples = append(ds.Samples, Sample{Time: float64(i * 600), Type: typ, Peak: peak * (1 + float64(i%10)/100), Labels: map[string]string{"user": user}, Baseline: math.NaN(), Allocated: math.NaN()})
	}
	m, err := Train(&ds, Options{GroupByType: map[string][]string{"keyed": {"user"}}})
	if err != nil {
		t.Fatal(err)
	}
	ka, _ := m.PredictLabels("keyed", "", map[string]string{"user": "a"}, nil)
	pa, _ := m.PredictLabels("plain", "", map[string]string{"user": "a"}, nil)
	pb, _ := m.PredictLabels("plain", "", map[string]string{"user": "b"}, nil)
	if !(ka < 2e9) || pa != pb || pa < 1e10 {
		t.Errorf("keyed by user: a %.3g; plain: a %.3g, b %.3g (want one size for both, the type's)", ka, pa, pb)
	}
	if got := m.LabelsFor("keyed"); len(got) != 1 || got[0] != "user" || len(m.LabelsFor("plain")) != 0 {
		t.Errorf("labels for keyed %v, plain %v", got, m.LabelsFor("plain"))
	}
}
