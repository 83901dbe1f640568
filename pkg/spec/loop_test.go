package spec

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/draftbench/draftbench/pkg/sampling"
)

// prompts returns n seeded prompts of 1 to 10 ids below limit.
func prompts(n, limit int) [][]int {
	rng := rand.New(rand.NewPCG(11, 12))
	out := make([][]int, n)
	for i := range out {
		p := make([]int, 1+rng.IntN(10))
		for j := range p {
			p[j] = rng.IntN(limit)
		}
		out[i] = p
	}
	return out
}

func genAR(t *testing.T, m model, v int, prompt []int, cfg Config, rng sampling.RNG) Output {
	t.Helper()
	out, err := GenerateAR(newFake(m, v), prompt, cfg, rng)
	if err != nil {
		t.Fatalf("GenerateAR: %v", err)
	}
	return out
}

// TestGreedySpeculativeEqualsAR: with temperature 0 speculative decoding is
// the target's greedy output token for token, whatever the drafter.
func TestGreedySpeculativeEqualsAR(t *testing.T) {
	const maxNew = 30
	for _, d := range drafters {
		t.Run(d.name, func(t *testing.T) {
			var total Stats
			for pi, prompt := range prompts(20, vocab) {
				ar := genAR(t, targetModel, vocab, prompt, Config{MaxNewTokens: maxNew}, nil)
				want := ar.Tokens
				if len(ar.Margins) != len(want) {
					t.Fatalf("AR: %d margins for %d tokens", len(ar.Margins), len(want))
				}
				for gamma := 1; gamma <= 8; gamma++ {
					cfg := Config{MaxNewTokens: maxNew, Gamma: gamma}
					got, err := GenerateSpeculative(newFake(targetModel, vocab), newFake(d.model, vocab), prompt, cfg, nil)
					if err != nil {
						t.Fatalf("prompt %d gamma %d: %v", pi, gamma, err)
					}
					if !slices.Equal(got.Tokens, want) {
						t.Fatalf("prompt %d gamma %d:\n speculative %v\n AR          %v", pi, gamma, got.Tokens, want)
					}
					// The same target rows choose each token, so the margins are the same too.
					if !slices.Equal(got.Margins, ar.Margins) {
						t.Fatalf("prompt %d gamma %d: margins\n speculative %v\n AR          %v", pi, gamma, got.Margins, ar.Margins)
					}
					total = total.Merge(got.Stats)
				}
			}
			switch rate := total.AcceptanceRate; d.name {
			case "equal":
				if rate != 1 {
					t.Fatalf("a drafter equal to the target has acceptance %v, want exactly 1", rate)
				}
			default:
				// The drafter must really be rejected sometimes, or this test
				// would not exercise rollback.
				if rate <= 0 || rate >= 0.9 {
					t.Fatalf("acceptance %v, want strictly between 0 and 0.9 for a %s drafter", rate, d.name)
				}
			}
		})
	}
}

// TestCacheInvariant records both caches at every emission and checks them
// against the invariant documented on GenerateSpeculative.
func TestCacheInvariant(t *testing.T) {
	params := []struct {
		name string
		p    sampling.Params
	}{
		{"greedy", sampling.Params{}},
		{"sampled", sampling.Params{Temperature: 1}},
	}
	for _, pc := range params {
		for _, d := range drafters {
			for _, gamma := range []int{1, 2, 4, 7} {
				t.Run(fmt.Sprintf("%s/%s/gamma%d", pc.name, d.name, gamma), func(t *testing.T) {
					for pi, prompt := range prompts(6, vocab) {
						checkInvariant(t, d.model, prompt, Config{MaxNewTokens: 25, Gamma: gamma, Params: pc.p}, uint64(pi))
					}
				})
			}
		}
	}
}

