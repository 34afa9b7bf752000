package dispatcher

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/dispatcher/interruption"
	"github.com/jobfleet/jobfleet/jobtype"
)

// matches evaluates required node affinity for a node's labels.
func matches(a *corev1.Affinity, labels map[string]string) bool {
	if a == nil {
		return true
	}
	for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		ok := true
		for _, e := range term.MatchExpressions {
			if e.Operator == corev1.NodeSelectorOpNotIn && slices.Contains(e.Values, labels[e.Key]) {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func TestAvoidAffinityExcludesExactlyThePairs(t *testing.T) {
	t.Parallel()
	pairs := []interruption.Pair{{InstanceType: "g5.xlarge", Zone: "us-east-2a"}, {InstanceType: "g5.xlarge", Zone: "us-east-2b"}, {InstanceType: "m7i.large", Zone: "us-east-2a"}, {InstanceType: "c7i.large", Zone: "us-east-2c"}}
	tmpl := Template{Avoid: func() []interruption.Pair { return pairs }}
	aff := tmpl.affinity(Class{AvoidInterrupted: true}, &jobtype.Type{Archs: []string{"amd64"}})
	for _, typ := range []string{"g5.xlarge", "m7i.large", "c7i.large", "r7i.large"} {
		for _, zone := range []string{"us-east-2a", "us-east-2b", "us-east-2c"} {
			avoided := slices.Contains(pairs, interruption.Pair{InstanceType: typ, Zone: zone})
			if got := matches(aff, map[string]string{LabelInstanceType: typ, LabelZone: zone}); got == avoided {
				t.Errorf("%s in %s: schedulable = %v, avoided = %v", typ, zone, got, avoided)
			}
		}
	}
	if a := (Template{Avoid: func() []interruption.Pair { return nil }}).affinity(Class{AvoidInterrupted: true}, &jobtype.Type{Archs: []string{"amd64"}}); a != nil {
		t.Errorf("no pairs to avoid gives affinity %+v", a)
	}
	if a := tmpl.affinity(Class{}, &jobtype.Type{Archs: []string{"amd64"}}); a != nil {
		t.Error("a first attempt's class avoids pairs")
	}
}

func TestRerunOfInterruptedJobAvoids(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	typ, _ := reg.Type("export")
	pool, _ := reg.Pool(typ.Pool)
	job := &jobfleet.Job{Version: 1, ID: "j", Type: "export"}
	once := jobfleet.History{{Attempt: 1, Reason: jobfleet.ReasonInterrupted}}
	if d := (Sizing{}).Decide(job, once, typ, pool, nil); !d.Class.AvoidInterrupted || d.Class.Name("jobfleet") != "jobfleet-export-cpu-1gi-ri" {
		t.Errorf("once interrupted: %+v %s", d.Class, d.Class.Name("jobfleet"))
	}
	twice := jobfleet.History{{Attempt: 1, Reason: jobfleet.ReasonInterrupted}, {Attempt: 2, Reason: jobfleet.ReasonInterrupted}}
	if d := (Sizing{}).Decide(job, twice, typ, pool, nil); d.Class.AvoidInterrupted || d.Class.Capacity != CapacityOnDemand {
		t.Errorf("twice interrupted: %+v, want on-demand without avoidance", d.Class)
	}
}
