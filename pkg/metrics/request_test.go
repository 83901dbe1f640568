package metrics

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// t0 is an arbitrary fixed send time; at(ms) is t0 plus ms milliseconds.
var t0 = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

func at(msec float64) time.Time { return t0.Add(time.Duration(msec * float64(time.Millisecond))) }

// emissions builds emissions from (ms after t0, tokens) pairs.
func emissions(pairs ...float64) []Emission {
	var out []Emission
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, Emission{At: at(pairs[i]), Tokens: int(pairs[i+1])})
	}
	return out
}

// ids returns n distinct token ids starting at from.
func ids(from, n int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(from + i)
	}
	return out
}

func request(mode Mode, index int, sentMs float64, em []Emission) Request {
	n := 0
	for _, e := range em {
		n += e.Tokens
	}
	return Request{
		ID: "req", Index: index, Mode: mode, SentAt: at(sentMs),
		Emissions: em, OutputTokens: n, OutputIDs: ids(100, n),
	}
}

func TestTimings(t *testing.T) {
	tests := []struct {
		name       string
		req        Request
		wantOK     bool
		ttft, e2el float64
		tpot       *float64
		itl        []float64
	}{
		{
			name:   "one token per emission",
			req:    request(ModeTarget, 0, 0, emissions(100, 1, 120, 1, 150, 1, 190, 1)),
			wantOK: true, ttft: 100, e2el: 190, tpot: ptr(30), // (190-100)/(4-1)
			itl: []float64{20, 30, 40},
		},
		{
			name:   "emission of k tokens splits its gap k ways",
			req:    request(ModeSpeculative, 0, 10, emissions(60, 1, 90, 3, 110, 2)),
			wantOK: true, ttft: 50, e2el: 100, tpot: ptr(10), // (100-50)/(6-1)
			itl: []float64{10, 10, 10, 10, 10}, // 30ms/3 three times, 20ms/2 twice
		},
		{
			name:   "tokens arriving with the first token have zero gap",
			req:    request(ModeSpeculative, 0, 0, emissions(40, 3, 70, 1)),
			wantOK: true, ttft: 40, e2el: 70, tpot: ptr(10), // (70-40)/(4-1)
			itl: []float64{0, 0, 30},
		},
		{
			name:   "one token has no TPOT and no ITL",
			req:    request(ModeTarget, 0, 0, emissions(25, 1)),
			wantOK: true, ttft: 25, e2el: 25, tpot: nil,
			itl: []float64{},
		},
		{
			name:   "no token",
			req:    request(ModeTarget, 0, 0, nil),
			wantOK: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.req.Timings()
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			if !ok {
				return
			}
			if !near(got.TTFT, tt.ttft) || !near(got.E2EL, tt.e2el) {
				t.Errorf("TTFT, E2EL = %v, %v, want %v, %v", got.TTFT, got.E2EL, tt.ttft, tt.e2el)
			}
			switch {
			case (got.TPOT == nil) != (tt.tpot == nil):
				t.Errorf("TPOT = %v, want %v", fmtPtr(got.TPOT), fmtPtr(tt.tpot))
			case got.TPOT != nil && !near(*got.TPOT, *tt.tpot):
				t.Errorf("TPOT = %v, want %v", *got.TPOT, *tt.tpot)
			}
			if len(got.ITL) != len(tt.itl) {
				t.Fatalf("ITL = %v, want %v", got.ITL, tt.itl)
			}
			for i := range got.ITL {
				if !near(got.ITL[i], tt.itl[i]) {
					t.Errorf("ITL = %v, want %v", got.ITL, tt.itl)
					break
				}
			}
		})
	}
}

