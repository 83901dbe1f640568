// Package jobstore keeps the jobs of `controller serve` in JetStream and
// serves them to the client commands (submit, status, tail, cancel), as
// DESIGN §5 asks: a restarted controller still knows its jobs, and `tail
// --from-start` replays a finished one.
//
// # What is stored
//
// Job state lives in a KV bucket (BucketName: DRAFTBENCH_JOBS under the
// default prefix): the key is the job id, the value the protocol.JobStatus
// JSON. Results live in a stream (StreamName: DRAFTBENCH_RESULTS) on
// <prefix>.results.>:
//
//	<prefix>.results.<job>.requests  one metrics.Request per finished request, the line requests.jsonl holds
//	<prefix>.results.<job>.progress  a protocol.JobStatus at every change of state or counts
//	<prefix>.results.<job>.summary   the benchmark_results.json object, once, when the job ends with results
//
// Every job ends with a progress message in a final state (succeeded,
// failed, cancelled), which is how a reader knows the job is over; a
// summary, when there is one, comes before it.
//
// # Limits
//
// Both live in file storage with one replica unless Options say otherwise.
// The results stream keeps messages for DefaultMaxAge (30 days) and at most
// DefaultMaxBytes (1 GiB), dropping the oldest first; one message is at most
// the server's max_payload (1 MiB by default), which bounds the summary: a
// larger one is not published (the file in the output folder has it). Job
// states are small and kept until deleted by hand. A bucket or stream that
// already exists (an operator made it, or an earlier controller) is used as
// it is, so limits tuned with the nats CLI stay.
//
// # Subjects this package adds
//
// DESIGN §5 lists no subject for listing; the controller answers two more
// requests: JobsList (<prefix>.jobs.list → JobList) and WorkersList
// (<prefix>.workers.list → WorkerList). Both replies are JSON with a "v"
// field like the protocol messages.
package jobstore
