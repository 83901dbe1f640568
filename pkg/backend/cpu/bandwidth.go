package cpu

/*
#include <cblas.h>
*/
import "C"

import (
	"runtime"
	"time"
	"unsafe"
)

// ReadBandwidth measures how fast this machine streams memory into the CPU:
// bytes per second for OpenBLAS's vectorised sum of a buffer of the given
// size, split over all cores, best of three. A decode step reads every weight once, so
// weight bytes / this figure is the step-time floor.
func ReadBandwidth(bytes int) float64 {
	n := bytes / 4
	buf := make([]float32, n)
	for i := range buf {
		buf[i] = float32(i & 1023)
	}
	best := 0.0
	for rep := 0; rep < 3; rep++ {
		start := time.Now()
		parallel(runtime.GOMAXPROCS(0), n, 1<<16, func(lo, hi int) {
			C.cblas_sasum(C.blasint(hi-lo), (*C.float)(unsafe.Pointer(&buf[lo])), 1)
		})
		best = max(best, float64(n*4)/time.Since(start).Seconds())
	}
	return best
}
