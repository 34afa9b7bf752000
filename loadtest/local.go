package loadtest

// LocalRegistry is the job types of a load test on the local stack
// (`jobfleet loadtest --local`): three CPU types of growing size, one of
// them on spot, and one GPU type.
const LocalRegistry = `
pools:
  - name: cpu
  - name: gpu
    gpu: true
types:
  - {name: lt-small, image: x, command: [x], pool: cpu, memory: {default: 512Mi}}
  - {name: lt-medium, image: x, command: [x], pool: cpu, memory: {default: 4Gi}}
  - {name: lt-bulk, image: x, command: [x], pool: cpu, spot: spot, memory: {default: 16Gi}}
  - {name: lt-gpu, image: x, command: [x], pool: gpu, gpu: {count: 1}, memory: {default: 24Gi}}
`

// LocalMix returns the weights LocalRegistry's types are published with.
func LocalMix() map[string]float64 {
	return map[string]float64{"lt-small": 4, "lt-medium": 3, "lt-bulk": 2, "lt-gpu": 1}
}
