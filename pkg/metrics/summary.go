package metrics

import (
	"fmt"
	"time"
)

// Summary holds the figures of one mode. The JSON keys are the contract of DESIGN §7; the
// speculative-only keys are present only in speculative mode. "cancelled" is one more count
// next to "failed": requests cut short by a cancel are not failures.
//
// A figure that was not measured is nil, written as JSON null, never 0: duration_s when no
// request was sent, the throughputs when none completed, a distribution without a sample
// (no completed request, or none of more than one token for tpot_ms).
type Summary struct {
	NumRequests          int      `json:"num_requests"` // completed + failed + cancelled
	Completed            int      `json:"completed"`
	Failed               int      `json:"failed"`
	Cancelled            int      `json:"cancelled"`
	DurationS            *float64 `json:"duration_s"`
	RequestThroughput    *float64 `json:"request_throughput"`     // completed req/s
	OutputThroughput     *float64 `json:"output_throughput"`      // output tok/s
	TotalTokenThroughput *float64 `json:"total_token_throughput"` // (input + output) tok/s
	TotalInputTokens     int      `json:"total_input_tokens"`
	TotalOutputTokens    int      `json:"total_output_tokens"`

	TTFT *Distribution `json:"ttft_ms"`
	TPOT *Distribution `json:"tpot_ms"`
	ITL  *Distribution `json:"itl_ms"`
	E2EL *Distribution `json:"e2el_ms"`

	*SpecStats // speculative mode only

	// Load is how the mode's requests were sent (absent where not known:
	// results rebuilt after a controller crash).
	Load *Load `json:"load,omitempty"`
}

// Load is how a mode's requests were sent: the load block's settings (vLLM's
// request_rate, burstiness, max_concurrency) and what the sender achieved.
type Load struct {
	// Mode is the job's load.mode: "num_prompts" (every request released
	// at once, or in batches of BatchSize) or "rate" (each request at its
	// arrival time).
	Mode string `json:"mode"`
	// RequestRate (req/s), Arrival and Burstiness are rate mode's settings
	// (null in count mode).
	RequestRate *float64 `json:"request_rate"`
	Arrival     *string  `json:"arrival"`
	Burstiness  *float64 `json:"burstiness"`
	// MaxConcurrency caps the requests in flight (null: no cap); BatchSize
	// is count mode's batch (null: not batched).
	MaxConcurrency *int `json:"max_concurrency"`
	BatchSize      *int `json:"batch_size"`
	// ScheduledRate is the rate the drawn arrival times hold and
	// AchievedRate the rate the sends held (req/s, rate mode; null in count
	// mode or with fewer than two sends). MaxLatenessMS and MeanLatenessMS
	// are how late sends left against their arrival times (a full
	// max_concurrency, a slow cluster); TTFT and E2EL are timed from the
	// send, as vLLM times them, so that wait is not in them.
	ScheduledRate  *float64 `json:"scheduled_rate"`
	AchievedRate   *float64 `json:"achieved_rate"`
	MaxLatenessMS  *float64 `json:"max_lateness_ms"`
	MeanLatenessMS *float64 `json:"mean_lateness_ms"`
	// PeakInFlight is the most requests in flight at once.
	PeakInFlight int `json:"peak_in_flight"`
}

