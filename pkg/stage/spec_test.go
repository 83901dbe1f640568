package stage

import (
	"math"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/draftbench/draftbench/pkg/protocol"
)

// speculate drives draft/verify rounds as a session driver does, keeping
// pkg/spec's cache invariant through CacheLen: the target holds S minus its
// last token, the drafter min(what it holds, len(S)-1). tamper may change a
// round's drafts before they are verified.
func (c *cluster) speculate(t *testing.T, target, drafter string, prompt []int, n, gamma int, smp protocol.Sampling,
	tamper func(round int, drafts []int)) ([]int, []*protocol.StepReply) {
	t.Helper()
	session := uuid.New()
	rep := c.mustStep(t, target, &protocol.StepRequest{Session: session, Op: protocol.OpPrefill, Tokens: prompt, Sampling: smp, Seed: 1})
	S := append(slices.Clone(prompt), rep.Tokens...)
	held := 0 // drafter cache length
	var verdicts []*protocol.StepReply
	for round := 0; len(S)-len(prompt) < n; round++ {
		from := min(held, len(S)-1)
		d := c.mustStep(t, drafter, &protocol.StepRequest{Session: session, Op: protocol.OpDraft, CacheLen: from,
			Tokens: S[from:], Gamma: gamma, Sampling: smp, Seed: uint64(100 + round)})
		if len(d.Tokens) != gamma || len(d.Q) != gamma {
			t.Fatalf("round %d: %d drafts with %d distributions, want %d", round, len(d.Tokens), len(d.Q), gamma)
		}
		if want := len(S) + gamma - 1; d.CacheLen != want {
			t.Fatalf("round %d: the drafter holds %d positions after drafting, want %d (every draft but the last)", round, d.CacheLen, want)
		}
		held = d.CacheLen
		drafts := slices.Clone(d.Tokens)
		if tamper != nil {
			tamper(round, drafts)
		}
		v := c.mustStep(t, target, &protocol.StepRequest{Session: session, Op: protocol.OpVerify, CacheLen: len(S) - 1,
			Tokens: S[len(S)-1:], Drafts: drafts, Q: d.Q, Sampling: smp, Seed: uint64(200 + round)})
		if len(v.Tokens) != v.Accepted+1 || len(v.AcceptedByPosition) != gamma {
			t.Fatalf("round %d: verdict of %d tokens, %d accepted, %d positions", round, len(v.Tokens), v.Accepted, len(v.AcceptedByPosition))
		}
		S = append(S, v.Tokens...)
		if v.CacheLen != len(S)-1 {
			t.Fatalf("round %d: the target holds %d positions after verify, want %d", round, v.CacheLen, len(S)-1)
		}
		verdicts = append(verdicts, v)
	}
	return S[len(prompt):], verdicts
}

func TestSpeculativeGreedyMatchesGolden(t *testing.T) {
	g := readGolden(t)
	const gamma = 4
	const vocab = 384
	cases := []struct {
		name string
		// bad is the index of the draft spoiled in a round, -1 for none.
		bad func(round int) int
	}{
		{"honest drafter", func(int) int { return -1 }},
		{"every round rejects", func(round int) int { return round % gamma }},
		{"some rounds reject", func(round int) int { return []int{-1, 0, -1, 3, 2}[round%5] }},
	}
	c := newCluster(t, 0)
	c.pipeline(t, "target", [][2]int{{0, 1}, {1, 3}}, nil)
	// The drafter is the target itself in one stage, so every honest draft
	// is the target's greedy token.
	c.pipeline(t, "drafter", [][2]int{{0, 3}}, nil)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for i, p := range g.Prompts {
				out, verdicts := c.speculate(t, "target", "drafter", p.Tokens, len(p.Greedy), gamma, protocol.Sampling{},
					func(round int, drafts []int) {
						if j := tc.bad(round); j >= 0 {
							drafts[j] = (drafts[j] + 1) % vocab
						}
					})
				if got := out[:len(p.Greedy)]; !slices.Equal(got, p.Greedy) {
					t.Errorf("prompt %d: got %v, want %v", i, got, p.Greedy)
				}
				for round, v := range verdicts {
					want := gamma
					if j := tc.bad(round); j >= 0 {
						want = j
					}
					if v.Accepted != want {
						t.Errorf("prompt %d round %d: %d accepted, want %d", i, round, v.Accepted, want)
					}
					for pos, ok := range v.AcceptedByPosition {
						if ok != (pos < want) {
							t.Errorf("prompt %d round %d: accepted_by_position %v, want the first %d", i, round, v.AcceptedByPosition, want)
							break
						}
					}
				}
			}
		})
	}
}

func checkQ(t *testing.T, what string, tok int, q protocol.Sparse, k int) {
	t.Helper()
	if len(q.IDs) == 0 || len(q.IDs) > k || len(q.IDs) != len(q.Probs) {
		t.Fatalf("%s: q has %d ids and %d probs, want 1..%d", what, len(q.IDs), len(q.Probs), k)
	}
	var sum float64
	for j, p := range q.Probs {
		sum += float64(p)
		if j > 0 && p > q.Probs[j-1] {
			t.Errorf("%s: q is not sorted by probability: %v", what, q.Probs)
		}
	}
	if math.Abs(sum-1) > 1e-5 {
		t.Errorf("%s: q sums to %v", what, sum)
	}
	if !(q.Sampling().Prob(tok) > 0) {
		t.Errorf("%s: token %d is not in the q it was drawn from", what, tok)
	}
}

