// Package worker runs jobs inside their pods: `jobfleet worker -- <command>`
// wraps a job type's command, and Run serves handlers written in Go (a job
// type in `mode: library`). Both take their configuration from the JOBFLEET_*
// environment jobfleet's pod template writes (FromEnv).
//
// For each message it receives from its class queue, a worker
//
//  1. validates the job message (poison messages are dead-lettered with the
//     reason attached) and checks its run and attempt against jobfleet's
//     records in S3, from which it takes the run's history: a message that
//     claims a rerun jobfleet did not make is dead-lettered;
//  2. claims the attempt in S3 with a conditional put and renews the claim as
//     a lease while it extends the message's visibility, so that an attempt
//     runs at most once even when SQS or the dispatcher delivers it twice;
//  3. restores the run's last complete checkpoint into its checkpoint
//     directory (a run's first attempt starts empty);
//  4. runs the job, uploading the checkpoint directory every checkpoint
//     interval;
//  5. on SIGTERM forwards the signal, waits for the job within its share of
//     the time left before the stop deadline (the grace period, or an earlier
//     deadline the interruption controller announced), uploads the final
//     checkpoint and requeues the job (reason interrupted or evicted, which
//     spend no retry);
//  6. on failure classifies it (an OOM kill reruns with more memory; a
//     panicking Go handler fails) and requeues it or, when its retry budget is
//     spent, dead-letters it;
//  7. records the outcome and what follows in the claim first, and only then
//     sends the run record, the rerun or dead letter, and deletes the message.
//
// Each step of this lifecycle (State) has a deadline, and SIGTERM is honoured
// in every one. A job never disappears without a run record and either a
// rerun or a dead letter, and never both reruns and carries on: the outcome
// is in the claim before anything follows, and the message is deleted last,
// so a worker that dies leaves it to come back to another, which finishes
// what the claim says.
//
// Checkpoints are stored content-addressed: each distinct file content once
// under objects/<sha256>, then a manifest naming them. A partial upload is
// never mistaken for a complete checkpoint, because the manifest is written
// last and names only objects already stored.
package worker
