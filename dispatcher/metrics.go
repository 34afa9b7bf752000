package dispatcher

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jobfleet/jobfleet/internal/online"
)

// metrics are the dispatcher's Prometheus metrics.
type metrics struct {
	jobs             *prometheus.CounterVec
	queueAge         *prometheus.HistogramVec
	handling         *prometheus.HistogramVec
	sqsCalls         *prometheus.CounterVec
	predictedBytes   *prometheus.HistogramVec
	classes          prometheus.Gauge
	collected        prometheus.Counter
	modelReloads     *prometheus.CounterVec
	strategySwitches *prometheus.CounterVec
	raisedGroups     prometheus.GaugeFunc
	// raiser is the dispatcher's, once New has it, for raisedGroups.
	raiser           atomic.Pointer[online.Raiser]
	raiseRecords     prometheus.Counter
	raiseReadUntil   prometheus.Gauge
	sized            *prometheus.CounterVec
	fit              *prometheus.CounterVec
	records          *prometheus.CounterVec
	sensor           *prometheus.CounterVec
	checkpoints      *prometheus.CounterVec
	announceFailures prometheus.Counter
	// The cost of attempts, by type and the attribute label's value.
	attemptSeconds       *prometheus.CounterVec
	allocatedByteSeconds *prometheus.CounterVec
	unusedByteSeconds    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobfleet_dispatcher_jobs_total",
			Help: "Jobs handled from intake, by type and outcome (forwarded, dead_lettered, retried).",
		}, []string{"type", "outcome"}),
		queueAge: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "jobfleet_dispatcher_queue_age_seconds",
			Help:    "Time from a job's publication to its forwarding to a class queue.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
		}, []string{"type"}),
		handling: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "jobfleet_dispatcher_handling_duration_seconds",
			Help:    "Time from receiving a job from intake to deleting it there.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"type"}),
		sqsCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobfleet_dispatcher_sqs_calls_total",
			Help: "SQS API calls the dispatcher made, by operation.",
		}, []string{"operation"}),
		predictedBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "jobfleet_dispatcher_memory_bytes",
			Help:    "Memory asked for each forwarded job before rounding to its class, by type and the estimator that predicted it.",
			Buckets: prometheus.ExponentialBuckets(64<<20, 2, 14),
		}, []string{"type", "source"}),
		classes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jobfleet_dispatcher_classes",
			Help: "Classes (class queue and ScaledJob) wanted, as the leader sees them; zero on other replicas, so the sum over replicas is the fleet's.",
		}),
		collected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jobfleet_dispatcher_classes_collected_total",
			Help: "Idle classes whose ScaledJob and queue were removed.",
		}),
		modelReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobfleet_dispatcher_model_reloads_total",
			Help: "Checks for a new memory model, by result (loaded, unchanged, rejected).",
		}, []string{"result"}),
		strategySwitches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobfleet_predictor_strategy_switches_total",
			Help: "Retrainings at which the automatic strategy changed the memory model's family, by the strategy before and after: every job's size changes with it.",
		}, []string{"from", "to"}),
		sized: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobfleet_sized_runs_total",
			Help: "Successful runs with a memory allocation, by type, from their run records. Coverage is the rate of jobfleet_sized_runs_within_allocation_total over the rate of this, summed over replicas.",
		}, []string{"type"}),
		fit: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobfleet_sized_runs_within_allocation_total",
			Help: "Successful runs whose peak memory fit their allocation, by type: the early warning of drift when its rate falls behind jobfleet_sized_runs_total's.",
		}, []string{"type"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobfleet_run_records_total",
			Help: "Run records consumed, by result: stored or malformed; duplicate counts the stored ones of an attempt this replica had counted already (a subset of stored), which the other metrics count once.",
		}, []string{"result"}),
		sensor: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobfleet_failure_sensor_reruns_total",
			Help: "Jobs the failure sensor reran because their pod died without the worker reporting, by reason.",
		}, []string{"reason"}),
		checkpoints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobfleet_interruption_checkpoints_total",
			Help: "Interrupted or evicted attempts, by whether the worker uploaded a checkpoint before its grace period ended (completed) or had none to resume from (missing).",
		}, []string{"result"}),
		announceFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jobfleet_dispatcher_announce_failures_total",
			Help: "Ends of jobs whose completion event or task token callback the dispatcher could not send.",
		}),
		attemptSeconds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobfleet_attempt_seconds_total",
			Help: "Time attempts ran, from their run records, by job type, the value of the attribute label (--attribute-label, team by default) and outcome.",
		}, []string{"type", "attribute", "outcome"}),
		allocatedByteSeconds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobfleet_allocated_byte_seconds_total",
			Help: "Memory allocated to attempts times the time they ran, by job type and the value of the attribute label.",
		}, []string{"type", "attribute"}),
		unusedByteSeconds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobfleet_unused_byte_seconds_total",
			Help: "Memory allocated to attempts and above their peak, times the time they ran (the waste), by job type and the value of the attribute label.",
		}, []string{"type", "attribute"}),
	}
	m.raiseRecords = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "jobfleet_dispatcher_raise_records_total",
		Help: "Run records this replica's raise after misses has read back from the store, those of every replica, once per attempt and model.",
	})
	m.raiseReadUntil = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "jobfleet_dispatcher_raise_read_timestamp_seconds",
		Help: "When this replica last read every run record stored until then for the raise after misses (Unix seconds; its start until its first read, 0 on a replica that does not raise): if it falls behind, the raise is not hearing of OOM kills.",
	})
	m.raisedGroups = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "jobfleet_dispatcher_raised_groups",
		Help: "Groups of jobs this replica sizes above the memory model after recent OOM kills in them (a new model starts them at half their raise): a rising count is drift the model has not learned yet.",
	}, func() float64 {
		if r := m.raiser.Load(); r != nil {
			return float64(r.Raised())
		}
		return 0
	})
	reg.MustRegister(m.announceFailures, m.attemptSeconds, m.allocatedByteSeconds, m.unusedByteSeconds, m.checkpoints, m.jobs, m.queueAge, m.handling, m.sqsCalls, m.predictedBytes, m.classes, m.collected, m.modelReloads, m.strategySwitches, m.raisedGroups, m.raiseRecords, m.raiseReadUntil, m.sized, m.fit, m.records, m.sensor)
	return m
}
