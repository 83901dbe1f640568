package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/draftbench/draftbench/pkg/safetensors"
)

// TestIntOrList: generation_config's eos_token_id as a number, a list, or
// null (not set: never id 0).
func TestIntOrList(t *testing.T) {
	for in, want := range map[string][]int{
		`2`:         {2},
		`[2, 7]`:    {2, 7},
		`null`:      nil,
		` null `:    nil,
		`[null, 3]`: {3},
		`"2"`:       nil,
		``:          nil,
	} {
		if got := intOrList(json.RawMessage(in)); !slices.Equal(got, want) {
			t.Errorf("intOrList(%s) = %v, want %v", in, got, want)
		}
	}
}

func TestLFSPointerTokenizer(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte(safetensors.LFSPointerPrefix+"v1\noid sha256:abc\nsize 11422654\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), "tokenizer.json is a Git LFS pointer") {
		t.Errorf("Load of a Git LFS pointer: %v", err)
	}
}
