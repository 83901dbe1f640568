package metrics

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestCompareSpeedups(t *testing.T) {
	summary := func(tpot, e2el, throughput float64) Summary {
		return Summary{TPOT: &Distribution{Median: tpot}, E2EL: &Distribution{Median: e2el}, OutputThroughput: &throughput}
	}
	tests := []struct {
		name               string
		spec, target       Summary
		tpot, e2el, output *float64
	}{
		{
			name: "speculative faster",
			spec: summary(10, 50, 40), target: summary(30, 100, 20),
			tpot: ptr(3), e2el: ptr(2), output: ptr(2),
		},
		{
			name: "speculative slower",
			spec: summary(40, 200, 10), target: summary(20, 100, 20),
			tpot: ptr(0.5), e2el: ptr(0.5), output: ptr(0.5),
		},
		{
			// nothing to divide: zero medians
			name: "zero side gives null",
			spec: summary(0, 0, 0), target: summary(30, 100, 20),
		},
		{
			// a mode that never ran, or where no request completed, has no figures at all
			name: "missing side gives null",
			spec: summary(10, 50, 40), target: Summary{NumRequests: 3, Cancelled: 3, DurationS: ptr(1)},
		},
		{
			name: "both missing give null",
			spec: Summary{}, target: Summary{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Compare(tt.spec, tt.target, nil, nil, true)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []struct {
				name      string
				got, want *float64
			}{{"speedup_tpot", c.SpeedupTPOT, tt.tpot}, {"speedup_e2el", c.SpeedupE2EL, tt.e2el}, {"speedup_output_throughput", c.SpeedupOutputThroughput, tt.output}} {
				if (f.got == nil) != (f.want == nil) || (f.got != nil && !near(*f.got, *f.want)) {
					t.Errorf("%s = %v, want %v", f.name, fmtPtr(f.got), fmtPtr(f.want))
				}
			}
		})
	}
}

func withIDs(r Request, id string, out ...int32) Request {
	r.ID = id
	r.OutputIDs = out
	r.OutputTokens = len(out)
	r.Emissions = []Emission{{At: r.SentAt, Tokens: len(out)}}
	return r
}

func TestCompareLossless(t *testing.T) {
	spec := func(index int, out ...int32) Request {
		return withIDs(Request{Index: index, Mode: ModeSpeculative, SentAt: t0}, "s", out...)
	}
	target := func(index int, out ...int32) Request {
		return withIDs(Request{Index: index, Mode: ModeTarget, SentAt: t0}, "t", out...)
	}
	failed := func(r Request) Request { r.Error = "lost"; return r }
	cancelled := func(r Request) Request { r.Error, r.Cancelled = "context canceled", true; return r }
	warmup := func(r Request) Request { r.Warmup = true; return r }

	tests := []struct {
		name           string
		spec, target   []Request
		greedy         bool
		wantChecked    int
		wantMismatches []Mismatch
		wantSkipped    bool
	}{
		{
			name:        "identical outputs",
			spec:        []Request{spec(0, 1, 2, 3), spec(1, 4, 5)},
			target:      []Request{target(1, 4, 5), target(0, 1, 2, 3)},
			greedy:      true,
			wantChecked: 2, wantMismatches: []Mismatch{},
		},
		{
			name:        "first differing position",
			spec:        []Request{spec(0, 1, 2, 9, 4), spec(1, 4, 5)},
			target:      []Request{target(0, 1, 2, 3, 4), target(1, 7, 5)},
			greedy:      true,
			wantChecked: 2, wantMismatches: []Mismatch{{Index: 0, Position: 2}, {Index: 1, Position: 0}},
		},
		{
			name:        "one output a prefix of the other",
			spec:        []Request{spec(3, 1, 2)},
			target:      []Request{target(3, 1, 2, 3)},
			greedy:      true,
			wantChecked: 1, wantMismatches: []Mismatch{{Index: 3, Position: 2}},
		},
		{
			name:        "unpaired, failed and warmup requests are not checked",
			spec:        []Request{spec(0, 1), spec(1, 2), failed(spec(2, 3)), warmup(spec(0, 9))},
			target:      []Request{target(0, 1), failed(target(1, 8)), target(2, 7), warmup(target(0, 8))},
			greedy:      true,
			wantChecked: 1, wantMismatches: []Mismatch{},
		},
		{
			// a cancelled request's output is cut short: comparing it would report a mismatch
			name:        "cancelled requests are not checked",
			spec:        []Request{spec(0, 1, 2), cancelled(spec(1, 2))},
			target:      []Request{target(0, 1, 2), target(1, 2, 3)},
			greedy:      true,
			wantChecked: 1, wantMismatches: []Mismatch{},
		},
		{
			name:        "nothing completed in both modes skips the check",
			spec:        []Request{cancelled(spec(0, 1))},
			target:      []Request{target(0, 1, 2)},
			greedy:      true,
			wantChecked: 0, wantMismatches: []Mismatch{}, wantSkipped: true,
		},
		{
			name:        "sampling skips the check",
			spec:        []Request{spec(0, 1)},
			target:      []Request{target(0, 2)},
			greedy:      false,
			wantChecked: 0, wantMismatches: []Mismatch{}, wantSkipped: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Compare(Summary{}, Summary{}, tt.spec, tt.target, tt.greedy)
			if err != nil {
				t.Fatal(err)
			}
			l := c.Lossless
			if l.Checked != tt.wantChecked || l.Mismatched != len(tt.wantMismatches) || !slices.Equal(l.Mismatches, tt.wantMismatches) {
				t.Errorf("lossless = %+v, want checked %d, mismatches %v", l, tt.wantChecked, tt.wantMismatches)
			}
			if (l.Skipped != "") != tt.wantSkipped {
				t.Errorf("skipped = %q, want skipped %v", l.Skipped, tt.wantSkipped)
			}
		})
	}
}

