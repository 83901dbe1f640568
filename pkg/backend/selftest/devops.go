package selftest

import (
	"fmt"
	"math"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/sampling"
)

// The optional operations a backend may run on its device (the CUDA backend
// does; the CPU backend leaves them to pkg/sampling and pkg/spec on the host).

// LogitOps masks, reduces and samples logits on the device, with the
// semantics of pkg/sampling.
type LogitOps interface {
	MaskLogits(logits backend.Tensor, limit int) error
	Argmax(logits backend.Tensor, limit int) ([]int32, error)
	Probs(logits backend.Tensor, p sampling.Params) (backend.Tensor, error)
	Sample(probs backend.Tensor, u []float32) ([]int32, error)
}

// Verifier is backend.Verifier (restated so the checks list it with the
// other device operations).
type Verifier = backend.Verifier

func lacks[I any](what string) func(backend.Backend) string {
	return func(b backend.Backend) string {
		if _, ok := b.(I); !ok {
			return "no device " + what
		}
		return ""
	}
}

func addRMSNormCase(g gen, rows, width int) kase {
	return kase{
		op: "add_rmsnorm", name: fmt.Sprintf("%dx%d", rows, width),
		inputs: []input{g.act(2, rows, width), g.act(1, rows, width), g.weight(1, 0.1, width)},
		needs:  lacks[backend.ResidualNormer]("fused add+rmsnorm"),
		run: func(s *side, in []backend.Tensor) ([]float32, error) {
			d, err := s.out(rows, width)
			if err != nil {
				return nil, err
			}
			if err := s.b.(backend.ResidualNormer).AddRMSNorm(d, in[0], in[1], in[2], eps); err != nil {
				return nil, err
			}
			x, err := s.read(in[0])
			if err != nil {
				return nil, err
			}
			y, err := s.read(d)
			return append(x, y...), err
		},
		// x + h is rounded to the storage type before the norm reads it, as
		// the next layer will read it: the reference does the same from the
		// sum the backend stored, so only the sum's own error is measured
		// by the first half.
		ref: func(in [][]float32) []float64 {
			sum := make([]float32, len(in[0]))
			out := make([]float64, 0, 2*len(sum))
			for i := range sum {
				sum[i] = in[0][i] + in[1][i]
				out = append(out, float64(in[0][i])+float64(in[1][i]))
			}
			return append(out, rmsnorm64(sum, in[2])...)
		},
	}
}

// logitCases: masking, argmax, probabilities under several sampling
// parameters, sampling and the acceptance rule, over a vocabulary with
// padding (limit < vocab) like Qwen's.
func logitCases(g gen) []kase {
	const rows, vocab, limit = 6, 5000, 4990
	var cs []kase
	cs = append(cs, kase{
		op: "mask_logits", name: fmt.Sprintf("%dx%d, limit %d", rows, vocab, limit),
		inputs: []input{g.act(3, rows, vocab)},
		exact:  true,
		needs:  lacks[LogitOps]("logit ops"),
		run: func(s *side, in []backend.Tensor) ([]float32, error) {
			if err := s.b.(LogitOps).MaskLogits(in[0], limit); err != nil {
				return nil, err
			}
			return s.read(in[0])
		},
		ref: func(in [][]float32) []float64 {
			out := make([]float64, len(in[0]))
			for i, v := range in[0] {
				out[i] = float64(v)
				if i%vocab >= limit {
					out[i] = math.Inf(-1)
				}
			}
			return out
		},
	})
	for _, lim := range []int{0, limit} {
		cs = append(cs, kase{
			op: "argmax", name: fmt.Sprintf("%dx%d, limit %d", rows, vocab, lim),
			inputs: []input{g.act(3, rows, vocab)},
			exact:  true,
			needs:  lacks[LogitOps]("logit ops"),
			run: func(s *side, in []backend.Tensor) ([]float32, error) {
				ids, err := s.b.(LogitOps).Argmax(in[0], lim)
				return idsOut(ids), err
			},
			ref: func(in [][]float32) []float64 {
				out := make([]float64, rows)
				for r := range out {
					out[r] = float64(sampling.Argmax(in[0][r*vocab:(r+1)*vocab], lim))
				}
				return out
			},
		})
	}
	for _, lim := range []int{0, limit} {
		cs = append(cs, argmaxMarginCase(g, rows, vocab, lim))
	}
	params := []sampling.Params{
		{Temperature: 0, VocabLimit: limit},
		{Temperature: 0.7, TopP: 1},
		{Temperature: 1, TopK: 20},
		{Temperature: 0.8, TopP: 0.9},
		{Temperature: 1, TopK: 50, TopP: 0.8, VocabLimit: limit},
	}
	for _, p := range params {
		cs = append(cs, probsCase(fmt.Sprintf("T=%g k=%d p=%g limit %d", p.Temperature, p.TopK, p.TopP, p.VocabLimit),
			g.act(3, rows, vocab), p, rows, vocab))
	}
	cs = append(cs, unusableProbsCase(g, rows, vocab, limit))
	cs = append(cs, sampleCase(g, 64, 3000), verifyCase(g, true, 4, 2000), verifyCase(g, false, 4, 2000), verifyCase(g, false, 7, 3000))
	cs = append(cs, topKCase(g, 5000, 64, sampling.Params{Temperature: 1}), topKCase(g, 5000, 64, sampling.Params{Temperature: 1, TopK: 10}))
	return cs
}

