// Package predictor predicts a high quantile (default 0.9) of a job's peak
// memory from its type, labels and features, trained on what past runs
// really used.
//
// Train fits a Model to a Dataset of past runs (RecordsDataset and
// LoadRecords read jobfleet's run records); Model.Retrain fits its
// successor; Model.Predict sizes a Job and says why (the level and group
// that decided, the runs behind it, the margin). Options hold what a user
// chooses (the quantile, the features, the labels to group by, the
// strategy); Tuning holds the rest, with measured defaults.
//
// A model sizes jobs by one of two strategies, chosen from the runs unless
// asked for (Options.Strategy). Where features repeat from run to run (the
// same processors and time limit asked for again), the group strategy sizes
// a job by the recency-weighted quantile of the most specific group of at
// least three past runs it belongs to (its type with the same features, then
// the same leading features; its type; its pool with the same leading
// features, whatever the type; its pool; all runs) times one margin, which
// every retraining adapts from how the deployed allocations fared (adaptive
// conformal inference): run records carry each job's allocation, and an
// OOM-killed run is a measured miss. Features count in the order
// Model.Features lists them, most telling first: Options.Features as given,
// or chosen by the model (Tuning.FeatureOrder). Labels named by
// Options.GroupBy key groups as strings, before the features.
//
// Where features measure sizes, the estimators strategy applies: each job
// type with enough runs gets its own estimator, chosen among three
// kinds by pinball loss on its most recent runs: the recency-weighted
// empirical quantile of the type, a linear quantile regression on log
// features, and gradient-boosted quantile trees on log features. The chosen
// estimator is calibrated with split-conformal prediction on runs it did not
// see, at a level that makes its coverage reach the target with high
// probability (training-conditional conformal), instead of a blanket buffer.
// Types with few runs get their own quantile plus an offset calibrated on
// all thin types together; unseen types fall back to their pool's estimator,
// then the global one; the dispatcher falls back to the type's configured
// default when there is no model at all.
//
// Models are versioned JSON files on disk or in S3; a Reloader picks up new
// ones and keeps the last good model when a new file is corrupt.
//
// Package predictor/eval replays a trace the way the predictor runs in
// production, retraining on a rolling window and predicting each job before
// it runs, and compares it with the methods people use today.
package predictor
