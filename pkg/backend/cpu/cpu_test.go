package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/safetensors"
)

func randVec(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// relErr is max|a-b| / max|b|, against a float64 reference.
func relErr(got []float32, want []float64) float64 {
	var num, den float64
	for i := range want {
		num = max(num, math.Abs(float64(got[i])-want[i]))
		den = max(den, math.Abs(want[i]))
	}
	return num / max(den, 1e-30)
}

func bf16Weights(t *testing.T, b *Backend, w []float32, n, k int) (backend.Tensor, []float32) {
	t.Helper()
	raw, err := safetensors.FromFloat32("BF16", w)
	if err != nil {
		t.Fatal(err)
	}
	wt, err := b.Load([]int{n, k}, backend.BF16, raw)
	if err != nil {
		t.Fatal(err)
	}
	if wt.DType() != backend.BF16 {
		t.Fatalf("a bf16 matrix was loaded as %v", wt.DType())
	}
	rounded := make([]float32, len(w))
	if err := b.Read(wt, rounded); err != nil {
		t.Fatal(err)
	}
	return wt, rounded
}

// TestMatMul covers f32 weights (OpenBLAS) and bf16 weights with every kernel
// this CPU has (AVX-512, AVX2, portable C), tails included, for few and many
// rows.
func TestMatMul(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	b := New(2)
	saved := bf16Kernel
	defer func() { bf16Kernel = saved }()
	shapes := []struct{ m, n, k int }{{1, 7, 5}, {1, 64, 17}, {3, 33, 40}, {8, 130, 96}, {9, 20, 31}, {16, 300, 64}, {17, 513, 33}, {40, 70, 300}}
	for level := saved; level >= 0; level-- {
		bf16Kernel = level
		for _, s := range shapes {
			x := randVec(r, s.m*s.k)
			w := randVec(r, s.n*s.k)
			wt, wr := bf16Weights(t, b, w, s.n, s.k)
			want := make([]float64, s.m*s.n)
			for i := 0; i < s.m; i++ {
				for j := 0; j < s.n; j++ {
					var acc float64
					for l := 0; l < s.k; l++ {
						acc += float64(x[i*s.k+l]) * float64(wr[j*s.k+l])
					}
					want[i*s.n+j] = acc
				}
			}
			d := b.New(s.m, s.n).(*Tensor)
			for i := range d.data {
				d.data[i] = float32(math.NaN()) // poisoned: every output must be written
			}
			if err := b.MatMul(d, FromSlice(x, s.m, s.k), wt); err != nil {
				t.Fatal(err)
			}
			if e := relErr(d.data, want); !(e < 1e-5) {
				t.Errorf("bf16 kernel %d, %dx%d·%dx%dᵀ: relative error %.3g", level, s.m, s.k, s.n, s.k, e)
			}
			f := b.New(s.m, s.n).(*Tensor)
			if err := b.MatMul(f, FromSlice(x, s.m, s.k), FromSlice(wr, s.n, s.k)); err != nil {
				t.Fatal(err)
			}
			if e := relErr(f.data, want); !(e < 1e-5) {
				t.Errorf("f32 %dx%d·%dx%dᵀ: relative error %.3g", s.m, s.k, s.n, s.k, e)
			}
		}
	}
	if err := b.MatMul(b.New(2, 3), b.New(2, 4), b.New(3, 5)); err == nil {
		t.Error("mismatched shapes accepted")
	}
}

func TestEmbedBF16MatchesF32(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	b := New(1)
	table := randVec(r, 10*6)
	bt, rounded := bf16Weights(t, b, table, 10, 6)
	ids := []int32{3, 0, 9, 3}
	d := b.New(len(ids), 6).(*Tensor)
	if err := b.Embed(d, bt, ids); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		for j := 0; j < 6; j++ {
			if d.data[i*6+j] != rounded[int(id)*6+j] {
				t.Fatalf("row %d col %d: %v want %v", i, j, d.data[i*6+j], rounded[int(id)*6+j])
			}
		}
	}
	if err := b.Embed(d, bt, []int32{1, 2, 3, 10}); err == nil {
		t.Error("id past the table accepted")
	}
	if err := b.RMSNorm(b.New(1, 6), bt, b.New(6), 1e-6); err == nil {
		t.Error("a bf16 tensor accepted where f32 is needed")
	}
}

