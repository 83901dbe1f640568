package selftest

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/safetensors"
)

// cases lists every check with its inputs drawn from cfg.Seed.
func cases(cfg Config) []kase {
	g := gen{rand.New(rand.NewPCG(cfg.Seed, 0x5e1f7e57))}
	var cs []kase
	for _, s := range []struct{ v, h, n int }{{50, 16, 7}, {1000, 96, 33}} {
		cs = append(cs, embedCase(g, s.v, s.h, s.n))
	}
	for _, s := range []struct{ m, n, k int }{{1, 64, 48}, {5, 130, 96}, {33, 257, 200}, {128, 512, 256}} {
		cs = append(cs, matmulCase(g, s.m, s.n, s.k))
	}
	for _, s := range []struct{ rows, n int }{{1, 64}, {17, 300}} {
		cs = append(cs, addBiasCase(g, s.rows, s.n))
	}
	for _, s := range []struct{ rows, n int }{{7, 33}, {64, 1024}} {
		cs = append(cs, addCase(g, s.rows, s.n, false), addCase(g, s.rows, s.n, true))
	}
	for _, s := range []struct{ rows, width, group int }{{1, 64, 64}, {9, 4096, 4096}, {5, 1024, 128}} {
		cs = append(cs, rmsnormCase(g, s.rows, s.width, s.group, false))
	}
	cs = append(cs, rmsnormCase(g, 3, 512, 512, true))
	for _, s := range []struct{ rows, heads, hd int }{{3, 4, 64}, {17, 8, 128}, {2, 2, 16}} {
		cs = append(cs, ropeCase(g, s.rows, s.heads, s.hd))
	}
	for _, n := range []int{100, 70000} {
		cs = append(cs, swigluCase(g, n, false))
	}
	cs = append(cs, swigluCase(g, 4096, true))
	cs = append(cs, copyRowsCase(g, 10, 12, 48, 3, 5, 4), copyRowsCase(g, 64, 64, 256, 0, 0, 64))
	cs = append(cs, appendKVCase(g, 256), appendKVCase(g, 15))
	cs = append(cs, finishQKVCase(g, 4, 2, 64, true), finishQKVCase(g, 8, 2, 128, true), finishQKVCase(g, 2, 1, 16, false))
	cs = append(cs, swigluPairCase(g, 3, 100), swigluPairCase(g, 17, 4096))
	cs = append(cs, attentionCases(g)...)
	cs = append(cs, loadCases(g)...)
	cs = append(cs, randomCase(cfg.Seed))
	for _, s := range []struct{ rows, width int }{{1, 256}, {6, 4096}} {
		cs = append(cs, addRMSNormCase(g, s.rows, s.width))
	}
	cs = append(cs, logitCases(g)...)
	return cs
}

func embedCase(g gen, v, h, n int) kase {
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(g.r.IntN(v))
	}
	ids[n-1] = int32(v - 1) // the last row too
	return kase{
		op: "embed", name: fmt.Sprintf("%d ids of %dx%d", n, v, h),
		inputs: []input{g.weight(0, 0.02, v, h)},
		run: func(s *side, in []backend.Tensor) ([]float32, error) {
			d, err := s.out(n, h)
			if err != nil {
				return nil, err
			}
			if err := s.b.Embed(d, in[0], ids); err != nil {
				return nil, err
			}
			return s.read(d)
		},
		ref: func(in [][]float32) []float64 {
			out := make([]float64, 0, n*h)
			for _, id := range ids {
				for _, x := range in[0][int(id)*h : (int(id)+1)*h] {
					out = append(out, float64(x))
				}
			}
			return out
		},
	}
}

func matmulCase(g gen, m, n, k int) kase {
	return kase{
		op: "matmul", name: fmt.Sprintf("%dx%d · %dx%dᵀ", m, k, n, k),
		inputs: []input{g.act(1, m, k), g.weight(0, 1/math.Sqrt(float64(k)), n, k)},
		run: func(s *side, in []backend.Tensor) ([]float32, error) {
			d, err := s.out(m, n)
			if err != nil {
				return nil, err
			}
			if err := s.b.MatMul(d, in[0], in[1]); err != nil {
				return nil, err
			}
			return s.read(d)
		},
		ref: func(in [][]float32) []float64 {
			x, w := in[0], in[1]
			out := make([]float64, m*n)
			for i := 0; i < m; i++ {
				for j := 0; j < n; j++ {
					var acc float64
					for l := 0; l < k; l++ {
						acc += float64(x[i*k+l]) * float64(w[j*k+l])
					}
					out[i*n+j] = acc
				}
			}
			return out
		},
	}
}

