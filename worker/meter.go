package worker

import (
	"syscall"

	"github.com/rs/zerolog"

	"github.com/jobfleet/jobfleet/internal/cgroup"
)

// peakReading is a job's peak memory and how it was measured.
type peakReading struct {
	bytes  int64
	source string
}

// meter measures one attempt's memory.
type meter struct {
	cgroup *cgroup.Memory // nil when no cgroup is readable
	limit  int64
	// cumulative is true when the cgroup's peak could not be reset and may
	// include earlier jobs of the same worker: the command's own peak is
	// then the better measure.
	cumulative bool
}

// openMeter prepares memory measurement for an attempt: a new cgroup in
// CgroupJob mode, the worker's own in CgroupContainer mode.
func (w *Worker) openMeter(a *attempt) (*meter, error) {
	m := &meter{limit: w.cfg.MemoryLimit}
	switch w.cfg.Cgroup {
	case CgroupJob:
		cg, err := cgroup.NewJob(w.cfg.CgroupParent, a.job.ID, w.cfg.MemoryLimit)
		if err != nil {
			return nil, err
		}
		m.cgroup = cg
	case CgroupContainer:
		cg, err := cgroup.Own()
		if err != nil {
			a.log.Debug().Err(err).Msg("no memory cgroup to read; measuring the job's resident set instead")
			break
		}
		// With warm reuse, the container's peak would include earlier
		// jobs: reset it where the kernel allows (v1, and v2 since 6.12).
		if err := cg.ResetPeak(); err != nil {
			m.cumulative = w.jobsRun > 0
			a.log.Debug().Err(err).Bool("cumulative", m.cumulative).Msg("the container's peak memory cannot be reset")
		}
		m.cgroup = cg
	}
	return m, nil
}

// jobCgroup is the cgroup a command must start in, if any.
func (m *meter) jobCgroup() *cgroup.Memory {
	if m.cgroup != nil && m.cgroup.Created() {
		return m.cgroup
	}
	return nil
}

// peak reads the attempt's peak memory: the cgroup's high-water mark where
// there is one, else the largest resident set of the command, else of the
// worker process itself (a Go handler).
func (m *meter) peak(job *Job) peakReading {
	if m.cgroup != nil && !(m.cumulative && job.rusagePeak > 0) {
		if p, err := m.cgroup.Peak(); err == nil && p > 0 {
			return peakReading{bytes: p, source: m.cgroup.Source()}
		}
	}
	if job.rusagePeak > 0 {
		return peakReading{bytes: job.rusagePeak, source: SourceRusage}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		return peakReading{bytes: maxrssBytes(&ru), source: SourceRusage}
	}
	return peakReading{}
}

// oomKilled tells whether the attempt ended because it ran out of memory:
// the cgroup counted an OOM kill, or, without a cgroup to ask, the command
// was SIGKILLed with its peak within 5% of its limit.
func (m *meter) oomKilled(job *Job, peak peakReading) bool {
	if m.cgroup != nil {
		return m.cgroup.OOMKilled()
	}
	return job.wasSignaled && m.limit > 0 && float64(peak.bytes) >= 0.95*float64(m.limit)
}

func (m *meter) close(log zerolog.Logger) {
	if m.cgroup == nil {
		return
	}
	if err := m.cgroup.Close(); err != nil {
		log.Warn().Err(err).Msg("removing the job's cgroup")
	}
}
