package model

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/safetensors"
)

// RandomLoader is implemented by backends that can draw random weights in
// their own memory (a GPU backend fills device memory without a host copy).
type RandomLoader interface {
	LoadRandom(shape []int, dtype backend.DType, seed uint64, mean, std float32) (backend.Tensor, error)
}

// randomSource draws the weights of a model that has no weight files.
// Each tensor's values depend only on the seed and the tensor's name, so a
// shard draws the same layers as the whole model would.
type randomSource struct{ seed uint64 }

func newRandomSource(seed uint64) *randomSource { return &randomSource{seed: seed} }

func (r *randomSource) tensor(b backend.Backend, name string, shape []int) (backend.Tensor, error) {
	h := fnv.New64a()
	h.Write([]byte(name))
	seed := h.Sum64() ^ r.seed
	// Norm weights near 1, everything else small and scaled by fan-in, so
	// activations stay in range through many layers.
	mean, std := float32(0), float32(0.02)
	if strings.HasSuffix(name, "norm.weight") {
		mean, std = 1, 0.02
	} else if len(shape) == 2 {
		std = float32(1 / math.Sqrt(float64(shape[1])))
	}
	if rl, ok := b.(RandomLoader); ok {
		return rl.LoadRandom(shape, backend.BF16, seed, mean, std)
	}
	n := 1
	for _, d := range shape {
		n *= d
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	v := make([]float32, n)
	for i := range v {
		v[i] = mean + std*float32(rng.NormFloat64())
	}
	raw, err := safetensors.FromFloat32(safetensors.BF16, v)
	if err != nil {
		return nil, err
	}
	return b.Load(shape, backend.BF16, raw)
}
