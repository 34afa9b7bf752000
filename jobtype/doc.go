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
//	    archs: [amd64, arm64]
//	    spotPercent: 60
//	    sizes: [512Mi, 1Gi, 2Gi, 4Gi, 8Gi, 16Gi]
//	  - name: gpu
//	    gpu: true
//	    ami: al2023@v20251117
//	    limits: {nvidia.com/gpu: "16"}
//	types:
//	  - name: feature-export
//	    image: ghcr.io/acme/export:1.4
//	    command: [python, -m, export]
//	    pool: cpu
//	    archs: [amd64, arm64]
//	    predictor: {features: [rows]}
//	    memory: {min: 256Mi, default: 2Gi, max: 16Gi}
//
// # Pools
//
// A pool is where a type's pods run. `jobfleet nodepools` renders its
// Karpenter NodePools and EC2NodeClass from the same settings the
// dispatcher's pod templates come from, so the two always agree:
//
//   - name: 1-12 lower-case letters or digits, used in class names.
//   - nodePool: the NodePool's name (default jobfleet-<name>); a split pool
//     has two, <nodePool>-spot and <nodePool>-on-demand.
//   - gpu: a GPU pool; its nodes carry the nvidia.com/gpu:NoSchedule taint
//     unless tolerations name others, and only GPU types run there.
//   - arch or archs: the CPU architectures of its nodes (default amd64). A
//     pool of both doubles the spot capacity a type whose image has both can
//     use.
//   - capacityTypes: spot, on-demand or both (the default).
//   - spotPercent: a multiple of 5 from 5 to 95, the share of the pool's
//     pods on spot nodes, the rest on on-demand ones; Karpenter's
//     topology-spread pattern over two NodePools and the
//     jobfleet.io/capacity-spread label. Types that must run on one capacity
//     (spot: spot or on-demand) and reruns moved to on-demand are not
//     spread.
//   - sizes: the ladder predictions are rounded up to (default 256Mi to
//     128Gi).
//   - tolerations: taints of the pool's nodes, key[=value]:effect.
//   - instanceTypes, instanceFamilies: limit what Karpenter may launch.
//   - limits: the most the pool's NodePools may launch in total (cpu,
//     memory, nvidia.com/gpu), shared between a split pool's two NodePools
//     in its ratio.
//   - consolidateAfter: how long a node stays empty before it is removed
//     (default 1m). Consolidation is WhenEmpty: a running job is never moved
//     to pack nodes tighter.
//   - expireAfter: the longest a node lives; at least the longest attempt
//     of the pool's types (maxRuntime plus grace), default the longer of 30
//     days and twice that. Draining nodes give their pods that long too.
//   - ami: the EC2NodeClass's AMI alias (default al2023@latest). The
//     NodePools' budgets never replace a drifted node under a job, so with
//     @latest busy nodes keep their AMI until they empty; pin the version on
//     GPU pools.
//   - rootVolume: size, iops and throughput of the encrypted gp3 root
//     volume; GPU pools default to 200Gi, 10000 iops and 1000 MiB/s for
//     multi-GB images, others to 50Gi, 3000 and 125.
//
// # Types
//
// A type names its image, command and pool, and, optionally: archs (the
// architectures its image is built for; default its pool's one, or amd64 on
// a pool of both), cpu, gpu {count, kind}, spot (prefer-spot, spot,
// on-demand), predictor {groupBy: the job labels the predictor groups the
// type's runs by; features: the only job features it reads for the type,
// also accepted as the type's features}, memory {min, default, max}, checkpoint {dir,
// interval, stopGrace, uploadGrace}, maxRuntime, maxAttempts, maxReplicas,
// doNotDisrupt, env and mode (command or library).
//
// [Load] reports every problem in the file at once, each with its file and
// line, so a platform engineer fixes them in one pass.
package jobtype
