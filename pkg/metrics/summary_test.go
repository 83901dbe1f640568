package metrics

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// targetRequests: two completed, one failed, one warmup, and one speculative record that a
// target summary must ignore.
func targetRequests() []Request {
	r0 := request(ModeTarget, 0, 0, emissions(100, 1, 120, 1, 150, 1, 190, 1)) // TTFT 100, E2EL 190, TPOT 30, ITL 20 30 40
	r0.InputTokens = 10
	r1 := request(ModeTarget, 1, 1000, emissions(1200, 1, 1300, 1)) // TTFT 200, E2EL 300, TPOT 100, ITL 100
	r1.InputTokens = 20
	failed := request(ModeTarget, 2, 500, emissions(600, 1))
	failed.InputTokens = 30
	failed.Error = "stage 1 timed out"
	failed.FinishedAt = at(2500) // the last end: duration is 2.5 s
	warm := request(ModeTarget, 0, -5000, emissions(-4000, 1, 9000, 1))
	warm.Warmup = true
	other := request(ModeSpeculative, 0, -9000, emissions(9500, 1))
	return []Request{r0, warm, r1, failed, other}
}

// cancelledRequest was cut short by a cancel after one token: its rounds and timings must not
// count, nor must it count as failed.
func cancelledRequest(mode Mode, index int, sentMs, endMs float64) Request {
	r := request(mode, index, sentMs, emissions(sentMs+50, 1))
	r.InputTokens = 40
	r.Error, r.Cancelled = "decode at 1 tokens: context canceled (cancelled by the user)", true
	r.FinishedAt = at(endMs)
	if mode == ModeSpeculative {
		r.Rounds = []Round{round(4, []bool{true, true, true, true}, 4, 5, 100, 1)}
	}
	return r
}

func round(gamma int, accepted []bool, acc, emitted int, wallMs, computeMs float64) Round {
	return Round{
		Gamma: gamma, Drafted: len(accepted), Accepted: acc, Emitted: emitted, AcceptedByPosition: accepted,
		Wall: time.Duration(wallMs * float64(time.Millisecond)), Compute: time.Duration(computeMs * float64(time.Millisecond)),
	}
}

