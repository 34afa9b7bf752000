package interruption

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseFixtures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file     string
		kind     Kind
		instance string
		state    string
		none     bool
		err      error
		deadline time.Time
	}{
		{file: "spot-interruption.json", kind: SpotInterruption, instance: "i-1234567890abcdef0", deadline: time.Date(2026, 11, 22, 10, 2, 0, 0, time.UTC)},
		{file: "capacity-reservation-interruption.json", kind: CapacityReservationInterruption, instance: "i-0abcdef1234567890", deadline: time.Date(2026, 11, 22, 10, 2, 5, 0, time.UTC)},
		{file: "rebalance-recommendation.json", kind: RebalanceRecommendation, instance: "i-1234567890abcdef0"},
		{file: "state-change-terminated.json", kind: StateChange, instance: "i-1234567890abcdef0", state: "terminated", deadline: time.Date(2026, 11, 22, 10, 2, 10, 0, time.UTC)},
		{file: "state-change-stopping.json", kind: StateChange, instance: "i-1234567890abcdef0", state: "stopping", deadline: time.Date(2026, 11, 22, 10, 1, 0, 0, time.UTC)},
		{file: "scheduled-change.json", kind: ScheduledChange, instance: "i-1234567890abcdef0"},
		{file: "state-change-running.json", none: true},
		{file: "health-issue.json", none: true},
		{file: "unknown-launch.json", err: ErrUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile("testdata/" + tt.file)
			if err != nil {
				t.Fatal(err)
			}
			n, err := Parse(data)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Parse() error = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.none {
				if n != nil {
					t.Fatalf("Parse() = %+v, want no notice", n)
				}
				return
			}
			if n.Kind != tt.kind || len(n.InstanceIDs) != 1 || n.InstanceIDs[0] != tt.instance || n.State != tt.state || n.ID == "" || n.Time.IsZero() {
				t.Fatalf("Parse() = %+v", n)
			}
			if !n.Deadline().Equal(tt.deadline) {
				t.Errorf("Deadline() = %v, want %v", n.Deadline(), tt.deadline)
			}
		})
	}
}

func TestParseMalformed(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, data string }{
		{"not JSON", `{"version":`},
		{"no detail", `{"version":"0","source":"aws.ec2","detail-type":"EC2 Spot Instance Interruption Warning"}`},
		{"detail of the wrong shape", `{"version":"0","source":"aws.ec2","detail-type":"EC2 Spot Instance Interruption Warning","detail":[1]}`},
		{"no instance", `{"version":"0","time":"2026-11-22T10:00:00Z","source":"aws.ec2","detail-type":"EC2 Spot Instance Interruption Warning","detail":{}}`},
		{"not an instance id", `{"version":"0","time":"2026-11-22T10:00:00Z","source":"aws.ec2","detail-type":"EC2 Spot Instance Interruption Warning","detail":{"instance-id":"../x"}}`},
		{"spot warning without time", `{"version":"0","source":"aws.ec2","detail-type":"EC2 Spot Instance Interruption Warning","detail":{"instance-id":"i-1234567890abcdef0","instance-action":"terminate"}}`},
		{"spot warning with a null time", `{"version":"0","time":null,"source":"aws.ec2","detail-type":"EC2 Spot Instance Interruption Warning","detail":{"instance-id":"i-1234567890abcdef0"}}`},
		{"unknown state", `{"version":"0","source":"aws.ec2","detail-type":"EC2 Instance State-change Notification","detail":{"instance-id":"i-1","state":"melting"}}`},
		{"bad time", `{"version":"0","time":"yesterday","source":"aws.ec2","detail-type":"EC2 Spot Instance Interruption Warning","detail":{"instance-id":"i-1"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := Parse([]byte(tt.data)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse() error = %v, want ErrMalformed", err)
			}
		})
	}
	if _, err := Parse([]byte(`{"version":"1","source":"aws.ec2","detail-type":"EC2 Spot Instance Interruption Warning","detail":{"instance-id":"i-1"}}`)); !errors.Is(err, ErrUnknown) {
		t.Errorf("a newer version is not ErrUnknown: %v", err)
	}
}

// FuzzParse feeds the event parser anything: it never panics, every error
// is ErrMalformed or ErrUnknown, and every notice it returns names
// instances and has a time, so its deadline is real.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"version":"0","source":"aws.ec2","detail-type":"EC2 Spot Instance Interruption Warning","detail":{"instance-id":"i-1"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknown) {
				t.Fatalf("Parse error %v is neither ErrMalformed nor ErrUnknown", err)
			}
			return
		}
		if n == nil {
			return
		}
		if n.Time.IsZero() || len(n.InstanceIDs) == 0 {
			t.Fatalf("notice without a time or an instance: %+v", n)
		}
		for _, id := range n.InstanceIDs {
			if !strings.HasPrefix(id, "i-") {
				t.Fatalf("instance id %q", id)
			}
		}
		if d := n.Deadline(); (n.Kind == SpotInterruption || n.Kind == CapacityReservationInterruption) && d.Sub(n.Time) != 2*time.Minute {
			t.Fatalf("deadline %v for a notice of %v", d, n.Time)
		}
	})
}