func TestElementwiseOps(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	b := New(1)
	x, w := randVec(r, 3*8), randVec(r, 4)
	d := b.New(3, 8).(*Tensor)
	if err := b.RMSNorm(d, FromSlice(x, 3, 8), FromSlice(w, 4), 1e-5); err != nil {
		t.Fatal(err)
	}
	want := make([]float64, len(x))
	for g := 0; g < len(x); g += 4 {
		var ss float64
		for i := 0; i < 4; i++ {
			ss += float64(x[g+i]) * float64(x[g+i])
		}
		inv := 1 / math.Sqrt(ss/4+1e-5)
		for i := 0; i < 4; i++ {
			want[g+i] = float64(x[g+i]) * inv * float64(w[i])
		}
	}
	if e := relErr(d.data, want); e > 1e-6 {
		t.Errorf("rmsnorm per group of 4: relative error %.3g", e)
	}
	gate, up := randVec(r, 10), randVec(r, 10)
	s := b.New(10).(*Tensor)
	if err := b.SwiGLU(s, FromSlice(gate, 10), FromSlice(up, 10)); err != nil {
		t.Fatal(err)
	}
	for i := range gate {
		g := float64(gate[i])
		if want := g / (1 + math.Exp(-g)) * float64(up[i]); math.Abs(float64(s.data[i])-want) > 1e-6*max(1, math.Abs(want)) {
			t.Errorf("swiglu[%d] = %v, want %v", i, s.data[i], want)
		}
	}
}

func TestRoPERotatesHalves(t *testing.T) {
	b := New(1)
	rope := &backend.RoPE{HeadDim: 4, InvFreq: []float32{1, 0.5}, Scale: 1}
	x := FromSlice([]float32{1, 2, 3, 4, 1, 2, 3, 4}, 2, 4) // one head, positions 0 and 3
	if err := b.ApplyRoPE(x, []int32{0, 3}, rope); err != nil {
		t.Fatal(err)
	}
	want := []float64{1, 2, 3, 4}
	for i, a := range []float64{3, 1.5} { // angles at position 3
		x1, x2 := float64(i+1), float64(i+3)
		want = append(want, 0)
		want[4+i] = x1*math.Cos(a) - x2*math.Sin(a)
	}
	want = append(want, 0, 0)
	for i, a := range []float64{3, 1.5} {
		x1, x2 := float64(i+1), float64(i+3)
		want[6+i] = x2*math.Cos(a) + x1*math.Sin(a)
	}
	if e := relErr(x.data, want); e > 1e-6 {
		t.Errorf("rope: got %v want %v", x.data, want)
	}
}

// TestAttention checks causal GQA attention with a sliding window against a
// float64 reference, for two sequences at different cache positions.
func TestAttention(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	b := New(2)
	a := backend.Attn{Heads: 4, KVHeads: 2, HeadDim: 8, Scale: 0.35}
	for _, window := range []int{0, 3} {
		a.Window = window
		lens := []int{5, 9}
		news := []int{2, 4}
		qw, kvw := a.Heads*a.HeadDim, a.KVHeads*a.HeadDim
		T := news[0] + news[1]
		q := randVec(r, T*qw)
		var seqs []backend.AttnSeq
		row := 0
		var ks, vs [][]float32
		for i := range lens {
			k, v := randVec(r, 12*kvw), randVec(r, 12*kvw) // capacity 12
			ks, vs = append(ks, k), append(vs, v)
			seqs = append(seqs, backend.AttnSeq{Row: row, N: news[i], Len: lens[i], K: FromSlice(k, 12, kvw), V: FromSlice(v, 12, kvw)})
			row += news[i]
		}
		d := b.New(T, qw).(*Tensor)
		if err := b.Attention(d, FromSlice(q, T, qw), seqs, a); err != nil {
			t.Fatal(err)
		}
		want := make([]float64, T*qw)
		for si, s := range seqs {
			for i := 0; i < s.N; i++ {
				pos := s.Len - s.N + i
				for h := 0; h < a.Heads; h++ {
					kh := h / (a.Heads / a.KVHeads)
					lo := 0
					if window > 0 {
						lo = max(0, pos-window+1)
					}
					scores := make([]float64, pos+1)
					mx := math.Inf(-1)
					for j := lo; j <= pos; j++ {
						var dot float64
						for e := 0; e < a.HeadDim; e++ {
							dot += float64(q[(s.Row+i)*qw+h*a.HeadDim+e]) * float64(ks[si][j*kvw+kh*a.HeadDim+e])
						}
						scores[j] = dot * float64(a.Scale)
						mx = max(mx, scores[j])
					}
					var sum float64
					for j := lo; j <= pos; j++ {
						scores[j] = math.Exp(scores[j] - mx)
						sum += scores[j]
					}
					for e := 0; e < a.HeadDim; e++ {
						var acc float64
						for j := lo; j <= pos; j++ {
							acc += scores[j] / sum * float64(vs[si][j*kvw+kh*a.HeadDim+e])
						}
						want[(s.Row+i)*qw+h*a.HeadDim+e] = acc
					}
				}
			}
		}
		if e := relErr(d.data, want); e > 1e-5 {
			t.Errorf("window %d: relative error %.3g", window, e)
		}
	}
}

