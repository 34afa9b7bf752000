package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/jobfleet/jobfleet/internal/online"
	"github.com/jobfleet/jobfleet/jobtype"
	"github.com/jobfleet/jobfleet/predictor"
	"github.com/jobfleet/jobfleet/predictor/eval"
)

// PredictCmd groups the predictor's commands.
type PredictCmd struct {
	Train   PredictTrainCmd   `cmd:"" help:"Train a memory model from run records or a CSV trace."`
	Eval    PredictEvalCmd    `cmd:"" help:"Evaluate the predictor against baseline methods on a CSV trace or run records, walking forward through time."`
	Explain PredictExplainCmd `cmd:"" help:"Print a model's allocation for a job and why: the group or estimator that decided, the runs behind it, the margin, the floor and the raise the model carries."`
}

// csvFlags select a CSV trace's columns.
type csvFlags struct {
	CSV         string   `name:"csv" env:"JOBFLEET_PREDICT_CSV" type:"existingfile" placeholder:"FILE" help:"CSV trace with a header row."`
	TimeCol     string   `name:"time-col" env:"JOBFLEET_PREDICT_TIME_COL" placeholder:"COL" help:"Column with each run's time, in seconds."`
	TypeCol     string   `name:"type-col" env:"JOBFLEET_PREDICT_TYPE_COL" placeholder:"COL" help:"Column naming each run's job type."`
	TargetCol   string   `name:"target-col" env:"JOBFLEET_PREDICT_TARGET_COL" placeholder:"COL" help:"Column with each run's peak memory."`
	Features    []string `name:"features" env:"JOBFLEET_PREDICT_FEATURES" sep:"," placeholder:"COL,..." help:"Columns used as numeric features, most telling first; a CSV's columns are read only when named here (--records: the run records' features to use, all they carry without it)."`
	PoolCol     string   `name:"pool-col" env:"JOBFLEET_PREDICT_POOL_COL" placeholder:"COL" help:"Column grouping types into pools for the fallback model."`
	BaselineCol string   `name:"baseline-col" env:"JOBFLEET_PREDICT_BASELINE_COL" placeholder:"COL" help:"Column with what was allocated before (e.g. requested memory), compared as the baseline method."`
}

// checkSource checks that the runs come from one source: the CSV trace,
// or the run records (whose fields need no column flags).
func (c *csvFlags) checkSource(records string) error {
	switch {
	case c.CSV != "" && records != "":
		return errors.New("--csv and --records are two sources of runs: use one")
	case c.CSV == "" && records == "":
		return errors.New("give --csv or --records")
	case records != "" && (c.TimeCol != "" || c.TypeCol != "" || c.TargetCol != "" || c.PoolCol != "" || c.BaselineCol != ""):
		return errors.New("--records: the column flags (--time-col, --type-col, --target-col, --pool-col, --baseline-col) name a CSV's columns; run records have their own fields")
	}
	return nil
}

// checkTypeFeatures checks that the model reads every feature a type of
// --registry lists: the features --features names, or, without it, a
// CSV's none and run records' all.
func (c *csvFlags) checkTypeFeatures(opts predictor.Options) error {
	if len(c.Features) == 0 && c.CSV == "" {
		return nil
	}
	return typeFeaturesRead("--features", c.Features, opts.Tuning.FeaturesByType)
}

// read reads the CSV trace, with the columns opts groups runs by (see
// labelNames) as labels and the columns durations names as each run's
// time to its end.
func (c *csvFlags) read(opts predictor.Options, durations []string, wait string) (*eval.Dataset, eval.CSVStats, error) {
	labels := labelNames(opts)
	var missing []string
	for _, f := range []struct{ flag, v string }{{"--time-col", c.TimeCol}, {"--type-col", c.TypeCol}, {"--target-col", c.TargetCol}} {
		if f.v == "" {
			missing = append(missing, f.flag)
		}
	}
	if len(missing) > 0 {
		return nil, eval.CSVStats{}, fmt.Errorf("--csv needs %s", strings.Join(missing, ", "))
	}
	f, err := os.Open(c.CSV)
	if err != nil {
		return nil, eval.CSVStats{}, err
	}
	defer f.Close()
	ds, stats, err := eval.ReadCSV(f, eval.CSVColumns{
		Time: c.TimeCol, Type: c.TypeCol, Target: c.TargetCol, Features: c.Features, Pool: c.PoolCol, Baseline: c.BaselineCol, Labels: labels, Durations: durations, Wait: wait,
	})
	if err != nil {
		if len(labels) > len(opts.GroupBy) {
			return nil, stats, fmt.Errorf("%s: %w (its label columns are those of --group-by and of the --registry types' predictor.groupBy: %s)", c.CSV, err, strings.Join(labels, ", "))
		}
		return nil, stats, fmt.Errorf("%s: %w", c.CSV, err)
	}
	return ds, stats, nil
}

