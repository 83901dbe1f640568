package cpu

/*
#cgo CFLAGS: -O3
#include <cblas.h>
#include "bf16.h"
*/
import "C"

import (
	"fmt"
	"sync"
	"unsafe"
)

// bf16Kernel is the widest bf16 kernel this CPU runs (2 AVX-512, 1 AVX2, 0 C).
var bf16Kernel = C.db_bf16_kernel()

// Kernel names the bf16 matrix-vector kernel in use, for logs and benchmarks.
func Kernel() string {
	return [...]string{"portable C", "AVX2+FMA", "AVX-512"}[bf16Kernel]
}

// smallT is the most rows of x for which the bf16 weights are streamed once
// through db_gemv_bf16; past it the weights are widened to f32 in blocks and
// multiplied with sgemm, where compute, not bandwidth, is the bound.
const smallT = 16

// blockRows is how many weight rows are widened at a time for sgemm.
const blockRows = 256

var scratch = sync.Pool{New: func() any { return new([]float32) }}

// matmulBF16 is MatMul for a bf16 weight, split over workers goroutines by
// weight rows.
func matmulBF16(workers int, d, x []float32, w []uint16, m, n, k int) {
	if m <= smallT {
		parallel(workers, n, 64, func(n0, n1 int) {
			C.db_gemv_bf16(bf16Kernel, (*C.uint16_t)(unsafe.Pointer(&w[0])), (*C.float)(unsafe.Pointer(&x[0])),
				(*C.float)(unsafe.Pointer(&d[0])), C.int(k), C.int(m), C.int(n), C.int(n0), C.int(n1))
		})
		return
	}
	blocks := (n + blockRows - 1) / blockRows
	parallel(workers, blocks, 1, func(b0, b1 int) {
		bp := scratch.Get().(*[]float32)
		defer scratch.Put(bp)
		if cap(*bp) < blockRows*k {
			*bp = make([]float32, blockRows*k)
		}
		block := (*bp)[:blockRows*k]
		for blk := b0; blk < b1; blk++ {
			r0 := blk * blockRows
			rows := min(blockRows, n-r0)
			C.db_bf16_to_f32((*C.uint16_t)(unsafe.Pointer(&w[r0*k])), (*C.float)(unsafe.Pointer(&block[0])), C.long(rows*k))
			C.cblas_sgemm(C.CblasRowMajor, C.CblasNoTrans, C.CblasTrans, C.blasint(m), C.blasint(rows), C.blasint(k), 1,
				(*C.float)(unsafe.Pointer(&x[0])), C.blasint(k),
				(*C.float)(unsafe.Pointer(&block[0])), C.blasint(k), 0,
				(*C.float)(unsafe.Pointer(&d[r0])), C.blasint(n))
		}
	})
}

// embedBF16 gathers rows of a bf16 table into f32.
func embedBF16(d []float32, table []uint16, h int, ids []int32) {
	for i, id := range ids {
		C.db_bf16_to_f32((*C.uint16_t)(unsafe.Pointer(&table[int(id)*h])), (*C.float)(unsafe.Pointer(&d[i*h])), C.long(h))
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
