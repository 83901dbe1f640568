package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/draftbench/draftbench/pkg/sampling"
)

// Op is what a step request asks of a pipeline.
type Op string

const (
	// OpPrefill feeds a prompt (Tokens) and samples the next token at the last stage.
	OpPrefill Op = "prefill"
	// OpDecode feeds Tokens (usually the one token sampled last) and samples the next.
	OpDecode Op = "decode"
	// OpDraft runs Gamma autoregressive drafter steps inside a single-stage
	// model and returns the drafts with the q each was drawn from.
	OpDraft Op = "draft"
	// OpVerify feeds Tokens then Drafts, forms the target's p at the last
	// len(Drafts)+1 positions and applies the acceptance rule (spec.Verify).
	OpVerify Op = "verify"
	// OpRelease frees the session's caches on every stage.
	OpRelease Op = "release"
)

// MaxGamma bounds the drafts of one request.
const MaxGamma = 256

// Sampling carries the knobs that shape the distributions at the last stage.
type Sampling struct {
	Temperature float64 `json:"temperature"` // 0: greedy
	TopK        int     `json:"top_k,omitempty"`
	TopP        float64 `json:"top_p,omitempty"`
	VocabLimit  int     `json:"vocab_limit,omitempty"`
	// DraftTopK is the size of the sparse q a drafter returns: 0 means
	// spec.DefaultDraftTopK, negative the whole support.
	DraftTopK int `json:"draft_top_k,omitempty"`
}

// Params is the sampling package's view of s.
func (s Sampling) Params() sampling.Params {
	return sampling.Params{Temperature: s.Temperature, TopK: s.TopK, TopP: s.TopP, VocabLimit: s.VocabLimit}
}

// Sparse is a draft distribution q on the wire: ids and their probabilities,
// in the order sampling.TopKSparse gives. Probabilities round-trip JSON
// exactly (float32 shortest form), so the target judges a draft by the very
// q it was drawn from.
type Sparse struct {
	IDs   []int32   `json:"ids"`
	Probs []float32 `json:"probs"`
	// Kept is the drafter's mass the cut kept (sampling.Sparse.Kept; 0:
	// unknown): the driver reports it, the rule does not read it.
	Kept float32 `json:"kept,omitempty"`
}

// sparseWire is Sparse on the wire: each slice as base64 of its
// little-endian bytes. A q of Qwen3's whole vocabulary is 1.2 MB this way;
// as JSON numbers it was about 3 MB, and formatting and parsing them cost
// more than the step's messaging (docs/perf.md).
type sparseWire struct {
	IDs   []byte  `json:"ids"`
	Probs []byte  `json:"probs"`
	Kept  float32 `json:"kept,omitempty"`
}

// MarshalJSON writes s as sparseWire (appendJSON).
func (s Sparse) MarshalJSON() ([]byte, error) { return s.appendJSON(nil) }

// appendJSON appends s as sparseWire to out, base64 written straight into it
// (a whole q of a large vocabulary is megabytes; docs/perf.md), so Encode
// writes a step's q's into the message without a copy each.
func (s Sparse) appendJSON(out []byte) ([]byte, error) {
	enc := base64.StdEncoding
	raw := make([]byte, 4*max(len(s.IDs), len(s.Probs)))
	out = slices.Grow(out, 40+enc.EncodedLen(4*len(s.IDs))+enc.EncodedLen(4*len(s.Probs)))
	out = append(out, `{"ids":"`...)
	for i, id := range s.IDs {
		binary.LittleEndian.PutUint32(raw[4*i:], uint32(id))
	}
	out = enc.AppendEncode(out, raw[:4*len(s.IDs)])
	out = append(out, `","probs":"`...)
	for i, p := range s.Probs {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(p))
	}
	out = enc.AppendEncode(out, raw[:4*len(s.Probs)])
	out = append(out, '"')
	if s.Kept != 0 {
		k, err := json.Marshal(s.Kept)
		if err != nil {
			return nil, fmt.Errorf("sparse q: kept: %w", err)
		}
		out = append(append(out, `,"kept":`...), k...)
	}
	return append(out, '}'), nil
}

