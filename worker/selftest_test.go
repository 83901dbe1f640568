package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/draftbench/draftbench/pkg/backend/cuda"
	"github.com/draftbench/draftbench/pkg/cli"
)

func runWorker(args ...string) (int, string, string) {
	p := &cli.Program{Name: "worker", Commands: []*cli.Command{selftestCmd()}}
	var out, errb bytes.Buffer
	code := p.Run(args, &out, &errb, func(string) string { return "" })
	return code, out.String(), errb.String()
}

type commandCase struct {
	name string
	args []string
	code int
	out  []string // substrings of stdout
	err  string   // substring of stderr
}

// TestSelftestCommand: `worker selftest --backend cpu` prints a passing
// table; bad flags are usage errors; without CUDA, --backend cuda says so.
func TestSelftestCommand(t *testing.T) {
	tests := []commandCase{
		{"cpu, both dtypes", []string{"selftest", "--backend", "cpu", "--seed", "9", "--only", "matmul,rope", "--threads", "2"}, 0,
			[]string{"seed 9", "bf16 storage", "f32 storage", "selftest cpu/bf16: 7 passed, 0 failed", "selftest cpu/f32: 7 passed, 0 failed"}, ""},
		{"unknown backend", []string{"selftest", "--backend", "tpu"}, 2, nil, `"tpu" is not one of cpu, cuda`},
		{"unknown dtype", []string{"selftest", "--dtype", "f8"}, 2, nil, "each is bf16 or f32"},
		{"bad devices", []string{"selftest", "--devices", "a"}, 2, nil, "not a device number"},
	}
	if !cuda.Built {
		tests = append(tests, commandCase{"cuda without the cuda tag", []string{"selftest", "--backend", "cuda"}, 1, nil, "built without CUDA; rebuild it with make build-cuda"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runWorker(tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errs)
			}
			for _, s := range tt.out {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
			if !strings.Contains(errs, tt.err) {
				t.Errorf("stderr %q lacks %q", errs, tt.err)
			}
		})
	}
}