func checkInvariant(t *testing.T, drafter model, prompt []int, cfg Config, seed uint64) {
	t.Helper()
	tl, dl := newFake(targetModel, vocab), newFake(drafter, vocab)
	type snap struct{ seq, target, drafter []int }
	var snaps []snap
	seq := slices.Clone(prompt)
	cfg.OnEmit = func(toks []int) {
		seq = append(seq, toks...)
		snaps = append(snaps, snap{slices.Clone(seq), slices.Clone(tl.tokens), slices.Clone(dl.tokens)})
	}
	out, err := GenerateSpeculative(tl, dl, prompt, cfg, sampling.NewRNG(seed))
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != len(out.Rounds)+1 {
		t.Fatalf("%d emissions for %d rounds, want one more (prefill)", len(snaps), len(out.Rounds))
	}
	for i, s := range snaps {
		n := len(s.seq)
		if !slices.Equal(s.target, s.seq[:n-1]) {
			t.Fatalf("emission %d: target cache %v, want S[:len-1] = %v", i, s.target, s.seq[:n-1])
		}
		want := s.seq[:n-1]
		switch {
		case i == 0:
			want = nil // the drafter sees the prompt at the start of round 1
		case out.Rounds[i-1].Accepted == out.Rounds[i-1].Gamma && len(out.Rounds[i-1].Emitted) == out.Rounds[i-1].Gamma+1:
			want = s.seq[:n-2] // never fed x_γ
		}
		if !slices.Equal(s.drafter, want) {
			t.Fatalf("emission %d (round %+v): drafter cache %v, want %v", i, out.Rounds[max(i-1, 0)], s.drafter, want)
		}
	}
	if !slices.Equal(seq[len(prompt):], out.Tokens) {
		t.Fatalf("OnEmit delivered %v, output is %v", seq[len(prompt):], out.Tokens)
	}
	// Rollback never re-prefills: the target is fed the prompt once and then
	// γ+1 tokens per round; after its first (prompt) call the drafter is fed
	// one or two tokens at a time.
	wantFed := len(prompt)
	for _, r := range out.Rounds {
		wantFed += r.Gamma + 1
	}
	if got := tl.fedTotal(); got != wantFed {
		t.Fatalf("target was fed %d tokens, want %d", got, wantFed)
	}
	for i, f := range dl.feeds[1:] {
		if len(f) > 2 {
			t.Fatalf("drafter feed %d has %d tokens %v: only its first feed may hold the prompt", i+2, len(f), f)
		}
	}
	if first := dl.feeds[0]; !slices.Equal(first, append(slices.Clone(prompt), out.Tokens[0])) {
		t.Fatalf("drafter's first feed %v, want the prompt and the first token", first)
	}
}

func TestMaxNewTokensExact(t *testing.T) {
	prompt := []int{3, 1, 4}
	long := genAR(t, targetModel, vocab, prompt, Config{MaxNewTokens: 40}, nil).Tokens
	for _, maxNew := range []int{1, 2, 3, 5, 8, 13} {
		for _, gamma := range []int{1, 3, 4, 7} {
			for _, pc := range []sampling.Params{{}, {Temperature: 0.9}} {
				name := fmt.Sprintf("max%d/gamma%d/t%v", maxNew, gamma, pc.Temperature)
				t.Run(name, func(t *testing.T) {
					cfg := Config{MaxNewTokens: maxNew, Gamma: gamma, Params: pc}
					tl, dl := newFake(targetModel, vocab), newFake(partialModel, vocab)
					spec, err := GenerateSpeculative(tl, dl, prompt, cfg, sampling.NewRNG(3))
					if err != nil {
						t.Fatal(err)
					}
					ar, err := GenerateAR(newFake(targetModel, vocab), prompt, cfg, sampling.NewRNG(3))
					if err != nil {
						t.Fatal(err)
					}
					for _, o := range []Output{spec, ar} {
						if len(o.Tokens) != maxNew || o.FinishReason != FinishLength {
							t.Fatalf("got %d tokens (%s), want %d (length)", len(o.Tokens), o.FinishReason, maxNew)
						}
					}
					if pc.Temperature == 0 && (!slices.Equal(spec.Tokens, long[:maxNew]) || !slices.Equal(ar.Tokens, long[:maxNew])) {
						t.Fatalf("speculative %v, AR %v, want %v", spec.Tokens, ar.Tokens, long[:maxNew])
					}
					var emitted int
					for _, r := range spec.Rounds {
						emitted += len(r.Emitted)
					}
					if emitted+1 != maxNew {
						t.Fatalf("rounds emitted %d tokens after the first, want %d", emitted, maxNew-1)
					}
					if tl.Len() != len(prompt)+maxNew-1 {
						t.Fatalf("target ends with %d positions, want %d", tl.Len(), len(prompt)+maxNew-1)
					}
				})
			}
		}
	}
}

