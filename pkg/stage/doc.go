// Package stage serves one shard of a model (a contiguous layer range) over
// NATS: the unit the worker runs per device group and the controller's
// session drivers talk to through protocol.StepClient.
//
//	s, err := stage.New(stage.Config{
//		ModelDir: dir, First: 0, Last: 18, Backend: b,
//		Conn: nc, Instance: "target-7d5e", Index: 0, Count: 2, Logger: log,
//	})
//	go s.Serve(ctx)
//	<-s.Ready() // subscribed: steps sent from now on are not lost
//
// Serve subscribes to protocol.Subjects.Stage(Instance, Index) in the stage
// queue group. Steps are reassembled and decoded as they arrive; one serving
// goroutine takes everything that queued up while the previous forward pass
// ran and runs it as one batched model.Forward (one GEMM per projection for
// all sessions), bounded by MaxBatchTokens and holding at most one step per
// session, so a session's steps keep their order. A single step larger than
// the budget runs alone. On the last stage the draft steps of a batch then
// continue in lockstep, one batched pass per extra draft.
//
// Each session has a KV cache per stage, created by its first step
// (CacheLen 0), truncated to each step's CacheLen, freed by a release step or
// after IdleTimeout without steps. The wire invariants (CacheLen, sampling
// seeds, the drafter's cache after a draft, rollback after a verify) are
// documented in package protocol.
//
// A stage never stops on a bad message: anything that cannot be decoded, a
// step that does not fit the stage (hidden states of the wrong shape, a draft
// on a split model, a CacheLen the cache cannot meet, a token outside the
// vocabulary, a step past the context) is answered with a StepReply whose
// Error names the stage and the reason, and the rest of the batch runs. When
// a batched pass fails, its steps are rerun one by one so that only the
// faulty one fails.
package stage
