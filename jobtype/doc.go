// Package jobtype loads the registry of job types and pools that the platform
// team writes: which image and command a job type runs, on which Karpenter
// pool, with what GPU, spot policy, memory bounds, checkpoint interval and
// retry budget. A job message names a type from this registry and can change
// none of it.
//
// The registry is one YAML file (mounted from a ConfigMap in Kubernetes):
//
//	pools:
//	  - name: cpu
//	    nodePool: jobfleet-cpu
//	    sizes: [512Mi, 1Gi, 2Gi, 4Gi, 8Gi, 16Gi]
//	types:
//	  - name: feature-export
//	    image: ghcr.io/acme/export:1.4
//	    command: [python, -m, export]
//	    pool: cpu
//	    features: [rows]
//	    memory: {min: 256Mi, default: 2Gi, max: 16Gi}
//
// [Load] reports every problem in the file at once, each with its file and
// line, so a platform engineer fixes them in one pass.
package jobtype
