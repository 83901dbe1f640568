package backend

import "fmt"

// FinishQKVOnHost does what QKVFinisher.FinishQKV does with b's basic
// operations and a round trip through host memory: a reference for tests
// and self-checks, not a fast path.
func FinishQKVOnHost(b Backend, q, qkv, qNorm, kNorm Tensor, eps float32, positions []int32, r *RoPE, a Attn, seqs []AttnSeq) error {
	hd := a.HeadDim
	qw, kvw := a.Heads*hd, a.KVHeads*hd
	rows := Rows(qkv)
	if Cols(qkv) != qw+2*kvw || Rows(q) != rows || Cols(q) != qw || len(positions) != rows {
		return fmt.Errorf("finish qkv of %v into %v with %d heads, %d kv heads, head dim %d, %d positions",
			qkv.Shape(), q.Shape(), a.Heads, a.KVHeads, hd, len(positions))
	}
	all := make([]float32, rows*(qw+2*kvw))
	if err := b.Read(qkv, all); err != nil {
		return err
	}
	parts := [3][]float32{make([]float32, rows*qw), make([]float32, rows*kvw), make([]float32, rows*kvw)}
	for i := 0; i < rows; i++ {
		row := all[i*(qw+2*kvw):]
		copy(parts[0][i*qw:], row[:qw])
		copy(parts[1][i*kvw:], row[qw:qw+kvw])
		copy(parts[2][i*kvw:], row[qw+kvw:qw+2*kvw])
	}
	k, v := b.New(rows, kvw), b.New(rows, kvw)
	defer b.Free(k)
	defer b.Free(v)
	for i, t := range []Tensor{q, k, v} {
		if err := b.Write(t, parts[i]); err != nil {
			return err
		}
	}
	if qNorm != nil {
		if err := b.RMSNorm(q, q, qNorm, eps); err != nil {
			return err
		}
		if err := b.RMSNorm(k, k, kNorm, eps); err != nil {
			return err
		}
	}
	if err := b.ApplyRoPE(q, positions, r); err != nil {
		return err
	}
	if err := b.ApplyRoPE(k, positions, r); err != nil {
		return err
	}
	return copyKVRows(b, k, v, seqs)
}

// SwiGLUPairOnHost does what PairSwiGLU.SwiGLUPair does with b's SwiGLU and
// a round trip through host memory (tests and self-checks).
func SwiGLUPairOnHost(b Backend, dst, gu Tensor) error {
	rows, inter := Rows(gu), Cols(dst)
	if Cols(gu) != 2*inter || Rows(dst) != rows {
		return fmt.Errorf("swiglu pair of %v into %v", gu.Shape(), dst.Shape())
	}
	all := make([]float32, rows*2*inter)
	if err := b.Read(gu, all); err != nil {
		return err
	}
	g, u := make([]float32, rows*inter), make([]float32, rows*inter)
	for i := 0; i < rows; i++ {
		copy(g[i*inter:], all[i*2*inter:i*2*inter+inter])
		copy(u[i*inter:], all[i*2*inter+inter:(i+1)*2*inter])
	}
	gt, ut := b.New(rows, inter), b.New(rows, inter)
	defer b.Free(gt)
	defer b.Free(ut)
	if err := b.Write(gt, g); err != nil {
		return err
	}
	if err := b.Write(ut, u); err != nil {
		return err
	}
	return b.SwiGLU(dst, gt, ut)
}