func TestStopTokens(t *testing.T) {
	prompt := []int{2, 7, 1, 8}
	long := genAR(t, targetModel, vocab, prompt, Config{MaxNewTokens: 40}, nil).Tokens
	// firstAt returns the token whose first occurrence is at index i or later.
	firstAt := func(i int) (int, int) {
		for ; ; i++ {
			if slices.Index(long, long[i]) == i {
				return long[i], i
			}
		}
	}
	first, _ := firstAt(0)
	mid, midAt := firstAt(6)
	tests := []struct {
		name   string
		stop   []int
		ignore bool
		want   []int
		reason FinishReason
	}{
		{"stop on the first token", []int{first}, false, long[:1], FinishStop},
		{"stop mid-round", []int{mid}, false, long[:midAt+1], FinishStop},
		{"earliest of several", []int{mid, first}, false, long[:1], FinishStop},
		{"ignore eos", []int{first, mid}, true, long, FinishLength},
		{"stop token never produced", []int{vocab + 3}, false, long, FinishLength},
	}
	for _, tt := range tests {
		for _, gamma := range []int{1, 3, 5} {
			t.Run(fmt.Sprintf("%s/gamma%d", tt.name, gamma), func(t *testing.T) {
				cfg := Config{MaxNewTokens: 40, Gamma: gamma, StopTokens: tt.stop, IgnoreEOS: tt.ignore}
				spec, err := GenerateSpeculative(newFake(targetModel, vocab), newFake(partialModel, vocab), prompt, cfg, nil)
				if err != nil {
					t.Fatal(err)
				}
				ar := genAR(t, targetModel, vocab, prompt, cfg, nil)
				for name, o := range map[string]Output{"speculative": spec, "AR": ar} {
					if !slices.Equal(o.Tokens, tt.want) || o.FinishReason != tt.reason {
						t.Fatalf("%s: %v (%s), want %v (%s)", name, o.Tokens, o.FinishReason, tt.want, tt.reason)
					}
				}
			})
		}
	}
}

// TestVocabLimit: padded ids (here with huge logits) are never produced by
// either model, in either mode, and the models may pad differently.
func TestVocabLimit(t *testing.T) {
	const limit = 12
	target := padded(targetModel, limit)
	drafter := padded(partialModel, limit)
	prompt := []int{5, 3}
	t.Run("the padding bites without the limit", func(t *testing.T) {
		out := genAR(t, target, 20, prompt, Config{MaxNewTokens: 5}, nil)
		if slices.IndexFunc(out.Tokens, func(x int) bool { return x >= limit }) < 0 {
			t.Fatalf("unmasked output %v has no padded id; the fixture is too weak", out.Tokens)
		}
	})
	for _, pc := range []sampling.Params{{VocabLimit: limit}, {Temperature: 1, VocabLimit: limit}, {Temperature: 0.7, TopK: 4, TopP: 0.9, VocabLimit: limit}} {
		t.Run(fmt.Sprintf("t%v-k%d-p%v", pc.Temperature, pc.TopK, pc.TopP), func(t *testing.T) {
			cfg := Config{MaxNewTokens: 30, Gamma: 4, Params: pc}
			out, err := GenerateSpeculative(newFake(target, 20), newFake(drafter, 24), prompt, cfg, sampling.NewRNG(5))
			if err != nil {
				t.Fatal(err)
			}
			ar := genAR(t, target, 20, prompt, cfg, sampling.NewRNG(5))
			for _, toks := range [][]int{out.Tokens, ar.Tokens} {
				if i := slices.IndexFunc(toks, func(x int) bool { return x >= limit }); i >= 0 {
					t.Fatalf("output %v holds padded id %d", toks, toks[i])
				}
			}
			for _, r := range out.Rounds {
				if i := slices.IndexFunc(r.Drafted, func(x int) bool { return x >= limit }); i >= 0 {
					t.Fatalf("drafts %v hold padded id %d", r.Drafted, r.Drafted[i])
				}
			}
			if pc.Greedy() && !slices.Equal(out.Tokens, ar.Tokens) {
				t.Fatalf("speculative %v, AR %v", out.Tokens, ar.Tokens)
			}
		})
	}
}

