package contract

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"path"
	"time"

	"github.com/jobfleet/jobfleet"
)

// Raises is the dispatcher's raise after misses, as its leader publishes
// it for workers: the groups of one memory model whose sizes are raised
// now, by how much. A worker about to start a job compares its group's
// raise with the one that would give the job a larger class
// (jobfleet.SizedBy.ResizeAbove), and sends the job back to be sized
// again when it has passed it.
type Raises struct {
	// Model names the model the groups are of (jobfleet.SizedBy.Model):
	// a job sized by another model is not compared.
	Model string `json:"model"`
	// At is when the raises were read from the dispatcher.
	At time.Time `json:"at"`
	// Groups holds the raise of every raised group (above 1), by
	// RaiseKey; a group not listed is not raised.
	Groups map[string]float64 `json:"groups"`
}

// RaisesRefresh is how many publishing intervals the leader lets pass
// before it writes the raise again unchanged, so that workers can tell a
// current file from one a leader stopped writing: they ignore one older
// than MaxRaisesAge.
const (
	RaisesRefresh = 4
	MaxRaisesAge  = 5 * time.Minute
)

// MaxPublishedRaises bounds the groups a Raises holds, so that it stays
// well within what a worker reads of one object: the most raised first.
const MaxPublishedRaises = 50_000

// RaisesKey is where the leader publishes the raise after misses.
func (s Store) RaisesKey() string {
	return path.Join(s.prefix(), "sizing", "raises.json")
}

// RaiseGroup names the group that decided a job's size, as the raise
// after misses keys it: the model's level and group, or the level and
// the job's type for a model that keeps no groups.
func RaiseGroup(level, group, jobType string) string {
	if group == "" {
		group = jobType
	}
	return level + "\x00" + group
}

// RaiseKey is a group's key in Raises: a hash of its RaiseGroup, so that
// the object stays small however long the groups' names are.
func RaiseKey(group string) string {
	sum := sha256.Sum256([]byte(group))
	return hex.EncodeToString(sum[:8])
}

// ResizedFrom is, for the attempt that follows history h, the class
// memory it was first given when the attempt before it was sent back to
// be sized again (jobfleet.RunRecord.ResizedFromBytes); 0 otherwise. Only
// that attempt carries it: a later rerun (after an interruption, say) was
// sized afresh, maybe by another model.
func ResizedFrom(h jobfleet.History) int64 {
	if last, ok := h.Last(); ok && last.Reason == jobfleet.ReasonResized {
		return last.AllocatedBytes
	}
	return 0
}

// CountedAttempts is how many attempts of history h count against
// MaxTotalAttempts: those sent back to be sized again ran nothing and
// spend nothing (at most one a run).
func CountedAttempts(h jobfleet.History) int {
	return len(h) - h.Count(jobfleet.ReasonResized)
}

// WriteRaises publishes the raise after misses, replacing what was there.
func (s Store) WriteRaises(ctx context.Context, r *Raises) error {
	_, err := s.write(ctx, s.RaisesKey(), r, false, "")
	return err
}

// ReadRaises reads the raise after misses; ErrNotFound when none was
// published.
func (s Store) ReadRaises(ctx context.Context) (*Raises, error) {
	var r Raises
	if _, err := s.get(ctx, s.RaisesKey(), &r); err != nil {
		return nil, err
	}
	return &r, nil
}
