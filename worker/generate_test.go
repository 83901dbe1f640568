package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/draftbench/draftbench/pkg/cli"
)

// TestGenerateArguments: flags that need a drafter say so, and a missing
// model folder is named as the model's, before its tokenizer.
func TestGenerateArguments(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"gamma without a drafter", []string{"generate", "--model", t.TempDir(), "--prompt", "hi", "--gamma", "4"}, 2,
			"--gamma, --adaptive-gamma and --draft-top-k need --drafter DIR"},
		{"missing folder", []string{"generate", "--model", "/nonexistent/model", "--prompt", "hi"}, 1,
			"worker generate: error: model folder /nonexistent/model: stat /nonexistent/model: no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &cli.Program{Name: "worker", Commands: []*cli.Command{generateCmd()}}
			var out, errb bytes.Buffer
			code := p.Run(tc.args, &out, &errb, func(string) string { return "" })
			if code != tc.code || !strings.Contains(errb.String(), tc.err) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errb.String(), tc.code, tc.err)
			}
		})
	}
}