// unusableProbsCase checks sampled probabilities over rows without a usable
// logit: all NaN, all -inf but one NaN, usable ids only past the vocabulary
// limit (each all zeros, as sampling.Probs gives them, so a draw fails
// rather than pick a token), beside a half-NaN row and plain ones.
func unusableProbsCase(g gen, rows, vocab, limit int) kase {
	in := g.act(3, rows, vocab)
	v := in.vals
	nan, ninf := float32(math.NaN()), float32(math.Inf(-1))
	row := func(r int) []float32 { return v[r*vocab : (r+1)*vocab] }
	for i := range vocab {
		row(0)[i], row(1)[i] = nan, ninf
		if i < limit {
			row(2)[i] = nan
		}
		if i%2 == 0 {
			row(3)[i] = nan
		}
	}
	row(1)[vocab/3] = nan
	p := sampling.Params{Temperature: 0.8, TopK: 20, TopP: 0.9, VocabLimit: limit}
	return probsCase(fmt.Sprintf("%dx%d, no usable logit in rows 0-2, T=%g k=%d p=%g limit %d", rows, vocab,
		p.Temperature, p.TopK, p.TopP, limit), in, p, rows, vocab)
}

// probsCase checks LogitOps.Probs on in [rows, vocab] against
// sampling.Probs of each row.
func probsCase(name string, in input, p sampling.Params, rows, vocab int) kase {
	return kase{
		op: "probs", name: name,
		inputs: []input{in},
		needs:  lacks[LogitOps]("logit ops"),
		run: func(s *side, in []backend.Tensor) ([]float32, error) {
			pt, err := s.b.(LogitOps).Probs(in[0], p)
			if err != nil {
				return nil, err
			}
			s.keep(pt)
			return s.read(pt)
		},
		ref: func(in [][]float32) []float64 {
			out := make([]float64, 0, rows*vocab)
			for r := 0; r < rows; r++ {
				for _, x := range sampling.Probs(in[0][r*vocab:(r+1)*vocab], p) {
					out = append(out, float64(x))
				}
			}
			return out
		},
	}
}

// argmaxMarginCase checks backend.Picker: ids and margins bit for bit as
// sampling.ArgmaxMargin gives them, on random rows and on rows made to
// test the rules: a tied best (lowest id wins, margin 0), the best past the
// limit, NaN and -inf entries, a row with nothing above -inf, +inf.
func argmaxMarginCase(g gen, rows, vocab, lim int) kase {
	in := g.act(3, rows, vocab)
	v := in.vals
	ninf, pinf := float32(math.Inf(-1)), float32(math.Inf(1))
	row := func(r int) []float32 { return v[r*vocab : (r+1)*vocab] }
	if rows >= 6 {
		row(1)[17], row(1)[vocab/2] = 50, 50                             // tie: id 17, margin 0
		row(2)[vocab-1], row(2)[3] = 60, 40                              // best past the limit (when there is one)
		row(3)[5], row(3)[9], row(3)[11] = float32(math.NaN()), 45, ninf // NaN never chosen
		for i := range row(4) {
			row(4)[i] = ninf // nothing above -inf: id -1, margin NaN
		}
		row(4)[7] = float32(math.NaN())
		row(5)[100], row(5)[200] = pinf, 44 // +inf best: margin 1
	}
	return kase{
		op: "argmax_margin", name: fmt.Sprintf("%dx%d, limit %d", rows, vocab, lim),
		inputs: []input{in},
		exact:  true,
		needs:  lacks[backend.Picker]("argmax with margins"),
		run: func(s *side, in []backend.Tensor) ([]float32, error) {
			ids, ms, err := s.b.(backend.Picker).ArgmaxMargin(in[0], lim)
			return append(idsOut(ids), ms...), err
		},
		ref: func(in [][]float32) []float64 {
			out := make([]float64, 2*rows)
			for r := 0; r < rows; r++ {
				x, m := sampling.ArgmaxMargin(in[0][r*vocab:(r+1)*vocab], lim)
				out[r], out[rows+r] = float64(x), float64(m)
			}
			return out
		},
	}
}