// FuzzTimings checks the invariants that tie the latency definitions together: one ITL value
// per token after the first, ITL summing to E2EL − TTFT, and so mean ITL equal to TPOT.
func FuzzTimings(f *testing.F) {
	f.Add(uint16(5), uint16(7), uint8(1), uint16(3), uint8(4), uint16(9), uint8(2))
	f.Add(uint16(0), uint16(0), uint8(3), uint16(0), uint8(1), uint16(1), uint8(1))
	f.Fuzz(func(t *testing.T, send, g0 uint16, k0 uint8, g1 uint16, k1 uint8, g2 uint16, k2 uint8) {
		if k0 == 0 || k1 == 0 || k2 == 0 {
			return
		}
		first := float64(send) + float64(g0)
		r := request(ModeSpeculative, 0, float64(send), emissions(
			first, float64(k0),
			first+float64(g1), float64(k1),
			first+float64(g1)+float64(g2), float64(k2)))
		tm, ok := r.Timings()
		if !ok {
			t.Fatal("no timings for a request with tokens")
		}
		if len(tm.ITL) != r.OutputTokens-1 {
			t.Fatalf("%d ITL values for %d tokens", len(tm.ITL), r.OutputTokens)
		}
		var sum float64
		for _, v := range tm.ITL {
			sum += v
		}
		if math.Abs(sum-(tm.E2EL-tm.TTFT)) > 1e-6 {
			t.Fatalf("sum(ITL) = %v, E2EL-TTFT = %v", sum, tm.E2EL-tm.TTFT)
		}
		if tm.TPOT != nil && math.Abs(sum/float64(len(tm.ITL))-*tm.TPOT) > 1e-6 {
			t.Fatalf("mean ITL = %v, TPOT = %v", sum/float64(len(tm.ITL)), *tm.TPOT)
		}
	})
}

