// Package local carries the files of jobfleet's local stack that the
// jobfleet binary needs at run time: the pinned npm package of the SQS
// emulator (fauxqs and a Node 22 runtime) and its loopback-only launcher.
package local

import "embed"

// SQS holds package.json, package-lock.json and serve.mjs of the SQS
// emulator, under sqs/.
//
//go:embed sqs/package.json sqs/package-lock.json sqs/serve.mjs
var SQS embed.FS