// SpecStats are the acceptance figures of speculative decoding, over a job or one request.
type SpecStats struct {
	NumDrafts         int `json:"num_drafts"`
	NumDraftTokens    int `json:"num_draft_tokens"`
	NumAcceptedTokens int `json:"num_accepted_tokens"`
	// AcceptanceRate is accepted / drafted tokens; nil (null) without drafts.
	AcceptanceRate *float64 `json:"acceptance_rate"`
	// MeanAcceptanceLength is 1 + accepted / drafts: tokens emitted per target forward pass
	// when every round adds its correction or bonus token; 0 without drafts.
	MeanAcceptanceLength *float64 `json:"mean_acceptance_length"`
	// AcceptanceByPosition[i] is the acceptance rate of draft position i+1; see Acceptance.
	AcceptanceByPosition []*float64 `json:"acceptance_by_position"`
	// CoordinationOverhead is nil (JSON null) without a round.
	CoordinationOverhead *Distribution `json:"coordination_overhead_ms"`
	// DraftQMass is the mean, over drafted tokens, of the mass of the
	// drafter's distribution its q kept (Round.QMass); null when greedy.
	// Under 1, drafts were drawn from, and judged against, a cut and
	// renormalised q, so the acceptance figures reflect the cut too.
	DraftQMass *float64 `json:"draft_q_mass"`
	// DraftCostRatio is c of Leviathan et al. (2023) as measured: the
	// drafter's compute per drafted token over the target's compute per
	// verify step; null where rounds do not tell the two apart. With the
	// mean acceptance length L a round's compute yields L / (1+γc) tokens
	// per verify step's time (docs/results.md).
	DraftCostRatio *float64 `json:"draft_cost_ratio"`
	// RoundTime is where a round's time goes, as means over the rounds
	// that tell the drafter's compute apart (null otherwise): whether a
	// speedup is held back by the drafter, the target or the messaging.
	RoundTime *RoundTime `json:"round_time_ms"`
}

// RoundTime is the mean round, in milliseconds: its wall time, the
// drafter's and the target's compute, and the rest (coordination).
type RoundTime struct {
	Wall     float64 `json:"wall"`
	Drafter  float64 `json:"drafter"`
	Target   float64 `json:"target"`
	Overhead float64 `json:"overhead"`
}

// Acceptance computes the acceptance figures of a set of rounds.
//
// A draft is a round that proposed at least one token (vLLM's num_drafts). The rate of position
// i follows vLLM's spec-decode metrics (num_accepted_tokens_per_pos[i] / num_drafts), with one
// refinement for rounds that propose fewer than gamma tokens (near max_new_tokens): the
// denominator counts only the drafts that reached position i (Drafted ≥ i), so a short final
// round does not read as a rejection. With a fixed gamma and full rounds the two agree. The
// slice has one entry per position up to the largest gamma seen; a position no draft reached
// has rate 0. Coordination overhead counts every round, drafted or not.
func Acceptance(rounds []Round) SpecStats {
	var s SpecStats
	width := 0
	for _, r := range rounds {
		width = max(width, r.Gamma, r.Drafted)
	}
	accepted := make([]int, width)
	reached := make([]int, width)
	overhead := make([]float64, 0, len(rounds))
	var mass float64
	massDrafts := 0
	var draftTime, targetTime, splitWall time.Duration
	costDrafts, costRounds := 0, 0
	for _, r := range rounds {
		overhead = append(overhead, ms(r.Overhead()))
		if r.Drafted == 0 {
			continue
		}
		if r.QMass > 0 {
			mass += r.QMass * float64(r.Drafted)
			massDrafts += r.Drafted
		}
		if r.DraftCompute > 0 && r.Compute > r.DraftCompute {
			draftTime += r.DraftCompute
			targetTime += r.Compute - r.DraftCompute
			splitWall += r.Wall
			costDrafts += r.Drafted
			costRounds++
		}
		s.NumDrafts++
		s.NumDraftTokens += r.Drafted
		s.NumAcceptedTokens += r.Accepted
		for i, ok := range r.AcceptedByPosition {
			reached[i]++
			if ok {
				accepted[i]++
			}
		}
	}
	// A rate without a draft behind it is not 0 %: it is not measured (null).
	s.AcceptanceByPosition = make([]*float64, width)
	for i := range width {
		if reached[i] > 0 {
			s.AcceptanceByPosition[i] = ptr(float64(accepted[i]) / float64(reached[i]))
		}
	}
	if s.NumDrafts > 0 {
		s.AcceptanceRate = ptr(float64(s.NumAcceptedTokens) / float64(s.NumDraftTokens))
		s.MeanAcceptanceLength = ptr(1 + float64(s.NumAcceptedTokens)/float64(s.NumDrafts))
	}
	s.CoordinationOverhead = Describe(overhead)
	if massDrafts > 0 {
		s.DraftQMass = ptr(mass / float64(massDrafts))
	}
	if costRounds > 0 {
		perDraft := float64(draftTime) / float64(costDrafts)
		perStep := float64(targetTime) / float64(costRounds)
		s.DraftCostRatio = ptr(perDraft / perStep)
		mean := func(d time.Duration) float64 { return ms(d) / float64(costRounds) }
		s.RoundTime = &RoundTime{Wall: mean(splitWall), Drafter: mean(draftTime), Target: mean(targetTime),
			Overhead: mean(splitWall - draftTime - targetTime)}
	}
	return s
}

