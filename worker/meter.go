package worker

import (
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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
	// workingSet is the largest working set sampled while the job ran,
	// of samples.
	workingSet, samples atomic.Int64
}

// sampleEvery is how often a job's working set is read while it runs,
// and minSamples how many reads measure a job by its working set.
const (
	sampleEvery = 20 * time.Millisecond
	minSamples  = 3
)

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

// sample reads the cgroup's working set now and every sampleEvery until
// the function it returns is first called, keeping the largest. Reads
// of an empty cgroup (a job's, before its command joined it) do not
// count.
func (m *meter) sample() (stop func()) {
	if m.cgroup == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(sampleEvery)
		defer tick.Stop()
		for {
			if ws, err := m.cgroup.WorkingSet(); err == nil && ws > 0 {
				m.samples.Add(1)
				if ws > m.workingSet.Load() {
					m.workingSet.Store(ws)
				}
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return sync.OnceFunc(func() {
		close(done)
		wg.Wait()
	})
}

// peak reads the attempt's peak memory: the cgroup's peak working set
// where there is a cgroup, else the largest resident set of the command,
// else of the worker process itself (a Go handler).
func (m *meter) peak(job *Job) peakReading {
	if m.cgroup != nil && !(m.cumulative && job.rusagePeak > 0) {
		if p := m.peakWorkingSet(job); p > 0 {
			return peakReading{bytes: p, source: m.cgroup.Source()}
		}
	}
	if job.rusagePeak > 0 {
		return peakReading{bytes: job.rusagePeak, source: SourceRusage}
	}
	if own := selfMaxRSS(); own > 0 {
		return peakReading{bytes: own, source: SourceRusage}
	}
	return peakReading{}
}

// selfMaxRSS is the worker's own largest resident set so far (0 when it
// cannot be read).
func selfMaxRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return maxrssBytes(&ru)
}

// peakWorkingSet is the most memory the attempt held that the kernel
// could not reclaim. The cgroup's high-water mark counts the page cache
// of the files the job read and wrote, which the kernel reclaims before
// it kills: a job that writes files would seem to use its whole limit,
// and the memory model could never learn to size it smaller. So the peak
// is the largest working set sampled (usage less inactive file cache,
// as the kubelet and VPA count it), never above the high-water mark. A
// job the kernel killed for memory used all it had: its high-water mark.
// A job that ended before minSamples reads takes the command's largest
// resident set where that is its own (it counts the files it mapped,
// too), else the high-water mark. Linux seeds a child's ru_maxrss with
// its parent's at exec, so the command's is its own only above the
// worker's, which, read after the command ended, is at least what the
// command inherited.
func (m *meter) peakWorkingSet(job *Job) int64 {
	high, err := m.cgroup.Peak()
	if err != nil || high <= 0 {
		return 0
	}
	if m.cgroup.OOMKilled() {
		return high
	}
	if m.samples.Load() >= minSamples {
		return min(high, m.workingSet.Load())
	}
	if own := job.rusagePeak; own > selfMaxRSS() {
		return min(high, max(m.workingSet.Load(), own))
	}
	return high
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
