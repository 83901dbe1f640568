package cpu

/*
#cgo CFLAGS: -O3
#include "bf16.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// bf16Kernel is the widest bf16 kernel this CPU runs (2 AVX-512, 1 AVX2, 0 C).
var bf16Kernel = C.dbcpu_bf16_kernel()

// Kernel names the bf16 matrix-vector kernel in use, for logs and benchmarks.
func Kernel() string {
	return [...]string{"portable C", "AVX2+FMA", "AVX-512"}[bf16Kernel]
}

// matmulBF16 is MatMul for a bf16 weight, split over workers goroutines by
// weight rows. Every output element is one f32 accumulator over k in order,
// whatever the number of rows and however they are batched or split, so a
// token's logits do not depend on what else ran in its batch: the lossless
// check compares speculative and AR outputs computed the same way.
func matmulBF16(workers int, d, x []float32, w []uint16, m, n, k int) {
	parallel(workers, n, 64, func(n0, n1 int) {
		C.dbcpu_gemm_bf16(bf16Kernel, (*C.uint16_t)(unsafe.Pointer(&w[0])), (*C.float)(unsafe.Pointer(&x[0])),
			(*C.float)(unsafe.Pointer(&d[0])), C.int(k), C.int(m), C.int(n), C.int(n0), C.int(n1))
	})
}

// embedBF16 gathers rows of a bf16 table into f32.
func embedBF16(d []float32, table []uint16, h int, ids []int32) {
	for i, id := range ids {
		C.dbcpu_bf16_to_f32((*C.uint16_t)(unsafe.Pointer(&table[int(id)*h])), (*C.float)(unsafe.Pointer(&d[i*h])), C.long(h))
	}
}

func checkF32(ts ...*Tensor) error {
	for _, t := range ts {
		if t.bf != nil {
			return fmt.Errorf("cpu: a bf16 tensor of shape %v where f32 is needed (bf16 is for weights of MatMul and Embed)", t.shape)
		}
	}
	return nil
}