// Samples are the raw per-mode values a Summary is computed from; plots draw them directly.
// Latency samples are in milliseconds and come from completed requests only.
type Samples struct {
	Mode         Mode
	NumRequests  int
	Completed    int
	Failed       int
	Cancelled    int
	InputTokens  int // completed requests only, as vLLM counts them
	OutputTokens int // completed requests only
	Start, End   time.Time

	TTFT, TPOT, ITL, E2EL []float64
	Rounds                []Round // of completed requests
}

// Collect gathers the samples of one mode from reqs. Requests of the other mode are ignored, so
// a caller may pass all of a job's records; warmup requests are left out entirely; failed and
// cancelled requests are counted but give no latency or acceptance samples. A record that fails Validate
// is an error, since every figure would silently mean something else.
func Collect(mode Mode, reqs []Request) (*Samples, error) {
	if !mode.Valid() {
		return nil, fmt.Errorf("collecting samples: mode %q is not one of %s, %s", mode, ModeSpeculative, ModeTarget)
	}
	s := &Samples{Mode: mode}
	for _, r := range reqs {
		if r.Mode != mode || r.Warmup {
			continue
		}
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("collecting %s samples: request %d (%s): %w", mode, r.Index, r.ID, err)
		}
		s.NumRequests++
		if s.Start.IsZero() || r.SentAt.Before(s.Start) {
			s.Start = r.SentAt
		}
		if end := r.End(); end.After(s.End) {
			s.End = end
		}
		if r.Cancelled {
			s.Cancelled++
			continue
		}
		if r.Failed() {
			s.Failed++
			continue
		}
		s.Completed++
		s.InputTokens += r.InputTokens
		s.OutputTokens += r.OutputTokens
		s.Rounds = append(s.Rounds, r.Rounds...)
		t, ok := r.Timings()
		if !ok {
			continue
		}
		s.TTFT = append(s.TTFT, t.TTFT)
		s.E2EL = append(s.E2EL, t.E2EL)
		if t.TPOT != nil {
			s.TPOT = append(s.TPOT, *t.TPOT)
		}
		s.ITL = append(s.ITL, t.ITL...)
	}
	return s, nil
}

// Summary computes the figures of the samples. duration_s runs from the first send to the last
// request end, failed and cancelled requests included, as vLLM times the whole benchmark; it is
// nil when no request was sent. The throughputs are nil unless a request completed in a
// positive duration: a rate of 0 would read as a measurement.
func (s *Samples) Summary() Summary {
	sum := Summary{
		NumRequests:       s.NumRequests,
		Completed:         s.Completed,
		Failed:            s.Failed,
		Cancelled:         s.Cancelled,
		TotalInputTokens:  s.InputTokens,
		TotalOutputTokens: s.OutputTokens,
		TTFT:              Describe(s.TTFT),
		TPOT:              Describe(s.TPOT),
		ITL:               Describe(s.ITL),
		E2EL:              Describe(s.E2EL),
	}
	if s.NumRequests > 0 {
		d := s.End.Sub(s.Start).Seconds()
		sum.DurationS = &d
		if s.Completed > 0 && d > 0 {
			sum.RequestThroughput = perSecond(s.Completed, d)
			sum.OutputThroughput = perSecond(s.OutputTokens, d)
			sum.TotalTokenThroughput = perSecond(s.InputTokens+s.OutputTokens, d)
		}
	}
	if s.Mode == ModeSpeculative {
		acc := Acceptance(s.Rounds)
		sum.SpecStats = &acc
	}
	return sum
}

// Summarize is Collect followed by Summary.
func Summarize(mode Mode, reqs []Request) (Summary, error) {
	s, err := Collect(mode, reqs)
	if err != nil {
		return Summary{}, err
	}
	return s.Summary(), nil
}

func perSecond(n int, seconds float64) *float64 {
	v := float64(n) / seconds
	return &v
}

func ptr(v float64) *float64 { return &v }
