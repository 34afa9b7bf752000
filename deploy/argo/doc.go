// Package argo holds jobfleet's Argo Workflows manifests, validated by its
// tests against Argo's CRDs:
//
//   - jobfleet-job.yaml, a WorkflowTemplate whose submit step runs
//     `jobfleet submit --wait` in a tiny pod on an always-on node, retried
//     only on jobfleet's own errors (exit 3);
//   - train-sweep.yaml, an example DAG: prepare, a sweep of three trainings,
//     evaluate, and register only when the metric passes.
//
// See docs/workflows.md.
package argo
