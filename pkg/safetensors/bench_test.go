package safetensors

import (
	"math/rand/v2"
	"testing"
)

const benchElems = 1 << 20 // one 4 MiB float32 row block, a typical weight slice

func benchConvert(b *testing.B, dtype DType) {
	rng := rand.New(rand.NewPCG(5, 6))
	src := make([]float32, benchElems)
	for i := range src {
		src[i] = float32(rng.NormFloat64())
	}
	raw, err := FromFloat32(dtype, src)
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]float32, benchElems)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if err := ToFloat32(dst, dtype, raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBF16ToFloat32(b *testing.B) { benchConvert(b, BF16) }
func BenchmarkF16ToFloat32(b *testing.B)  { benchConvert(b, F16) }

func BenchmarkFloat32ToBF16(b *testing.B) {
	src := make([]float32, benchElems)
	for i := range src {
		src[i] = float32(i) * 0.001
	}
	b.SetBytes(4 * benchElems)
	for b.Loop() {
		if _, err := FromFloat32(BF16, src); err != nil {
			b.Fatal(err)
		}
	}
}
