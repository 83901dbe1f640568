package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/draftbench/draftbench/pkg/golden"
)

// TestCompareWithEager: an error with graphs above 1.1× the eager run's fails
// the graphs run, unless its products were tuned (a fresh backend re-tunes
// them, so another algorithm may round differently): then it is a note.
func TestCompareWithEager(t *testing.T) {
	eager := []golden.Result{{Name: "llama", MaxRel: 0.030}, {Name: "qwen3", MaxRel: 0.020}}
	graphs := []golden.Result{{Name: "llama", MaxRel: 0.0325}, {Name: "qwen3", MaxRel: 0.030}}
	tests := []struct {
		name   string
		tuned  bool
		failed int
		want   []string
		absent []string
	}{
		{"plain", false, 1, []string{"FAIL: qwen3 with graphs: max rel err 0.03, eager 0.02"}, []string{"llama", "note:"}},
		{"tuned", true, 0, []string{"note: --tune-gemm", "note: qwen3 with graphs: max rel err 0.03, eager 0.02 (not a failure"},
			[]string{"FAIL", "llama"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if got := compareWithEager(&out, graphs, eager, tt.tuned); got != tt.failed {
				t.Errorf("failed = %d, want %d\n%s", got, tt.failed, out.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(out.String(), a) {
					t.Errorf("output has %q:\n%s", a, out.String())
				}
			}
		})
	}
	// Fewer results than the eager run's (a golden that failed to load) are
	// compared as far as they go.
	var out bytes.Buffer
	if got := compareWithEager(&out, graphs[:1], eager, false); got != 0 {
		t.Errorf("one golden within 1.1x: failed = %d\n%s", got, out.String())
	}
}