func TestCompareDuplicateIndex(t *testing.T) {
	a := withIDs(Request{Index: 4, Mode: ModeTarget, SentAt: t0}, "t-a", 1)
	b := withIDs(Request{Index: 4, Mode: ModeTarget, SentAt: t0}, "t-b", 1)
	_, err := Compare(Summary{}, Summary{}, nil, []Request{a, b}, true)
	want := "comparing outputs: target requests t-a and t-b both have index 4"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Compare() error = %v, want %q", err, want)
	}
}

// TestComparisonGolden pins the comparison JSON of the fixture job: prompt 1's outputs differ
// at position 5, prompt 2 failed in speculative mode and is not checked.
func TestComparisonGolden(t *testing.T) {
	reqs := readFixture(t, "requests.jsonl")
	spec, err := Summarize(ModeSpeculative, reqs)
	if err != nil {
		t.Fatal(err)
	}
	target, err := Summarize(ModeTarget, reqs)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Compare(spec, target, reqs, reqs, true)
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "comparison.golden.json", append(got, '\n'))
	assertKeys(t, "comparison", decodeObject(t, c), []string{"speedup_tpot", "speedup_e2el", "speedup_output_throughput", "lossless"})
	assertKeys(t, "lossless", decodeObject(t, c.Lossless), []string{"checked", "mismatched", "mismatches", "near_ties"})
}

// TestNearTies: a mismatch is a near-tie only when both runs report a margin
// under NearTieMargin at the first differing position.
func TestNearTies(t *testing.T) {
	req := func(mode Mode, index int, ids []int32, margins []float32) Request {
		return Request{ID: fmt.Sprint(mode, index), Index: index, Mode: mode, OutputTokens: len(ids), OutputIDs: ids, OutputMargins: margins}
	}
	small, big := float32(0.004), float32(0.3)
	specs := []Request{
		req(ModeSpeculative, 0, []int32{1, 2, 3}, []float32{big, small, big}),   // near-tie at 1
		req(ModeSpeculative, 1, []int32{1, 2, 3}, []float32{big, big, big}),     // a real difference at 1
		req(ModeSpeculative, 2, []int32{1, 2, 3}, nil),                          // no margins
		req(ModeSpeculative, 3, []int32{1, 2}, []float32{big, big}),             // a prefix: no token at 2
		req(ModeSpeculative, 4, []int32{4, 5, 6}, []float32{small, small, big}), // equal outputs
	}
	targets := []Request{
		req(ModeTarget, 0, []int32{1, 7, 3}, []float32{big, small, big}),
		req(ModeTarget, 1, []int32{1, 7, 3}, []float32{big, small, big}),
		req(ModeTarget, 2, []int32{1, 7, 3}, []float32{big, small, big}),
		req(ModeTarget, 3, []int32{1, 2, 3}, []float32{big, big, small}),
		req(ModeTarget, 4, []int32{4, 5, 6}, []float32{small, small, big}),
	}
	c, err := Compare(Summary{}, Summary{}, specs, targets, true)
	if err != nil {
		t.Fatal(err)
	}
	l := c.Lossless
	if l.Checked != 5 || l.Mismatched != 4 || l.NearTies != 1 {
		t.Fatalf("checked %d, mismatched %d, near ties %d; want 5, 4, 1", l.Checked, l.Mismatched, l.NearTies)
	}
	want := []struct {
		index, pos int
		spec, targ bool // margins present
		nearTie    bool
	}{{0, 1, true, true, true}, {1, 1, true, true, false}, {2, 1, false, true, false}, {3, 2, false, true, false}}
	for i, w := range want {
		m := l.Mismatches[i]
		if m.Index != w.index || m.Position != w.pos || (m.SpeculativeMargin != nil) != w.spec ||
			(m.TargetMargin != nil) != w.targ || m.NearTie != w.nearTie {
			t.Errorf("mismatch %d: %+v, want %+v", i, m, w)
		}
	}
}
