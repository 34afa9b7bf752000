package predictor_test

import (
	"context"
	"fmt"

	"github.com/jobfleet/jobfleet/predictor"
	"github.com/jobfleet/jobfleet/predictor/eval"
)

func ExampleTrain() {
	// Ninety days of synthetic feature-pipeline runs. A training job with
	// 2e8 parameters needs about 2 GiB + 16 bytes per parameter, times
	// lognormal noise: its true 0.9-quantile is 5.8 GiB.
	ds := eval.Synthetic(8000, 90, 7)
	model, err := predictor.Train(context.Background(), ds, predictor.Options{Quantile: 0.9})
	if err != nil {
		panic(err)
	}
	p := model.Predict(predictor.Job{Type: "train", Features: map[string]float64{"rows": 1e6, "model_params": 2e8}})
	fmt.Printf("%s, %.1f GiB\n", p.Level, p.Allocation()/(1<<30))
	p = model.Predict(predictor.Job{Type: "brand-new-type", Features: map[string]float64{"rows": 1e6}})
	fmt.Println(p.Source)
	// Output:
	// type estimator (gbt), 5.7 GiB
	// global
}

func ExampleTrain_groups() {
	// Runs whose features repeat: users resubmit jobs asking for the same
	// processors. The user comes first, so a job of a new type still finds
	// the runs of its user with the same processors.
	ds := &predictor.Dataset{Features: []string{"user", "procs"}}
	add := func(typ string, user, procs float64, peaks ...float64) {
		for _, p := range peaks {
			ds.Samples = append(ds.Samples, predictor.Sample{Time: 0, Type: typ, Features: []float64{user, procs}, Peak: p})
		}
	}
	add("solver", 7, 64, 900, 950, 1000, 980)
	add("solver", 8, 4, 100, 110, 120)
	add("mesher", 7, 64, 2000, 2100, 2050)
	model, err := predictor.Train(context.Background(), ds, predictor.Options{Strategy: predictor.StrategyGroups})
	if err != nil {
		panic(err)
	}
	for _, job := range []struct {
		typ         string
		user, procs float64
	}{{"solver", 7, 64}, {"solver", 7, 16}, {"plotter", 7, 64}, {"plotter", 9, 1}} {
		p := model.Predict(predictor.Job{Type: job.typ, Features: map[string]float64{"user": job.user, "procs": job.procs}})
		fmt.Printf("%s user %v procs %v: %.0f from %s\n", job.typ, job.user, job.procs, p.Allocation(), p.Level)
	}
	// Each is its group's 0.9 quantile times the initial margin, 1.15.
	// Output:
	// solver user 7 procs 64: 1150 from type and user, procs
	// solver user 7 procs 16: 1150 from type and user
	// plotter user 7 procs 64: 2415 from pool and user, procs
	// plotter user 9 procs 1: 2357 from all runs
}
