package dataset

import (
	"fmt"
	"math/rand/v2"
	"slices"
)

// SyntheticConfig describes random-token prompts.
type SyntheticConfig struct {
	// InputTokens is the length of every prompt, or the centre of the lengths when
	// RangeRatio is set.
	InputTokens int
	// RangeRatio in [0, 1) draws each length uniformly from
	// [InputTokens*(1-r), InputTokens*(1+r)], as vLLM's random dataset does.
	RangeRatio float64
	// VocabLo and VocabHi bound the ids drawn: [VocabLo, VocabHi).
	VocabLo, VocabHi int
	// Avoid lists ids never drawn (BOS, EOS, pad and other special tokens).
	Avoid []int
	// MaxTokens, when set, caps every length (what batch.max_length or the
	// models' context leaves a prompt); longer draws are cut and counted.
	MaxTokens int
	// Seed is the job seed.
	Seed uint64
}

// Synthetic returns n prompts of cfg.InputTokens ids (see RangeRatio) drawn uniformly from
// [VocabLo, VocabHi) minus Avoid. Each draw picks a rank among the allowed ids and maps it to the id, so it is
// exactly uniform and needs no rejection loop however many ids are avoided.
func Synthetic(n int, cfg SyntheticConfig) (Selection, error) {
	if n <= 0 {
		return Selection{}, fmt.Errorf(`dataset "synthetic": number of prompts must be positive, got %d`, n)
	}
	if cfg.InputTokens <= 0 {
		return Selection{}, fmt.Errorf(`dataset "synthetic": input_tokens must be positive, got %d`, cfg.InputTokens)
	}
	if cfg.RangeRatio < 0 || cfg.RangeRatio >= 1 {
		return Selection{}, fmt.Errorf(`dataset "synthetic": range_ratio must be in [0, 1), got %g`, cfg.RangeRatio)
	}
	if cfg.VocabLo < 0 || cfg.VocabHi <= cfg.VocabLo {
		return Selection{}, fmt.Errorf(`dataset "synthetic": vocabulary range [%d, %d) is empty or negative`, cfg.VocabLo, cfg.VocabHi)
	}
	// The avoided ids inside the range, sorted and unique, for the rank-to-id mapping.
	var avoid []int
	for _, id := range cfg.Avoid {
		if id >= cfg.VocabLo && id < cfg.VocabHi {
			avoid = append(avoid, id)
		}
	}
	slices.Sort(avoid)
	avoid = slices.Compact(avoid)
	allowed := cfg.VocabHi - cfg.VocabLo - len(avoid)
	if allowed <= 0 {
		return Selection{}, fmt.Errorf(`dataset "synthetic": every id in [%d, %d) is avoided`, cfg.VocabLo, cfg.VocabHi)
	}

	// Truncation as in vLLM (int() of the bounds); at least one token.
	minLen := max(int(float64(cfg.InputTokens)*(1-cfg.RangeRatio)), 1)
	maxLen := max(int(float64(cfg.InputTokens)*(1+cfg.RangeRatio)), minLen)

	rng := rand.New(rand.NewPCG(cfg.Seed, streamSynthetic))
	prompts := make([]Prompt, n)
	cut := 0
	for i := range prompts {
		length := minLen + rng.IntN(maxLen-minLen+1)
		if cfg.MaxTokens > 0 && length > cfg.MaxTokens {
			length, cut = cfg.MaxTokens, cut+1
		}
		toks := make([]int, length)
		for j := range toks {
			id := cfg.VocabLo + rng.IntN(allowed)
			// Walking the sorted avoided ids upwards, each one at or below the candidate
			// pushes it one further: the rank-th allowed id.
			for _, a := range avoid {
				if a > id {
					break
				}
				id++
			}
			toks[j] = id
		}
		prompts[i] = Prompt{ID: i, Source: "synthetic", Tokens: toks}
	}
	st := newStats("synthetic")
	st.Records, st.Loaded, st.Usable, st.Selected, st.Truncated = n, n, n, n, cut
	return Selection{Prompts: prompts, Stats: st}, nil
}