// specRequests: two completed speculative requests with rounds, and a failed one whose rounds
// must not count.
func specRequests() []Request {
	T, F := true, false
	s0 := request(ModeSpeculative, 0, 0, emissions(50, 1, 80, 3, 120, 5, 130, 1)) // 10 tokens
	s0.InputTokens = 10
	s0.Rounds = []Round{
		round(4, []bool{T, T, F, F}, 2, 3, 30, 25), // overhead 5
		round(4, []bool{T, T, T, T}, 4, 5, 40, 32), // overhead 8
		round(4, []bool{T}, 1, 1, 10, 9),           // short last round, overhead 1
	}
	s1 := request(ModeSpeculative, 1, 10, emissions(50, 1, 70, 1))
	s1.InputTokens = 20
	s1.Rounds = []Round{round(4, []bool{F, F, F, F}, 0, 1, 20, 20)} // overhead 0
	bad := request(ModeSpeculative, 2, 20, emissions(60, 1))
	bad.Error = "cancelled"
	bad.Rounds = []Round{round(4, []bool{T, T, T, T}, 4, 5, 500, 1)}
	return []Request{s0, s1, bad}
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name string
		mode Mode
		reqs []Request
		want Summary
		spec *SpecStats
	}{
		{
			name: "target",
			mode: ModeTarget,
			reqs: targetRequests(),
			want: Summary{
				NumRequests: 3, Completed: 2, Failed: 1, DurationS: ptr(2.5),
				// 2 completed, 6 output and 30+6 tokens in 2.5 s
				RequestThroughput: ptr(0.8), OutputThroughput: ptr(2.4), TotalTokenThroughput: ptr(14.4),
				TotalInputTokens: 30, TotalOutputTokens: 6,
				// np.percentile([100, 200], [90, 95, 99]) = 190, 195, 199
				TTFT: &Distribution{Mean: 150, Median: 150, Std: 50, Min: 100, Max: 200, P90: 190, P95: 195, P99: 199},
				// [30, 100]
				TPOT: &Distribution{Mean: 65, Median: 65, Std: 35, Min: 30, Max: 100, P90: 93, P95: 96.5, P99: 99.3},
				// [20, 30, 40, 100]: std = sqrt(3875/4); p90 at index 2.7 = 40 + 0.7*60
				ITL: &Distribution{Mean: 47.5, Median: 35, Std: math.Sqrt(968.75), Min: 20, Max: 100, P90: 82, P95: 91, P99: 98.2},
				// [190, 300]
				E2EL: &Distribution{Mean: 245, Median: 245, Std: 55, Min: 190, Max: 300, P90: 289, P95: 294.5, P99: 298.9},
			},
		},
		{
			name: "speculative",
			mode: ModeSpeculative,
			reqs: specRequests(),
			want: Summary{
				// start 0, end 130 ms (s0's last token; the failed one ended at 60 ms)
				NumRequests: 3, Completed: 2, Failed: 1, DurationS: ptr(0.13),
				RequestThroughput: ptr(2 / 0.13), OutputThroughput: ptr(12 / 0.13), TotalTokenThroughput: ptr(42 / 0.13),
				TotalInputTokens: 30, TotalOutputTokens: 12,
				// TTFT [50, 40]; E2EL [130, 60]; TPOT [(130-50)/9, (60-40)/1]
				TTFT: &Distribution{Mean: 45, Median: 45, Std: 5, Min: 40, Max: 50, P90: 49, P95: 49.5, P99: 49.9},
				E2EL: &Distribution{Mean: 95, Median: 95, Std: 35, Min: 60, Max: 130, P90: 123, P95: 126.5, P99: 129.3},
				TPOT: &Distribution{Mean: (80.0/9 + 20) / 2, Median: (80.0/9 + 20) / 2, Std: (20 - 80.0/9) / 2, Min: 80.0 / 9, Max: 20,
					P90: 80.0/9 + 0.9*(20-80.0/9), P95: 80.0/9 + 0.95*(20-80.0/9), P99: 80.0/9 + 0.99*(20-80.0/9)},
				// s0: 30/3 three times, 40/5 five times, 10/1; s1: 20. Sorted: 8 x5, 10 x4, 20.
				// median at index 4.5 = 9; std = sqrt(120/10); p90 at index 8.1 = 10 + 0.1*10
				ITL: &Distribution{Mean: 10, Median: 9, Std: math.Sqrt(12), Min: 8, Max: 20, P90: 11, P95: 15.5, P99: 19.1},
			},
			spec: &SpecStats{
				// drafts: 4 rounds; tokens 4+4+1+4; accepted 2+4+1+0
				NumDrafts: 4, NumDraftTokens: 13, NumAcceptedTokens: 7,
				AcceptanceRate: ptr(7.0 / 13), MeanAcceptanceLength: ptr(1 + 7.0/4),
				// position 1: 3 of 4 drafts; positions 2-4: the short round did not reach them,
				// so 2/3, 1/3, 1/3
				AcceptanceByPosition: rates(0.75, 2.0/3, 1.0/3, 1.0/3),
				// overheads [5, 8, 1, 0]: std = sqrt(41/4); p90 at index 2.7 = 5 + 0.7*3
				CoordinationOverhead: &Distribution{Mean: 3.5, Median: 3, Std: math.Sqrt(10.25), Min: 0, Max: 8, P90: 7.1, P95: 7.55, P99: 7.91},
			},
		},
		{
			name: "no requests",
			mode: ModeTarget,
			reqs: specRequests(),
			want: Summary{},
		},
		{
			// cut short by a cancel: counted apart from the failures, no sample either
			name: "cancelled requests",
			mode: ModeTarget,
			reqs: append(targetRequests(), cancelledRequest(ModeTarget, 3, 2000, 3000)),
			want: Summary{
				NumRequests: 4, Completed: 2, Failed: 1, Cancelled: 1, DurationS: ptr(3),
				RequestThroughput: ptr(2.0 / 3), OutputThroughput: ptr(6.0 / 3), TotalTokenThroughput: ptr(36.0 / 3),
				TotalInputTokens: 30, TotalOutputTokens: 6,
				TTFT: &Distribution{Mean: 150, Median: 150, Std: 50, Min: 100, Max: 200, P90: 190, P95: 195, P99: 199},
				TPOT: &Distribution{Mean: 65, Median: 65, Std: 35, Min: 30, Max: 100, P90: 93, P95: 96.5, P99: 99.3},
				ITL:  &Distribution{Mean: 47.5, Median: 35, Std: math.Sqrt(968.75), Min: 20, Max: 100, P90: 82, P95: 91, P99: 98.2},
				E2EL: &Distribution{Mean: 245, Median: 245, Std: 55, Min: 190, Max: 300, P90: 289, P95: 294.5, P99: 298.9},
			},
		},
		{
			// requests ran but none completed: a duration, and nothing measured per request
			name: "nothing completed",
			mode: ModeSpeculative,
			reqs: []Request{specRequests()[2], cancelledRequest(ModeSpeculative, 3, 0, 400)},
			want: Summary{NumRequests: 2, Failed: 1, Cancelled: 1, DurationS: ptr(0.4)},
			spec: &SpecStats{AcceptanceByPosition: []*float64{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Summarize(tt.mode, tt.reqs)
			if err != nil {
				t.Fatalf("Summarize: %v", err)
			}
			ints := []struct {
				name      string
				got, want int
			}{
				{"num_requests", got.NumRequests, tt.want.NumRequests}, {"completed", got.Completed, tt.want.Completed},
				{"failed", got.Failed, tt.want.Failed}, {"total_input_tokens", got.TotalInputTokens, tt.want.TotalInputTokens},
				{"total_output_tokens", got.TotalOutputTokens, tt.want.TotalOutputTokens},
			}
			for _, f := range ints {
				if f.got != f.want {
					t.Errorf("%s = %d, want %d", f.name, f.got, f.want)
				}
			}
			floats := []struct {
				name      string
				got, want *float64
			}{
				{"duration_s", got.DurationS, tt.want.DurationS}, {"request_throughput", got.RequestThroughput, tt.want.RequestThroughput},
				{"output_throughput", got.OutputThroughput, tt.want.OutputThroughput},
				{"total_token_throughput", got.TotalTokenThroughput, tt.want.TotalTokenThroughput},
			}
			for _, f := range floats {
				if (f.got == nil) != (f.want == nil) || f.got != nil && !near(*f.got, *f.want) {
					t.Errorf("%s = %v, want %v", f.name, fmtPtr(f.got), fmtPtr(f.want))
				}
			}
			if got.Cancelled != tt.want.Cancelled {
				t.Errorf("cancelled = %d, want %d", got.Cancelled, tt.want.Cancelled)
			}
			for _, d := range []struct {
				name      string
				got, want *Distribution
			}{{"ttft", got.TTFT, tt.want.TTFT}, {"tpot", got.TPOT, tt.want.TPOT}, {"itl", got.ITL, tt.want.ITL}, {"e2el", got.E2EL, tt.want.E2EL}} {
				t.Run(d.name, func(t *testing.T) { assertDistribution(t, d.got, d.want) })
			}
			if tt.mode == ModeTarget {
				if got.SpecStats != nil {
					t.Errorf("target summary has speculative figures: %+v", *got.SpecStats)
				}
				return
			}
			if got.SpecStats == nil {
				t.Fatal("speculative summary has no speculative figures")
			}
			if tt.spec != nil {
				assertSpecStats(t, *got.SpecStats, *tt.spec)
			}
		})
	}
}