// UnmarshalJSON reads sparseWire: the form MarshalJSON writes directly,
// anything else through encoding/json.
func (s *Sparse) UnmarshalJSON(data []byte) error {
	w, ok := fastSparseWire(data)
	if !ok {
		if err := json.Unmarshal(data, &w); err != nil {
			return fmt.Errorf("sparse q: %w", err)
		}
	}
	return s.fromWire(w)
}

// fromWire sets s from its wire form.
func (s *Sparse) fromWire(w sparseWire) error {
	if len(w.IDs)%4 != 0 || len(w.Probs)%4 != 0 {
		return fmt.Errorf("sparse q: %d bytes of ids and %d of probs, not whole 4-byte values", len(w.IDs), len(w.Probs))
	}
	s.IDs, s.Probs, s.Kept = make([]int32, len(w.IDs)/4), make([]float32, len(w.Probs)/4), w.Kept
	for i := range s.IDs {
		s.IDs[i] = int32(binary.LittleEndian.Uint32(w.IDs[4*i:]))
	}
	for i := range s.Probs {
		s.Probs[i] = math.Float32frombits(binary.LittleEndian.Uint32(w.Probs[4*i:]))
	}
	return nil
}

// fastSparseWire reads exactly the form MarshalJSON writes,
// {"ids":"B64","probs":"B64"} with an optional ,"kept":NUMBER, without a
// second pass of encoding/json over the base64; ok is false for any other
// form (other order, spaces, escapes), which encoding/json then reads.
func fastSparseWire(data []byte) (w sparseWire, ok bool) {
	str := func(prefix string) ([]byte, bool) {
		if !bytes.HasPrefix(data, []byte(prefix)) {
			return nil, false
		}
		data = data[len(prefix):]
		end := bytes.IndexByte(data, '"')
		if end < 0 {
			return nil, false
		}
		enc := data[:end]
		data = data[end+1:]
		dec := make([]byte, base64.StdEncoding.DecodedLen(len(enc)))
		n, err := base64.StdEncoding.Decode(dec, enc)
		if err != nil {
			return nil, false
		}
		return dec[:n], true
	}
	if w.IDs, ok = str(`{"ids":"`); !ok {
		return w, false
	}
	if w.Probs, ok = str(`,"probs":"`); !ok {
		return w, false
	}
	if rest, found := bytes.CutPrefix(data, []byte(`,"kept":`)); found {
		end := bytes.IndexByte(rest, '}')
		if end < 0 {
			return w, false
		}
		var k float32
		if err := json.Unmarshal(rest[:end], &k); err != nil {
			return w, false
		}
		w.Kept, data = k, rest[end:]
	}
	return w, string(data) == "}"
}

// SparseOf converts the sampling package's Sparse.
func SparseOf(s sampling.Sparse) Sparse { return Sparse(s) }

// Sampling converts s back.
func (s Sparse) Sampling() sampling.Sparse { return sampling.Sparse(s) }

func (s Sparse) validate() error {
	if len(s.IDs) != len(s.Probs) {
		return fmt.Errorf("%d ids but %d probs", len(s.IDs), len(s.Probs))
	}
	for j, id := range s.IDs {
		p := s.Probs[j]
		if id < 0 || !(p >= 0) || math.IsInf(float64(p), 0) {
			return fmt.Errorf("entry %d: id %d with probability %v", j, id, p)
		}
	}
	return nil
}

// StepRequest is one step of one session, sent by a session driver to stage
// 0 of a model instance and forwarded, hidden states attached, from stage k to
// k+1 (see the package documentation for the invariants).
type StepRequest struct {
	V       int       `json:"v"`
	Session uuid.UUID `json:"session"`
	Op      Op        `json:"op"`
	// CacheLen is the number of positions the session's cache must hold
	// before this step. A stage holding more truncates to it (the rollback
	// after rejected drafts travels this way); a stage holding fewer fails
	// the step.
	CacheLen int `json:"cache_len"`
	// Tokens are fed in order (all ops but release).
	Tokens []int `json:"tokens,omitempty"`
	// Gamma is the number of drafts to propose (draft).
	Gamma int `json:"gamma,omitempty"`
	// Drafts x_1..x_γ are fed after Tokens (verify).
	Drafts []int `json:"drafts,omitempty"`
	// Q holds the distribution each draft was drawn from (verify; unused
	// when greedy).
	Q        []Sparse `json:"q,omitempty"`
	Sampling Sampling `json:"sampling"`
	// Seed seeds the last stage's rng for this step alone, so a step samples
	// the same way whatever else runs; the driver derives it from the job
	// seed, the request and the round.
	Seed uint64 `json:"seed"`
	// ReturnQ asks a decode step to sample from the sparse top-k q (as a
	// drafter does) and return it: how a drafter split over several stages
	// drafts, one decode per token.
	ReturnQ bool `json:"return_q,omitempty"`
	// Reply is the subject the last stage (or a failing stage) answers on.
	Reply string `json:"reply,omitempty"`
	// ComputeNS is the forward time spent on this step so far; each stage
	// adds its own before forwarding.
	ComputeNS int64 `json:"compute_ns,omitempty"`
}

