package spec

import (
	"fmt"
	"slices"
	"time"

	"github.com/draftbench/draftbench/pkg/sampling"
)

// LM is a causal language model with one sequence's KV cache.
type LM interface {
	// Feed appends tokens at the end of the cache and returns logits: for
	// every fed position when all is set (the verify step), otherwise only
	// for the last one (prefill, decode, drafting), which spares a prefill
	// from computing the LM head for every prompt position.
	Feed(tokens []int, all bool) ([][]float32, error)
	Len() int             // cached positions
	Truncate(n int) error // keep the first n positions
}

// DefaultDraftTopK is the size of the sparse q a drafter sends when
// Config.DraftTopK is 0.
const DefaultDraftTopK = 64

// Config drives one generation.
type Config struct {
	// MaxNewTokens is the exact number of tokens generated unless a stop
	// token comes first.
	MaxNewTokens int
	// Gamma is the number of drafts per round (the first round's with
	// Adaptive).
	Gamma int
	// Params shape both models' distributions (target p and drafter q) the
	// same way.
	Params sampling.Params
	// DraftTopK is how many ids the drafter's q keeps (0: DefaultDraftTopK,
	// negative: the whole support). Truncating q does not bias the output,
	// because the drafter samples from the truncated q itself; it only lowers
	// acceptance when q's tail mattered. When Params.TopK is no larger, q is
	// already whole.
	DraftTopK int
	// StopTokens end generation (the stop token is kept in the output),
	// unless IgnoreEOS.
	StopTokens []int
	IgnoreEOS  bool
	// Adaptive varies gamma between rounds.
	Adaptive Adaptive
	// OnEmit, when set, receives each batch of new tokens as soon as both
	// caches are rolled back: the first token after prefill, then one call
	// per AR step or speculative round. A session driver timestamps it for
	// TTFT and ITL.
	OnEmit func(tokens []int)
}

// Adaptive gamma: after a round that accepted every draft gamma grows by 2
// (up to Max), after any rejection it shrinks by 1 (down to Min). The gamma
// of every round is in Output.Rounds.
type Adaptive struct {
	Enabled bool
	Min     int // 0 means 1
	Max     int // 0 means 2·Config.Gamma
}

// FinishReason says why generation ended, with vLLM's names.
type FinishReason string

const (
	FinishLength FinishReason = "length" // MaxNewTokens reached
	FinishStop   FinishReason = "stop"   // a stop token was emitted
)

// Round records one draft/verify round.
type Round struct {
	Gamma              int    `json:"gamma"`
	Drafted            []int  `json:"drafted"`
	Accepted           int    `json:"accepted"`
	AcceptedByPosition []bool `json:"accepted_by_position"`
	// Emitted is what the round added to the output: the accepted drafts
	// and the correction or bonus token, cut at MaxNewTokens or a stop token
	// in the last round. Accepted counts the verdict before that cut.
	Emitted []int `json:"emitted"`
	// QMass is the mean mass of the drafter's distribution its q kept
	// (sampling.Sparse.Kept) over the round's drafts; 0 when greedy.
	QMass float64 `json:"q_mass,omitempty"`
	// DraftTime is the time spent drafting (the drafter's passes and its
	// draws), VerifyTime the target's verify pass; the rule, the sampling
	// of the target's rows and the bookkeeping are in neither.
	DraftTime  time.Duration `json:"-"`
	VerifyTime time.Duration `json:"-"`
}

// Output is the result of one generation.
type Output struct {
	Tokens       []int        `json:"tokens"` // generated tokens, without the prompt
	FinishReason FinishReason `json:"finish_reason"`
	Rounds       []Round      `json:"rounds,omitempty"` // speculative only
	Stats        Stats        `json:"stats"`            // speculative only
	// Margins, with greedy Params only, holds for each of Tokens the
	// sampling.Margin of the target logits it was chosen from: where greedy
	// speculative and autoregressive outputs differ, a near-tie there says
	// rounding, not the algorithm.
	Margins []float32 `json:"margins,omitempty"`
}

// Gammas returns the gamma of each round in order.
func (o Output) Gammas() []int {
	g := make([]int, len(o.Rounds))
	for i, r := range o.Rounds {
		g[i] = r.Gamma
	}
	return g
}