func assertSpecStats(t *testing.T, got, want SpecStats) {
	t.Helper()
	if got.NumDrafts != want.NumDrafts || got.NumDraftTokens != want.NumDraftTokens || got.NumAcceptedTokens != want.NumAcceptedTokens {
		t.Errorf("drafts, draft tokens, accepted = %d, %d, %d, want %d, %d, %d",
			got.NumDrafts, got.NumDraftTokens, got.NumAcceptedTokens, want.NumDrafts, want.NumDraftTokens, want.NumAcceptedTokens)
	}
	if !nearPtr(got.AcceptanceRate, want.AcceptanceRate) || !nearPtr(got.MeanAcceptanceLength, want.MeanAcceptanceLength) {
		t.Errorf("acceptance rate, length = %v, %v, want %v, %v", got.AcceptanceRate, got.MeanAcceptanceLength, want.AcceptanceRate, want.MeanAcceptanceLength)
	}
	if len(got.AcceptanceByPosition) != len(want.AcceptanceByPosition) {
		t.Fatalf("acceptance_by_position = %v, want %v", got.AcceptanceByPosition, want.AcceptanceByPosition)
	}
	for i := range got.AcceptanceByPosition {
		if !nearPtr(got.AcceptanceByPosition[i], want.AcceptanceByPosition[i]) {
			t.Errorf("acceptance_by_position = %v, want %v", got.AcceptanceByPosition, want.AcceptanceByPosition)
			break
		}
	}
	assertDistribution(t, got.CoordinationOverhead, want.CoordinationOverhead)
	if !nearPtr(got.DraftQMass, want.DraftQMass) {
		t.Errorf("draft_q_mass = %v, want %v", got.DraftQMass, want.DraftQMass)
	}
	if !nearPtr(got.DraftCostRatio, want.DraftCostRatio) {
		t.Errorf("draft_cost_ratio = %v, want %v", got.DraftCostRatio, want.DraftCostRatio)
	}
	if (got.RoundTime == nil) != (want.RoundTime == nil) || got.RoundTime != nil && !reflect.DeepEqual(*got.RoundTime, *want.RoundTime) {
		t.Errorf("round_time_ms = %+v, want %+v", got.RoundTime, want.RoundTime)
	}
}