func idsOut(ids []int32) []float32 {
	out := make([]float32, len(ids))
	for i, id := range ids {
		out[i] = float32(id)
	}
	return out
}

// TopKer is backend.TopKer (restated so the checks list it with the other
// device operations).
type TopKer = backend.TopKer

// topKCase checks a drafter's q cut on the device: TopKSparse of each row of
// the probabilities the device made, to the bit, on rows built for the
// cases: plain, 300 tied best ids (more candidates than the device keeps:
// the row is read whole), ties straddling the k-th place (the lowest ids
// win), and, with top-k 10 in the parameters, fewer live ids than k.
func topKCase(g gen, vocab, k int, p sampling.Params) kase {
	const rows = 4
	in := g.act(2, rows, vocab)
	v := in.vals
	row := func(r int) []float32 { return v[r*vocab : (r+1)*vocab] }
	for i := 0; i < 300; i++ {
		row(1)[(i*7)%vocab] = 9
	}
	for i := 0; i < k-4; i++ {
		row(2)[i*3] = 8 + float32(i)/100
	}
	for i := 0; i < 10; i++ {
		row(2)[vocab-1-i*5] = 7.5 // ten ties for the last four places
	}
	var probs []float32
	flat := func(qs []sampling.Sparse) []float32 {
		out := make([]float32, 0, 2*rows*k)
		for _, q := range qs {
			for j := range k {
				if j < q.Len() {
					out = append(out, float32(q.IDs[j]), q.Probs[j])
				} else {
					out = append(out, -1, 0)
				}
			}
		}
		return out
	}
	return kase{
		op: "topk_sparse", name: fmt.Sprintf("%dx%d, k %d, top-k %d", rows, vocab, k, p.TopK),
		inputs: []input{in},
		exact:  true,
		needs: func(b backend.Backend) string {
			if _, ok := b.(LogitOps); !ok {
				return "no device logit ops"
			}
			return lacks[TopKer]("top-k")(b)
		},
		run: func(s *side, in []backend.Tensor) ([]float32, error) {
			pt, err := s.b.(LogitOps).Probs(in[0], p)
			if err != nil {
				return nil, err
			}
			s.keep(pt)
			if probs, err = s.read(pt); err != nil {
				return nil, err
			}
			qs, err := s.b.(TopKer).TopKSparse(pt, k)
			return flat(qs), err
		},
		ref: func([][]float32) []float64 { return nil },
	}.withLateRef(func() []float64 {
		qs := make([]sampling.Sparse, rows)
		for r := range qs {
			qs[r] = sampling.TopKSparse(probs[r*vocab:(r+1)*vocab], k)
		}
		out := make([]float64, 0, 2*rows*k)
		for _, x := range flat(qs) {
			out = append(out, float64(x))
		}
		return out
	})
}

