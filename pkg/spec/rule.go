// Package spec implements speculative decoding: the acceptance rule that
// keeps the target model's output distribution, and the generation loops
// (plain autoregressive and draft/verify) over a small language-model
// interface with rollback.
package spec

import (
	"fmt"

	"github.com/draftbench/draftbench/pkg/sampling"
)

// Verdict is the target's answer to one round of drafts.
type Verdict struct {
	// Accepted is the number of leading drafts kept.
	Accepted int
	// Emitted holds the accepted drafts and then one more token: the
	// correction at the first rejection, or the bonus token when every draft
	// was accepted. Its length is Accepted+1.
	Emitted []int
	// AcceptedByPosition[i] reports whether draft i+1 was accepted; positions
	// after the first rejection were not examined and read false.
	AcceptedByPosition []bool
}

// Verify applies the speculative sampling rule of Leviathan, Kalman and
// Matias, "Fast Inference from Transformers via Speculative Decoding" (ICML
// 2023, Algorithm 1) and Chen et al., "Accelerating Large Language Model
// Decoding with Speculative Sampling" (2023, Algorithm 2).
//
// drafts holds x_1..x_γ, each drawn from its draft distribution q_i (sparse: a
// drafter sends only the ids it can propose); p holds the target's dense
// distributions p_1..p_{γ+1}, p_i conditioned on the prefix before x_i. For
// i = 1..γ, with u ~ U[0,1):
//
//	accept x_i  if u < min(1, p_i(x_i) / q_i(x_i))
//	otherwise   emit y ~ norm(max(0, p_i − q_i)) and stop
//
// and when all γ are accepted emit a bonus y ~ p_{γ+1}. Every emitted token is
// then distributed exactly as the target would have sampled it. If max(0, p_i −
// q_i) has no mass (p_i == q_i on the support, reachable only through
// rounding) y is drawn from p_i instead.
//
// Greedy (temperature 0): accept while x_i == argmax p_i, then emit argmax p_i
// (argmax p_{γ+1} as the bonus); q and rng are not used and may be nil, and the
// output is token for token the target's greedy output.
//
// The rule draws one uniform per examined draft and one for the last token,
// in that order, so a seeded rng replays a run.
func Verify(drafts []int, q []sampling.Sparse, p [][]float32, greedy bool, rng sampling.RNG) (Verdict, error) {
	gamma := len(drafts)
	if len(p) != gamma+1 {
		return Verdict{}, fmt.Errorf("verify: %d target distributions for %d drafts, want %d", len(p), gamma, gamma+1)
	}
	if greedy {
		choice := make([]int, len(p))
		for i, row := range p {
			if choice[i] = sampling.Argmax(row, 0); choice[i] < 0 {
				return Verdict{}, fmt.Errorf("verify: target distribution %d has no probability mass", i+1)
			}
		}
		return VerifyGreedy(drafts, choice)
	}
	if len(q) != gamma {
		return Verdict{}, fmt.Errorf("verify: %d draft distributions for %d drafts", len(q), gamma)
	}
	if rng == nil {
		return Verdict{}, fmt.Errorf("verify: sampling needs an rng")
	}
	return verify(drafts, q, p, func(uniform, int) float64 { return rng.Float64() })
}

// uniform names the uniforms the sampled rule uses.
type uniform int

const (
	uAccept   uniform = iota // deciding on draft i
	uResidual                // the correction at a rejection of draft i
	uBonus                   // the token after γ accepted drafts
)

// VerifyAt is Verify (sampled) with its uniforms given instead of drawn:
// draft i is accepted when uAccept[i]·q_i(x) < p_i(x), a rejection at i
// draws the correction at uResidual[i], the bonus token is drawn at uBonus.
// A device that applies the rule takes its uniforms so; this is its host
// reference.
func VerifyAt(drafts []int, q []sampling.Sparse, p [][]float32, uAcc, uRes []float64, uBon float64) (Verdict, error) {
	gamma := len(drafts)
	if len(p) != gamma+1 || len(q) != gamma || len(uAcc) != gamma || len(uRes) != gamma {
		return Verdict{}, fmt.Errorf("verify: %d drafts with %d target distributions, %d draft distributions and %d+%d uniforms",
			gamma, len(p), len(q), len(uAcc), len(uRes))
	}
	return verify(drafts, q, p, func(k uniform, i int) float64 {
		switch k {
		case uAccept:
			return uAcc[i]
		case uResidual:
			return uRes[i]
		}
		return uBon
	})
}

// Uniforms are the uniforms a device applying the rule to gamma drafts takes
// up front from sampling.NewRNG(seed), in VerifyAt's order (every accept,
// every residual, then the bonus), as the float32s a device computes with.
func Uniforms(seed uint64, gamma int) (accept, residual []float32, bonus float32) {
	rng := sampling.NewRNG(seed)
	next := func(n int) []float32 {
		u := make([]float32, n)
		for i := range u {
			u[i] = float32(rng.Float64())
		}
		return u
	}
	accept, residual = next(gamma), next(gamma)
	return accept, residual, next(1)[0]
}