func TestAcceptance(t *testing.T) {
	T, F := true, false
	tests := []struct {
		name   string
		rounds []Round
		want   SpecStats
	}{
		{
			name:   "no rounds",
			rounds: nil,
			want:   SpecStats{AcceptanceByPosition: []*float64{}},
		},
		{
			// With a fixed gamma and full rounds the rate of position i is vLLM's
			// accepted_per_pos[i] / num_drafts. Wall == compute: zero overhead.
			name: "fixed gamma",
			rounds: []Round{
				round(3, []bool{T, T, T}, 3, 4, 1, 1),
				round(3, []bool{T, F, F}, 1, 2, 1, 1),
			},
			want: SpecStats{NumDrafts: 2, NumDraftTokens: 6, NumAcceptedTokens: 4, AcceptanceRate: ptr(4.0 / 6), MeanAcceptanceLength: ptr(3),
				AcceptanceByPosition: rates(1, 0.5, 0.5), CoordinationOverhead: &Distribution{}},
		},
		{
			// A round that drafted nothing is no draft, but its overhead counts; gamma sets the
			// width even where no draft reached a position.
			name: "empty round and unreached position",
			rounds: []Round{
				round(5, []bool{T, F}, 1, 2, 3, 1),
				round(5, nil, 0, 1, 4, 1),
			},
			// Positions 3 to 5 were never drafted: no rate (null), not 0.
			want: SpecStats{NumDrafts: 1, NumDraftTokens: 2, NumAcceptedTokens: 1, AcceptanceRate: ptr(0.5), MeanAcceptanceLength: ptr(2),
				AcceptanceByPosition: append(rates(1, 0), nil, nil, nil),
				CoordinationOverhead: &Distribution{Mean: 2.5, Median: 2.5, Std: 0.5, Min: 2, Max: 3, P90: 2.9, P95: 2.95, P99: 2.99}},
		},
	}
	// Sampled rounds: the q mass is weighted by drafted tokens; rounds that
	// do not know theirs (0) and rounds without drafts leave it.
	withMass := func(r Round, m float64) Round { r.QMass = m; return r }
	// The drafter's share of compute gives c: its compute per drafted token
	// over the target's per round; rounds without the split leave it.
	split := func(r Round, draftMs float64) Round {
		r.DraftCompute = time.Duration(draftMs * float64(time.Millisecond))
		return r
	}
	tests = append(tests, struct {
		name   string
		rounds []Round
		want   SpecStats
	}{
		name: "draft cost",
		rounds: []Round{
			split(round(4, []bool{T, T, T, T}, 4, 5, 12, 10), 4), // 4 drafts in 4 ms, target 6 ms
			split(round(4, []bool{F, F}, 0, 1, 9, 8), 2),         // 2 drafts in 2 ms, target 6 ms
			round(4, []bool{T}, 1, 2, 5, 5),                      // not split: left out
		},
		want: SpecStats{NumDrafts: 3, NumDraftTokens: 7, NumAcceptedTokens: 5, AcceptanceRate: ptr(5.0 / 7), MeanAcceptanceLength: ptr(1 + 5.0/3),
			AcceptanceByPosition: rates(2.0/3, 0.5, 1, 1),
			CoordinationOverhead: &Distribution{Mean: 1, Median: 1, Std: 0.816496580927726, Min: 0, Max: 2, P90: 1.8, P95: 1.9, P99: 1.98},
			DraftCostRatio:       ptr((6.0 / 6) / (12.0 / 2)),
			RoundTime:            &RoundTime{Wall: 10.5, Drafter: 3, Target: 6, Overhead: 1.5}},
	}, struct {
		name   string
		rounds []Round
		want   SpecStats
	}{
		name: "q mass",
		rounds: []Round{
			withMass(round(3, []bool{T, T, F}, 2, 3, 1, 1), 0.9),
			withMass(round(3, []bool{F}, 0, 1, 1, 1), 0.5),
			round(3, []bool{T, F, F}, 1, 2, 1, 1),
			withMass(round(3, nil, 0, 1, 1, 1), 0.1),
		},
		want: SpecStats{NumDrafts: 3, NumDraftTokens: 7, NumAcceptedTokens: 3, AcceptanceRate: ptr(3.0 / 7), MeanAcceptanceLength: ptr(2),
			AcceptanceByPosition: rates(2.0/3, 0.5, 0), CoordinationOverhead: &Distribution{}, DraftQMass: ptr((3*0.9 + 1*0.5) / 4)},
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertSpecStats(t, Acceptance(tt.rounds), tt.want)
		})
	}
}