func BenchmarkMatMulBF16Decode(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	be := New(0)
	n, k := 1536, 576
	raw, _ := safetensors.FromFloat32("BF16", randVec(r, n*k))
	w, _ := be.Load([]int{n, k}, backend.BF16, raw)
	x := FromSlice(randVec(r, k), 1, k)
	d := be.New(1, n)
	b.SetBytes(int64(n * k * 2))
	for b.Loop() {
		if err := be.MatMul(d, x, w); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAttentionDecode: one decode step's attention in one layer of the
// quickstart target (8 heads, 4 KV heads, head dim 64) for 5 sequences of
// 166 cached positions.
func BenchmarkAttentionDecode(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	be := New(benchThreads)
	const heads, kvh, hd, nseq, L = 8, 4, 64, 5, 166
	q := FromSlice(randVec(r, nseq*heads*hd), nseq, heads*hd)
	d := be.New(nseq, heads*hd)
	seqs := make([]backend.AttnSeq, nseq)
	for i := range seqs {
		seqs[i] = backend.AttnSeq{Row: i, N: 1, Len: L,
			K: FromSlice(randVec(r, L*kvh*hd), L, kvh*hd), V: FromSlice(randVec(r, L*kvh*hd), L, kvh*hd)}
	}
	a := backend.Attn{Heads: heads, KVHeads: kvh, HeadDim: hd, Scale: 0.125}
	for b.Loop() {
		if err := be.Attention(d, q, seqs, a); err != nil {
			b.Fatal(err)
		}
	}
}

var benchThreads = 0

// TestForDType: dtype "bf16" narrows f32 weight matrices to bf16 as a bf16
// checkpoint of the same values would hold them; "f32" widens; vectors stay
// f32; f16 is refused.
func TestForDType(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	w := randVec(r, 4*8)
	raw := make([]byte, 4*len(w))
	for i, f := range w {
		u := math.Float32bits(f)
		raw[4*i], raw[4*i+1], raw[4*i+2], raw[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	b, err := ForDType("bf16", 1)
	if err != nil {
		t.Fatal(err)
	}
	mt, err := b.Load([]int{4, 8}, backend.F32, raw)
	if err != nil {
		t.Fatal(err)
	}
	m := mt.(*Tensor)
	if m.bf == nil || m.data != nil {
		t.Fatalf("dtype bf16: an f32 weight matrix was kept in f32")
	}
	for i, f := range w {
		if m.bf[i] != safetensors.Float32ToBF16(f) {
			t.Fatalf("element %d: %#04x, want %#04x", i, m.bf[i], safetensors.Float32ToBF16(f))
		}
	}
	vt, err := b.Load([]int{8}, backend.F32, raw[:32])
	if err != nil {
		t.Fatal(err)
	}
	if v := vt.(*Tensor); v.bf != nil || v.data[3] != w[3] {
		t.Errorf("dtype bf16: a vector (a norm's weight) was narrowed")
	}
	for _, tc := range []struct {
		dtype string
		f32   bool
	}{{"", false}, {"auto", false}, {"f32", true}} {
		b, err := ForDType(tc.dtype, 1)
		if err != nil || b.f32Weights != tc.f32 || b.bf16Weights {
			t.Errorf("ForDType(%q): %+v, %v", tc.dtype, b, err)
		}
	}
	if _, err := ForDType("f16", 1); err == nil {
		t.Error("dtype f16 accepted on the CPU")
	}
}
