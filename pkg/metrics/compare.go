package metrics

import (
	"fmt"
	"sort"
)

// Comparison holds the speculative-versus-target figures. A speedup is nil (JSON null) when
// either side has no data to divide.
type Comparison struct {
	// SpeedupTPOT is target median TPOT / speculative median TPOT.
	SpeedupTPOT *float64 `json:"speedup_tpot"`
	// SpeedupE2EL is target median E2EL / speculative median E2EL.
	SpeedupE2EL *float64 `json:"speedup_e2el"`
	// SpeedupOutputThroughput is speculative / target output tok/s.
	SpeedupOutputThroughput *float64 `json:"speedup_output_throughput"`
	Lossless                Lossless `json:"lossless"`
}

// Lossless is the token-for-token check of greedy speculative output against target output.
type Lossless struct {
	Checked    int        `json:"checked"`
	Mismatched int        `json:"mismatched"`
	Mismatches []Mismatch `json:"mismatches"`
	// NearTies counts the mismatches where both runs chose between two
	// logits closer than NearTieMargin: rounding that differs between a
	// verify step and a decode step (a backend that is not batch-invariant)
	// flips such a choice; a mismatch that is not a near-tie is a bug.
	NearTies int `json:"near_ties"`
	// Skipped says why nothing was checked (sampling at temperature > 0, or no prompt
	// completed in both modes); empty when checked.
	Skipped string `json:"skipped,omitempty"`
}

// Mismatch names a prompt whose two outputs differ and the first output position (0-based)
// where they do; when one output is a prefix of the other it is the shorter one's length.
type Mismatch struct {
	Index    int `json:"index"`
	Position int `json:"position"`
	// SpeculativeMargin and TargetMargin are each run's sampling.Margin at
	// Position (absent when that run has no token there or its engine did
	// not report margins); NearTie says both are under NearTieMargin.
	SpeculativeMargin *float32 `json:"speculative_margin,omitempty"`
	TargetMargin      *float32 `json:"target_margin,omitempty"`
	NearTie           bool     `json:"near_tie"`
}

// NearTieMargin is the relative logit gap under which a greedy choice is a
// near-tie: four steps of bf16 (2⁻⁸ each), the rounding of one bf16 value
// times a few operations.
const NearTieMargin = 4.0 / 256

// marginAt returns margins[pos] or nil.
func marginAt(margins []float32, pos int) *float32 {
	if pos < 0 || pos >= len(margins) {
		return nil
	}
	m := margins[pos]
	return &m
}

// Compare computes the comparison of the two modes. The lossless check pairs the completed,
// non-warmup requests of both modes by prompt Index and runs only when greedy (temperature 0),
// since only then must speculative decoding reproduce the target's output exactly. Two records
// of one mode with the same Index are an error: the pairing would be ambiguous.
func Compare(spec, target Summary, specReqs, targetReqs []Request, greedy bool) (Comparison, error) {
	c := Comparison{
		SpeedupTPOT:             ratio(median(target.TPOT), median(spec.TPOT)),
		SpeedupE2EL:             ratio(median(target.E2EL), median(spec.E2EL)),
		SpeedupOutputThroughput: ratio(spec.OutputThroughput, target.OutputThroughput),
		Lossless:                Lossless{Mismatches: []Mismatch{}},
	}
	if !greedy {
		c.Lossless.Skipped = "temperature > 0: sampled outputs are not expected to match token for token"
		return c, nil
	}
	specByIndex, err := completedByIndex(ModeSpeculative, specReqs)
	if err != nil {
		return Comparison{}, err
	}
	targetByIndex, err := completedByIndex(ModeTarget, targetReqs)
	if err != nil {
		return Comparison{}, err
	}
	indexes := make([]int, 0, len(specByIndex))
	for i := range specByIndex {
		if _, ok := targetByIndex[i]; ok {
			indexes = append(indexes, i)
		}
	}
	sort.Ints(indexes)
	if len(indexes) == 0 {
		c.Lossless.Skipped = "no prompt completed in both modes"
	}
	for _, i := range indexes {
		c.Lossless.Checked++
		sr, tr := specByIndex[i], targetByIndex[i]
		if pos, same := firstDifference(sr.OutputIDs, tr.OutputIDs); !same {
			m := Mismatch{Index: i, Position: pos, SpeculativeMargin: marginAt(sr.OutputMargins, pos),
				TargetMargin: marginAt(tr.OutputMargins, pos)}
			m.NearTie = m.SpeculativeMargin != nil && m.TargetMargin != nil &&
				*m.SpeculativeMargin < NearTieMargin && *m.TargetMargin < NearTieMargin
			c.Lossless.Mismatched++
			if m.NearTie {
				c.Lossless.NearTies++
			}
			c.Lossless.Mismatches = append(c.Lossless.Mismatches, m)
		}
	}
	return c, nil
}

func completedByIndex(mode Mode, reqs []Request) (map[int]Request, error) {
	out := make(map[int]Request, len(reqs))
	for _, r := range reqs {
		if r.Mode != mode || r.Warmup || !r.Completed() {
			continue
		}
		if prev, dup := out[r.Index]; dup {
			return nil, fmt.Errorf("comparing outputs: %s requests %s and %s both have index %d", mode, prev.ID, r.ID, r.Index)
		}
		out[r.Index] = r
	}
	return out, nil
}

// firstDifference returns the first position where a and b differ, and whether they are equal.
func firstDifference(a, b []int32) (int, bool) {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i, false
		}
	}
	return n, len(a) == len(b)
}

// ratio is num / den, or nil when either is missing (not measured) or not positive.
func ratio(num, den *float64) *float64 {
	if num == nil || den == nil || *num <= 0 || *den <= 0 {
		return nil
	}
	r := *num / *den
	return &r
}

// median is d's median, nil without a sample.
func median(d *Distribution) *float64 {
	if d == nil {
		return nil
	}
	m := d.Median
	return &m
}