// VerifySeeded is VerifyAt at Uniforms(seed, γ): the verdict a device that
// judges the step with that seed reaches.
func VerifySeeded(drafts []int, q []sampling.Sparse, p [][]float32, seed uint64) (Verdict, error) {
	ua, ur, ub := Uniforms(seed, len(drafts))
	widen := func(u []float32) []float64 {
		out := make([]float64, len(u))
		for i, x := range u {
			out[i] = float64(x)
		}
		return out
	}
	return VerifyAt(drafts, q, p, widen(ua), widen(ur), float64(ub))
}

// verify is the sampled rule with u giving each uniform as it is needed,
// in the order accept (each examined draft), then residual or bonus.
func verify(drafts []int, q []sampling.Sparse, p [][]float32, u func(k uniform, i int) float64) (Verdict, error) {
	gamma := len(drafts)
	v := Verdict{Emitted: make([]int, 0, gamma+1), AcceptedByPosition: make([]bool, gamma)}
	for i, x := range drafts {
		if x < 0 {
			return Verdict{}, fmt.Errorf("verify: draft %d is token %d", i+1, x)
		}
		qx := float64(q[i].Prob(x))
		if !(qx > 0) {
			return Verdict{}, fmt.Errorf("verify: draft %d (token %d) has probability 0 in its own q; the drafter must sample from the q it sends", i+1, x)
		}
		// u < p/q written without the division; with p >= q it always holds.
		if ua := u(uAccept, i); !(ua*qx < float64(at(p[i], x))) {
			y, err := residual(p[i], q[i], u(uResidual, i))
			if err != nil {
				return Verdict{}, fmt.Errorf("verify: correcting draft %d: %w", i+1, err)
			}
			v.Emitted = append(v.Emitted, y)
			return v, nil
		}
		v.Accepted++
		v.AcceptedByPosition[i] = true
		v.Emitted = append(v.Emitted, x)
	}
	y := sampling.Sample(p[gamma], u(uBonus, 0))
	if y < 0 {
		return Verdict{}, fmt.Errorf("verify: target distribution %d has no probability mass: %w", gamma+1, sampling.ErrNoUsableLogit)
	}
	v.Emitted = append(v.Emitted, y)
	return v, nil
}

// VerifyGreedy is Verify at temperature 0 given only the target's choices:
// choice[i] is the argmax of p_{i+1} (γ+1 of them). Callers holding logits
// pass sampling.Argmax(logits, vocabLimit) and build no dense distribution.
func VerifyGreedy(drafts, choice []int) (Verdict, error) {
	gamma := len(drafts)
	if len(choice) != gamma+1 {
		return Verdict{}, fmt.Errorf("verify: %d target choices for %d drafts, want %d", len(choice), gamma, gamma+1)
	}
	v := Verdict{Emitted: make([]int, 0, gamma+1), AcceptedByPosition: make([]bool, gamma)}
	for i, x := range drafts {
		if x < 0 {
			return Verdict{}, fmt.Errorf("verify: draft %d is token %d", i+1, x)
		}
		if choice[i] < 0 {
			return Verdict{}, fmt.Errorf("verify: target choice %d is token %d", i+1, choice[i])
		}
		if x != choice[i] {
			v.Emitted = append(v.Emitted, choice[i])
			return v, nil
		}
		v.Accepted++
		v.AcceptedByPosition[i] = true
		v.Emitted = append(v.Emitted, x)
	}
	if choice[gamma] < 0 {
		return Verdict{}, fmt.Errorf("verify: target choice %d is token %d", gamma+1, choice[gamma])
	}
	v.Emitted = append(v.Emitted, choice[gamma])
	return v, nil
}

// at is p(x), 0 past the end of p (a drafter with a larger padded
// vocabulary may propose an id the target cannot produce).
func at(p []float32, x int) float32 {
	if x < len(p) {
		return p[x]
	}
	return 0
}

// residual draws from norm(max(0, p − q)), or from p when that has no mass.
func residual(p []float32, q sampling.Sparse, u float64) (int, error) {
	r := make([]float32, len(p))
	copy(r, p)
	for j, id := range q.IDs {
		if int(id) < len(r) {
			r[id] = max(0, r[id]-q.Probs[j])
		}
	}
	y := sampling.Sample(r, u)
	if y < 0 {
		y = sampling.Sample(p, u)
	}
	if y < 0 {
		return 0, fmt.Errorf("target distribution has no probability mass: %w", sampling.ErrNoUsableLogit)
	}
	return y, nil
}
