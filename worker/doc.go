// Package worker runs jobs inside their pods: `jobfleet worker -- <command>`
// wraps a job type's command, and Run serves handlers written in Go.
//
// For each message it receives from its class queue, a worker
//
//  1. validates the job message (poison messages are dead-lettered with the
//     reason attached);
//  2. claims the attempt in S3 with a conditional put, so that a job id and
//     attempt runs at most once even when SQS or the dispatcher delivers it
//     twice;
//  3. restores the job's last complete checkpoint into its checkpoint
//     directory;
//  4. runs the job, extending the message's visibility every third of the
//     timeout so it never reappears while the job runs, and uploading the
//     checkpoint directory every checkpoint interval;
//  5. on SIGTERM forwards the signal, waits for the job within the grace
//     period minus the upload margin, uploads the final checkpoint and
//     requeues the job (reason interrupted or evicted, which spend no retry);
//  6. on failure classifies it (an OOM kill reruns with more memory) and
//     requeues it or, when its retry budget is spent, dead-letters it;
//  7. sends a run record with the peak memory it measured, marks the claim
//     finished, and only then deletes the message.
//
// A job never disappears without a run record and either a rerun or a
// dead letter: the message is deleted last, so a worker that dies leaves it
// to reappear for another.
//
// Checkpoints are stored content-addressed: each distinct file content once
// under objects/<sha256>, then a manifest naming them. A partial upload is
// never mistaken for a complete checkpoint, because the manifest is written
// last and names only objects already stored.
package worker
