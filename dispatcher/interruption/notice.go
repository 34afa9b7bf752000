package interruption

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Kind is what a notice announces.
type Kind string

// Kinds of notice.
const (
	// SpotInterruption: AWS reclaims the spot instance in two minutes.
	SpotInterruption Kind = "spot-interruption"
	// CapacityReservationInterruption: AWS reclaims an instance of an
	// interruptible capacity reservation.
	CapacityReservationInterruption Kind = "capacity-reservation-interruption"
	// RebalanceRecommendation: the spot instance is at elevated risk.
	RebalanceRecommendation Kind = "rebalance-recommendation"
	// ScheduledChange: AWS Health scheduled maintenance or retirement.
	ScheduledChange Kind = "scheduled-change"
	// StateChange: the instance is stopping, stopped, shutting down or
	// terminated.
	StateChange Kind = "state-change"
)

// Notice is one decoded event.
type Notice struct {
	// ID is the EventBridge event id; duplicates share it.
	ID          string
	Kind        Kind
	InstanceIDs []string
	// Time is when AWS emitted the event.
	Time time.Time
	// State is the new instance state of a StateChange.
	State string
	// Action is the spot or capacity reservation instance action
	// (terminate, stop, hibernate).
	Action string
}

// Deadline is when the instance is expected to go: two minutes after a
// spot or capacity reservation warning, now for a state change, and
// unknown (zero) otherwise.
func (n *Notice) Deadline() time.Time {
	switch n.Kind {
	case SpotInterruption, CapacityReservationInterruption:
		return n.Time.Add(2 * time.Minute)
	case StateChange:
		return n.Time
	}
	return time.Time{}
}

// Gone reports whether the instance is already stopped or terminated, so
// its pods cannot be evicted gracefully.
func (n *Notice) Gone() bool {
	return n.Kind == StateChange && (n.State == "stopped" || n.State == "terminated")
}

// envelope is the common part of every EventBridge event.
type envelope struct {
	Version    string          `json:"version"`
	ID         string          `json:"id"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Time       time.Time       `json:"time"`
	Resources  []string        `json:"resources"`
	Detail     json.RawMessage `json:"detail"`
}

// Errors of Parse.
var (
	// ErrMalformed: the message is not an EventBridge event, or its
	// detail is not what its type promises.
	ErrMalformed = errors.New("malformed event")
	// ErrUnknown: no decoder is registered for the event's source,
	// detail-type and version.
	ErrUnknown = errors.New("unknown event")
)

// key identifies a decoder.
type key struct{ source, detailType, version string }

// decoder turns an event's detail into a notice; it returns nil for an
// event of a known type that needs no action (a health event about another
// service, an instance starting).
type decoder func(env *envelope) (*Notice, error)

var decoders = map[key]decoder{
	{"aws.ec2", "EC2 Spot Instance Interruption Warning", "0"}:                 instanceAction(SpotInterruption),
	{"aws.ec2", "EC2 Capacity Reservation Instance Interruption Warning", "0"}: instanceAction(CapacityReservationInterruption),
	{"aws.ec2", "EC2 Instance Rebalance Recommendation", "0"}:                  rebalance,
	{"aws.ec2", "EC2 Instance State-change Notification", "0"}:                 stateChange,
	{"aws.health", "AWS Health Event", "0"}:                                    healthEvent,
}

// Parse decodes one event. It returns (nil, nil) for an event that needs
// no action, ErrUnknown for an unregistered event type, and ErrMalformed
// for anything that cannot be read.
func Parse(data []byte) (*Notice, error) {
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if env.Source == "" || env.DetailType == "" || len(env.Detail) == 0 {
		return nil, fmt.Errorf("%w: no source, detail-type or detail", ErrMalformed)
	}
	dec, ok := decoders[key{env.Source, env.DetailType, env.Version}]
	if !ok {
		return nil, fmt.Errorf("%w: source %q, detail-type %q, version %q", ErrUnknown, env.Source, env.DetailType, env.Version)
	}
	n, err := dec(&env)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, env.DetailType, err)
	}
	if n == nil {
		return nil, nil
	}
	n.ID, n.Time = env.ID, env.Time
	if n.Time.IsZero() {
		// The deadline of a warning is two minutes after its time; without
		// one, any grace computed from it is wrong.
		return nil, fmt.Errorf("%w: %s has no time", ErrMalformed, env.DetailType)
	}
	if len(n.InstanceIDs) == 0 {
		return nil, fmt.Errorf("%w: %s names no instance", ErrMalformed, env.DetailType)
	}
	for _, id := range n.InstanceIDs {
		if !strings.HasPrefix(id, "i-") {
			return nil, fmt.Errorf("%w: %q is not an instance id", ErrMalformed, id)
		}
	}
	return n, nil
}

func instanceAction(kind Kind) decoder {
	return func(env *envelope) (*Notice, error) {
		var d struct {
			InstanceID     string `json:"instance-id"`
			InstanceAction string `json:"instance-action"`
		}
		if err := json.Unmarshal(env.Detail, &d); err != nil {
			return nil, err
		}
		return &Notice{Kind: kind, InstanceIDs: []string{d.InstanceID}, Action: d.InstanceAction}, nil
	}
}

func rebalance(env *envelope) (*Notice, error) {
	var d struct {
		InstanceID string `json:"instance-id"`
	}
	if err := json.Unmarshal(env.Detail, &d); err != nil {
		return nil, err
	}
	return &Notice{Kind: RebalanceRecommendation, InstanceIDs: []string{d.InstanceID}}, nil
}

func stateChange(env *envelope) (*Notice, error) {
	var d struct {
		InstanceID string `json:"instance-id"`
		State      string `json:"state"`
	}
	if err := json.Unmarshal(env.Detail, &d); err != nil {
		return nil, err
	}
	switch d.State {
	case "stopping", "stopped", "shutting-down", "terminated":
		return &Notice{Kind: StateChange, InstanceIDs: []string{d.InstanceID}, State: d.State}, nil
	case "pending", "running":
		return nil, nil
	}
	return nil, fmt.Errorf("unknown instance state %q", d.State)
}

func healthEvent(env *envelope) (*Notice, error) {
	var d struct {
		Service           string `json:"service"`
		EventTypeCategory string `json:"eventTypeCategory"`
		AffectedEntities  []struct {
			EntityValue string `json:"entityValue"`
		} `json:"affectedEntities"`
	}
	if err := json.Unmarshal(env.Detail, &d); err != nil {
		return nil, err
	}
	if d.Service != "EC2" || d.EventTypeCategory != "scheduledChange" {
		return nil, nil
	}
	n := &Notice{Kind: ScheduledChange}
	for _, e := range d.AffectedEntities {
		n.InstanceIDs = append(n.InstanceIDs, e.EntityValue)
	}
	return n, nil
}