func (m *StepRequest) version() *int     { return &m.V }
func (m *StepRequest) qField() *[]Sparse { return &m.Q }
func (m *StepRequest) withoutQ() (Message, []Sparse) {
	c := *m
	c.Q = nil
	return &c, m.Q
}
func (m *StepRequest) wireVersion() int { return StepVersion }

// keepHead reads the session, op and reply subject of a step request of
// another version, each as far as it decodes (a field of another type is
// left out, not the others).
func (m *StepRequest) keepHead(data []byte) {
	var raw map[string]json.RawMessage
	if json.Unmarshal(data, &raw) != nil {
		return
	}
	_ = json.Unmarshal(raw["session"], &m.Session)
	_ = json.Unmarshal(raw["op"], &m.Op)
	_ = json.Unmarshal(raw["reply"], &m.Reply)
}
func (*StepRequest) kind() string { return "step request" }

// Positions is the number of positions the step adds to each stage's cache
// in its batched forward pass (a draft adds Gamma-1 more at the last stage).
func (m *StepRequest) Positions() int {
	switch m.Op {
	case OpRelease:
		return 0
	case OpVerify:
		return len(m.Tokens) + len(m.Drafts)
	}
	return len(m.Tokens)
}

// Feed is what the first stage feeds: Tokens, then Drafts for verify.
func (m *StepRequest) Feed() []int {
	if m.Op != OpVerify {
		return m.Tokens
	}
	return append(append(make([]int, 0, len(m.Tokens)+len(m.Drafts)), m.Tokens...), m.Drafts...)
}

// Validate implements Message.
func (m *StepRequest) Validate() error {
	if m.Session == uuid.Nil {
		return errors.New("session is the nil UUID")
	}
	switch m.Op {
	case OpPrefill, OpDecode, OpDraft, OpVerify, OpRelease:
	default:
		return fmt.Errorf("op %q is not one of prefill, decode, draft, verify, release", m.Op)
	}
	if m.CacheLen < 0 {
		return fmt.Errorf("cache_len %d is negative", m.CacheLen)
	}
	if m.ComputeNS < 0 {
		return fmt.Errorf("compute_ns %d is negative", m.ComputeNS)
	}
	if m.Op == OpRelease {
		return nil
	}
	if m.Reply == "" {
		return fmt.Errorf("%s step has no reply subject", m.Op)
	}
	if len(m.Tokens) == 0 {
		return fmt.Errorf("%s step has no tokens", m.Op)
	}
	for i, t := range m.Tokens {
		if t < 0 {
			return fmt.Errorf("token %d is %d", i, t)
		}
	}
	if err := m.Sampling.Params().Validate(); err != nil {
		return err
	}
	if m.ReturnQ && m.Op != OpDecode && m.Op != OpPrefill {
		return fmt.Errorf("return_q applies to prefill and decode, not %s", m.Op)
	}
	switch m.Op {
	case OpDraft:
		if m.Gamma < 1 || m.Gamma > MaxGamma {
			return fmt.Errorf("gamma %d is not in [1, %d]", m.Gamma, MaxGamma)
		}
	case OpVerify:
		if len(m.Drafts) < 1 || len(m.Drafts) > MaxGamma {
			return fmt.Errorf("%d drafts is not in [1, %d]", len(m.Drafts), MaxGamma)
		}
		for i, t := range m.Drafts {
			if t < 0 {
				return fmt.Errorf("draft %d is token %d", i+1, t)
			}
		}
		if m.Sampling.Temperature > 0 && len(m.Q) != len(m.Drafts) {
			return fmt.Errorf("%d draft distributions for %d drafts", len(m.Q), len(m.Drafts))
		}
	}
	for i, q := range m.Q {
		if err := q.validate(); err != nil {
			return fmt.Errorf("q %d: %w", i+1, err)
		}
	}
	return nil
}