// TestParamsShapeBothModels: with a drafter equal to the target and q kept
// whole, q equals p exactly only if temperature, top-k and top-p reach both
// models identically; then every draft is accepted.
func TestParamsShapeBothModels(t *testing.T) {
	tests := []struct {
		name string
		p    sampling.Params
	}{
		{"temperature", sampling.Params{Temperature: 0.6}},
		{"top-k", sampling.Params{Temperature: 1, TopK: 5}},
		{"top-p", sampling.Params{Temperature: 1, TopP: 0.8}},
		{"all three", sampling.Params{Temperature: 1.4, TopK: 7, TopP: 0.9}},
		{"top-k 1 is greedy", sampling.Params{Temperature: 1, TopK: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var total Stats
			for pi, prompt := range prompts(10, vocab) {
				cfg := Config{MaxNewTokens: 20, Gamma: 4, Params: tt.p, DraftTopK: -1}
				out, err := GenerateSpeculative(newFake(targetModel, vocab), newFake(targetModel, vocab), prompt, cfg, sampling.NewRNG(uint64(pi)))
				if err != nil {
					t.Fatal(err)
				}
				total = total.Merge(out.Stats)
				if tt.p.TopK == 1 {
					greedy := genAR(t, targetModel, vocab, prompt, Config{MaxNewTokens: 20}, nil)
					if !slices.Equal(out.Tokens, greedy.Tokens) {
						t.Fatalf("prompt %d: top-k 1 gave %v, greedy %v", pi, out.Tokens, greedy.Tokens)
					}
				}
			}
			if total.AcceptanceRate != 1 || total.NumDraftTokens == 0 {
				t.Fatalf("acceptance %v over %d drafts, want exactly 1", total.AcceptanceRate, total.NumDraftTokens)
			}
		})
	}
}

func TestAdaptiveGamma(t *testing.T) {
	tests := []struct {
		name     string
		drafter  model
		adaptive Adaptive
		gamma    int
		lo, hi   int // bounds after defaults
		reach    int // a gamma the run must use; 0: none
	}{
		{"always accepted grows to max", targetModel, Adaptive{Enabled: true, Max: 6}, 3, 1, 6, 6},
		{"mostly rejected shrinks to min", randomModel, Adaptive{Enabled: true, Min: 2, Max: 8}, 5, 2, 8, 2},
		{"mixed stays in bounds", partialModel, Adaptive{Enabled: true}, 4, 1, 8, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prompt := []int{9, 9, 4}
			cfg := Config{MaxNewTokens: 60, Gamma: tt.gamma, Adaptive: tt.adaptive}
			out, err := GenerateSpeculative(newFake(targetModel, vocab), newFake(tt.drafter, vocab), prompt, cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			gammas := out.Gammas()
			if gammas[0] != tt.gamma {
				t.Fatalf("first round gamma %d, want %d", gammas[0], tt.gamma)
			}
			for i, r := range out.Rounds {
				if r.Gamma < tt.lo || r.Gamma > tt.hi {
					t.Fatalf("round %d gamma %d outside [%d, %d]", i+1, r.Gamma, tt.lo, tt.hi)
				}
				if i+1 < len(out.Rounds) {
					want := max(r.Gamma-1, tt.lo)
					if r.Accepted == r.Gamma {
						want = min(r.Gamma+2, tt.hi)
					}
					if next := out.Rounds[i+1].Gamma; next != want {
						t.Fatalf("round %d accepted %d of %d; next gamma %d, want %d", i+1, r.Accepted, r.Gamma, next, want)
					}
				}
			}
			if tt.reach != 0 && !slices.Contains(gammas, tt.reach) {
				t.Fatalf("gammas %v never reached %d", gammas, tt.reach)
			}
			ar := genAR(t, targetModel, vocab, prompt, cfg, nil)
			if !slices.Equal(out.Tokens, ar.Tokens) {
				t.Fatalf("adaptive speculative %v, AR %v", out.Tokens, ar.Tokens)
			}
		})
	}
}