// sampleCase draws one id per row at given uniforms: the device's inverse
// CDF must pick what sampling.Sample picks from the same probabilities.
func sampleCase(g gen, rows, vocab int) kase {
	u := make([]float32, rows)
	for i := range u {
		u[i] = g.r.Float32()
	}
	u[0], u[1] = 0, math.Nextafter32(1, 0) // both ends
	p := sampling.Params{Temperature: 0.9, TopK: 100}
	var probs []float32
	in := g.act(2, rows, vocab)
	for i := range vocab {
		in.vals[2*vocab+i] = float32(math.NaN()) // row 2 has no mass: -1
	}
	return kase{
		op: "sample", name: fmt.Sprintf("%d rows of %d (row 2 without mass)", rows, vocab),
		inputs: []input{in},
		exact:  true,
		needs:  lacks[LogitOps]("logit ops"),
		run: func(s *side, in []backend.Tensor) ([]float32, error) {
			ops := s.b.(LogitOps)
			pt, err := ops.Probs(in[0], p)
			if err != nil {
				return nil, err
			}
			s.keep(pt)
			// The reference samples from the probabilities the device made.
			if probs, err = s.read(pt); err != nil {
				return nil, err
			}
			ids, err := ops.Sample(pt, u)
			return idsOut(ids), err
		},
		ref: func([][]float32) []float64 { return nil },
	}.withLateRef(func() []float64 {
		out := make([]float64, rows)
		for r := range out {
			out[r] = float64(sampling.Sample(probs[r*vocab:(r+1)*vocab], float64(u[r])))
		}
		return out
	})
}

// verifyCase runs the acceptance rule for several rounds of gamma drafts.
// The drafter's logits are the target's plus noise, so drafts are accepted
// often but not always; drafts are drawn from the q that is sent.
func verifyCase(g gen, greedy bool, gamma, vocab int) kase {
	const rounds = 12
	p := sampling.Params{Temperature: 0.8, TopK: 40}
	if greedy {
		p = sampling.Params{}
	}
	type round struct {
		drafts     []int32
		q          []sampling.Sparse
		uAcc, uRes []float32
		uBonus     float32
	}
	rs := make([]round, rounds)
	target := g.normal(rounds*(gamma+1)*vocab, 0, 3)
	for k := range rs {
		r := &rs[k]
		for i := 0; i < gamma; i++ {
			tl := target[(k*(gamma+1)+i)*vocab : (k*(gamma+1)+i+1)*vocab]
			dl := make([]float32, vocab)
			for j := range dl {
				dl[j] = tl[j] + float32(0.3*g.r.NormFloat64())
			}
			q := sampling.TopKSparse(sampling.Probs(dl, sampling.Params{Temperature: 0.8}), 40)
			r.q = append(r.q, q)
			x := q.Sample(g.r.Float64())
			if greedy && k%2 == 0 {
				x = sampling.Argmax(tl, 0) // mostly accepted rounds too
			}
			r.drafts = append(r.drafts, int32(x))
			r.uAcc = append(r.uAcc, g.r.Float32())
			r.uRes = append(r.uRes, g.r.Float32())
		}
		r.uBonus = g.r.Float32()
	}
	var stored [][]float32 // p rows of each round as the device made them
	kind := "sampled"
	if greedy {
		kind = "greedy"
	}
	return kase{
		op: "verify", name: fmt.Sprintf("%s, gamma %d, %d rounds", kind, gamma, rounds),
		inputs: []input{{shape: []int{rounds * (gamma + 1), vocab}, vals: target}},
		exact:  true,
		needs: func(b backend.Backend) string {
			if why := lacks[LogitOps]("logit ops")(b); why != "" {
				return why
			}
			return lacks[Verifier]("acceptance rule")(b)
		},
		run: func(s *side, in []backend.Tensor) ([]float32, error) {
			stored = stored[:0]
			var out []float32
			for k, r := range rs {
				logits, err := s.out(gamma+1, vocab)
				if err != nil {
					return nil, err
				}
				if err := s.b.CopyRows(logits, 0, in[0], k*(gamma+1), gamma+1); err != nil {
					return nil, err
				}
				pt, err := s.b.(LogitOps).Probs(logits, p)
				if err != nil {
					return nil, err
				}
				s.keep(pt)
				pv, err := s.read(pt)
				if err != nil {
					return nil, err
				}
				stored = append(stored, pv)
				acc, tok, err := s.b.(Verifier).Verify(pt, r.drafts, r.q, greedy, r.uAcc, r.uRes, r.uBonus)
				if err != nil {
					return nil, fmt.Errorf("round %d: %w", k, err)
				}
				out = append(out, float32(acc), float32(tok))
			}
			return out, nil
		},
		ref: func([][]float32) []float64 { return nil },
	}.withLateRef(func() []float64 {
		var out []float64
		for k, r := range rs {
			acc, tok := verifyRef(stored[k], vocab, r.drafts, r.q, greedy, r.uAcc, r.uRes, r.uBonus)
			out = append(out, float64(acc), float64(tok))
		}
		return out
	})
}