func addBiasCase(g gen, rows, n int) kase {
	return kase{
		op: "add_bias", name: fmt.Sprintf("%dx%d", rows, n),
		inputs: []input{g.act(1, rows, n), g.weight(0, 0.5, n)},
		run: func(s *side, in []backend.Tensor) ([]float32, error) {
			if err := s.b.AddBias(in[0], in[1]); err != nil {
				return nil, err
			}
			return s.read(in[0])
		},
		ref: func(in [][]float32) []float64 {
			out := make([]float64, rows*n)
			for i := range out {
				out[i] = float64(in[0][i]) + float64(in[1][i%n])
			}
			return out
		},
	}
}

func addCase(g gen, rows, n int, alias bool) kase {
	name := fmt.Sprintf("%dx%d", rows, n)
	if alias {
		name += " into a"
	}
	return kase{
		op: "add", name: name,
		inputs: []input{g.act(1, rows, n), g.act(1, rows, n)},
		run: func(s *side, in []backend.Tensor) ([]float32, error) {
			d := in[0]
			if !alias {
				var err error
				if d, err = s.out(rows, n); err != nil {
					return nil, err
				}
			}
			if err := s.b.Add(d, in[0], in[1]); err != nil {
				return nil, err
			}
			return s.read(d)
		},
		ref: func(in [][]float32) []float64 {
			out := make([]float64, rows*n)
			for i := range out {
				out[i] = float64(in[0][i]) + float64(in[1][i])
			}
			return out
		},
	}
}

const eps = 1e-6

func rmsnorm64(x, w []float32) []float64 {
	g := len(w)
	out := make([]float64, len(x))
	for r := 0; r < len(x); r += g {
		var ss float64
		for _, v := range x[r : r+g] {
			ss += float64(v) * float64(v)
		}
		inv := 1 / math.Sqrt(ss/float64(g)+eps)
		for i, v := range x[r : r+g] {
			out[r+i] = float64(w[i]) * float64(v) * inv
		}
	}
	return out
}

func rmsnormCase(g gen, rows, width, group int, alias bool) kase {
	name := fmt.Sprintf("%dx%d, groups of %d", rows, width, group)
	if alias {
		name += " in place"
	}
	return kase{
		op: "rmsnorm", name: name,
		inputs: []input{g.act(2, rows, width), g.weight(1, 0.1, group)},
		run: func(s *side, in []backend.Tensor) ([]float32, error) {
			d := in[0]
			if !alias {
				var err error
				if d, err = s.out(rows, width); err != nil {
					return nil, err
				}
			}
			if err := s.b.RMSNorm(d, in[0], in[1], eps); err != nil {
				return nil, err
			}
			return s.read(d)
		},
		ref: func(in [][]float32) []float64 { return rmsnorm64(in[0], in[1]) },
	}
}

// ropeFreqs are the default frequencies 1/θ^(2i/d) with Qwen3's θ.
func ropeFreqs(hd int) []float32 {
	inv := make([]float32, hd/2)
	for i := range inv {
		inv[i] = float32(1 / math.Pow(1e6, float64(2*i)/float64(hd)))
	}
	return inv
}

func ropeCase(g gen, rows, heads, hd int) kase {
	pos := make([]int32, rows)
	for i := range pos {
		pos[i] = int32(g.r.IntN(40000))
	}
	rope := &backend.RoPE{HeadDim: hd, InvFreq: ropeFreqs(hd), Scale: 1}
	width := heads * hd
	return kase{
		op: "rope", name: fmt.Sprintf("%d rows of %d heads of %d", rows, heads, hd),
		inputs: []input{g.act(1, rows, width)},
		run: func(s *side, in []backend.Tensor) ([]float32, error) {
			if err := s.b.ApplyRoPE(in[0], pos, rope); err != nil {
				return nil, err
			}
			return s.read(in[0])
		},
		ref: func(in [][]float32) []float64 {
			x := in[0]
			out := make([]float64, len(x))
			half := hd / 2
			for r := 0; r < rows; r++ {
				for h := 0; h < heads; h++ {
					b := r*width + h*hd
					for i := 0; i < half; i++ {
						// The angle is an f32 product, as in transformers.
						ang := float64(float32(pos[r]) * rope.InvFreq[i])
						c, sn := math.Cos(ang), math.Sin(ang)
						a, e := float64(x[b+i]), float64(x[b+i+half])
						out[b+i] = a*c - e*sn
						out[b+i+half] = e*c + a*sn
					}
				}
			}
			return out
		},
	}
}

