package predictor_test

import (
	"fmt"

	"github.com/jobfleet/jobfleet/predictor"
)

func ExampleTrain() {
	// Ninety days of synthetic feature-pipeline runs. A training job with
	// 2e8 parameters needs about 2 GiB + 16 bytes per parameter, times
	// lognormal noise: its true 0.9-quantile is 5.8 GiB.
	ds := predictor.Synthetic(8000, 90, 7)
	model, err := predictor.Train(ds, predictor.Options{Quantile: 0.9})
	if err != nil {
		panic(err)
	}
	peak, source := model.Predict("train", "", map[string]float64{"rows": 1e6, "model_params": 2e8})
	fmt.Printf("%s estimator, %.1f GiB\n", source, peak/(1<<30))
	_, source = model.Predict("brand-new-type", "", map[string]float64{"rows": 1e6})
	fmt.Println(source)
	// Output:
	// type estimator, 5.7 GiB
	// global
}
