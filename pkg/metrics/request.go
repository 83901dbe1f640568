// Package metrics turns the client-side records of benchmark requests into the figures of the
// results files: per-mode summaries, speculative acceptance figures and the speculative-vs-target
// comparison. The JSON keys of its types are the contract of DESIGN §7.
package metrics

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Mode is the decoding mode a request ran in.
type Mode string

// The two modes a job compares.
const (
	ModeSpeculative Mode = "speculative"
	ModeTarget      Mode = "target"
)

// Valid reports whether m is one of the known modes.
func (m Mode) Valid() bool { return m == ModeSpeculative || m == ModeTarget }

// Request is the client-side record of one benchmark request, written as one line of
// requests.jsonl. Times are taken on the controller (the client), as vLLM's benchmark does.
type Request struct {
	ID           string `json:"id"`    // UUID
	Index        int    `json:"index"` // position in the job's prompt list; pairs the two modes
	Mode         Mode   `json:"mode"`
	PromptSource string `json:"prompt_source"` // e.g. the dataset file the prompt came from
	InputTokens  int    `json:"input_tokens"`
	OutputTokens int    `json:"output_tokens"`
	Warmup       bool   `json:"warmup"`
	// Error is empty for a completed request and says why for a failed or cancelled one.
	Error string `json:"error,omitempty"`
	// Cancelled marks a request cut short on purpose (the job was cancelled or the controller
	// shut down) rather than by a failure: it counts as cancelled, not failed.
	Cancelled bool `json:"cancelled,omitempty"`

	SentAt time.Time `json:"sent_at"`
	// FinishedAt is when the request ended, successfully or not; zero means "at its last
	// emission" (or at SentAt when nothing was emitted).
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Emissions holds every arrival of tokens in order. A speculative round that emits k tokens
	// at once is one emission of k tokens, not k emissions.
	Emissions []Emission `json:"emissions"`
	// OutputIDs are the emitted token ids, len(OutputIDs) == OutputTokens.
	OutputIDs []int32 `json:"output_ids"`
	// OutputMargins (temperature 0) are, per output token, the gap between
	// the best and second-best target logit it was chosen from, relative to
	// the best: (top1 − top2) / max(1, |top1|) (sampling.Margin).
	OutputMargins []float32 `json:"output_margins,omitempty"`
	// Rounds holds the draft/verify rounds of a speculative request; empty in target mode.
	Rounds []Round `json:"rounds,omitempty"`
}

// Emission is one arrival of Tokens tokens at the client at time At.
type Emission struct {
	At     time.Time `json:"at"`
	Tokens int       `json:"tokens"`
}

// Round is one draft/verify round of speculative decoding.
type Round struct {
	Gamma    int `json:"gamma"`    // draft tokens asked for
	Drafted  int `json:"drafted"`  // draft tokens proposed (fewer than Gamma near max_new_tokens)
	Accepted int `json:"accepted"` // draft tokens the target accepted
	Emitted  int `json:"emitted"`  // tokens emitted: accepted plus the correction or bonus token
	// AcceptedByPosition[i] says whether draft position i+1 was accepted; len == Drafted.
	AcceptedByPosition []bool `json:"accepted_by_position"`
	// Wall is the round as the driver saw it; Compute is what the workers report as their own
	// compute time. Their difference is the coordination overhead (DESIGN §6).
	Wall    time.Duration `json:"wall_ns"`
	Compute time.Duration `json:"compute_ns"`
	// DraftCompute is the drafter's share of Compute (its stages' own time
	// for the round's drafts); omitted where the two are not told apart
	// (an in-process run).
	DraftCompute time.Duration `json:"draft_compute_ns,omitempty"`
	// QMass is the mean, over the round's drafts, of the probability mass
	// of the drafter's distribution that its q kept (generation.draft_top_k
	// cuts it); omitted when greedy or unknown.
	QMass float64 `json:"q_mass,omitempty"`
}

// Overhead is the coordination overhead of the round: wall time minus worker compute time.
func (r Round) Overhead() time.Duration { return r.Wall - r.Compute }

// Completed reports whether the request ran to its end: no error, not cancelled.
func (r Request) Completed() bool { return r.Error == "" && !r.Cancelled }

// Failed reports whether the request ended with an error of its own, not by a cancel.
func (r Request) Failed() bool { return r.Error != "" && !r.Cancelled }

// End is when the request ended: FinishedAt, or its last emission, or SentAt, the latest.
func (r Request) End() time.Time {
	end := r.SentAt
	if n := len(r.Emissions); n > 0 && r.Emissions[n-1].At.After(end) {
		end = r.Emissions[n-1].At
	}
	if r.FinishedAt.After(end) {
		end = r.FinishedAt
	}
	return end
}

