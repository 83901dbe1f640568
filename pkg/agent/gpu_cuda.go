//go:build cuda

package agent

import (
	"fmt"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/backend/cuda"
)

// cudaBuilt says whether this binary can run stages on GPUs. Its twin
// without -tags cuda refuses with ErrNoCUDA.
const cudaBuilt = true

// gpuBackend opens the stage's devices: the agent narrows
// CUDA_VISIBLE_DEVICES to the group, so they are ordinals 0..devices-1, and
// the backend splits the stage's layers over them in proportion to their
// free memory, given the shard's weight bytes (0: fill them in order). The
// job's dtype picks the storage: bf16 ("auto" too) or f32.
func gpuBackend(devices int, weightBytes int64, dtype string, o GPUOptions) (backend.Backend, error) {
	var ords []int
	for i := 0; i < devices; i++ {
		ords = append(ords, i)
	}
	f32 := false
	switch dtype {
	case "", "auto", "bf16":
	case "f32":
		f32 = true
	default:
		return nil, fmt.Errorf("dtype %q: the CUDA backend stores weights in bf16 or f32 (dtype auto, bf16 or f32)", dtype)
	}
	return cuda.New(cuda.Options{Devices: ords, WeightBytes: weightBytes, F32: f32,
		Graphs: o.Graphs, TuneGEMM: o.TuneGEMM, BatchInvariant: o.BatchInvariant})
}
