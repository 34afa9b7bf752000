// Package e2e holds jobfleet's end-to-end tests: job messages published to
// SQS run through the real dispatcher, KEDA operator, Karpenter (its KWOK
// provider), kube-scheduler and Job controller, on simulated nodes whose
// pods the test environment runs as local processes. See docs/testing.md.
package e2e