// verifyRef is spec.Verify with the uniforms given (see Verifier).
func verifyRef(p []float32, vocab int, drafts []int32, q []sampling.Sparse, greedy bool, uAcc, uRes []float32, uBonus float32) (int, int) {
	row := func(i int) []float32 { return p[i*vocab : (i+1)*vocab] }
	for i, x := range drafts {
		pi := row(i)
		if greedy {
			if best := sampling.Argmax(pi, 0); int(x) != best {
				return i, best
			}
			continue
		}
		qx := float64(q[i].Prob(int(x)))
		if float64(uAcc[i])*qx < float64(pi[x]) {
			continue
		}
		r := append([]float32(nil), pi...)
		for j, id := range q[i].IDs {
			r[id] = max(0, r[id]-q[i].Probs[j])
		}
		y := sampling.Sample(r, float64(uRes[i]))
		if y < 0 {
			y = sampling.Sample(pi, float64(uRes[i]))
		}
		return i, y
	}
	last := row(len(drafts))
	if greedy {
		return len(drafts), sampling.Argmax(last, 0)
	}
	return len(drafts), sampling.Sample(last, float64(uBonus))
}

// appendKVCase writes the new rows of three sequences (one decode row, a
// fresh prefill, a verify step) into caches with spare rows; every cache row
// the step does not own must keep its contents.
func appendKVCase(g gen, width int) kase {
	type sq struct{ row, n, len, capacity int }
	seqs := []sq{{0, 1, 5, 8}, {1, 4, 4, 6}, {5, 3, 9, 12}}
	T := 8 // one spare row of k and v that no sequence takes
	ins := []input{g.act(1, T, width), g.act(1, T, width)}
	for _, s := range seqs {
		ins = append(ins, g.act(1, s.capacity, width), g.act(1, s.capacity, width))
	}
	return kase{
		op: "append_kv", name: fmt.Sprintf("3 sequences, rows of %d", width), inputs: ins,
		needs: lacks[backend.KVAppender]("batched KV append"),
		run: func(s *side, in []backend.Tensor) ([]float32, error) {
			as := make([]backend.AttnSeq, len(seqs))
			for i, q := range seqs {
				as[i] = backend.AttnSeq{Row: q.row, N: q.n, Len: q.len, K: in[2+2*i], V: in[3+2*i]}
			}
			if err := s.b.(backend.KVAppender).AppendKV(in[0], in[1], as); err != nil {
				return nil, err
			}
			return s.readAll(nil, in[2:])
		},
		ref: func(in [][]float32) []float64 {
			var out []float64
			for i, q := range seqs {
				for m, src := range []int{0, 1} { // K, then V
					c := in[2+2*i+m]
					got := make([]float64, len(c))
					for j, v := range c {
						got[j] = float64(v)
					}
					for j := 0; j < q.n; j++ {
						for d := 0; d < width; d++ {
							got[(q.len-q.n+j)*width+d] = float64(in[src][(q.row+j)*width+d])
						}
					}
					out = append(out, got...)
				}
			}
			return out
		},
	}
}

