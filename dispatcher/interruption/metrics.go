package interruption

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the interruption controller's Prometheus metrics.
type Metrics struct {
	messages        *prometheus.CounterVec
	notices         *prometheus.CounterVec
	tainted         *prometheus.CounterVec
	evicted         *prometheus.CounterVec
	eventToEviction *prometheus.HistogramVec
}

// NewMetrics registers the metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobfleet_interruption_messages_total",
			Help: "Messages read from the interruption queue, by result (handled, no_action, unknown, malformed, retried: kept to be handled again after a failure, failed: given up after RetryFor).",
		}, []string{"result"}),
		notices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobfleet_interruption_notices_total",
			Help: "Interruption notices acted on, by kind.",
		}, []string{"kind"}),
		tainted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobfleet_interruption_nodes_tainted_total",
			Help: "Nodes tainted because of an interruption notice, by kind.",
		}, []string{"kind"}),
		evicted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobfleet_interruption_pods_evicted_total",
			Help: "Jobfleet pods evicted (or deleted, when their instance was gone), by notice kind.",
		}, []string{"kind"}),
		eventToEviction: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "jobfleet_interruption_event_to_eviction_seconds",
			Help:    "Time from the event's own timestamp to the eviction of a pod it concerned.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
		}, []string{"kind"}),
	}
	reg.MustRegister(m.messages, m.notices, m.tainted, m.evicted, m.eventToEviction)
	return m
}