// GenerateAR decodes MaxNewTokens tokens (or up to a stop token) from target
// one at a time. The prompt's Feed (prefill) yields the logits of its last
// position, from which the first token is drawn; each later step feeds the
// previous token. target's cache must start empty; it ends holding the prompt
// and every output token but the last. Cfg.Gamma, DraftTopK and Adaptive are
// not used; rng may be nil when decoding greedily.
func GenerateAR(target LM, prompt []int, cfg Config, rng sampling.RNG) (Output, error) {
	cfg, err := cfg.check(prompt, rng, false)
	if err != nil {
		return Output{}, err
	}
	r := newRun(prompt, cfg, rng)
	tc := &cache{lm: target, name: "target"}
	if err := tc.start(); err != nil {
		return Output{}, err
	}
	in := prompt
	for step := 0; !r.done(); step++ {
		logits, err := tc.feed(in, false)
		if err != nil {
			return Output{}, fmt.Errorf("ar step %d: %w", step, err)
		}
		tok, err := r.pick(logits[len(logits)-1])
		if err != nil {
			return Output{}, fmt.Errorf("ar step %d: target: %w", step, err)
		}
		r.notify(r.emit([]int{tok}))
		in = []int{tok}
	}
	return r.output(), nil
}

// GenerateSpeculative decodes with drafter proposing and target verifying
// (see Verify); with the same cfg and a greedy Params it returns exactly
// GenerateAR's tokens, and with sampling the same distribution.
//
// Prefill: the target is fed the prompt and its last logits give the first
// token, emitted before any round, so time to first token means the same as
// in GenerateAR. The drafter gets the prompt together with that token at the
// start of round 1.
//
// Each round: feed the drafter what it lacks of S (see below), then x_1..x_{γ-1}
// one by one, drawing x_i from its q_i; feed the target [last of S, x_1..x_γ]
// in one call for p_1..p_{γ+1}; Verify; append the kept tokens to S; roll back.
//
// Cache invariant, with S = prompt ++ output (output non-empty after
// prefill), holding after prefill and after every round:
//
//	target.Len() == len(S)-1, and its cache is S[:len(S)-1]
//	drafter's cache is S[:len(S)-1], or S[:len(S)-2] when the round just
//	  finished accepted all γ drafts and kept its bonus token (the drafter
//	  proposed x_γ without being fed it), or empty before round 1.
//
// The rollback is therefore truncate(target, len(S)-1): it keeps the accepted
// prefix and drops the rejected drafts' positions, and never resets the
// cache; and truncate(drafter, min(drafter.Len(), len(S)-1)): it trims by the
// accepted count, and after a full acceptance it trims nothing, so next round
// the drafter catches up on x_γ together with the bonus token.
//
// Both caches must start empty.
func GenerateSpeculative(target, drafter LM, prompt []int, cfg Config, rng sampling.RNG) (Output, error) {
	cfg, err := cfg.check(prompt, rng, true)
	if err != nil {
		return Output{}, err
	}
	r := newRun(prompt, cfg, rng)
	tc := &cache{lm: target, name: "target"}
	dc := &cache{lm: drafter, name: "drafter"}
	if err := tc.start(); err != nil {
		return Output{}, err
	}
	if err := dc.start(); err != nil {
		return Output{}, err
	}

	logits, err := tc.feed(prompt, false)
	if err != nil {
		return Output{}, fmt.Errorf("speculative prefill: %w", err)
	}
	first, err := r.pick(logits[len(logits)-1])
	if err != nil {
		return Output{}, fmt.Errorf("speculative prefill: target: %w", err)
	}
	r.notify(r.emit([]int{first}))

	gamma := cfg.Gamma
	for round := 1; !r.done(); round++ {
		last := r.seq[len(r.seq)-1]
		t0 := time.Now()
		drafts, qs, err := r.draft(dc, r.seq[dc.n:], gamma)
		if err != nil {
			return Output{}, fmt.Errorf("speculative round %d: %w", round, err)
		}
		t1 := time.Now()
		logits, err := tc.feed(append([]int{last}, drafts...), true)
		if err != nil {
			return Output{}, fmt.Errorf("speculative round %d: verify: %w", round, err)
		}
		draftTime, verifyTime := t1.Sub(t0), time.Since(t1)
		var v Verdict
		if cfg.Params.Greedy() {
			choice := make([]int, len(logits))
			r.margins = r.margins[:0]
			for i, l := range logits {
				var m float32
				choice[i], m = sampling.ArgmaxMargin(l, cfg.Params.VocabLimit)
				r.margins = append(r.margins, m) // emitted token i is the choice at row i
				if err == nil {
					err = sampling.ChoiceError(choice[i], m)
				}
			}
			if err == nil {
				v, err = VerifyGreedy(drafts, choice)
			}
		} else {
			ps := make([][]float32, len(logits))
			for i, l := range logits {
				ps[i] = sampling.Probs(l, cfg.Params)
			}
			v, err = Verify(drafts, qs, ps, false, r.rng)
		}
		if err != nil {
			return Output{}, fmt.Errorf("speculative round %d: %w", round, err)
		}
		kept := r.emit(v.Emitted)

		keep := len(r.seq) - 1
		if err := tc.truncate(keep); err != nil {
			return Output{}, fmt.Errorf("speculative round %d: rollback: %w", round, err)
		}
		if err := dc.truncate(min(dc.n, keep)); err != nil {
			return Output{}, fmt.Errorf("speculative round %d: rollback: %w", round, err)
		}
		r.out.Rounds = append(r.out.Rounds, Round{
			Gamma:              gamma,
			Drafted:            drafts,
			Accepted:           v.Accepted,
			AcceptedByPosition: v.AcceptedByPosition,
			Emitted:            kept,
			QMass:              sampling.MeanKept(qs, func(q sampling.Sparse) float32 { return q.Kept }),
			DraftTime:          draftTime,
			VerifyTime:         verifyTime,
		})
		if a := cfg.Adaptive; a.Enabled {
			if v.Accepted == gamma {
				gamma = min(gamma+2, a.Max)
			} else {
				gamma = max(gamma-1, a.Min)
			}
		}
		r.notify(kept)
	}
	out := r.output()
	out.Stats = Summarize(out.Rounds)
	return out, nil
}

