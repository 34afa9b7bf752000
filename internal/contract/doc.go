// Package contract holds every contract that two of jobfleet's components
// share, and nothing else: the S3 objects through which the dispatcher, the
// failure sensor, the interruption controller and the worker coordinate, with
// their conditional reads and writes; the annotations the interruption
// controller sets on pods; the message attributes of forwarded jobs; and the
// worker's environment, written by one function and read by one function.
//
// It is a leaf: it imports the job message contract and the AWS SDK's S3
// types, never a component, so the dispatcher need not import the worker (and
// its Linux-only code) to read a claim, and the worker's build stays small.
//
// The objects live under one prefix of one bucket:
//
//	<prefix>/jobs/<job id>/run.json                           the job's current run (Run)
//	<prefix>/jobs/<job id>/runs/<run>/attempts/<n>.json       who runs attempt n, and how it ended (Claim)
//	<prefix>/jobs/<job id>/runs/<run>/checkpoint/...          the run's checkpoint (manifest and objects)
//	<prefix>/pods/<namespace>/<pod>.json                      which attempt a pod runs (PodIndex)
//	<prefix>/pods/<namespace>/<pod>.stop.json                 when the pod must be gone (StopNotice)
//
// Every object that two writers may race on is written with S3 conditional
// writes: created with If-None-Match: * and replaced with If-Match on the
// ETag that was read, so a writer that lost a race learns it ([ErrConflict])
// instead of overwriting the winner. Every such object carries a sequence
// number that each write increments, so no write ever produces the ETag of an
// earlier version.
package contract
