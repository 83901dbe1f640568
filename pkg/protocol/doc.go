// Package protocol is draftbench's wire contract: every NATS subject
// (Subjects) and every message (the types with a "v" field), in one place.
//
// # Messages and versions
//
// Control messages are JSON. Each carries its major version in "v"; Encode
// stamps Version and validates, Decode checks the version before anything
// else (ErrVersion), then decodes and validates (ErrInvalid). Decoders ignore
// unknown fields, so adding an optional field keeps the version; a change an
// older reader would misread bumps it. Nothing here panics on bad input.
//
// # Frames
//
// Everything on a stage subject, and every step reply, is a frame: the JSON
// control message followed, between stages, by a tensor of hidden states
// (little-endian float32, row-major [positions, hidden]). Split cuts the
// payload (JSON bytes, then tensor bytes) into consecutive chunks that fit
// the server's max_payload with their headers; Draftbench-Frame/-Chunk/
// -Chunks/-Session ride on every chunk, Draftbench-Bytes/-Control/-DType/
// -Shape on chunk 0. An Assembler puts frames back together; chunks of
// different frames may interleave, chunks of one frame must arrive in order,
// which NATS guarantees for one publisher's messages to one subscriber. A
// message without these headers is a whole frame whose body is the JSON, so
// `nats req draftbench.stage.<instance>.0 '{"v":2,...}'` works (step
// messages are at StepVersion, 2; a sparse q travels as
// {"ids":"...","probs":"..."[,"kept":m]}: base64 of its little-endian ids
// and probabilities, and the mass of the drafter's distribution it kept;
// Encode writes a step's "q" list last, and Decode reads it there without
// encoding/json, any other order with it).
//
// # The step protocol
//
// A session driver sends a StepRequest for one session to stage 0 of a model
// instance (Subjects.Stage, in queue group StageQueue), with Reply set to its
// inbox (StepClient does this). Stage k runs the step in a batched forward
// pass and publishes the same request, ComputeNS increased by its pass, with
// the step's hidden rows to stage k+1; the last stage samples, drafts or
// verifies and publishes the StepReply on Reply. A stage that cannot run a
// step answers on Reply itself, its Error starting "stage <instance>/<k>:";
// later stages never see the step. Invariants:
//
//   - Order. A stage runs a session's steps in the order they arrive, at most
//     one per batch; a session's steps must come from one connection.
//   - CacheLen. Before feeding, every stage truncates the session's cache to
//     CacheLen; a cache holding fewer positions fails the step. Rollback
//     therefore travels with the next request: after a verify the last stage
//     holds CacheLen+len(Tokens)+Accepted (the reply's CacheLen) while the
//     earlier stages still hold CacheLen+Positions() until the next step
//     says otherwise. A driver always sends the length it wants, never
//     assumes one. A new session starts with CacheLen 0.
//   - Positions. prefill, decode and draft feed Tokens; verify feeds Tokens
//     then Drafts (Feed); the hidden rows between stages number Positions().
//   - Sampling. The last stage draws with sampling.NewRNG(Seed), fresh for
//     each step: prefill and decode draw once (nothing when greedy), draft
//     once per draft, verify as spec.Verify does. The same step from the same
//     cache length and seed gives the same answer.
//   - Draft (single-stage drafter only). The stage feeds Tokens, then each
//     draft but the last, drawing x_i from q_i = TopKSparse(Probs(logits),
//     DraftTopK) (greedy: the argmax, q_i = {x_i: 1}); the reply holds
//     x_1..x_γ, their q and CacheLen = CacheLen+len(Tokens)+Gamma-1, which is
//     spec.GenerateSpeculative's drafter invariant (x_γ is never fed).
//   - Verify. With S = prompt ++ output and the target holding S minus its
//     last token: CacheLen = len(S)-1, Tokens = S[len(S)-1:], Drafts and Q
//     from the draft reply. p_i are the target's distributions at the last
//     γ+1 positions; the reply's Tokens (accepted drafts, then the correction
//     or bonus token) extend S, and the last stage holds len(S)-1 again. The
//     drafter's next CacheLen is min(its reply's CacheLen, len(S)-1) and its
//     Tokens S[CacheLen:].
//   - A drafter split over stages drafts with γ decode steps and ReturnQ: the
//     token is then drawn from the sparse q it returns, not from the dense
//     distribution, so the target judges it by the q it came from.
//   - Release frees the session on every stage in order; the last stage
//     confirms when Reply is set. Releasing an unknown session is not an
//     error. Stages also free sessions idle past their timeout; the next step
//     with CacheLen > 0 then fails ("has no cache here").
//   - Compute. ComputeNS is the sum over stages of the wall time of the
//     forward passes the step took part in (a batched pass counts whole: the
//     step waited for it); the driver reports wall time minus it as
//     coordination overhead.
package protocol