func TestCollectErrors(t *testing.T) {
	bad := request(ModeTarget, 4, 0, emissions(10, 2))
	bad.ID = "bad-one"
	bad.OutputTokens = 3
	tests := []struct {
		name    string
		mode    Mode
		reqs    []Request
		wantErr string
	}{
		{"unknown mode", "draft", nil, `mode "draft" is not one of`},
		{"invalid record", ModeTarget, []Request{bad}, "collecting target samples: request 4 (bad-one): emissions hold 2 tokens but output_tokens is 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Collect(tt.mode, tt.reqs)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Collect() error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// summaryKeys is the DESIGN §7 contract, listed here independently of the struct tags.
var (
	// "cancelled" is this project's addition next to "failed".
	summaryKeys = []string{"num_requests", "completed", "failed", "cancelled", "duration_s", "request_throughput",
		"output_throughput", "total_token_throughput", "total_input_tokens", "total_output_tokens",
		"ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"}
	// "draft_q_mass" and "draft_cost_ratio" are this project's additions:
	// the mass of the drafter's distribution its cut q kept (null when
	// greedy), and c, the drafter's compute per token over the target's per
	// verify step.
	specKeys = []string{"num_drafts", "num_draft_tokens", "num_accepted_tokens", "acceptance_rate",
		"mean_acceptance_length", "acceptance_by_position", "coordination_overhead_ms", "draft_q_mass", "draft_cost_ratio",
		"round_time_ms"}
	distributionKeys = []string{"mean", "median", "std", "min", "max", "p90", "p95", "p99"}
)

func TestSummaryKeys(t *testing.T) {
	tests := []struct {
		mode Mode
		want []string
	}{
		{ModeTarget, summaryKeys},
		{ModeSpeculative, append(slices.Clone(summaryKeys), specKeys...)},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			s, err := Summarize(tt.mode, append(targetRequests(), specRequests()...))
			if err != nil {
				t.Fatal(err)
			}
			obj := decodeObject(t, s)
			assertKeys(t, "summary", obj, tt.want)
			for _, k := range []string{"ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"} {
				assertKeys(t, k, decodeObject(t, obj[k]), distributionKeys)
			}
			if tt.mode == ModeSpeculative {
				assertKeys(t, "coordination_overhead_ms", decodeObject(t, obj["coordination_overhead_ms"]), distributionKeys)
			}
		})
	}
}

// TestSummaryGolden pins the whole JSON of the summaries of a fixture job read from testdata,
// which also checks that records decode as requests.jsonl writes them.
func TestSummaryGolden(t *testing.T) {
	reqs := readFixture(t, "requests.jsonl")
	for _, mode := range []Mode{ModeSpeculative, ModeTarget} {
		t.Run(string(mode), func(t *testing.T) {
			s, err := Summarize(mode, reqs)
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(s, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, "summary_"+string(mode)+".golden.json", append(got, '\n'))
		})
	}
}

func readFixture(t *testing.T, name string) []Request {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var reqs []Request
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var r Request
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%s line %d: %v", name, i+1, err)
		}
		reqs = append(reqs, r)
	}
	return reqs
}

