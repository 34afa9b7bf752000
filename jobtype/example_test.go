package jobtype_test

import (
	"fmt"

	"github.com/jobfleet/jobfleet/jobtype"
)

func ExampleParse() {
	reg, err := jobtype.Parse("jobtypes.yaml", []byte(`
pools:
  - name: cpu
    sizes: [1Gi, 2Gi, 4Gi]
types:
  - name: feature-export
    image: ghcr.io/acme/export:1.4
    command: [export]
    pool: cpu
    features: [rows]
`))
	if err != nil {
		panic(err)
	}
	t, _ := reg.Type("feature-export")
	pool, _ := reg.Pool(t.Pool)
	size, _ := pool.SizeFor(1500 << 20)
	fmt.Println(t.Spot, t.MaxAttempts, t.Checkpoint.Interval, jobtype.SizeName(size))

	_, err = jobtype.Parse("jobtypes.yaml", []byte(`
pools: [{name: cpu}]
types:
  - name: export
    image: img
    pool: gpu
`))
	fmt.Println(err)
	// Output:
	// prefer-spot 3 5m0s 2gi
	// invalid job type registry (2 problems):
	//   jobtypes.yaml:4: types[0].command: required
	//   jobtypes.yaml:6: types[0].pool: "gpu" is not a pool defined in this file (pools: cpu)
}
