package model

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/backend/cpu"
	"github.com/draftbench/draftbench/pkg/kvcache"
	"github.com/draftbench/draftbench/pkg/sampling"
	"github.com/draftbench/draftbench/pkg/spec"
	"github.com/draftbench/draftbench/pkg/tinymodel"
)

// hostOnly hides every optional operation of its backend (backend.Picker
// among them), so the model picks greedy tokens from logits on the host.
type hostOnly struct{ backend.Backend }

// writeSmallModel writes a 2-layer Qwen3-shaped model with a 300-id
// vocabulary and random weights into a temporary folder.
func writeSmallModel(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	s := tinymodel.Default()
	s.Hidden, s.Intermediate, s.Layers, s.Heads, s.KVHeads, s.HeadDim, s.TokVocab = 64, 128, 2, 4, 2, 16, 300
	if err := tinymodel.Write(dir, s); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestGreedyPicks: a Greedy sequence gets, instead of logits, the argmax and
// margin of exactly the logits it would have had (sampling.ArgmaxMargin),
// per vocabulary limit, beside sequences that still want logits, and with
// the backend picking (CPU: backend.Picker) or not (picked on the host).
func TestGreedyPicks(t *testing.T) {
	dir := writeSmallModel(t)
	feeds := [][][]int{{{1, 2, 3, 4}, {5, 6}, {7, 8, 9}}, {{10, 11, 12}, {13}, {14}}, {{15}, {16}, {17}}}
	limits := []int{0, 0, 150}
	for _, b := range []struct {
		name string
		b    backend.Backend
	}{{"picker", cpu.New(1)}, {"host", hostOnly{cpu.New(1)}}} {
		m, err := Load(dir, b.b, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := m.b.(backend.Picker); ok != (b.name == "picker") {
			t.Fatalf("%s: backend.Picker %v", b.name, ok)
		}
		greedy := []bool{true, false, true}
		limited := 0 // rows whose pick the limit changed
		dense := make([]*kvcache.Seq, 3)
		picked := make([]*kvcache.Seq, 3)
		for i := range dense {
			dense[i], picked[i] = m.NewCache(kvcache.Options{}), m.NewCache(kvcache.Options{})
		}
		for step, feed := range feeds {
			var ds, ps []Seq
			for i, toks := range feed {
				all := step == 1 // a verify-like step: every position
				ds = append(ds, Seq{Cache: dense[i], Tokens: toks, AllLogits: all})
				ps = append(ps, Seq{Cache: picked[i], Tokens: toks, AllLogits: all, Greedy: greedy[i], VocabLimit: limits[i]})
			}
			want, err := m.Forward(ds, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.Forward(ps, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := range feed {
				if !greedy[i] {
					if len(got.Logits[i]) != len(want.Logits[i]) || (got.Picks != nil && got.Picks[i] != nil) {
						t.Fatalf("%s step %d: sequence %d (not greedy) got %d logit rows and picks %v", b.name, step, i, len(got.Logits[i]), got.Picks[i])
					}
					continue
				}
				if got.Logits[i] != nil || len(got.Picks[i]) != len(want.Logits[i]) {
					t.Fatalf("%s step %d: sequence %d got %d logit rows and %d picks, want 0 and %d", b.name, step, i,
						len(got.Logits[i]), len(got.Picks[i]), len(want.Logits[i]))
				}
				for r, row := range want.Logits[i] {
					x, mg := sampling.ArgmaxMargin(row, limits[i])
					if x != sampling.Argmax(row, 0) {
						limited++
					}
					if p := got.Picks[i][r]; p.Token != x || p.Margin != mg {
						t.Errorf("%s step %d: sequence %d row %d picked %+v, want token %d margin %v", b.name, step, i, r, p, x, mg)
					}
				}
			}
		}
		if limited == 0 {
			t.Errorf("%s: the vocabulary limit changed no pick: the test does not check it", b.name)
		}
	}
}

// probingCPU is the CPU backend with backend.Prober done on the host, so the
// model's device-probabilities path runs here.
type probingCPU struct {
	*cpu.Backend
	calls int
}

func (p *probingCPU) Probs(logits backend.Tensor, sp sampling.Params) (backend.Tensor, error) {
	p.calls++
	rows, cols := backend.Rows(logits), backend.Cols(logits)
	v := make([]float32, rows*cols)
	if err := p.Read(logits, v); err != nil {
		return nil, err
	}
	out := make([]float32, 0, len(v))
	for r := range rows {
		out = append(out, sampling.Probs(v[r*cols:(r+1)*cols], sp)...)
	}
	return cpu.FromSlice(out, rows, cols), nil
}

// cuttingCPU is probingCPU with backend.TopKer too (on the host).
type cuttingCPU struct {
	probingCPU
	cuts, verifies int
}

func (c *cuttingCPU) TopKSparse(probs backend.Tensor, k int) ([]sampling.Sparse, error) {
	c.cuts++
	rows, cols := backend.Rows(probs), backend.Cols(probs)
	v := make([]float32, rows*cols)
	if err := c.Read(probs, v); err != nil {
		return nil, err
	}
	out := make([]sampling.Sparse, rows)
	for r := range out {
		out[r] = sampling.TopKSparse(v[r*cols:(r+1)*cols], k)
	}
	return out, nil
}

// Sample makes cuttingCPU a backend.Drawer (on the host, at the float32
// uniform a device gets).
func (c *cuttingCPU) Sample(probs backend.Tensor, u []float32) ([]int32, error) {
	rows, cols := backend.Rows(probs), backend.Cols(probs)
	v := make([]float32, rows*cols)
	if err := c.Read(probs, v); err != nil {
		return nil, err
	}
	out := make([]int32, rows)
	for r := range out {
		out[r] = int32(sampling.Sample(v[r*cols:(r+1)*cols], float64(u[r])))
	}
	return out, nil
}

// TestSampledProbs: a Sampled sequence gets sampling.Probs of exactly the
// logits it would have had, whether the backend computes them (Prober, one
// call per set of parameters) or the model does on the host, beside greedy
// and logit-wanting sequences of the same batch.
func TestSampledProbs(t *testing.T) {
	dir := writeSmallModel(t)
	pa := &sampling.Params{Temperature: 0.7, TopK: 20, VocabLimit: 250}
	pb := &sampling.Params{Temperature: 1.3, TopP: 0.8}
	feeds := [][][]int{{{1, 2, 3}, {4, 5}, {6}, {7, 8}, {15, 16}}, {{9, 10, 11}, {12}, {13}, {14}, {17}}}
	params := []*sampling.Params{pa, nil, pb, pa, pb}
	topK := []int{0, 0, 0, 5, 0} // the fourth sequence wants a drafter's q
	draw := []bool{false, false, false, false, true}
	const u = 0.6180339887 // the fifth draws its token here
	prober := &probingCPU{Backend: cpu.New(1)}
	cutter := &cuttingCPU{probingCPU: probingCPU{Backend: cpu.New(1)}}
	for _, b := range []struct {
		name string
		b    backend.Backend
	}{{"prober", prober}, {"prober and cutter", cutter}, {"host", cpu.New(1)}} {
		m, err := Load(dir, b.b, Options{})
		if err != nil {
			t.Fatal(err)
		}
		dense, sampled := make([]*kvcache.Seq, len(params)), make([]*kvcache.Seq, len(params))
		for i := range dense {
			dense[i], sampled[i] = m.NewCache(kvcache.Options{}), m.NewCache(kvcache.Options{})
		}
		for step, feed := range feeds {
			var ds, ss []Seq
			for i, toks := range feed {
				all := step == 0
				ds = append(ds, Seq{Cache: dense[i], Tokens: toks, AllLogits: all})
				q := Seq{Cache: sampled[i], Tokens: toks, AllLogits: all, Sampled: params[i], DraftTopK: topK[i], Draw: draw[i], U: u}
				if i == 1 {
					q.Greedy = true // a greedy neighbour in the batch
				}
				ss = append(ss, q)
			}
			want, err := m.Forward(ds, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.Forward(ss, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := range feed {
				if params[i] == nil {
					if len(got.Picks[i]) != len(want.Logits[i]) {
						t.Fatalf("%s step %d: greedy sequence %d got %d picks", b.name, step, i, len(got.Picks[i]))
					}
					continue
				}
				if draw[i] {
					last := want.Logits[i][len(want.Logits[i])-1]
					uu := float64(u)
					if b.name == "prober and cutter" {
						uu = float64(float32(u)) // a device draws at a float32 uniform
					}
					if wt := sampling.Sample(sampling.Probs(last, *params[i]), uu); got.Drawn[i] != wt || got.Probs != nil && got.Probs[i] != nil {
						t.Fatalf("%s step %d: sequence %d drew %d, want %d (and no probability rows)", b.name, step, i, got.Drawn[i], wt)
					}
					continue
				}
				if topK[i] > 0 {
					if got.Logits[i] != nil || got.Probs[i] != nil || len(got.Sparse[i]) != len(want.Logits[i]) {
						t.Fatalf("%s step %d: sequence %d got %d logit rows, %d probability rows, %d qs; want only %d qs", b.name, step, i,
							len(got.Logits[i]), len(got.Probs[i]), len(got.Sparse[i]), len(want.Logits[i]))
					}
					for r, row := range want.Logits[i] {
						wq := sampling.TopKSparse(sampling.Probs(row, *params[i]), topK[i])
						if q := got.Sparse[i][r]; !slices.Equal(q.IDs, wq.IDs) || !slices.Equal(q.Probs, wq.Probs) {
							t.Fatalf("%s step %d: sequence %d row %d: q %v %v, want %v %v", b.name, step, i, r, q.IDs, q.Probs, wq.IDs, wq.Probs)
						}
					}
					continue
				}
				if got.Logits[i] != nil || len(got.Probs[i]) != len(want.Logits[i]) {
					t.Fatalf("%s step %d: sequence %d got %d logit rows and %d probability rows, want 0 and %d", b.name, step, i,
						len(got.Logits[i]), len(got.Probs[i]), len(want.Logits[i]))
				}
				for r, row := range want.Logits[i] {
					wp := sampling.Probs(row, *params[i])
					for v := range wp {
						if got.Probs[i][r][v] != wp[v] {
							t.Fatalf("%s step %d: sequence %d row %d id %d: probability %v, want %v", b.name, step, i, r, v, got.Probs[i][r][v], wp[v])
						}
					}
				}
			}
		}
	}
	if prober.calls != 2*len(feeds) || cutter.calls != 2*len(feeds) {
		t.Errorf("the probers computed probabilities %d and %d times for %d steps of two parameter sets, want %d", prober.calls, cutter.calls, len(feeds), 2*len(feeds))
	}
	if cutter.cuts != len(feeds) {
		t.Errorf("the cutter cut %d times for %d steps with one top-k sequence", cutter.cuts, len(feeds))
	}
	// Greedy and sampled at once is a caller's mistake, said so.
	m, err := Load(dir, cpu.New(1), Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := m.NewCache(kvcache.Options{})
	if _, err := m.Forward([]Seq{{Cache: c, Tokens: []int{1}, Greedy: true, Sampled: pa}}, nil); err == nil || !strings.Contains(err.Error(), "greedy picks and sampled") {
		t.Errorf("greedy and sampled together: %v", err)
	}
	if _, err := m.Forward([]Seq{{Cache: c, Tokens: []int{1}, Sampled: &sampling.Params{Temperature: -1}}}, nil); err == nil || !strings.Contains(err.Error(), "temperature") {
		t.Errorf("a negative temperature: %v", err)
	}
	if c.Len() != 0 {
		t.Errorf("refused steps left %d positions in the cache", c.Len())
	}
}

// Verify makes cuttingCPU a backend.Verifier: spec.VerifyAt on the host at
// the float32 uniforms a device gets.
func (c *cuttingCPU) Verify(p backend.Tensor, drafts []int32, q []sampling.Sparse, greedy bool, ua, ur []float32, ub float32) (int, int32, error) {
	c.verifies++
	rows, cols := backend.Rows(p), backend.Cols(p)
	v := make([]float32, rows*cols)
	if err := c.Read(p, v); err != nil {
		return 0, 0, err
	}
	ps := make([][]float32, rows)
	for r := range ps {
		ps[r] = v[r*cols : (r+1)*cols]
	}
	ds := make([]int, len(drafts))
	for i, x := range drafts {
		ds[i] = int(x)
	}
	f64 := func(u []float32) []float64 {
		out := make([]float64, len(u))
		for i, x := range u {
			out[i] = float64(x)
		}
		return out
	}
	vd, err := spec.VerifyAt(ds, q, ps, f64(ua), f64(ur), float64(ub))
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %v", backend.ErrBadDraft, err) // as a device says so
	}
	return vd.Accepted, int32(vd.Emitted[len(vd.Emitted)-1]), nil
}

// TestVerifySteps: a sampled verify step gets the acceptance rule's verdict
// on the probabilities of its last γ+1 positions — spec.Verify with the
// step's seed on the host; on a backend.Verifier the uniforms drawn from that
// seed in spec.VerifyAt's order — and a bad draft distribution fails the step
// alone.
func TestVerifySteps(t *testing.T) {
	dir := writeSmallModel(t)
	params := &sampling.Params{Temperature: 1.2}
	prompt := []int{3, 1, 4, 1, 5}
	cutter := &cuttingCPU{probingCPU: probingCPU{Backend: cpu.New(1)}}
	for _, b := range []struct {
		name string
		b    backend.Backend
	}{{"host", cpu.New(1)}, {"prober", &probingCPU{Backend: cpu.New(1)}}, {"verifier", cutter}} {
		m, err := Load(dir, b.b, Options{})
		if err != nil {
			t.Fatal(err)
		}
		outcomes := map[int]bool{} // accepted counts seen: the seeds must reach several
		for seed := uint64(1); seed <= 12; seed++ {
			dense, judged := m.NewCache(kvcache.Options{}), m.NewCache(kvcache.Options{})
			feed := append(append([]int(nil), prompt...), 9, 26, 5) // the last three: drafts
			want, err := m.Forward([]Seq{{Cache: dense, Tokens: feed, AllLogits: true}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			rows := want.Logits[0][len(feed)-4:]
			ps := make([][]float32, len(rows))
			for r, row := range rows {
				ps[r] = sampling.Probs(row, *params)
			}
			// q: the drafts likely but not certain, so both outcomes happen.
			drafts := []int{9, 26, 5}
			q := make([]sampling.Sparse, 3)
			for i, x := range drafts {
				q[i] = sampling.Sparse{IDs: []int32{int32(x), 7}, Probs: []float32{0.6, 0.4}}
			}
			vs := &VerifySpec{Drafts: drafts, Q: q, Seed: seed}
			bad := &VerifySpec{Drafts: drafts, Q: []sampling.Sparse{{IDs: []int32{7}, Probs: []float32{1}}, q[1], q[2]}, Seed: seed}
			other := m.NewCache(kvcache.Options{})
			got, err := m.Forward([]Seq{{Cache: judged, Tokens: feed, AllLogits: true, Sampled: params, Verify: vs},
				{Cache: other, Tokens: feed, AllLogits: true, Sampled: params, Verify: bad}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			var wantV spec.Verdict
			if b.name == "verifier" {
				rng := sampling.NewRNG(seed)
				f := func(n int) []float64 {
					out := make([]float64, n)
					for i := range out {
						out[i] = float64(float32(rng.Float64()))
					}
					return out
				}
				ua, ur := f(3), f(3)
				wantV, err = spec.VerifyAt(drafts, q, ps, ua, ur, f(1)[0])
			} else {
				wantV, err = spec.Verify(drafts, q, ps, false, sampling.NewRNG(seed))
			}
			if err != nil {
				t.Fatal(err)
			}
			v := got.Verdicts[0]
			if v == nil || v.Err != nil || v.Accepted != wantV.Accepted || !slices.Equal(v.Emitted, wantV.Emitted) ||
				!slices.Equal(v.AcceptedByPosition, wantV.AcceptedByPosition) {
				t.Fatalf("%s seed %d: verdict %+v, want %+v", b.name, seed, v, wantV)
			}
			if got.Verdicts[1] == nil || got.Verdicts[1].Err == nil || !strings.Contains(got.Verdicts[1].Err.Error(), "probability 0 in its own q") {
				t.Fatalf("%s seed %d: a draft outside its q gave %+v", b.name, seed, got.Verdicts[1])
			}
			outcomes[v.Accepted] = true
			dense.Free()
			judged.Free()
			other.Free()
		}
		if len(outcomes) < 2 {
			t.Errorf("%s: every seed accepted the same number of drafts (%v): the test does not tell outcomes apart", b.name, outcomes)
		}
	}
	if cutter.verifies == 0 {
		t.Error("the verifier backend never verified")
	}
}

// failingVerifier is cuttingCPU whose device verify fails as a broken
// device would (not a verdict on the drafts).
type failingVerifier struct{ cuttingCPU }

func (f *failingVerifier) Verify(backend.Tensor, []int32, []sampling.Sparse, bool, []float32, []float32, float32) (int, int32, error) {
	return 0, 0, fmt.Errorf("an unspecified launch failure")
}

// TestVerifyFallbacks: on a backend that judges on the device, a step the
// device cannot judge as the host would (a q naming an id twice) is judged
// on the host with the same uniforms; a device failure fails the pass and
// leaves the caches as they were, so the steps can run again.
func TestVerifyFallbacks(t *testing.T) {
	dir := writeSmallModel(t)
	params := &sampling.Params{Temperature: 1.2}
	feed := []int{3, 1, 4, 1, 5, 9, 26, 5}
	drafts := []int{9, 26, 5}
	q := []sampling.Sparse{
		{IDs: []int32{9, 9, 7}, Probs: []float32{0.3, 0.3, 0.4}}, // 9 twice
		{IDs: []int32{26, 7}, Probs: []float32{0.6, 0.4}},
		{IDs: []int32{5, 7}, Probs: []float32{0.6, 0.4}},
	}
	cutter := &cuttingCPU{probingCPU: probingCPU{Backend: cpu.New(1)}}
	m, err := Load(dir, cutter, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for seed := uint64(1); seed <= 6; seed++ {
		dense, judged := m.NewCache(kvcache.Options{}), m.NewCache(kvcache.Options{})
		want, err := m.Forward([]Seq{{Cache: dense, Tokens: feed, AllLogits: true}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var ps [][]float32
		for _, row := range want.Logits[0][len(feed)-4:] {
			ps = append(ps, sampling.Probs(row, *params))
		}
		rng := sampling.NewRNG(seed)
		next := func(n int) []float64 {
			out := make([]float64, n)
			for i := range out {
				out[i] = float64(float32(rng.Float64()))
			}
			return out
		}
		ua, ur := next(3), next(3)
		wantV, wantErr := spec.VerifyAt(drafts, q, ps, ua, ur, next(1)[0])
		before := cutter.verifies
		got, err := m.Forward([]Seq{{Cache: judged, Tokens: feed, AllLogits: true, Sampled: params,
			Verify: &VerifySpec{Drafts: drafts, Q: q, Seed: seed}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		v := got.Verdicts[0]
		if cutter.verifies != before {
			t.Errorf("seed %d: a q with a repeated id went to the device", seed)
		}
		if (v.Err == nil) != (wantErr == nil) || v.Accepted != wantV.Accepted || !slices.Equal(v.Emitted, wantV.Emitted) {
			t.Errorf("seed %d: host fallback gave %+v, want %+v (%v)", seed, v, wantV, wantErr)
		}
	}

	broken := &failingVerifier{cuttingCPU{probingCPU: probingCPU{Backend: cpu.New(1)}}}
	mb, err := Load(dir, broken, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := mb.NewCache(kvcache.Options{})
	good := []sampling.Sparse{q[1], q[1], q[2]}
	good[0] = sampling.Sparse{IDs: []int32{9, 7}, Probs: []float32{0.6, 0.4}}
	_, err = mb.Forward([]Seq{{Cache: c, Tokens: feed, AllLogits: true, Sampled: params,
		Verify: &VerifySpec{Drafts: drafts, Q: good, Seed: 1}}}, nil)
	if err == nil || !strings.Contains(err.Error(), "launch failure") {
		t.Fatalf("a failing device verify: %v", err)
	}
	if c.Len() != 0 {
		t.Errorf("a failed pass left the cache at %d positions, want 0", c.Len())
	}
}