// check validates cfg and fills in its defaults.
func (cfg Config) check(prompt []int, rng sampling.RNG, speculative bool) (Config, error) {
	if len(prompt) == 0 {
		return cfg, fmt.Errorf("generate: empty prompt")
	}
	if cfg.MaxNewTokens <= 0 {
		return cfg, fmt.Errorf("generate: max new tokens %d must be positive", cfg.MaxNewTokens)
	}
	if err := cfg.Params.Validate(); err != nil {
		return cfg, fmt.Errorf("generate: %w", err)
	}
	if !cfg.Params.Greedy() && rng == nil {
		return cfg, fmt.Errorf("generate: temperature %v samples and needs an rng", cfg.Params.Temperature)
	}
	if !speculative {
		return cfg, nil
	}
	if cfg.Gamma < 1 {
		return cfg, fmt.Errorf("generate: gamma %d must be at least 1", cfg.Gamma)
	}
	if cfg.DraftTopK == 0 {
		cfg.DraftTopK = DefaultDraftTopK
	}
	if a := &cfg.Adaptive; a.Enabled {
		if a.Min == 0 {
			a.Min = 1
		}
		if a.Max == 0 {
			a.Max = 2 * cfg.Gamma
		}
		if a.Min < 1 || a.Min > cfg.Gamma || cfg.Gamma > a.Max {
			return cfg, fmt.Errorf("generate: adaptive gamma needs 1 <= min (%d) <= gamma (%d) <= max (%d)", a.Min, cfg.Gamma, a.Max)
		}
	}
	return cfg, nil
}

// run is the state of one generation.
type run struct {
	cfg    Config
	rng    sampling.RNG
	prompt int   // prompt length
	seq    []int // prompt ++ output
	finish FinishReason
	out    Output
	// margins are the greedy margins of the tokens about to be emitted.
	margins []float32
}

func newRun(prompt []int, cfg Config, rng sampling.RNG) *run {
	seq := make([]int, len(prompt), len(prompt)+cfg.MaxNewTokens)
	copy(seq, prompt)
	return &run{cfg: cfg, rng: rng, prompt: len(prompt), seq: seq}
}

func (r *run) done() bool { return r.finish != "" }

// emit appends tokens to the output, cut at MaxNewTokens and after the first
// stop token, and returns what it appended.
func (r *run) emit(tokens []int) []int {
	room := r.cfg.MaxNewTokens - (len(r.seq) - r.prompt)
	kept := tokens[:min(len(tokens), room)]
	if !r.cfg.IgnoreEOS {
		for i, t := range kept {
			if slices.Contains(r.cfg.StopTokens, t) {
				kept = kept[:i+1]
				r.finish = FinishStop
				break
			}
		}
	}
	r.seq = append(r.seq, kept...)
	if r.cfg.Params.Greedy() {
		// r.margins holds the margin of each of tokens (pick, or the
		// verify step's target rows).
		r.out.Margins = append(r.out.Margins, r.margins[:len(kept)]...)
	}
	if r.finish == "" && len(r.seq)-r.prompt == r.cfg.MaxNewTokens {
		r.finish = FinishLength
	}
	return kept
}

