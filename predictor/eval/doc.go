// Package eval measures the memory predictor the way it runs in
// production. Evaluate walks forward through a trace of past runs as the
// dispatcher does: it retrains every day (Options.RetrainEvery) on the runs
// that ended in the last 30 days (Options.Window), sizes each run before
// it starts, and raises a group's sizes after the misses of the runs it
// sized as they end (Options.OnlineRate). It compares the allocations with the methods people use today:
// each type's quantile, the Vertical Pod Autoscaler's recommender, one fixed
// formula, and the memory users requested. MatchCoverage compares methods at
// equal coverage. A Dataset is the predictor's runs with each one's
// baseline, what the comparison method allocated it: ReadCSV reads a trace
// (the request column), FromRecords run records (the allocation each ran
// with), WithoutBaselines any predictor.Dataset; Synthetic draws workloads
// whose true quantiles are known.
//
// jobfleet predict eval is its command line.
package eval