// Validate checks that the record is consistent, so that figures computed from it mean what they
// say. The error names the first problem found.
func (r Request) Validate() error {
	if !r.Mode.Valid() {
		return fmt.Errorf("mode %q is not one of %s, %s", r.Mode, ModeSpeculative, ModeTarget)
	}
	if r.SentAt.IsZero() {
		return errors.New("sent_at is not set")
	}
	if r.Cancelled && r.Error == "" {
		return errors.New("cancelled without an error saying why")
	}
	if r.InputTokens < 0 || r.OutputTokens < 0 {
		return fmt.Errorf("negative token count (input %d, output %d)", r.InputTokens, r.OutputTokens)
	}
	emitted := 0
	prev := r.SentAt
	for i, e := range r.Emissions {
		if e.Tokens < 1 {
			return fmt.Errorf("emission %d: %d tokens, want at least 1", i, e.Tokens)
		}
		if e.At.Before(prev) {
			return fmt.Errorf("emission %d at %s is before %s", i, e.At.Format(time.RFC3339Nano), prev.Format(time.RFC3339Nano))
		}
		prev = e.At
		emitted += e.Tokens
	}
	if emitted != r.OutputTokens {
		return fmt.Errorf("emissions hold %d tokens but output_tokens is %d", emitted, r.OutputTokens)
	}
	if len(r.OutputIDs) != r.OutputTokens {
		return fmt.Errorf("%d output_ids but output_tokens is %d", len(r.OutputIDs), r.OutputTokens)
	}
	if r.OutputMargins != nil && len(r.OutputMargins) != r.OutputTokens {
		return fmt.Errorf("%d output_margins but output_tokens is %d", len(r.OutputMargins), r.OutputTokens)
	}
	if r.Mode != ModeSpeculative && len(r.Rounds) > 0 {
		return fmt.Errorf("%s request has %d speculative rounds", r.Mode, len(r.Rounds))
	}
	for i, rd := range r.Rounds {
		if err := rd.validate(); err != nil {
			return fmt.Errorf("round %d: %w", i, err)
		}
	}
	return nil
}

func (r Round) validate() error {
	if r.Drafted < 0 || r.Drafted > r.Gamma {
		return fmt.Errorf("drafted %d is outside [0, gamma %d]", r.Drafted, r.Gamma)
	}
	if r.Accepted < 0 || r.Accepted > r.Drafted {
		return fmt.Errorf("accepted %d is outside [0, drafted %d]", r.Accepted, r.Drafted)
	}
	if r.Emitted < 0 || r.Emitted > r.Accepted+1 {
		return fmt.Errorf("emitted %d is outside [0, accepted+1 = %d]", r.Emitted, r.Accepted+1)
	}
	if len(r.AcceptedByPosition) != r.Drafted {
		return fmt.Errorf("accepted_by_position has %d entries for %d drafted tokens", len(r.AcceptedByPosition), r.Drafted)
	}
	n := 0
	for _, ok := range r.AcceptedByPosition {
		if ok {
			n++
		}
	}
	if n != r.Accepted {
		return fmt.Errorf("accepted_by_position marks %d accepted, accepted is %d", n, r.Accepted)
	}
	if !(r.QMass >= 0 && r.QMass <= 1.001) {
		return fmt.Errorf("q_mass %v is outside [0, 1]", r.QMass)
	}
	if r.DraftCompute < 0 || r.DraftCompute > r.Compute {
		return fmt.Errorf("draft_compute_ns %d is outside [0, compute_ns %d]", r.DraftCompute, r.Compute)
	}
	if r.Wall < 0 || r.Compute < 0 {
		return fmt.Errorf("negative time (wall %s, compute %s)", r.Wall, r.Compute)
	}
	return nil
}

// Timings are the client-side latencies of one request, in milliseconds, as vLLM's
// benchmark_serving defines them.
type Timings struct {
	TTFT float64 `json:"ttft_ms"` // first token − send
	E2EL float64 `json:"e2el_ms"` // last token − send
	// TPOT is (E2EL − TTFT)/(output_tokens − 1); nil (JSON null) with fewer than two tokens.
	TPOT *float64 `json:"tpot_ms"`
	// ITL has one value per output token after the first; see Request.Timings.
	ITL []float64 `json:"-"`
}

// Timings computes the latencies of the request; ok is false when it emitted no token.
//
// ITL follows vLLM's definition, one gap per token: an emission of k tokens that arrives g after
// the previous one contributes k values of g/k. Tokens that arrive together with the first token
// (a first emission of k > 1) contribute k−1 values of 0, so there are always output_tokens − 1
// values and their sum is E2EL − TTFT, which keeps mean ITL equal to TPOT.
func (r Request) Timings() (t Timings, ok bool) {
	if len(r.Emissions) == 0 {
		return Timings{}, false
	}
	first, last := r.Emissions[0], r.Emissions[len(r.Emissions)-1]
	t.TTFT = ms(first.At.Sub(r.SentAt))
	t.E2EL = ms(last.At.Sub(r.SentAt))
	if r.OutputTokens > 1 {
		tpot := (t.E2EL - t.TTFT) / float64(r.OutputTokens-1)
		t.TPOT = &tpot
	}
	t.ITL = make([]float64, 0, max(r.OutputTokens-1, 0))
	for range first.Tokens - 1 {
		t.ITL = append(t.ITL, 0)
	}
	prev := first.At
	for _, e := range r.Emissions[1:] {
		gap := ms(e.At.Sub(prev)) / float64(e.Tokens)
		for range e.Tokens {
			t.ITL = append(t.ITL, gap)
		}
		prev = e.At
	}
	return t, true
}

// RequestMetrics are the figures of one request that requests.jsonl carries next to its raw
// timings, so a reader needs no code to see them.
type RequestMetrics struct {
	Timings
	*SpecStats // speculative requests only
}

// Metrics computes the per-request figures; nil when the request emitted no token.
func (r Request) Metrics() *RequestMetrics {
	t, ok := r.Timings()
	if !ok {
		return nil
	}
	m := &RequestMetrics{Timings: t}
	if r.Mode == ModeSpeculative {
		s := Acceptance(r.Rounds)
		m.SpecStats = &s
	}
	return m
}

// requestFields has Request's fields without its methods, so MarshalJSON can embed it.
type requestFields Request

// MarshalJSON writes the record with a derived "metrics" object. Decoding ignores that object:
// it is recomputed from the raw fields, never trusted.
func (r Request) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// error strings are read by people: keep "<" and ">" as written
	enc.SetEscapeHTML(false)
	err := enc.Encode(struct {
		requestFields
		Metrics *RequestMetrics `json:"metrics,omitempty"`
	}{requestFields(r), r.Metrics()})
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), err
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
