package spec

// Stats are a request's speculative counters and the rates derived from them,
// under the metric names of DESIGN §7. They count the verifier's verdicts,
// including drafts of a last round whose output was cut at MaxNewTokens.
type Stats struct {
	NumDrafts            int     `json:"num_drafts"`       // rounds
	NumDraftTokens       int     `json:"num_draft_tokens"` // drafts proposed
	NumAcceptedTokens    int     `json:"num_accepted_tokens"`
	AcceptanceRate       float64 `json:"acceptance_rate"`        // accepted / drafted
	MeanAcceptanceLength float64 `json:"mean_acceptance_length"` // 1 + accepted / drafts
	// AcceptanceByPosition[i] is the share of rounds that drafted a token at
	// position i+1 in which it was accepted. With a fixed gamma every round
	// drafts every position, so this is vLLM's per-position acceptance rate.
	AcceptanceByPosition []float64 `json:"acceptance_by_position"`
	// The counts behind AcceptanceByPosition, so requests can be merged.
	DraftsByPosition   []int `json:"drafts_by_position"`
	AcceptedByPosition []int `json:"accepted_by_position"`
}

// Summarize counts a request's rounds.
func Summarize(rounds []Round) Stats {
	var s Stats
	for _, r := range rounds {
		s.NumDrafts++
		s.NumDraftTokens += r.Gamma
		s.NumAcceptedTokens += r.Accepted
		s.grow(r.Gamma)
		for i := range r.Gamma {
			s.DraftsByPosition[i]++
			if i < len(r.AcceptedByPosition) && r.AcceptedByPosition[i] {
				s.AcceptedByPosition[i]++
			}
		}
	}
	s.rates()
	return s
}

// Merge adds o's counts to s's and recomputes the rates, for totals over
// many requests.
func (s Stats) Merge(o Stats) Stats {
	m := Stats{
		NumDrafts:         s.NumDrafts + o.NumDrafts,
		NumDraftTokens:    s.NumDraftTokens + o.NumDraftTokens,
		NumAcceptedTokens: s.NumAcceptedTokens + o.NumAcceptedTokens,
	}
	m.grow(max(len(s.DraftsByPosition), len(o.DraftsByPosition)))
	for _, x := range []Stats{s, o} {
		for i := range x.DraftsByPosition {
			m.DraftsByPosition[i] += x.DraftsByPosition[i]
			if i < len(x.AcceptedByPosition) {
				m.AcceptedByPosition[i] += x.AcceptedByPosition[i]
			}
		}
	}
	m.rates()
	return m
}

func (s *Stats) grow(n int) {
	for len(s.DraftsByPosition) < n {
		s.DraftsByPosition = append(s.DraftsByPosition, 0)
		s.AcceptedByPosition = append(s.AcceptedByPosition, 0)
	}
}

// rates derives the ratios; with nothing drafted they are 0, as JSON has no
// NaN.
func (s *Stats) rates() {
	s.AcceptanceRate, s.MeanAcceptanceLength = 0, 0
	if s.NumDraftTokens > 0 {
		s.AcceptanceRate = float64(s.NumAcceptedTokens) / float64(s.NumDraftTokens)
	}
	if s.NumDrafts > 0 {
		s.MeanAcceptanceLength = 1 + float64(s.NumAcceptedTokens)/float64(s.NumDrafts)
	}
	s.AcceptanceByPosition = make([]float64, len(s.DraftsByPosition))
	for i, d := range s.DraftsByPosition {
		if d > 0 {
			s.AcceptanceByPosition[i] = float64(s.AcceptedByPosition[i]) / float64(d)
		}
	}
}
