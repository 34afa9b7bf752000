package worker

import (
	"syscall"

	"github.com/rs/zerolog"
)

// peakReading is a job's peak memory and how it was measured.
type peakReading struct {
	bytes  int64
	source string
}

// meter measures one attempt's memory.
type meter struct {
	cgroup *memoryCgroup // nil when no cgroup is readable
	limit  int64
}

// openMeter prepares memory measurement for an attempt: a new cgroup in
// CgroupJob mode, the worker's own in CgroupContainer mode.
func (w *Worker) openMeter(a *attempt) (*meter, error) {
	m := &meter{limit: w.cfg.MemoryLimit}
	switch w.cfg.Cgroup {
	case CgroupJob:
		cg, err := newJobCgroup(w.cfg.CgroupParent, a.job.ID, w.cfg.MemoryLimit)
		if err != nil {
			return nil, err
		}
		m.cgroup = cg
	case CgroupContainer:
		cg, err := ownCgroup()
		if err != nil {
			a.log.Debug().Err(err).Msg("no memory cgroup to read; measuring the job's resident set instead")
			break
		}
		// With warm reuse, the container's peak would include earlier
		// jobs: reset it where the kernel allows (v1, and v2 since 6.12).
		cg.resetPeak()
		m.cgroup = cg
	}
	return m, nil
}

// jobCgroup is the cgroup a command must start in, if any.
func (m *meter) jobCgroup() *memoryCgroup {
	if m.cgroup != nil && m.cgroup.created {
		return m.cgroup
	}
	return nil
}

// peak reads the attempt's peak memory: the cgroup's high-water mark where
// there is one, else the largest resident set of the command, else of the
// worker process itself (a Go handler).
func (m *meter) peak(job *Job) peakReading {
	if m.cgroup != nil {
		if p, err := m.cgroup.peak(); err == nil && p > 0 {
			return peakReading{bytes: p, source: m.cgroup.source()}
		}
	}
	if job.rusagePeak > 0 {
		return peakReading{bytes: job.rusagePeak, source: SourceRusage}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		return peakReading{bytes: ru.Maxrss * 1024, source: SourceRusage}
	}
	return peakReading{}
}

// oomKilled tells whether the attempt ended because it ran out of memory:
// the cgroup counted an OOM kill, or, without a cgroup to ask, the command
// was SIGKILLed with its peak within 5% of its limit.
func (m *meter) oomKilled(job *Job, peak peakReading) bool {
	if m.cgroup != nil {
		return m.cgroup.oomKilled()
	}
	return job.wasSignaled && m.limit > 0 && float64(peak.bytes) >= 0.95*float64(m.limit)
}

func (m *meter) close(log zerolog.Logger) {
	if m.cgroup == nil {
		return
	}
	if err := m.cgroup.remove(); err != nil {
		log.Warn().Err(err).Msg("removing the job's cgroup")
	}
}
