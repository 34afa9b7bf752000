// Package faults is jobfleet's fault-matrix test tier (make faults): it runs
// the real dispatcher and worker processes against the real SQS emulator and
// S3 server, injects one fault per scenario (a signal at a given state of a
// worker's attempt, SQS or S3 unreachable for a while, the dispatcher
// killed, a class queue deleted), and counts the jobs lost, run twice and
// stranded. docs/reliability.md records the matrix and its figures.
package faults
