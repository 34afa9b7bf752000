// Package jobfleet holds the job message contract: the JSON document that
// producers publish to jobfleet's intake queue and that every other part of
// jobfleet reads.
//
// A job message names a job type that the platform team registered, carries
// the parameters and the numeric features the memory predictor reads, and, on
// reruns, the history of earlier attempts and the location of the last
// checkpoint:
//
//	{
//	  "version": 1,
//	  "id": "train-2026-11-22-0001",
//	  "type": "train-ranker",
//	  "params": {"epochs": 20},
//	  "features": {"rows": 1.2e7, "model_params": 3.5e8},
//	  "priority": 5
//	}
//
// [Decode] is strict: it rejects unknown versions, unknown fields, wrong types
// and invalid values with errors that match the sentinels in this package
// through [errors.Is]. The JSON Schema published in docs/job-message.schema.json
// accepts and rejects the same documents.
//
// Producers publish with a [Publisher], which validates every job before it
// is sent and sends them to SQS in batches of ten.
package jobfleet
