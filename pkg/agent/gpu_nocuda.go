//go:build !cuda

package agent

import "github.com/draftbench/draftbench/pkg/backend"

// cudaBuilt says whether this binary can run stages on GPUs. Its twin for
// -tags cuda comes with pkg/backend/cuda and returns that backend.
const cudaBuilt = false

// gpuBackend refuses: a worker built without CUDA cannot serve a GPU group.
func gpuBackend(devices int, weightBytes int64, dtype string, o GPUOptions) (backend.Backend, error) {
	return nil, ErrNoCUDA
}