func swigluCase(g gen, n int, alias bool) kase {
	name := fmt.Sprintf("%d", n)
	if alias {
		name += " into gate"
	}
	return kase{
		op: "swiglu", name: name,
		inputs: []input{g.act(2, 1, n), g.act(1, 1, n)},
		run: func(s *side, in []backend.Tensor) ([]float32, error) {
			d := in[0]
			if !alias {
				var err error
				if d, err = s.out(1, n); err != nil {
					return nil, err
				}
			}
			if err := s.b.SwiGLU(d, in[0], in[1]); err != nil {
				return nil, err
			}
			return s.read(d)
		},
		ref: func(in [][]float32) []float64 {
			out := make([]float64, n)
			for i := range out {
				x := float64(in[0][i])
				out[i] = x / (1 + math.Exp(-x)) * float64(in[1][i])
			}
			return out
		},
	}
}

// copyRowsCase copies n rows; the rows of dst it does not touch must keep
// their contents.
func copyRowsCase(g gen, srcRows, dstRows, w, srcRow, dstRow, n int) kase {
	return kase{
		op: "copy_rows", name: fmt.Sprintf("%d of %dx%d at %d to %d", n, srcRows, w, srcRow, dstRow),
		inputs: []input{g.act(1, srcRows, w), g.act(1, dstRows, w)},
		run: func(s *side, in []backend.Tensor) ([]float32, error) {
			if err := s.b.CopyRows(in[1], dstRow, in[0], srcRow, n); err != nil {
				return nil, err
			}
			return s.read(in[1])
		},
		ref: func(in [][]float32) []float64 {
			out := make([]float64, dstRows*w)
			for i, v := range in[1] {
				out[i] = float64(v)
			}
			for i := 0; i < n*w; i++ {
				out[dstRow*w+i] = float64(in[0][srcRow*w+i])
			}
			return out
		},
	}
}

// attnSeq is one sequence of an attention check: n new rows over len cached
// positions, in a cache with spare rows (random, never to be read).
type attnSeq struct{ n, len int }

func attentionCases(g gen) []kase {
	type shape struct {
		name               string
		heads, kv, hd, win int
		seqs               []attnSeq
	}
	shapes := []shape{
		{"decode, GQA 4:1", 8, 2, 64, 0, []attnSeq{{1, 37}}},
		{"verify 5 rows", 8, 2, 64, 0, []attnSeq{{5, 300}}},
		{"prefill 70", 4, 4, 32, 0, []attnSeq{{70, 70}}},
		{"batch: decode+verify+prefill", 8, 2, 64, 0, []attnSeq{{1, 90}, {5, 41}, {24, 24}}},
		{"sliding window 16", 4, 2, 64, 16, []attnSeq{{20, 50}, {1, 60}}},
		{"decode, long, head dim 128", 32, 8, 128, 0, []attnSeq{{1, 1100}}},
		{"batch of 8 decodes", 16, 4, 128, 0, []attnSeq{{1, 200}, {1, 17}, {1, 513}, {1, 64}, {1, 1}, {1, 300}, {1, 33}, {1, 128}}},
	}
	var cs []kase
	for _, sh := range shapes {
		cs = append(cs, attentionCase(g, sh.name, sh.heads, sh.kv, sh.hd, sh.win, sh.seqs))
	}
	return cs
}

func attentionCase(g gen, name string, heads, kvh, hd, window int, seqs []attnSeq) kase {
	qw, kvw := heads*hd, kvh*hd
	T := 0
	for _, s := range seqs {
		T += s.n
	}
	ins := []input{g.act(1, T, qw)}
	for _, s := range seqs {
		ins = append(ins, g.act(1, s.len+3, kvw), g.act(1, s.len+3, kvw))
	}
	a := backend.Attn{Heads: heads, KVHeads: kvh, HeadDim: hd, Scale: float32(1 / math.Sqrt(float64(hd))), Window: window}
	return kase{
		op: "attention", name: name, inputs: ins,
		run: func(s *side, in []backend.Tensor) ([]float32, error) {
			d, err := s.out(T, qw)
			if err != nil {
				return nil, err
			}
			as := make([]backend.AttnSeq, len(seqs))
			row := 0
			for i, sq := range seqs {
				as[i] = backend.AttnSeq{Row: row, N: sq.n, K: in[1+2*i], V: in[2+2*i], Len: sq.len}
				row += sq.n
			}
			if err := s.b.Attention(d, in[0], as, a); err != nil {
				return nil, err
			}
			return s.read(d)
		},
		ref: func(in [][]float32) []float64 {
			out := make([]float64, T*qw)
			q := in[0]
			row := 0
			group := heads / kvh
			for si, sq := range seqs {
				k, v := in[1+2*si], in[2+2*si]
				for i := 0; i < sq.n; i++ {
					pos := sq.len - sq.n + i
					lo := 0
					if window > 0 {
						lo = max(0, pos-window+1)
					}
					for h := 0; h < heads; h++ {
						kh := h / group
						qr := q[(row+i)*qw+h*hd : (row+i)*qw+(h+1)*hd]
						sc := make([]float64, pos+1-lo)
						mx := math.Inf(-1)
						for j := lo; j <= pos; j++ {
							var dot float64
							for d := 0; d < hd; d++ {
								dot += float64(qr[d]) * float64(k[j*kvw+kh*hd+d])
							}
							sc[j-lo] = dot * float64(a.Scale)
							mx = max(mx, sc[j-lo])
						}
						var z float64
						for j := range sc {
							sc[j] = math.Exp(sc[j] - mx)
							z += sc[j]
						}
						o := out[(row+i)*qw+h*hd : (row+i)*qw+(h+1)*hd]
						for j := lo; j <= pos; j++ {
							p := sc[j-lo] / z
							for d := 0; d < hd; d++ {
								o[d] += p * float64(v[j*kvw+kh*hd+d])
							}
						}
					}
				}
				row += sq.n
			}
			return out
		},
	}
}

