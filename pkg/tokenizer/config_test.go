package tokenizer

import (
	"encoding/json"
	"slices"
	"testing"
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