func (r *run) notify(tokens []int) {
	if r.cfg.OnEmit != nil {
		r.cfg.OnEmit(slices.Clone(tokens))
	}
}

func (r *run) output() Output {
	r.out.Tokens = slices.Clone(r.seq[r.prompt:])
	r.out.FinishReason = r.finish
	return r.out
}

// pick draws the next token from one position's logits.
func (r *run) pick(logits []float32) (int, error) {
	var tok int
	if r.cfg.Params.Greedy() {
		var m float32
		tok, m = sampling.ArgmaxMargin(logits, r.cfg.Params.VocabLimit)
		r.margins = append(r.margins[:0], m)
		if err := sampling.ChoiceError(tok, m); err != nil {
			return 0, err
		}
	} else {
		tok = sampling.Sample(sampling.Probs(logits, r.cfg.Params), r.rng.Float64())
	}
	if tok < 0 {
		// Probs gives a row without a usable logit no mass.
		return 0, sampling.ErrNoUsableLogit
	}
	return tok, nil
}

// draft feeds the drafter pending (what it lacks of S) and then its own
// proposals, returning gamma drafts and, when sampling, the q each was drawn
// from. The last draft is not fed.
func (r *run) draft(dc *cache, pending []int, gamma int) ([]int, []sampling.Sparse, error) {
	greedy := r.cfg.Params.Greedy()
	drafts := make([]int, 0, gamma)
	var qs []sampling.Sparse
	if !greedy {
		qs = make([]sampling.Sparse, 0, gamma)
	}
	in := pending
	for i := range gamma {
		logits, err := dc.feed(in, false)
		if err != nil {
			return nil, nil, fmt.Errorf("draft %d: %w", i+1, err)
		}
		last := logits[len(logits)-1]
		var x int
		if greedy {
			var m float32
			x, m = sampling.ArgmaxMargin(last, r.cfg.Params.VocabLimit)
			if err := sampling.ChoiceError(x, m); err != nil {
				return nil, nil, fmt.Errorf("draft %d: drafter: %w", i+1, err)
			}
		} else {
			q := sampling.TopKSparse(sampling.Probs(last, r.cfg.Params), r.cfg.DraftTopK)
			x = q.Sample(r.rng.Float64())
			qs = append(qs, q)
		}
		if x < 0 {
			return nil, nil, fmt.Errorf("draft %d: drafter: %w", i+1, sampling.ErrNoUsableLogit)
		}
		drafts = append(drafts, x)
		in = []int{x}
	}
	return drafts, qs, nil
}

// cache tracks how many positions an LM should hold and checks that it does,
// so an engine that loses or duplicates positions fails loudly instead of
// silently changing the output.
type cache struct {
	lm   LM
	name string
	n    int
}

func (c *cache) start() error {
	if got := c.lm.Len(); got != 0 {
		return fmt.Errorf("generate: %s cache holds %d positions, want an empty cache", c.name, got)
	}
	return nil
}

func (c *cache) feed(tokens []int, all bool) ([][]float32, error) {
	logits, err := c.lm.Feed(tokens, all)
	if err != nil {
		return nil, fmt.Errorf("%s: feeding %d tokens at position %d: %w", c.name, len(tokens), c.n, err)
	}
	if want := map[bool]int{true: len(tokens), false: 1}[all]; len(logits) != want {
		return nil, fmt.Errorf("%s: fed %d tokens at position %d, got %d rows of logits, want %d", c.name, len(tokens), c.n, len(logits), want)
	}
	c.n += len(tokens)
	if got := c.lm.Len(); got != c.n {
		return nil, fmt.Errorf("%s: cache holds %d positions after a feed, want %d", c.name, got, c.n)
	}
	return logits, nil
}

func (c *cache) truncate(n int) error {
	if n == c.n {
		return nil
	}
	if err := c.lm.Truncate(n); err != nil {
		return fmt.Errorf("%s: truncating %d positions to %d: %w", c.name, c.n, n, err)
	}
	c.n = n
	if got := c.lm.Len(); got != n {
		return fmt.Errorf("%s: cache holds %d positions after truncating to %d", c.name, got, n)
	}
	return nil
}