// loadCases hand each checkpoint dtype to Load: what is read back must be the
// values, rounded to the backend's storage.
func loadCases(g gen) []kase {
	var cs []kase
	for _, dt := range []backend.DType{backend.F32, backend.BF16, backend.F16} {
		for _, shape := range [][]int{{300}, {48, 130}} {
			vals := g.normal(prod(shape), 0, 1)
			cs = append(cs, kase{
				op: "load", name: fmt.Sprintf("%s %v", dt, shape),
				run: func(s *side, _ []backend.Tensor) ([]float32, error) {
					t, err := s.load(shape, vals, dt)
					if err != nil {
						return nil, err
					}
					return s.read(t)
				},
				// The reference is what the checkpoint holds: the values
				// rounded to its dtype.
				ref: func([][]float32) []float64 {
					st := fileDType(dt)
					held := make([]float32, len(vals))
					raw, err := safetensors.FromFloat32(st, vals)
					if err == nil {
						err = safetensors.ToFloat32(held, st, raw)
					}
					out := make([]float64, len(vals))
					for i, v := range held {
						out[i] = float64(v)
						if err != nil {
							out[i] = math.NaN()
						}
					}
					return out
				},
			})
		}
	}
	return cs
}

// RandomLoader is the optional interface of model.RandomLoader, declared
// here to keep this package free of the model.
type RandomLoader interface {
	LoadRandom(shape []int, dtype backend.DType, seed uint64, mean, std float32) (backend.Tensor, error)
}

// randomCase draws 256×1024 weights twice with one seed and once with
// another: the same seed must give the same values, another seed others,
// and the sample's mean and standard deviation must be the asked ones.
func randomCase(seed uint64) kase {
	const mean, std = 0.5, 0.02
	shape := []int{256, 1024}
	return kase{
		op: "load_random", name: fmt.Sprintf("%v, mean %g, std %g", shape, mean, std),
		needs: func(b backend.Backend) string {
			if _, ok := b.(RandomLoader); !ok {
				return "no on-device random weights"
			}
			return ""
		},
		custom: func(s *side) (float64, float64, error) {
			rl := s.b.(RandomLoader)
			draw := func(sd uint64) ([]float32, error) {
				t, err := rl.LoadRandom(shape, backend.BF16, sd, mean, std)
				if err != nil {
					return nil, err
				}
				s.keep(t)
				return s.read(t)
			}
			a, err := draw(seed)
			if err != nil {
				return math.NaN(), 0, err
			}
			b, err := draw(seed)
			if err != nil {
				return math.NaN(), 0, err
			}
			c, err := draw(seed + 1)
			if err != nil {
				return math.NaN(), 0, err
			}
			same, other := 0, 0
			var m, m2 float64
			for i := range a {
				if a[i] == b[i] {
					same++
				}
				if a[i] == c[i] {
					other++
				}
				m += float64(a[i])
			}
			n := float64(len(a))
			m /= n
			for _, v := range a {
				m2 += (float64(v) - m) * (float64(v) - m)
			}
			sd := math.Sqrt(m2 / n)
			switch {
			case same != len(a):
				return math.NaN(), 0, fmt.Errorf("one seed drew different values (%d of %d equal)", same, len(a))
			case other > len(a)/2:
				return math.NaN(), 0, fmt.Errorf("two seeds drew the same values (%d of %d equal)", other, len(a))
			case math.Abs(m-mean) > 6*std/math.Sqrt(n):
				return math.NaN(), 0, fmt.Errorf("mean %g, want %g", m, mean)
			}
			// bf16 rounding of values near 0.5 (steps of 2^-9) widens the
			// spread a little: tolerate 5%.
			return math.Abs(sd/std - 1), 0.05, nil
		},
	}
}