// warnUnmatched logs the types --registry sets something for that no run
// of ds has (a type named otherwise in the runs, or one not run yet), and
// the labels a type groups by that none of its runs carries.
func warnUnmatched(log zerolog.Logger, opts predictor.Options, ds *predictor.Dataset) {
	types := map[string]bool{}
	for _, s := range ds.Samples {
		types[s.Type] = true
	}
	set := map[string][]string{}
	maps.Insert(set, maps.All(opts.Tuning.GroupByType))
	maps.Insert(set, maps.All(opts.Tuning.FeaturesByType))
	for _, typ := range slices.Sorted(maps.Keys(set)) {
		if !types[typ] {
			log.Warn().Str("type", typ).Msg("--registry sets predictor settings for a type no run has: the runs name their types otherwise, or it has not run")
		}
	}
	uncarried := ds.Uncarried(opts.Tuning.GroupByType)
	for _, typ := range slices.Sorted(maps.Keys(uncarried)) {
		log.Warn().Str("type", typ).Strs("labels", uncarried[typ]).Msg("the type's predictor.groupBy names labels none of its runs carries: its runs are grouped without them (a label renamed, or not sent)")
	}
}

// trainFlags tune training.
type trainFlags struct {
	Quantile      float64       `name:"quantile" env:"JOBFLEET_PREDICT_QUANTILE" default:"0.9" help:"Quantile of peak memory to predict."`
	Strategy      string        `name:"strategy" env:"JOBFLEET_PREDICT_STRATEGY" enum:"auto,estimators,groups" default:"auto" help:"How jobs are sized: an estimator chosen per type (estimators), the quantile of the job's group of past runs with an adapted margin (groups), or groups unless fewer than a quarter of the runs repeat an earlier run's type and features (auto; with --previous, the previous model's strategy holds within 0.05 of a quarter)."`
	GroupBy       []string      `name:"group-by" env:"JOBFLEET_PREDICT_GROUP_BY" sep:"," placeholder:"LABEL,..." help:"Labels the group strategy keys its groups on, as strings, between the type and the features (a CSV's columns of these names; run records' labels)."`
	FeatureOrder  string        `name:"feature-order" env:"JOBFLEET_PREDICT_FEATURE_ORDER" enum:",given,auto" default:"" help:"The features' order decides the group strategy's levels: keep it (given) or choose it by the levels' loss on the window's last week (auto; 2 to 4 features, the group strategy only). Default: given when --features lists them, auto otherwise (run records' features). The output's header says which order was used."`
	AdaptRate     float64       `name:"adapt-rate" env:"JOBFLEET_PREDICT_ADAPT_RATE" default:"0.3" help:"Group strategy: how far each retraining moves the margin per unit of missed coverage."`
	GroupHalfLife time.Duration `name:"group-half-life" env:"JOBFLEET_PREDICT_GROUP_HALF_LIFE" default:"0" help:"Group strategy: half-life of the weight of older runs in each group's quantile; 0 chooses it (a day to the whole window) by the quantiles' loss on the last week."`
	MinRuns       int           `name:"min-runs" env:"JOBFLEET_PREDICT_MIN_RUNS" default:"30" help:"Estimators strategy: runs a type needs for an estimator of its own; thinner types use their pool's or the global one."`
	CalShare      float64       `name:"calibration-share" env:"JOBFLEET_PREDICT_CALIBRATION_SHARE" default:"0.25" help:"Estimators strategy: share of each type's most recent runs held out to choose and calibrate its estimator."`
	Confidence    float64       `name:"confidence" env:"JOBFLEET_PREDICT_CONFIDENCE" default:"0.9" help:"Estimators strategy: probability that each estimator's coverage reaches the quantile, not only on average; -1 calibrates for average coverage."`
	Ceiling       float64       `name:"ceiling" env:"JOBFLEET_PREDICT_CEILING" default:"1.25" help:"Estimators strategy: cap predictions at this multiple of the largest peak an estimator was trained on."`
	Registry      string        `name:"registry" env:"JOBFLEET_PREDICT_REGISTRY" type:"existingfile" placeholder:"FILE" help:"A job type registry whose types' predictor.groupBy and predictor.features apply, as the dispatcher's retraining applies them, to the types named as the runs name them: a CSV's columns its groupBy names are read as labels; its features must be among --features (for a CSV, required then); its groupBy needs the group strategy."`
}

