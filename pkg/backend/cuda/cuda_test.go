//go:build cuda

package cuda

import (
	"bytes"
	"strings"
	"testing"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/backend/cpu"
	"github.com/draftbench/draftbench/pkg/backend/selftest"
	"github.com/draftbench/draftbench/pkg/model"
)

var (
	_ model.RandomLoader     = (*Backend)(nil)
	_ backend.ResidualNormer = (*Backend)(nil)
	_ selftest.LogitOps      = (*Backend)(nil)
	_ selftest.Verifier      = (*Backend)(nil)
	_ selftest.RandomLoader  = (*Backend)(nil)
	_ backend.Backend        = (*Backend)(nil)
)

// TestBackend runs the self-test on every visible GPU in bf16 and f32. On a
// machine without one (CI builds with -tags cuda but has no GPU), it checks
// instead that New says so clearly.
func TestBackend(t *testing.T) {
	n, err := DeviceCount()
	if err != nil || n == 0 {
		_, nerr := New(Options{})
		if nerr == nil {
			t.Fatal("New succeeded without a device")
		}
		if !strings.Contains(nerr.Error(), "no usable GPU") && !strings.Contains(nerr.Error(), "no CUDA device") {
			t.Errorf("New without a device: %q does not say that there is no GPU", nerr)
		}
		return
	}
	for _, f32 := range []bool{false, true} {
		b, err := New(Options{F32: f32})
		if err != nil {
			t.Fatal(err)
		}
		rs := selftest.Run(b, selftest.Config{Seed: 3, Reference: cpu.NewF32(0), WeightDType: backend.BF16})
		var buf bytes.Buffer
		if err := selftest.WriteTable(&buf, "cuda", rs); err != nil {
			t.Fatal(err)
		}
		t.Log("\n" + buf.String())
		if k := selftest.Failed(rs); k > 0 {
			t.Errorf("f32=%v: %d checks failed", f32, k)
		}
		for _, r := range rs {
			if r.Skipped != "" {
				t.Errorf("%s %s skipped on the CUDA backend: %s", r.Op, r.Case, r.Skipped)
			}
		}
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	}
}

// TestOOMErrorAdvises: an out-of-memory error says what to lower, as the
// seed's troubleshooting did; other errors do not.
func TestOOMErrorAdvises(t *testing.T) {
	oom := (&Error{Op: "alloc", Device: 1, Call: "cudaMalloc(out, bytes)", Where: "device.cu:132", Msg: "out of memory", Code: 2, OOM: true}).Error()
	if !strings.HasPrefix(oom, "cuda: alloc on device 1: cudaMalloc(out, bytes) failed at device.cu:132: out of memory (code 2); the GPU is out of memory: lower batch.size") ||
		!strings.Contains(oom, "GAMMA_VALUE") {
		t.Errorf("OOM error %q lacks the advice", oom)
	}
	if other := (&Error{Op: "gemm", Device: 0, Call: "x", Where: "y", Msg: "z", Code: 13}).Error(); strings.Contains(other, "out of memory") {
		t.Errorf("a non-OOM error advises on memory: %q", other)
	}
}