func TestReproducible(t *testing.T) {
	prompt := []int{1, 2, 3}
	cfg := Config{MaxNewTokens: 30, Gamma: 3, Params: sampling.Params{Temperature: 1, TopP: 0.95}}
	run := func(seed uint64) Output {
		out, err := GenerateSpeculative(newFake(targetModel, vocab), newFake(partialModel, vocab), prompt, cfg, sampling.NewRNG(seed))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	a, b, c := run(42), run(42), run(43)
	if !slices.Equal(a.Tokens, b.Tokens) || !slices.Equal(a.Gammas(), b.Gammas()) || a.Stats.NumAcceptedTokens != b.Stats.NumAcceptedTokens {
		t.Fatalf("seed 42 gave %v then %v", a.Tokens, b.Tokens)
	}
	if slices.Equal(a.Tokens, c.Tokens) {
		t.Fatalf("seeds 42 and 43 gave the same 30 tokens %v", a.Tokens)
	}
}

func TestStats(t *testing.T) {
	rounds := []Round{
		{Gamma: 3, Accepted: 3, AcceptedByPosition: []bool{true, true, true}},
		{Gamma: 3, Accepted: 1, AcceptedByPosition: []bool{true, false, false}},
		{Gamma: 2, Accepted: 0, AcceptedByPosition: []bool{false, false}},
	}
	s := Summarize(rounds)
	accepted, drafts := 4.0, 3.0 // variables: rounded as the code rounds
	want := Stats{
		NumDrafts: 3, NumDraftTokens: 8, NumAcceptedTokens: 4,
		AcceptanceRate: 0.5, MeanAcceptanceLength: 1 + accepted/drafts,
		AcceptanceByPosition: []float64{2.0 / 3, 1.0 / 3, 1.0 / 2},
		DraftsByPosition:     []int{3, 3, 2}, AcceptedByPosition: []int{2, 1, 1},
	}
	if fmt.Sprint(s) != fmt.Sprint(want) {
		t.Fatalf("Summarize = %+v\nwant        %+v", s, want)
	}
	merged := Summarize(rounds[:1]).Merge(Summarize(rounds[1:]))
	if fmt.Sprint(merged) != fmt.Sprint(want) {
		t.Fatalf("Merge = %+v\nwant    %+v", merged, want)
	}
	if z := Summarize(nil); z.AcceptanceRate != 0 || z.MeanAcceptanceLength != 0 {
		t.Fatalf("empty stats %+v, want zero rates", z)
	}
}

func TestGenerateErrors(t *testing.T) {
	good := Config{MaxNewTokens: 5, Gamma: 2}
	hot := Config{MaxNewTokens: 5, Gamma: 2, Params: sampling.Params{Temperature: 0.8, TopK: 20}}
	boom := errors.New("device lost")
	tests := []struct {
		name    string
		prompt  []int
		cfg     Config
		rng     sampling.RNG
		target  func(*fakeLM)
		drafter func(*fakeLM)
		want    string
		is      error
	}{
		{name: "empty prompt", cfg: good, want: "empty prompt"},
		{name: "no tokens asked", prompt: []int{1}, cfg: Config{Gamma: 2}, want: "max new tokens 0"},
		{name: "gamma 0", prompt: []int{1}, cfg: Config{MaxNewTokens: 5}, want: "gamma 0"},
		{name: "bad params", prompt: []int{1}, cfg: Config{MaxNewTokens: 5, Gamma: 2, Params: sampling.Params{TopP: 2}}, want: "top_p"},
		{name: "sampling without rng", prompt: []int{1}, cfg: Config{MaxNewTokens: 5, Gamma: 2, Params: sampling.Params{Temperature: 1}}, want: "needs an rng"},
		{name: "adaptive bounds", prompt: []int{1}, cfg: Config{MaxNewTokens: 5, Gamma: 4, Adaptive: Adaptive{Enabled: true, Max: 3}}, want: "adaptive gamma"},
		{name: "target cache not empty", prompt: []int{1}, cfg: good, target: func(f *fakeLM) { f.tokens = []int{1} }, want: "target cache holds 1 positions"},
		{name: "drafter cache not empty", prompt: []int{1}, cfg: good, drafter: func(f *fakeLM) { f.tokens = []int{1} }, want: "drafter cache holds 1 positions"},
		{name: "target feed fails", prompt: []int{1}, cfg: good, target: func(f *fakeLM) { f.feedErr = boom }, want: "speculative prefill: target: feeding 1 tokens at position 0", is: boom},
		{name: "drafter feed fails", prompt: []int{1}, cfg: good, drafter: func(f *fakeLM) { f.feedErr = boom }, want: "speculative round 1: draft 1: drafter: feeding 2 tokens", is: boom},
		{name: "short logits", prompt: []int{1, 2}, cfg: good, drafter: func(f *fakeLM) { f.short = true }, want: "got 0 rows of logits, want 1"},
		{name: "target logits NaN at prefill", prompt: []int{1}, cfg: good, target: func(f *fakeLM) { f.nanFrom = 1 }, want: "speculative prefill", is: sampling.ErrNoUsableLogit},
		{name: "target logits NaN at verify", prompt: []int{1}, cfg: good, target: func(f *fakeLM) { f.nanFrom = 3 }, want: "speculative round 1", is: sampling.ErrNoUsableLogit},
		{name: "drafter logits NaN", prompt: []int{1}, cfg: good, drafter: func(f *fakeLM) { f.nanFrom = 1 }, want: "draft 1: drafter: no token can be chosen", is: sampling.ErrNoUsableLogit},
		{name: "sampled: target logits NaN at prefill", prompt: []int{1}, cfg: hot, rng: sampling.NewRNG(1), target: func(f *fakeLM) { f.nanFrom = 1 }, want: "speculative prefill", is: sampling.ErrNoUsableLogit},
		{name: "sampled: target logits NaN at verify", prompt: []int{1}, cfg: hot, rng: sampling.NewRNG(1), target: func(f *fakeLM) { f.nanFrom = 3 }, want: "target distribution has no probability mass", is: sampling.ErrNoUsableLogit},
		{name: "sampled: drafter logits NaN", prompt: []int{1}, cfg: hot, rng: sampling.NewRNG(1), drafter: func(f *fakeLM) { f.nanFrom = 1 }, want: "draft 1: drafter: no token can be chosen", is: sampling.ErrNoUsableLogit},
		{name: "cache length drift", prompt: []int{1}, cfg: good, target: func(f *fakeLM) { f.model = skewAfterFirst(f) }, want: "target: cache holds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl, dl := newFake(targetModel, vocab), newFake(partialModel, vocab)
			if tt.target != nil {
				tt.target(tl)
			}
			if tt.drafter != nil {
				tt.drafter(dl)
			}
			_, err := GenerateSpeculative(tl, dl, tt.prompt, tt.cfg, tt.rng)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("err = %v does not wrap %v", err, tt.is)
			}
		})
	}
	t.Run("AR logits NaN", func(t *testing.T) {
		f := newFake(targetModel, vocab)
		f.nanFrom = 3
		_, err := GenerateAR(f, []int{1}, good, nil)
		if !errors.Is(err, sampling.ErrNoUsableLogit) || !strings.Contains(err.Error(), "ar step 2") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("sampled AR logits NaN", func(t *testing.T) {
		f := newFake(targetModel, vocab)
		f.nanFrom = 3
		_, err := GenerateAR(f, []int{1}, hot, sampling.NewRNG(1))
		if !errors.Is(err, sampling.ErrNoUsableLogit) || !strings.Contains(err.Error(), "ar step 2") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("AR feed fails", func(t *testing.T) {
		f := newFake(targetModel, vocab)
		f.feedErr = boom
		_, err := GenerateAR(f, []int{1}, good, nil)
		if !errors.Is(err, boom) || !strings.Contains(err.Error(), "ar step 0: target: feeding 1 tokens") {
			t.Fatalf("err = %v", err)
		}
	})
}

// skewAfterFirst makes f over-report its length from the second position it
// computes on, as an engine that double-counts a position would.
func skewAfterFirst(f *fakeLM) model {
	m := f.model
	return func(h uint64, out []float32) {
		if len(f.tokens) > 1 {
			f.extra = 1
		}
		m(h, out)
	}
}