// finishQKVCase: one product's q|k|v rows for three sequences (decode,
// prefill, verify) through the optional per-head norms and RoPE, q out and
// k, v into caches with spare rows that must keep their contents.
func finishQKVCase(g gen, heads, kvh, hd int, norms bool) kase {
	type sq struct{ row, n, len, capacity int }
	seqs := []sq{{0, 1, 5, 8}, {1, 4, 4, 6}, {5, 3, 9, 12}}
	const T = 8
	qw, kvw := heads*hd, kvh*hd
	pos := make([]int32, T)
	for _, s := range seqs {
		for j := 0; j < s.n; j++ {
			pos[s.row+j] = int32(s.len - s.n + j)
		}
	}
	rope := &backend.RoPE{HeadDim: hd, InvFreq: ropeFreqs(hd), Scale: 1}
	ins := []input{g.act(1, T, qw+2*kvw), g.weight(1, 0.1, hd), g.weight(1, 0.1, hd)}
	for _, s := range seqs {
		ins = append(ins, g.act(1, s.capacity, kvw), g.act(1, s.capacity, kvw))
	}
	name := fmt.Sprintf("%d:%d heads of %d", heads, kvh, hd)
	if norms {
		name += ", q/k norms"
	}
	a := backend.Attn{Heads: heads, KVHeads: kvh, HeadDim: hd}
	return kase{
		op: "finish_qkv", name: name, inputs: ins,
		needs: lacks[backend.QKVFinisher]("fused q/k/v finish"),
		run: func(s *side, in []backend.Tensor) ([]float32, error) {
			q, err := s.out(T, qw)
			if err != nil {
				return nil, err
			}
			as := make([]backend.AttnSeq, len(seqs))
			for i, x := range seqs {
				as[i] = backend.AttnSeq{Row: x.row, N: x.n, Len: x.len, K: in[3+2*i], V: in[4+2*i]}
			}
			qn, kn := in[1], in[2]
			if !norms {
				qn, kn = nil, nil
			}
			if err := s.b.(backend.QKVFinisher).FinishQKV(q, in[0], qn, kn, eps, pos, rope, a, as); err != nil {
				return nil, err
			}
			return s.readAll(nil, append([]backend.Tensor{q}, in[3:]...))
		},
		ref: func(in [][]float32) []float64 {
			qkv := in[0]
			// head returns head slot h of row r: normed (q, k when norms) and rotated (q, k).
			head := func(r, slot int, w []float32, rotate bool) []float64 {
				x := qkv[r*(qw+2*kvw)+slot*hd : r*(qw+2*kvw)+(slot+1)*hd]
				v := make([]float64, hd)
				if w != nil {
					v = rmsnorm64(x, w)
				} else {
					for i, e := range x {
						v[i] = float64(e)
					}
				}
				if !rotate {
					return v
				}
				out := make([]float64, hd)
				half := hd / 2
				for i := 0; i < half; i++ {
					ang := float64(float32(pos[r]) * rope.InvFreq[i])
					c, sn := math.Cos(ang), math.Sin(ang)
					out[i] = v[i]*c - v[i+half]*sn
					out[i+half] = v[i+half]*c + v[i]*sn
				}
				return out
			}
			qn, kn := in[1], in[2]
			if !norms {
				qn, kn = nil, nil
			}
			out := make([]float64, 0, T*qw)
			for r := 0; r < T; r++ {
				for h := 0; h < heads; h++ {
					out = append(out, head(r, h, qn, true)...)
				}
			}
			for i, s := range seqs {
				for m := 0; m < 2; m++ { // K cache, then V cache
					c := in[3+2*i+m]
					got := make([]float64, len(c))
					for j, v := range c {
						got[j] = float64(v)
					}
					for j := 0; j < s.n; j++ {
						for kh := 0; kh < kvh; kh++ {
							var v []float64
							if m == 0 {
								v = head(s.row+j, heads+kh, kn, true)
							} else {
								v = head(s.row+j, heads+kvh+kh, nil, false)
							}
							copy(got[(s.len-s.n+j)*kvw+kh*hd:], v)
						}
					}
					out = append(out, got...)
				}
			}
			return out
		},
	}
}

// swigluPairCase: SwiGLU over the stacked gate|up product.
func swigluPairCase(g gen, rows, inter int) kase {
	return kase{
		op: "swiglu_pair", name: fmt.Sprintf("%dx(2x%d)", rows, inter),
		inputs: []input{g.act(2, rows, 2*inter)},
		needs:  lacks[backend.PairSwiGLU]("fused gate|up SwiGLU"),
		run: func(s *side, in []backend.Tensor) ([]float32, error) {
			d, err := s.out(rows, inter)
			if err != nil {
				return nil, err
			}
			if err := s.b.(backend.PairSwiGLU).SwiGLUPair(d, in[0]); err != nil {
				return nil, err
			}
			return s.read(d)
		},
		ref: func(in [][]float32) []float64 {
			out := make([]float64, rows*inter)
			for r := 0; r < rows; r++ {
				for i := 0; i < inter; i++ {
					gv, u := float64(in[0][r*2*inter+i]), float64(in[0][r*2*inter+inter+i])
					out[r*inter+i] = gv / (1 + math.Exp(-gv)) * u
				}
			}
			return out
		},
	}
}
