package eval_test

import (
	"context"
	"fmt"
	"time"

	"github.com/jobfleet/jobfleet/predictor/eval"
)

func ExampleEvaluate() {
	// Sixty days of four synthetic job families, sized a week at a time by
	// a model retrained on the month before. Their runs have no ends, so
	// the dispatcher's raise after misses is not replayed: the model alone.
	ds := eval.Synthetic(6000, 60, 7)
	r, err := eval.Evaluate(context.Background(), eval.WithoutBaselines(ds), eval.Options{RetrainEvery: 7 * 24 * time.Hour}, 0)
	if err != nil {
		panic(err)
	}
	for _, m := range r.Methods {
		fmt.Printf("%-13s coverage %.2f  slack %.2f\n", m.Name, m.Coverage, m.Slack)
	}
	// Output:
	// predictor     coverage 0.93  slack 0.19
	// type-quantile coverage 0.90  slack 0.74
	// vpa           coverage 0.92  slack 0.77
	// fixed-formula coverage 0.89  slack 0.85
}