// TestSampledStepsReplay checks that sampling at the last stage depends on
// the request alone: the same step from the same cache length with the same
// seed answers the same (the cache is rolled back by CacheLen in between),
// and each draft is drawn from the q it comes with.
func TestSampledStepsReplay(t *testing.T) {
	g := readGolden(t)
	prompt := g.Prompts[1].Tokens
	smp := protocol.Sampling{Temperature: 0.9, TopP: 0.95, DraftTopK: 16}
	c := newCluster(t, 0)
	c.pipeline(t, "target", [][2]int{{0, 1}, {1, 3}}, nil)
	c.pipeline(t, "drafter", [][2]int{{0, 3}}, nil)
	session := uuid.New()

	cases := []struct {
		name     string
		instance string
		req      protocol.StepRequest
		check    func(t *testing.T, rep *protocol.StepReply)
	}{
		{"draft", "drafter", protocol.StepRequest{Op: protocol.OpDraft, Tokens: prompt, Gamma: 5},
			func(t *testing.T, rep *protocol.StepReply) {
				if len(rep.Tokens) != 5 || len(rep.Q) != 5 || rep.CacheLen != len(prompt)+4 {
					t.Fatalf("%d drafts, %d q, cache %d; want 5, 5, %d", len(rep.Tokens), len(rep.Q), rep.CacheLen, len(prompt)+4)
				}
				for i, tok := range rep.Tokens {
					checkQ(t, "draft", tok, rep.Q[i], 16)
				}
			}},
		{"split drafter decodes with return_q", "target", protocol.StepRequest{Op: protocol.OpPrefill, Tokens: prompt, ReturnQ: true},
			func(t *testing.T, rep *protocol.StepReply) {
				if len(rep.Tokens) != 1 || len(rep.Q) != 1 {
					t.Fatalf("%d tokens with %d q, want 1 and 1", len(rep.Tokens), len(rep.Q))
				}
				checkQ(t, "decode", rep.Tokens[0], rep.Q[0], 16)
			}},
		{"plain decode", "target", protocol.StepRequest{Op: protocol.OpPrefill, Tokens: prompt},
			func(t *testing.T, rep *protocol.StepReply) {
				if len(rep.Tokens) != 1 || len(rep.Q) != 0 {
					t.Fatalf("%d tokens with %d q, want 1 and none", len(rep.Tokens), len(rep.Q))
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var replies []*protocol.StepReply
			for _, seed := range []uint64{7, 7, 8, 9, 10} {
				req := tc.req
				req.Session, req.Sampling, req.Seed = session, smp, seed
				rep := c.mustStep(t, tc.instance, &req)
				tc.check(t, rep)
				replies = append(replies, rep)
			}
			same := func(a, b *protocol.StepReply) bool {
				if !slices.Equal(a.Tokens, b.Tokens) || len(a.Q) != len(b.Q) {
					return false
				}
				for i := range a.Q {
					if !slices.Equal(a.Q[i].IDs, b.Q[i].IDs) || !slices.Equal(a.Q[i].Probs, b.Q[i].Probs) {
						return false
					}
				}
				return true
			}
			if !same(replies[0], replies[1]) {
				t.Errorf("seed 7 twice: %v then %v", replies[0].Tokens, replies[1].Tokens)
			}
			differs := false
			for _, r := range replies[2:] {
				differs = differs || !slices.Equal(r.Tokens, replies[0].Tokens)
			}
			if !differs {
				t.Errorf("seeds 7 to 10 all gave %v: the seed is not used", replies[0].Tokens)
			}
		})
	}

	t.Run("verify", func(t *testing.T) {
		// Round 1 of a sampled session, verified twice from the same state.
		pre := c.mustStep(t, "target", &protocol.StepRequest{Session: session, Op: protocol.OpPrefill, Tokens: prompt, Sampling: smp, Seed: 3})
		S := append(slices.Clone(prompt), pre.Tokens...)
		d := c.mustStep(t, "drafter", &protocol.StepRequest{Session: session, Op: protocol.OpDraft, Tokens: S, Gamma: 4, Sampling: smp, Seed: 4})
		var verdicts []*protocol.StepReply
		for range 2 {
			v := c.mustStep(t, "target", &protocol.StepRequest{Session: session, Op: protocol.OpVerify, CacheLen: len(S) - 1,
				Tokens: S[len(S)-1:], Drafts: d.Tokens, Q: d.Q, Sampling: smp, Seed: 5})
			if len(v.Tokens) != v.Accepted+1 || v.CacheLen != len(S)+v.Accepted || !slices.Equal(v.Tokens[:v.Accepted], d.Tokens[:v.Accepted]) {
				t.Fatalf("verdict %+v for drafts %v from cache %d", v, d.Tokens, len(S)-1)
			}
			verdicts = append(verdicts, v)
		}
		if !slices.Equal(verdicts[0].Tokens, verdicts[1].Tokens) {
			t.Errorf("the same verify twice: %v then %v", verdicts[0].Tokens, verdicts[1].Tokens)
		}
	})
}