func TestValidate(t *testing.T) {
	good := func() Request {
		r := request(ModeSpeculative, 3, 0, emissions(10, 1, 20, 3))
		r.ID = "6f1c2b0e-8a51-4d7e-9a0c-3f5d2e1b4c77"
		r.Rounds = []Round{{Gamma: 4, Drafted: 4, Accepted: 2, Emitted: 3, AcceptedByPosition: []bool{true, true, false, false}}}
		return r
	}
	tests := []struct {
		name    string
		mutate  func(*Request)
		wantErr string // empty: valid
	}{
		{"valid", func(*Request) {}, ""},
		{"unknown mode", func(r *Request) { r.Mode = "draft" }, `mode "draft" is not one of speculative, target`},
		{"no send time", func(r *Request) { r.SentAt = time.Time{} }, "sent_at is not set"},
		{"negative input", func(r *Request) { r.InputTokens = -1 }, "negative token count"},
		{"empty emission", func(r *Request) { r.Emissions[1].Tokens = 0 }, "emission 1: 0 tokens"},
		{"emission before send", func(r *Request) { r.Emissions[0].At = at(-1) }, "emission 0 at"},
		{"emissions out of order", func(r *Request) { r.Emissions[1].At = at(5) }, "emission 1 at"},
		{"token count disagrees", func(r *Request) { r.OutputTokens = 5 }, "emissions hold 4 tokens but output_tokens is 5"},
		{"ids disagree", func(r *Request) { r.OutputIDs = r.OutputIDs[:3] }, "3 output_ids but output_tokens is 4"},
		{"rounds in target mode", func(r *Request) { r.Mode = ModeTarget }, "target request has 1 speculative rounds"},
		{"drafted over gamma", func(r *Request) { r.Rounds[0].Gamma = 3 }, "round 0: drafted 4 is outside [0, gamma 3]"},
		{"accepted over drafted", func(r *Request) { r.Rounds[0].Accepted = 5 }, "round 0: accepted 5 is outside [0, drafted 4]"},
		{"emitted too many", func(r *Request) { r.Rounds[0].Emitted = 4 }, "round 0: emitted 4 is outside [0, accepted+1 = 3]"},
		{"positions short", func(r *Request) { r.Rounds[0].AcceptedByPosition = []bool{true, true} }, "accepted_by_position has 2 entries for 4 drafted"},
		{"positions disagree", func(r *Request) { r.Rounds[0].AcceptedByPosition[3] = true }, "accepted_by_position marks 3 accepted, accepted is 2"},
		{"negative wall", func(r *Request) { r.Rounds[0].Wall = -time.Millisecond }, "round 0: negative time"},
		{"q mass above 1", func(r *Request) { r.Rounds[0].QMass = 1.5 }, "round 0: q_mass 1.5 is outside [0, 1]"},
		{"draft compute over compute", func(r *Request) { r.Rounds[0].DraftCompute = r.Rounds[0].Compute + 1 }, "round 0: draft_compute_ns"},
		{"q mass NaN", func(r *Request) { r.Rounds[0].QMass = math.NaN() }, "round 0: q_mass NaN is outside [0, 1]"},
		{"q mass known", func(r *Request) { r.Rounds[0].QMass = 0.4 }, ""},
		{"cancelled with its reason", func(r *Request) { r.Cancelled, r.Error = true, "context canceled" }, ""},
		{"cancelled without a reason", func(r *Request) { r.Cancelled = true }, "cancelled without an error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := good()
			tt.mutate(&r)
			err := r.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("Validate() = nil, want an error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("Validate() = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestEnd(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		want time.Time
	}{
		{"last emission", request(ModeTarget, 0, 0, emissions(10, 1, 30, 1)), at(30)},
		{"nothing emitted", request(ModeTarget, 0, 5, nil), at(5)},
		{"finished after last emission", func() Request {
			r := request(ModeTarget, 0, 0, emissions(10, 1))
			r.FinishedAt = at(50)
			return r
		}(), at(50)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.req.End(); !got.Equal(tt.want) {
				t.Errorf("End() = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestRequestJSON pins the requests.jsonl record: field names, the derived metrics object, and
// that decoding a record gives back the record.
func TestRequestJSON(t *testing.T) {
	tests := []struct {
		name   string
		golden string
		req    Request
	}{
		{name: "speculative", golden: "request_speculative.golden.json", req: func() Request {
			r := request(ModeSpeculative, 7, 0, emissions(50, 1, 80, 3, 90, 1))
			r.ID = "0b9e8f5c-5a4e-4c1b-9d7e-2f3a4b5c6d7e"
			r.PromptSource = "sharegpt_gpt4.jsonl"
			r.InputTokens = 12
			r.Rounds = []Round{
				{Gamma: 4, Drafted: 4, Accepted: 2, Emitted: 3, AcceptedByPosition: []bool{true, true, false, false}, Wall: 30 * time.Millisecond, Compute: 26 * time.Millisecond},
				{Gamma: 4, Drafted: 1, Accepted: 0, Emitted: 1, AcceptedByPosition: []bool{false}, Wall: 10 * time.Millisecond, Compute: 9 * time.Millisecond},
			}
			return r
		}()},
		{name: "failed target", golden: "request_target_failed.golden.json", req: func() Request {
			r := request(ModeTarget, 2, 0, emissions(40, 1))
			r.ID = "a2c4e6f8-1b3d-4f5a-8c7e-9d0f1a2b3c4d"
			r.PromptSource = "synthetic"
			r.InputTokens = 128
			r.Error = "worker 3f2a lost: no heartbeat for 3 intervals"
			r.FinishedAt = at(3000)
			return r
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.MarshalIndent(tt.req, "", "  ")
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			checkGolden(t, tt.golden, append(got, '\n'))

			var back Request
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			if !reflect.DeepEqual(back, tt.req) {
				t.Errorf("round trip changed the record:\n got %+v\nwant %+v", back, tt.req)
			}
		})
	}
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatalf("updating %s: %v", path, err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output:\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

func fmtPtr(p *float64) any {
	if p == nil {
		return "nil"
	}
	return *p
}