// StepReply is the last stage's answer to a StepRequest, or any stage's
// answer to a step it could not run.
type StepReply struct {
	V       int       `json:"v"`
	Session uuid.UUID `json:"session"` // nil only in the error reply to a message that named none
	Op      Op        `json:"op,omitempty"`
	// Tokens are the emitted tokens: the sampled token (prefill, decode), the
	// drafts (draft), or the accepted drafts then the correction or bonus
	// token (verify).
	Tokens []int `json:"tokens,omitempty"`
	// Q is the distribution each of Tokens was drawn from (draft; decode
	// with ReturnQ).
	Q []Sparse `json:"q,omitempty"`
	// Margins, for greedy prefill, decode and verify, hold the
	// sampling.Margin of the target logits each of Tokens was chosen from.
	Margins []float32 `json:"margins,omitempty"`
	// Accepted and AcceptedByPosition are the verdict (verify).
	Accepted           int    `json:"accepted,omitempty"`
	AcceptedByPosition []bool `json:"accepted_by_position,omitempty"`
	// CacheLen is the last stage's cache length after the step (after the
	// verify rollback). Earlier stages may hold more until the next request.
	CacheLen int `json:"cache_len"`
	// ComputeNS is the sum of the stages' forward times for this step; the
	// driver reports wall time minus it as coordination overhead.
	ComputeNS int64 `json:"compute_ns"`
	// Stage is the index of the stage that answered.
	Stage int `json:"stage"`
	// Error, when set, says that the step failed, which stage failed it and
	// why; nothing else in the reply is meaningful then.
	Error string `json:"error,omitempty"`
}

func (m *StepReply) version() *int     { return &m.V }
func (m *StepReply) qField() *[]Sparse { return &m.Q }
func (m *StepReply) withoutQ() (Message, []Sparse) {
	c := *m
	c.Q = nil
	return &c, m.Q
}
func (m *StepReply) wireVersion() int { return StepVersion }
func (*StepReply) kind() string       { return "step reply" }

// Err returns the reply's error, or nil for a successful step.
func (m *StepReply) Err() error {
	if m.Error == "" {
		return nil
	}
	return errors.New(m.Error)
}

// Compute is ComputeNS as a duration.
func (m *StepReply) Compute() time.Duration { return time.Duration(m.ComputeNS) }

// Validate implements Message.
func (m *StepReply) Validate() error {
	if m.Error != "" {
		return nil
	}
	if m.Session == uuid.Nil {
		return errors.New("session is the nil UUID")
	}
	if m.CacheLen < 0 || m.ComputeNS < 0 || m.Stage < 0 {
		return fmt.Errorf("cache_len %d, compute_ns %d, stage %d: none may be negative", m.CacheLen, m.ComputeNS, m.Stage)
	}
	switch m.Op {
	case OpPrefill, OpDecode, OpDraft, OpRelease:
	case OpVerify:
		if m.Accepted < 0 || len(m.Tokens) != m.Accepted+1 || len(m.AcceptedByPosition) < m.Accepted {
			return fmt.Errorf("verdict: %d accepted, %d tokens, %d positions", m.Accepted, len(m.Tokens), len(m.AcceptedByPosition))
		}
	default:
		return fmt.Errorf("op %q is not one of prefill, decode, draft, verify, release", m.Op)
	}
	for i, t := range m.Tokens {
		if t < 0 {
			return fmt.Errorf("token %d is %d", i, t)
		}
	}
	if len(m.Q) != 0 && len(m.Q) != len(m.Tokens) {
		return fmt.Errorf("%d distributions for %d tokens", len(m.Q), len(m.Tokens))
	}
	for i, q := range m.Q {
		if err := q.validate(); err != nil {
			return fmt.Errorf("q %d: %w", i+1, err)
		}
	}
	return nil
}
