package dataset

import (
	"slices"
	"strings"
	"testing"
)

func TestSynthetic(t *testing.T) {
	tests := []struct {
		name string
		n    int
		cfg  SyntheticConfig
	}{
		{"plain range", 4, SyntheticConfig{InputTokens: 128, VocabLo: 0, VocabHi: 1000, Seed: 1}},
		{"specials avoided, duplicates and out-of-range ignored", 8, SyntheticConfig{InputTokens: 64, VocabLo: 10, VocabHi: 20, Avoid: []int{19, 10, 15, 15, 3, 99}, Seed: 2}},
		{"one id left", 2, SyntheticConfig{InputTokens: 16, VocabLo: 0, VocabHi: 3, Avoid: []int{0, 2}, Seed: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := Synthetic(tt.n, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(sel.Prompts) != tt.n || sel.Stats.Source != "synthetic" || sel.Stats.Selected != tt.n || sel.Warning != "" {
				t.Fatalf("got %d prompts, stats %+v, warning %q", len(sel.Prompts), sel.Stats, sel.Warning)
			}
			for i, p := range sel.Prompts {
				if p.ID != i || p.Source != "synthetic" || len(p.Tokens) != tt.cfg.InputTokens {
					t.Errorf("prompt %d: ID %d source %q %d tokens", i, p.ID, p.Source, len(p.Tokens))
				}
				for _, id := range p.Tokens {
					if id < tt.cfg.VocabLo || id >= tt.cfg.VocabHi || slices.Contains(tt.cfg.Avoid, id) {
						t.Fatalf("prompt %d draws id %d outside [%d, %d) minus %v", i, id, tt.cfg.VocabLo, tt.cfg.VocabHi, tt.cfg.Avoid)
					}
				}
			}
			again, err := Synthetic(tt.n, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i := range again.Prompts {
				if !slices.Equal(again.Prompts[i].Tokens, sel.Prompts[i].Tokens) {
					t.Fatalf("prompt %d differs between two runs with seed %d", i, tt.cfg.Seed)
				}
			}
		})
	}
}

// The rank-to-id mapping must be exactly uniform over the allowed ids: with 80,000 draws over
// 8 ids each count is 10,000 ± ~95 (one standard deviation); 4% is over 4 deviations.
func TestSyntheticUniform(t *testing.T) {
	cfg := SyntheticConfig{InputTokens: 1000, VocabLo: 0, VocabHi: 10, Avoid: []int{3, 7}, Seed: 42}
	sel, err := Synthetic(80, cfg)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[int]int{}
	for _, p := range sel.Prompts {
		for _, id := range p.Tokens {
			counts[id]++
		}
	}
	for _, id := range []int{0, 1, 2, 4, 5, 6, 8, 9} {
		if c := counts[id]; c < 9600 || c > 10400 {
			t.Errorf("id %d drawn %d times, want 10000 ± 400 (counts %v)", id, c, counts)
		}
	}
	if len(counts) != 8 {
		t.Errorf("drew %d distinct ids, want 8: %v", len(counts), counts)
	}
}

func TestSyntheticRangeRatio(t *testing.T) {
	tests := []struct {
		name         string
		cfg          SyntheticConfig
		wantLo, want int // inclusive bounds of the lengths
	}{
		{"plus or minus half", SyntheticConfig{InputTokens: 10, RangeRatio: 0.5, VocabHi: 100}, 5, 15},
		{"bounds truncate like vLLM", SyntheticConfig{InputTokens: 7, RangeRatio: 0.3, VocabHi: 100}, 4, 9},
		{"never empty", SyntheticConfig{InputTokens: 1, RangeRatio: 0.9, VocabHi: 100}, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := Synthetic(400, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[int]bool{}
			for _, p := range sel.Prompts {
				if n := len(p.Tokens); n < tt.wantLo || n > tt.want {
					t.Fatalf("prompt %d has %d tokens, want [%d, %d]", p.ID, n, tt.wantLo, tt.want)
				}
				seen[len(p.Tokens)] = true
			}
			// 400 draws over at most 11 lengths: every length shows up.
			if len(seen) != tt.want-tt.wantLo+1 {
				t.Errorf("lengths drawn %v, want every one in [%d, %d]", seen, tt.wantLo, tt.want)
			}
		})
	}
}

func TestSyntheticSeeds(t *testing.T) {
	a, err := Synthetic(1, SyntheticConfig{InputTokens: 32, VocabHi: 50000, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Synthetic(1, SyntheticConfig{InputTokens: 32, VocabHi: 50000, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(a.Prompts[0].Tokens, b.Prompts[0].Tokens) {
		t.Error("seeds 1 and 2 drew the same prompt")
	}
}

func TestSyntheticErrors(t *testing.T) {
	tests := []struct {
		name string
		n    int
		cfg  SyntheticConfig
		want string
	}{
		{"no prompts", 0, SyntheticConfig{InputTokens: 1, VocabHi: 5}, "must be positive"},
		{"no tokens", 1, SyntheticConfig{VocabHi: 5}, "input_tokens"},
		{"empty range", 1, SyntheticConfig{InputTokens: 1, VocabLo: 5, VocabHi: 5}, "[5, 5)"},
		{"range ratio 1", 1, SyntheticConfig{InputTokens: 4, RangeRatio: 1, VocabHi: 5}, "range_ratio"},
		{"negative range", 1, SyntheticConfig{InputTokens: 1, VocabLo: -2, VocabHi: 5}, "negative"},
		{"all avoided", 1, SyntheticConfig{InputTokens: 1, VocabLo: 0, VocabHi: 2, Avoid: []int{1, 0}}, "every id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Synthetic(tt.n, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestSyntheticMaxTokens: no length passes MaxTokens; the draws past it
// are cut to it and counted.
func TestSyntheticMaxTokens(t *testing.T) {
	cfg := SyntheticConfig{InputTokens: 40, RangeRatio: 0.5, VocabHi: 100, Seed: 7, MaxTokens: 45}
	sel, err := Synthetic(64, cfg)
	if err != nil {
		t.Fatal(err)
	}
	atCap := 0
	for i, p := range sel.Prompts {
		if len(p.Tokens) > 45 {
			t.Fatalf("prompt %d: %d tokens, past the cap of 45", i, len(p.Tokens))
		}
		if len(p.Tokens) == 45 {
			atCap++
		}
	}
	// Lengths run to 60: about a third of 64 draws pass 45.
	if n := sel.Stats.Truncated; n < 10 || n > atCap {
		t.Errorf("truncated %d of 64 (%d at the cap), want about a third", n, atCap)
	}
}
