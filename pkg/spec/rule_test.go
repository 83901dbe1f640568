package spec

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/draftbench/draftbench/pkg/sampling"
)

// script is an RNG that returns fixed uniforms and fails the test when the
// rule asks for more than it was given.
type script struct {
	t    *testing.T
	vals []float64
}

func (s *script) Float64() float64 {
	if len(s.vals) == 0 {
		s.t.Fatal("the rule drew more uniforms than scripted")
	}
	u := s.vals[0]
	s.vals = s.vals[1:]
	return u
}

func sparse(ids []int32, probs []float32) sampling.Sparse {
	return sampling.Sparse{IDs: ids, Probs: probs}
}

func TestVerifyGreedy(t *testing.T) {
	p := [][]float32{
		{0, 1, 0, 0},
		{0, 0, 0, 1},
		{1, 0, 0, 0},
		{0, 0, 1, 0},
	}
	tests := []struct {
		name   string
		drafts []int
		want   Verdict
	}{
		{"all accepted plus bonus", []int{1, 3, 0}, Verdict{3, []int{1, 3, 0, 2}, []bool{true, true, true}}},
		{"first rejected is corrected", []int{2, 3, 0}, Verdict{0, []int{1}, []bool{false, false, false}}},
		{"middle rejected", []int{1, 3, 3}, Verdict{2, []int{1, 3, 0}, []bool{true, true, false}}},
		{"no drafts emits the argmax", nil, Verdict{0, []int{1}, []bool{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Verify(tt.drafts, nil, p[:len(tt.drafts)+1], true, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got.Accepted != tt.want.Accepted || !slices.Equal(got.Emitted, tt.want.Emitted) ||
				!slices.Equal(got.AcceptedByPosition, tt.want.AcceptedByPosition) {
				t.Fatalf("Verify = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// twoDrafts is a verify step of two drafted positions and the bonus one: the
// target's p per position and the drafter's q of the two drafts.
func twoDrafts() ([][]float32, []sampling.Sparse) {
	p := [][]float32{
		{0.5, 0.25, 0.25, 0},
		{0, 0, 0.5, 0.5},
		{0, 1, 0, 0},
	}
	q := []sampling.Sparse{
		sparse([]int32{0, 1}, []float32{0.5, 0.5}),
		sparse([]int32{3, 2}, []float32{0.75, 0.25}),
	}
	return p, q
}

// TestVerifySampling walks the rule with scripted uniforms.
func TestVerifySampling(t *testing.T) {
	p, q := twoDrafts()
	tests := []struct {
		name   string
		drafts []int
		us     []float64
		want   Verdict
	}{
		// p/q = 1 for token 0 (always accepted), 2/3 for token 3 at position 2.
		{"accept both then bonus", []int{0, 3}, []float64{0.99, 0.66, 0.3}, Verdict{2, []int{0, 3, 1}, []bool{true, true}}},
		// Token 3 rejected (u=0.67 >= 2/3): residual max(0, p2-q2) = {2: 0.25} only.
		{"reject at 2, correct from the residual", []int{0, 3}, []float64{0.5, 0.67, 0.0}, Verdict{1, []int{0, 2}, []bool{true, false}}},
		// Token 1 at position 1: p/q = 0.5. Residual {0: 0, 1: 0, 2: 0.25} → 2.
		{"reject at 1", []int{1, 3}, []float64{0.5, 0.99}, Verdict{0, []int{2}, []bool{false, false}}},
		{"accept at 1 under the ratio", []int{1, 2}, []float64{0.49, 0.999, 0.5}, Verdict{2, []int{1, 2, 1}, []bool{true, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := &script{t: t, vals: tt.us}
			got, err := Verify(tt.drafts, q, p, false, rng)
			if err != nil {
				t.Fatal(err)
			}
			if got.Accepted != tt.want.Accepted || !slices.Equal(got.Emitted, tt.want.Emitted) ||
				!slices.Equal(got.AcceptedByPosition, tt.want.AcceptedByPosition) {
				t.Fatalf("Verify = %+v, want %+v", got, tt.want)
			}
			if len(rng.vals) != 0 {
				t.Fatalf("%d scripted uniforms left over: the rule draws one per examined draft and one for the last token", len(rng.vals))
			}
		})
	}
}

// TestVerifyAt: with its uniforms given, the rule decides as Verify does
// when Verify draws the same values (the accepts in order, then the
// residual or the bonus), whatever the others hold.
func TestVerifyAt(t *testing.T) {
	p, q := twoDrafts()
	tests := []struct {
		name       string
		drafts     []int
		acc, res   []float64
		bonus      float64
		drawn      []float64 // what Verify draws for the same decisions
		wantAccept int
	}{
		{"both accepted, bonus", []int{0, 3}, []float64{0.99, 0.66}, []float64{0.9, 0.9}, 0.3, []float64{0.99, 0.66, 0.3}, 2},
		{"rejected at 2", []int{0, 3}, []float64{0.5, 0.67}, []float64{0.9, 0.0}, 0.9, []float64{0.5, 0.67, 0.0}, 1},
		{"rejected at 1", []int{1, 3}, []float64{0.5, 0.1}, []float64{0.99, 0.5}, 0.5, []float64{0.5, 0.99}, 0},
	}
	for _, tt := range tests {
		want, err := Verify(tt.drafts, q, p, false, &script{t: t, vals: tt.drawn})
		if err != nil {
			t.Fatal(err)
		}
		got, err := VerifyAt(tt.drafts, q, p, tt.acc, tt.res, tt.bonus)
		if err != nil {
			t.Fatal(err)
		}
		if got.Accepted != tt.wantAccept || got.Accepted != want.Accepted || !slices.Equal(got.Emitted, want.Emitted) ||
			!slices.Equal(got.AcceptedByPosition, want.AcceptedByPosition) {
			t.Errorf("%s: VerifyAt = %+v, Verify = %+v", tt.name, got, want)
		}
	}
	if _, err := VerifyAt([]int{0}, q[:1], p[:2], nil, nil, 0); err == nil {
		t.Error("missing uniforms went unreported")
	}
}

func TestVerifyEdges(t *testing.T) {
	t.Run("empty residual falls back to p", func(t *testing.T) {
		// q sums past 1 (as rounding can make it), so max(0, p-q) is all zero
		// after a rejection of token 0 (p/q = 5/6).
		p := [][]float32{{0.5, 0.5}, {1, 0}}
		q := []sampling.Sparse{sparse([]int32{0, 1}, []float32{0.6, 0.5})}
		got, err := Verify([]int{0}, q, p, false, &script{t: t, vals: []float64{0.9, 0.7}})
		if err != nil {
			t.Fatal(err)
		}
		if got.Accepted != 0 || !slices.Equal(got.Emitted, []int{1}) {
			t.Fatalf("Verify = %+v, want the correction drawn from p (u=0.7 → token 1)", got)
		}
	})
	t.Run("draft past the target vocabulary is rejected", func(t *testing.T) {
		p := [][]float32{{0.25, 0.75}, {1, 0}}
		q := []sampling.Sparse{sparse([]int32{5, 1}, []float32{0.5, 0.5})}
		got, err := Verify([]int{5}, q, p, false, &script{t: t, vals: []float64{0, 0.9}})
		if err != nil {
			t.Fatal(err)
		}
		if got.Accepted != 0 || !slices.Equal(got.Emitted, []int{1}) {
			t.Fatalf("Verify = %+v, want a rejection corrected to token 1", got)
		}
	})
	errs := []struct {
		name   string
		drafts []int
		q      []sampling.Sparse
		p      [][]float32
		greedy bool
		rng    sampling.RNG
		want   string
	}{
		{"too few target rows", []int{0}, nil, [][]float32{{1}}, true, nil, "1 target distributions for 1 drafts"},
		{"q missing", []int{0}, nil, [][]float32{{1}, {1}}, false, sampling.NewRNG(1), "0 draft distributions"},
		{"no rng", []int{0}, []sampling.Sparse{sparse([]int32{0}, []float32{1})}, [][]float32{{1}, {1}}, false, nil, "needs an rng"},
		{"draft outside its q", []int{1}, []sampling.Sparse{sparse([]int32{0}, []float32{1})}, [][]float32{{1, 0}, {1, 0}}, false, sampling.NewRNG(1), "probability 0 in its own q"},
		{"negative draft", []int{-1}, nil, [][]float32{{1}, {1}}, true, nil, "token -1"},
		{"target without mass", nil, nil, [][]float32{{0, 0}}, false, sampling.NewRNG(1), "no probability mass"},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Verify(tt.drafts, tt.q, tt.p, tt.greedy, tt.rng)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

type pqCase struct {
	Name string      `json:"name"`
	P    [][]float64 `json:"p"`
	Q    [][]float64 `json:"q"`
}

func loadPQ(t *testing.T) []pqCase {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "pq_pairs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []pqCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatalf("decoding pq_pairs.json: %v", err)
	}
	if len(cases) == 0 {
		t.Fatal("pq_pairs.json holds no cases")
	}
	return cases
}

func f32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

type rule func(drafts []int, q []sampling.Sparse, p [][]float32, greedy bool, rng sampling.RNG) (Verdict, error)

// tally runs trials rounds of the rule on fixed p/q: drafts drawn from q,
// counts of each emitted position conditioned on reaching it.
type tally struct {
	emitted  [][]int // emitted[i][tok]: rounds whose i-th emitted token was tok
	accepted []int   // accepted[i]: rounds that accepted draft i+1
	trials   int
}

func runRule(t *testing.T, verify rule, c pqCase, trials int, seed uint64) tally {
	t.Helper()
	gamma := len(c.Q)
	p := make([][]float32, len(c.P))
	for i := range c.P {
		p[i] = f32(c.P[i])
	}
	q := make([]sampling.Sparse, gamma)
	for i := range c.Q {
		q[i] = sampling.TopKSparse(f32(c.Q[i]), 0)
	}
	rng := sampling.NewRNG(seed)
	tl := tally{emitted: make([][]int, gamma+1), accepted: make([]int, gamma), trials: trials}
	for i := range tl.emitted {
		tl.emitted[i] = make([]int, len(c.P[0]))
	}
	drafts := make([]int, gamma)
	for range trials {
		for i := range drafts {
			drafts[i] = q[i].Sample(rng.Float64())
		}
		v, err := verify(drafts, q, p, false, rng)
		if err != nil {
			t.Fatal(err)
		}
		for i, tok := range v.Emitted {
			tl.emitted[i][tok]++
		}
		for i := range v.Accepted {
			tl.accepted[i]++
		}
	}
	return tl
}

// TestVerifyDistribution is the lossless property of speculative sampling
// on synthetic p/q pairs over 8 ids: the i-th emitted token, given the
// round got that far, is distributed as p_i, whatever q is. 200k rounds per
// pair; Pearson's chi-square at level alpha.
func TestVerifyDistribution(t *testing.T) {
	const trials = 200_000
	for ci, c := range loadPQ(t) {
		t.Run(c.Name, func(t *testing.T) {
			tl := runRule(t, Verify, c, trials, uint64(100+ci))
			for i := range tl.emitted {
				n := 0
				for _, k := range tl.emitted[i] {
					n += k
				}
				if n == 0 {
					// Only possible when acceptance at the previous position is 0.
					if beta := overlap(c.P[i-1], c.Q[i-1]); beta != 0 {
						t.Fatalf("position %d never reached, yet acceptance there is %v", i+1, beta)
					}
					continue
				}
				pv, err := gofPValue(tl.emitted[i], c.P[i])
				if err != nil {
					t.Fatalf("emitted token %d: %v", i+1, err)
				}
				if pv < alpha {
					t.Errorf("emitted token %d: counts %v over %d rounds do not fit p=%v (p-value %.3g)", i+1, tl.emitted[i], n, c.P[i], pv)
				}
			}
			// P(accept x_1) = Σ min(p_1, q_1) = 1 − TV(p_1, q_1).
			beta := overlap(c.P[0], c.Q[0])
			got := float64(tl.accepted[0]) / trials
			if sd := math.Sqrt(beta * (1 - beta) / trials); math.Abs(got-beta) > 5*sd+1e-9 {
				t.Errorf("acceptance at position 1 = %.4f, want %.4f ± %.4f", got, beta, 5*sd)
			}
		})
	}
}

func overlap(p, q []float64) float64 {
	var s float64
	for i := range p {
		s += min(p[i], q[i])
	}
	return s
}

// TestVerifyDistributionCatchesBugs is the negative control: a common bug
// (resampling from p instead of the residual after a rejection) must fail
// the same test by a wide margin.
func TestVerifyDistributionCatchesBugs(t *testing.T) {
	resampleFromP := func(drafts []int, q []sampling.Sparse, p [][]float32, _ bool, rng sampling.RNG) (Verdict, error) {
		v := Verdict{AcceptedByPosition: make([]bool, len(drafts))}
		for i, x := range drafts {
			if u := rng.Float64(); u*float64(q[i].Prob(x)) >= float64(p[i][x]) {
				v.Emitted = append(v.Emitted, sampling.Sample(p[i], rng.Float64()))
				return v, nil
			}
			v.Accepted++
			v.AcceptedByPosition[i] = true
			v.Emitted = append(v.Emitted, x)
		}
		v.Emitted = append(v.Emitted, sampling.Sample(p[len(drafts)], rng.Float64()))
		return v, nil
	}
	c := loadPQ(t)[1]
	tl := runRule(t, resampleFromP, c, 200_000, 7)
	pv, err := gofPValue(tl.emitted[0], c.P[0])
	if err != nil {
		t.Fatal(err)
	}
	if pv > 1e-9 {
		t.Fatalf("the buggy rule passed the goodness-of-fit test (p-value %.3g)", pv)
	}
}

func BenchmarkVerify(b *testing.B) {
	probs := sampling.Probs(make([]float32, 151936), sampling.Params{Temperature: 1})
	p := [][]float32{probs, probs, probs, probs, probs}
	q := make([]sampling.Sparse, 4)
	for i := range q {
		q[i] = sampling.TopKSparse(probs, 64)
	}
	drafts := []int{0, 1, 2, 3}
	rng := sampling.NewRNG(1)
	for b.Loop() {
		if _, err := Verify(drafts, q, p, false, rng); err != nil {
			b.Fatal(err)
		}
	}
}

// TestVerifyGreedyMatchesVerify: the choice-only rule gives Verify's verdict
// on the one-hot distributions of the same choices, for random drafts.
func TestVerifyGreedyMatchesVerify(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const vocab = 6
	for trial := 0; trial < 500; trial++ {
		gamma := rng.IntN(6)
		drafts := make([]int, gamma)
		choice := make([]int, gamma+1)
		p := make([][]float32, gamma+1)
		for i := range choice {
			choice[i] = rng.IntN(vocab)
			p[i] = make([]float32, vocab)
			p[i][choice[i]] = 1
			if i < gamma {
				drafts[i] = choice[i]
				if rng.IntN(3) == 0 {
					drafts[i] = rng.IntN(vocab)
				}
			}
		}
		want, err := Verify(drafts, nil, p, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := VerifyGreedy(drafts, choice)
		if err != nil {
			t.Fatal(err)
		}
		if got.Accepted != want.Accepted || !slices.Equal(got.Emitted, want.Emitted) ||
			!slices.Equal(got.AcceptedByPosition, want.AcceptedByPosition) {
			t.Fatalf("drafts %v choices %v: VerifyGreedy %+v, Verify %+v", drafts, choice, got, want)
		}
	}
	if _, err := VerifyGreedy([]int{1, 2}, []int{1, 2}); err == nil {
		t.Error("2 drafts with 2 choices (want 3) was accepted")
	}
	if _, err := VerifyGreedy([]int{-1}, []int{1, 2}); err == nil {
		t.Error("a negative draft was accepted")
	}
}

// BenchmarkGreedyVerify: a greedy verify step over Qwen3's vocabulary, from
// logits, through dense one-hot rows (Probs + Verify) and through the
// target's choices and margins in one pass (ArgmaxMargin + VerifyGreedy, as
// the stages do).
func BenchmarkGreedyVerify(b *testing.B) {
	const vocab, gamma = 151936, 4
	rng := rand.New(rand.NewPCG(1, 2))
	logits := make([][]float32, gamma+1)
	for i := range logits {
		logits[i] = make([]float32, vocab)
		for j := range logits[i] {
			logits[i][j] = float32(rng.NormFloat64())
		}
	}
	drafts := make([]int, gamma)
	for i := range drafts {
		drafts[i] = sampling.Argmax(logits[i], 0)
	}
	greedy := sampling.Params{}
	b.Run("probs+Verify", func(b *testing.B) {
		for b.Loop() {
			ps := make([][]float32, len(logits))
			for i, l := range logits {
				ps[i] = sampling.Probs(l, greedy)
			}
			if _, err := Verify(drafts, nil, ps, true, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("VerifyGreedy", func(b *testing.B) {
		for b.Loop() {
			choice := make([]int, len(logits))
			margins := make([]float32, len(logits))
			for i, l := range logits {
				choice[i], margins[i] = sampling.ArgmaxMargin(l, 0)
			}
			if _, err := VerifyGreedy(drafts, choice); err != nil {
				b.Fatal(err)
			}
		}
	})
}