// labelNames are the labels opts groups some type's runs by: the CSV
// columns read as labels.
func labelNames(opts predictor.Options) []string {
	names := slices.Clone(opts.GroupBy)
	for _, byType := range opts.Tuning.GroupByType {
		for _, name := range byType {
			if !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	slices.Sort(names[len(opts.GroupBy):])
	return names
}

// options are the training options the flags give; with --registry, its
// types' groupBy and features, as the dispatcher's retraining reads them.
func (t trainFlags) options() (predictor.Options, error) {
	opts := predictor.Options{Quantile: t.Quantile, Strategy: t.Strategy, GroupBy: t.GroupBy, Tuning: predictor.Tuning{
		FeatureOrder: t.FeatureOrder, AdaptRate: t.AdaptRate, GroupHalfLife: t.GroupHalfLife,
		MinRuns: t.MinRuns, CalibrationShare: t.CalShare, Confidence: t.Confidence, Ceiling: t.Ceiling,
	}}
	if t.Registry != "" {
		reg, err := jobtype.Load(t.Registry)
		if err != nil {
			return opts, fmt.Errorf("--registry: %w", err)
		}
		opts.Tuning.GroupByType, opts.Tuning.FeaturesByType = registryTuning(reg)
		if len(opts.Tuning.GroupByType) > 0 && t.Strategy == predictor.StrategyEstimators {
			typ := slices.Sorted(maps.Keys(opts.Tuning.GroupByType))[0]
			return opts, fmt.Errorf("--registry %s: type %q sets predictor.groupBy, whose labels key the groups strategy's groups: not with --strategy estimators", t.Registry, typ)
		}
	}
	return opts, nil
}

// PredictTrainCmd trains a model.
type PredictTrainCmd struct {
	csvFlags
	trainFlags
	Records  string        `name:"records" env:"JOBFLEET_PREDICT_RECORDS" placeholder:"DIR|s3://BUCKET/PREFIX" help:"Run records (JSON Lines, optionally gzipped) to train on, instead of --csv."`
	Window   time.Duration `name:"window" env:"JOBFLEET_PREDICT_WINDOW" default:"720h" help:"Train on the run records of this last period (0: all of them)."`
	Out      string        `name:"out" short:"o" env:"JOBFLEET_PREDICT_OUT" required:"" placeholder:"PATH|s3://BUCKET/KEY" help:"Where to write the model."`
	Previous string        `name:"previous" env:"JOBFLEET_PREDICT_PREVIOUS" placeholder:"PATH|s3://BUCKET/KEY" help:"The model in use until now: with --strategy groups, its margin is adapted from how its allocations fared (the run records' allocations). The raise after misses is not carried over (the dispatcher's own retraining carries it)."`
}

// Run trains and writes the model.
func (c *PredictTrainCmd) Run(ctx context.Context, g *Globals) error {
	if err := c.checkSource(c.Records); err != nil {
		return err
	}
	opts, err := c.options()
	if err != nil {
		return err
	}
	if err := c.checkTypeFeatures(opts); err != nil {
		return err
	}
	var ds *predictor.Dataset
	switch {
	case c.Window < 0:
		return fmt.Errorf("--window %v: not negative (0 reads all the records)", c.Window)
	case c.CSV != "":
		runs, stats, err := c.read(opts, nil, "")
		if err != nil {
			return err
		}
		ds = runs.Runs()
		g.log.Info().Int("rows", stats.Rows).Int("skipped", stats.Skipped).Msg("read CSV")
	default:
		var err error
		ds, err = loadRecords(ctx, g.log, c.Records, c.Window, c.GroupBy)
		if err != nil {
			return err
		}
	}
	warnUnmatched(g.log, opts, ds)
	if opts.Tuning.FeatureOrder == "" && len(c.Features) == 0 {
		opts.Tuning.FeatureOrder = predictor.FeatureOrderAuto
	}
	if c.Records != "" {
		// Run records name their features; --features picks and orders
		// them (a CSV's are picked when it is read).
		opts.Features = c.Features
	}
	var prev *predictor.Model
	if c.Previous != "" {
		var err error
		if prev, err = loadModel(ctx, c.Previous); err != nil {
			return fmt.Errorf("--previous: %w", err)
		}
	}
	start := time.Now()
	model, err := prev.Retrain(ctx, ds, opts)
	if err != nil {
		return err
	}
	if from, share, ok := model.Switched(); ok {
		g.log.Warn().Str("from", from).Str("to", model.Strategy()).Float64("repeat_share", share).Msg("the strategy changed from the previous model's: every job's size changes with it")
	}
	g.log.Info().Int("runs", model.Runs()).Str("strategy", model.Strategy()).Strs("features", model.Features()).Dur("took", time.Since(start)).Msg("trained model")
	return saveModel(ctx, c.Out, model)
}

// PredictEvalCmd evaluates the predictor.
type PredictEvalCmd struct {
	csvFlags
	trainFlags
	Records       string        `name:"records" env:"JOBFLEET_PREDICT_RECORDS" placeholder:"DIR|s3://BUCKET/PREFIX" help:"Run records (JSON Lines, optionally gzipped) to evaluate on, instead of --csv: every record, with the allocation each job ran with as the baseline. --features picks and orders their features."`
	DurationCols  []string      `name:"duration-cols" env:"JOBFLEET_PREDICT_DURATION_COLS" sep:"," placeholder:"COL,..." help:"Columns of seconds whose sum, added to the time, is when each run ended (e.g. wait_s,run_s; -1 or empty counts as 0): every retraining then learns only from runs that had ended, as the dispatcher's does. Without it a run counts as ended when it started (run records carry their end)."`
	WaitCol       string        `name:"wait-col" env:"JOBFLEET_PREDICT_WAIT_COL" placeholder:"COL" help:"Column of seconds each run waited between its submission and its start (e.g. wait_s; -1 or empty counts as 0): a run whose group's raise after misses rose while it waited is sized again when it starts, as jobfleet's worker sends such a job back to be sized again. Must be one of --duration-cols."`
	Split         float64       `name:"split" env:"JOBFLEET_PREDICT_SPLIT" default:"0" help:"Train once on this share of runs by time (those that had ended when the rest began) and test on the rest, instead of walking forward."`
	RetrainEvery  time.Duration `name:"retrain-every" env:"JOBFLEET_PREDICT_RETRAIN_EVERY" default:"0s" help:"Walking forward: retrain this often (0: 1d, as the dispatcher does). Not with --split."`
	Window        time.Duration `name:"window" env:"JOBFLEET_PREDICT_WINDOW" default:"0s" help:"Walking forward: train on the runs that ended in this last period (0: 30d, as the dispatcher does). Not with --split."`
	OnlineRate    float64       `name:"online-rate" env:"JOBFLEET_PREDICT_ONLINE_RATE" default:"0.05" help:"Raise a group's sizes after misses between retrainings, as the dispatcher's --online-rate does, as the runs sized end: the step per run (negative: the model alone)."`
	ByType        bool          `name:"by-type" env:"JOBFLEET_PREDICT_BY_TYPE" help:"Also show results per type: the same as --by type (types of 1,000 test jobs or more; --min-group-jobs 0 for all)."`
	MatchCoverage string        `name:"match-coverage" env:"JOBFLEET_PREDICT_MATCH_COVERAGE" enum:",type-quantile,vpa,fixed-formula,baseline" default:"" placeholder:"METHOD" help:"Also print the predictor's slack at METHOD's coverage (type-quantile, vpa, fixed-formula or baseline), finding the predictor's quantile that reaches it."`
	MinGroupJobs  int           `name:"min-group-jobs" env:"JOBFLEET_PREDICT_MIN_GROUP_JOBS" default:"-1" help:"With --by: show only months and types with at least this many test jobs (-1: 500 for months, 1000 for types, the sizes coverage is judged at; 0: all). The JSON lists all."`
	By            []string      `name:"by" env:"JOBFLEET_PREDICT_BY" sep:"," enum:"month,type" placeholder:"month,type" help:"Also show results per calendar month (30-day period when times are not Unix seconds) or per type, the predictor's worst coverage first."`
	JSON          bool          `name:"json" env:"JOBFLEET_PREDICT_JSON" help:"Print one JSON object."`
}

// checkOnlineRate checks an --online-rate, the dispatcher's or predict
// eval's: above 0 and at most 1, or negative for the model alone.
func checkOnlineRate(rate float64) error {
	if rate == 0 || math.IsNaN(rate) || rate > 1 {
		return fmt.Errorf("--online-rate %v: above 0 and at most 1, or negative for the model alone", rate)
	}
	return nil
}

// Run evaluates and prints the report.
func (c *PredictEvalCmd) Run(ctx context.Context, g *Globals) error {
	if err := c.checkSource(c.Records); err != nil {
		return err
	}
	switch {
	case c.MatchCoverage == eval.MethodBaseline && c.BaselineCol == "" && c.Records == "":
		return errors.New("--match-coverage baseline: needs --baseline-col (or --records, whose baseline is the allocation each job ran with)")
	case c.MinGroupJobs < -1:
		return fmt.Errorf("--min-group-jobs %d: -1 (500 for months, 1000 for types) or a number of jobs", c.MinGroupJobs)
	case c.Records != "" && len(c.DurationCols) > 0:
		return errors.New("--records: --duration-cols names a CSV's columns; run records carry when each run ended")
	case c.Records != "" && c.WaitCol != "":
		return errors.New("--records: --wait-col names a CSV's column; run records are sized when each run started")
	case c.WaitCol != "" && !slices.Contains(c.DurationCols, c.WaitCol):
		return fmt.Errorf("--wait-col %s: must be one of --duration-cols, whose sum is when a run ended (a run starts after its wait and ends after its run)", c.WaitCol)
	case c.Split > 0 && (c.RetrainEvery != 0 || c.Window != 0):
		return errors.New("--split trains once and tests on the rest; --retrain-every and --window walk forward: use one or the other")
	case c.RetrainEvery < 0 || c.Window < 0:
		return errors.New("--retrain-every and --window must not be negative")
	}
	if err := checkOnlineRate(c.OnlineRate); err != nil {
		return err
	}
	// Zero --retrain-every and --window take Evaluate's defaults.
	train, err := c.options()
	if err != nil {
		return err
	}
	if err := c.checkTypeFeatures(train); err != nil {
		return err
	}
	var ds *eval.Dataset
	var skipped int
	if c.Records != "" {
		// Every record, however old; the baseline is the allocation each
		// job ran with.
		runs, err := loadRecords(ctx, g.log, c.Records, 0, c.GroupBy)
		if err != nil {
			return err
		}
		if len(c.Features) > 0 {
			if runs, err = runs.Select(c.Features); err != nil {
				return fmt.Errorf("--features: %w", err)
			}
		}
		ds = eval.FromRecords(runs)
		if len(c.Features) == 0 && c.FeatureOrder == "" {
			// Record features have no order but their names'.
			train.Tuning.FeatureOrder = predictor.FeatureOrderAuto
		}
	} else {
		var stats eval.CSVStats
		var err error
		if ds, stats, err = c.read(train, c.DurationCols, c.WaitCol); err != nil {
			return err
		}
		skipped = stats.Skipped
	}
	warnUnmatched(g.log, train, ds.Runs())
	report, err := eval.Evaluate(ctx, ds, eval.Options{
		Train: train, Split: c.Split, RetrainEvery: c.RetrainEvery, Window: c.Window, OnlineRate: c.OnlineRate,
		ByType: c.ByType || slices.Contains(c.By, "type"), ByMonth: slices.Contains(c.By, "month"),
	}, skipped)
	if err != nil {
		return err
	}
	var match *eval.Match
	if c.MatchCoverage != "" {
		if match, err = eval.MatchCoverage(ctx, ds, eval.Options{Train: train, Split: c.Split, RetrainEvery: c.RetrainEvery, Window: c.Window, OnlineRate: c.OnlineRate}, report, c.MatchCoverage); err != nil {
			return fmt.Errorf("--match-coverage: %w", err)
		}
	}
	if c.JSON {
		return json.NewEncoder(g.stdout).Encode(struct {
			*eval.Report
			Match *eval.Match `json:"match_coverage,omitempty"`
		}{report, match})
	}
	if err := printReport(g.stdout, report, c.MinGroupJobs); err != nil {
		return err
	}
	if match != nil {
		i := slices.IndexFunc(report.Methods, func(m eval.MethodResult) bool { return m.Name == match.Method })
		_, err = fmt.Fprintf(g.stdout, "\nat %s's coverage %.4f: the predictor (quantile %.3f) has slack %.3f and mean alloc %.0f, %s %.3f and %.0f (%d evaluations)\n",
			match.Method, match.Coverage, match.Quantile, match.Slack, match.MeanAlloc, match.Method, report.Methods[i].Slack, report.Methods[i].MeanAlloc, match.Evaluations)
	}
	return err
}

// evalColumns defines predict eval's columns, for its help and its footer.
const evalColumns = `Columns:
  coverage    share of test jobs whose peak fit in the memory the method allocated
  slack       over the covered jobs, allocated memory not used: sum(alloc - peak) / sum(alloc)
  overalloc   over all jobs, memory allocated beyond the peak, relative to the peaks: sum(max(alloc - peak, 0)) / sum(peak)
  mean alloc  mean allocation, in the unit of the target column
  jobs        test jobs the method was scored on; the baseline only on jobs with a value, the rest counted as missing
  sized by    (predictor by what sized it) what decided the predictor's size: the group of the job's type with its
              labels (labels) or its features (type-features), its type's (type), the pool's runs with its features
              (features), its pool's (pool), all runs (global); or an estimator: the type's, a thin type's quantile
              (thin-type), the pool's or the global one
  vs. method  another method's coverage and slack on the same jobs`

func printReport(w io.Writer, r *eval.Report, minGroupJobs int) error {
	fmt.Fprintf(w, "test jobs: %d   skipped rows: %d", r.TestJobs, r.Skipped)
	if r.Censored > 0 {
		fmt.Fprintf(w, "   OOM-killed runs left out: %d (their peak is unknown; their reruns count)", r.Censored)
	}
	if r.Unsized > 0 {
		fmt.Fprintf(w, "   left out, the predictor's models having too few runs (or none ended yet) to size them: %d (the dispatcher takes the type's default)", r.Unsized)
	}
	fmt.Fprintln(w)
	how := "an estimator per type; thin types their own quantile with a shared offset; unseen types their pool's or the global estimator"
	if r.Predictor.Strategy == predictor.StrategyGroups {
		keys := "type"
		if len(r.Predictor.GroupBy) > 0 {
			keys += ", then labels " + strings.Join(r.Predictor.GroupBy, ", ")
		}
		how = "the quantile of the job's group of past runs: " + keys + ", then its features one level at a time"
	}
	fmt.Fprintf(w, "predictor: strategy %s (%s), retrained %d times\n", r.Predictor.Strategy, how, r.Predictor.Retrainings)
	for _, typ := range slices.Sorted(maps.Keys(r.Predictor.GroupByType)) {
		fmt.Fprintf(w, "type %s: groups by labels %s (--registry)\n", typ, strings.Join(r.Predictor.GroupByType[typ], ", "))
	}
	for _, typ := range slices.Sorted(maps.Keys(r.Predictor.FeaturesByType)) {
		fmt.Fprintf(w, "type %s: reads only features %s (--registry)\n", typ, strings.Join(r.Predictor.FeaturesByType[typ], ", "))
	}
	switch {
	case len(r.Predictor.Features) == 0:
		fmt.Fprintln(w, "features: none (a CSV's columns are read only when --features names them)")
	case r.Predictor.Order == predictor.FeatureOrderAuto:
		fmt.Fprintf(w, "features: %s (in the order the model chose: --feature-order auto)\n", strings.Join(r.Predictor.Features, ", "))
	default:
		fmt.Fprintf(w, "features: %s (in the order given; --feature-order auto orders 2 to 4 features for the group strategy)\n", strings.Join(r.Predictor.Features, ", "))
	}
	if r.Predictor.OnlineRate > 0 {
		fmt.Fprintf(w, "raised after misses between retrainings, as the dispatcher does: rate %v per run\n", r.Predictor.OnlineRate)
		if r.Predictor.SizedAtStart {
			fmt.Fprintf(w, "sized again when they started, as the worker sends back a job whose group's raise rose while it waited: %d runs given more (--wait-col)\n", r.Predictor.Resized)
		} else {
			fmt.Fprintln(w, "sized when submitted only (--wait-col sizes a run again when it starts, as the worker does)")
		}
	} else {
		fmt.Fprintln(w, "the model alone, not raised after misses (--online-rate below zero, or the runs have no ends: --duration-cols)")
	}
	if len(r.Predictor.Strategies) > 1 || r.Predictor.Switches > 0 {
		// auto chose differently across retrainings: sizes changed family.
		var by []string
		for _, name := range slices.Sorted(maps.Keys(r.Predictor.Strategies)) {
			by = append(by, fmt.Sprintf("%s %d", name, r.Predictor.Strategies[name]))
		}
		fmt.Fprintf(w, "strategy by retraining: %s; auto changed it %d times\n", strings.Join(by, ", "), r.Predictor.Switches)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "method\tjobs\tcoverage\tslack\toveralloc\tmean alloc\t")
	for _, m := range r.Methods {
		jobs := strconv.Itoa(m.Jobs)
		if m.Missing > 0 {
			jobs += fmt.Sprintf(" (%d missing)", m.Missing)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.4f\t%.3f\t%.3f\t%.0f\t\n", m.Name, jobs, m.Coverage, m.Slack, m.OverallocRatio, m.MeanAlloc)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Sources) > 0 {
		fmt.Fprintln(w, "\npredictor by what sized it:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "sized by\tjobs\tcoverage\tslack\tvs. method\tcoverage\tslack\t")
		for _, s := range r.Sources {
			fmt.Fprintf(tw, "%s\t%d\t%.4f\t%.3f\t\t\t\t\n", s.Source, s.Jobs, s.Coverage, s.Slack)
			for _, o := range s.Others {
				fmt.Fprintf(tw, "\t\t\t\t%s\t%.4f\t%.3f\t\n", o.Name, o.Coverage, o.Slack)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, g := range []struct {
		what string
		rows []eval.GroupResult
		min  int
	}{{"month", r.Months, 500}, {"type", r.Types, 1000}} {
		if len(g.rows) == 0 {
			continue
		}
		if minGroupJobs >= 0 {
			g.min = minGroupJobs
		}
		if err := printGroups(w, g.what, g.rows, g.min); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "\n%s\n", evalColumns)
	return err
}

// printGroups prints the results of the groups with at least least test
// jobs, the predictor's worst coverage first (the 20 worst), each method's
// coverage and slack.
func printGroups(w io.Writer, what string, all []eval.GroupResult, least int) error {
	rows := slices.DeleteFunc(slices.Clone(all), func(r eval.GroupResult) bool { return r.Jobs < least })
	slices.SortStableFunc(rows, func(a, b eval.GroupResult) int {
		return cmp.Compare(a.Methods[0].Coverage, b.Methods[0].Coverage)
	})
	fmt.Fprintf(w, "\nper %s, the %d of %d with at least %d test jobs, the predictor's worst coverage first:\n", what, len(rows), len(all), least)
	if len(rows) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\tjobs\t", what)
	for _, m := range rows[0].Methods {
		fmt.Fprintf(tw, "%s coverage\tslack\t", m.Name)
	}
	fmt.Fprintln(tw)
	for _, row := range rows[:min(len(rows), 20)] {
		fmt.Fprintf(tw, "%s\t%d\t", row.Name, row.Jobs)
		for _, m := range row.Methods {
			fmt.Fprintf(tw, "%.4f\t%.3f\t", m.Coverage, m.Slack)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// Help is shown under the flags.
func (c *PredictEvalCmd) Help() string { return evalColumns }

// PredictExplainCmd explains a model's allocation for one job.
type PredictExplainCmd struct {
	Model    string             `name:"model" env:"JOBFLEET_PREDICT_MODEL" required:"" placeholder:"PATH|s3://BUCKET/KEY" help:"The model (what predict train wrote)."`
	Type     string             `name:"type" env:"JOBFLEET_PREDICT_TYPE" required:"" help:"The job's type."`
	Pool     string             `name:"pool" env:"JOBFLEET_PREDICT_POOL" help:"The job type's pool (default: the one the model learned for the type)."`
	Features map[string]float64 `name:"feature" env:"JOBFLEET_PREDICT_FEATURE" mapsep:"," placeholder:"NAME=VALUE" help:"The job's features."`
	Labels   map[string]string  `name:"label" env:"JOBFLEET_PREDICT_LABEL" mapsep:"," placeholder:"KEY=VALUE" help:"The job's labels (those the model groups by)."`
	JSON     bool               `name:"json" env:"JOBFLEET_PREDICT_JSON" help:"Print one JSON object."`
}

// Run loads the model and prints the explanation.
func (c *PredictExplainCmd) Run(ctx context.Context, g *Globals) error {
	m, err := loadModel(ctx, c.Model)
	if err != nil {
		return fmt.Errorf("--model: %w", err)
	}
	// A feature the model reads, but not for the type, is ignored as
	// the dispatcher ignores it.
	var ignored []string
	for name := range c.Features {
		if !slices.Contains(m.Features(), name) {
			return fmt.Errorf("--feature %s: the model reads no such feature (it reads: %s)", name, orNone(m.Features()))
		}
		if !slices.Contains(m.FeaturesFor(c.Type), name) {
			ignored = append(ignored, name)
		}
	}
	slices.Sort(ignored)
	for key := range c.Labels {
		if !slices.Contains(m.LabelsFor(c.Type), key) {
			return fmt.Errorf("--label %s: the model groups type %s by no such label (it groups by: %s)", key, c.Type, strings.Join(m.LabelsFor(c.Type), ", "))
		}
	}
	// A raise that has been told of no run gives the one the model
	// carries, which a dispatcher loading it starts the job's group at.
	e := online.New(0, nil).Predict(m, predictor.Job{Type: c.Type, Pool: c.Pool, Labels: c.Labels, Features: c.Features})
	if c.JSON {
		return json.NewEncoder(g.stdout).Encode(struct {
			predictor.Prediction
			Allocation   float64  `json:"allocation"`
			Strategy     string   `json:"strategy"`
			Quantile     float64  `json:"quantile"`
			FeaturesRead []string `json:"features_read"`
			Ignored      []string `json:"features_ignored,omitempty"`
		}{e, e.Allocation(), m.Strategy(), m.Quantile(), m.FeaturesFor(c.Type), ignored})
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "allocation\t%.6g\t(the model's unit: bytes for run records, the target column's for a CSV)\n", e.Allocation())
	fmt.Fprintf(tw, "strategy\t%s, quantile %v\n", m.Strategy(), m.Quantile())
	if read := m.FeaturesFor(c.Type); len(read) < len(m.Features()) {
		fmt.Fprintf(tw, "features read\t%s\t(the type's own list, from its registry entry when the model was trained; the model's others are unset for it)\n", orNone(read))
	}
	if len(ignored) > 0 {
		fmt.Fprintf(tw, "features ignored\t%s\t(not read for this type)\n", strings.Join(ignored, ", "))
	}
	fmt.Fprintf(tw, "decided by\t%s\n", e.Level)
	if e.Group != "" {
		fmt.Fprintf(tw, "group\t%s\n", e.Group)
	}
	runs := "not kept by this model"
	if e.Runs > 0 {
		runs = strconv.Itoa(e.Runs)
	}
	fmt.Fprintf(tw, "runs behind it\t%s\n", runs)
	fmt.Fprintf(tw, "before the margin\t%.6g\n", e.Base)
	fmt.Fprintf(tw, "margin\tx%.3f\n", e.Margin)
	if e.Floor > e.Memory {
		fmt.Fprintf(tw, "floor\t%.6g\t(the group's quantile over about a week's runs, with the margin, above its recent %.6g)\n", e.Floor, e.Memory)
	}
	if e.Raise > 1 {
		fmt.Fprintf(tw, "raise\tx%.3f\t(carried from the raise after misses of the model this one replaced; the dispatcher moves it as the group's runs end)\n", e.Raise)
	}
	if len(e.Missing) > 0 {
		fmt.Fprintf(tw, "features missing\t%s (a group with them unset, or a broader level, decided)\n", strings.Join(e.Missing, ", "))
	}
	return tw.Flush()
}