func decodeObject(t *testing.T, v any) map[string]json.RawMessage {
	t.Helper()
	var data []byte
	if raw, ok := v.(json.RawMessage); ok {
		data = raw
	} else {
		var err error
		if data, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		t.Fatalf("decoding %s: %v", data, err)
	}
	return obj
}

func assertKeys(t *testing.T, what string, obj map[string]json.RawMessage, want []string) {
	t.Helper()
	var got []string
	for k := range obj {
		got = append(got, k)
	}
	slices.Sort(got)
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s keys = %v, want %v", what, got, want)
	}
}

// TestSummaryWithoutSamplesIsNull: a mode that never ran, or where no request completed,
// writes null for every figure it could not measure, never a 0 that reads as measured.
func TestSummaryWithoutSamplesIsNull(t *testing.T) {
	for _, tc := range []struct {
		name      string
		mode      Mode
		reqs      []Request
		null, not []string
	}{
		{"never ran", ModeSpeculative, nil,
			[]string{"duration_s", "request_throughput", "output_throughput", "total_token_throughput",
				"ttft_ms", "tpot_ms", "itl_ms", "e2el_ms", "coordination_overhead_ms"},
			[]string{"num_requests", "completed", "failed", "cancelled"}},
		{"none completed", ModeTarget, []Request{targetRequests()[3], cancelledRequest(ModeTarget, 3, 0, 900)},
			[]string{"request_throughput", "output_throughput", "total_token_throughput", "ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"},
			[]string{"duration_s", "num_requests", "failed", "cancelled"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Summarize(tc.mode, tc.reqs)
			if err != nil {
				t.Fatal(err)
			}
			obj := decodeObject(t, s)
			for _, k := range tc.null {
				if v, ok := obj[k]; !ok || string(v) != "null" {
					t.Errorf("%s = %s, want null", k, v)
				}
			}
			for _, k := range tc.not {
				if v, ok := obj[k]; !ok || string(v) == "null" {
					t.Errorf("%s = %s, want a number", k, v)
				}
			}
		})
	}
}

// rates are measured rates.
func rates(v ...float64) []*float64 {
	out := make([]*float64, len(v))
	for i := range v {
		out[i] = ptr(v[i])
	}
	return out
}

// nearPtr is near for figures that may be unmeasured (nil).
func nearPtr(a, b *float64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return near(*a, *b)
}
