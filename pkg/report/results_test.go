package report

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/draftbench/draftbench/pkg/metrics"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// fixture holds the summaries of testdata/requests.jsonl, a small job run in both modes.
type fixture struct {
	reqs              []metrics.Request
	spec, target      *metrics.Samples
	specSum, tgtSum   metrics.Summary
	comparison        metrics.Comparison
	sampledComparison metrics.Comparison
}

func loadFixture(t *testing.T) fixture {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "requests.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var fx fixture
	var truncated bool
	if fx.reqs, truncated, err = ReadRequests(f); err != nil || truncated {
		t.Fatalf("reading fixture: truncated=%v, %v", truncated, err)
	}
	if fx.spec, err = metrics.Collect(metrics.ModeSpeculative, fx.reqs); err != nil {
		t.Fatal(err)
	}
	if fx.target, err = metrics.Collect(metrics.ModeTarget, fx.reqs); err != nil {
		t.Fatal(err)
	}
	fx.specSum, fx.tgtSum = fx.spec.Summary(), fx.target.Summary()
	if fx.comparison, err = metrics.Compare(fx.specSum, fx.tgtSum, fx.reqs, fx.reqs, true); err != nil {
		t.Fatal(err)
	}
	if fx.sampledComparison, err = metrics.Compare(fx.specSum, fx.tgtSum, fx.reqs, fx.reqs, false); err != nil {
		t.Fatal(err)
	}
	return fx
}

var fixtureJob = Job{
	ID:         "5b1e7c2a-9d4f-4e3b-8a6c-0f2d1e3c4b5a",
	Name:       "qwen3-8b-vs-1.7b",
	StartedAt:  time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC),
	FinishedAt: time.Date(2025, 6, 1, 12, 0, 5, 0, time.UTC),
}

// gpuFixture has the DESIGN §7 shape gpumon writes.
var gpuFixture = json.RawMessage(`{
  "available": true,
  "devices": [
    {"index": 0, "uuid": "GPU-0aa1", "name": "NVIDIA H100 80GB HBM3", "host": "node-a", "role": "target",
     "power_w": {"avg": 402.25, "peak": 611.5}, "energy_j": {"speculative": 1200.5, "target": 1804},
     "utilization_pct": {"avg": 71.5, "peak": 100}, "memory_used_pct": {"avg": 40.1, "peak": 41},
     "temperature_c": {"peak": 63}},
    {"index": 1, "uuid": "GPU-0bb2", "name": "NVIDIA H100 80GB HBM3", "host": "node-a", "role": "drafter",
     "power_w": {"avg": 180, "peak": 250.75}, "energy_j": 900.25,
     "utilization_pct": {"avg": 30, "peak": 88}, "memory_used_pct": {"avg": 10, "peak": 12},
     "temperature_c": {"peak": 51}}
  ],
  "joules_per_output_token": {"speculative": 175.06, "target": 300.67}
}`)

func resultsCases(t *testing.T) []struct {
	name string
	res  Results
} {
	fx := loadFixture(t)
	return []struct {
		name string
		res  Results
	}{
		{name: "both_modes", res: Results{
			Job:         fixtureJob,
			Config:      map[string]any{"gamma": 2, "max_new_tokens": 6, "temperature": 0},
			Environment: json.RawMessage(`{"go":"go1.26","hosts":1}`),
			Speculative: &fx.specSum,
			Target:      &fx.tgtSum,
			Comparison:  &fx.comparison,
			GPU:         gpuFixture,
			Dataset: struct {
				Name    string `json:"name"`
				Prompts int    `json:"prompts"`
				Skipped int    `json:"skipped_records"`
			}{"sharegpt", 3, 1},
			Warnings: []string{"num_prompts 4 exceeds the 3 prompts of the dataset: prompts repeat"},
		}},
		{name: "target_only", res: Results{
			Job:    fixtureJob,
			Config: map[string]any{"modes": map[string]bool{"speculative": false, "target_ar": true}},
			Target: &fx.tgtSum,
			GPU:    map[string]any{"available": false, "reason": "NVML not found: libnvidia-ml.so.1: cannot open shared object file"},
		}},
		{name: "sampled", res: Results{
			Job:         fixtureJob,
			Speculative: &fx.specSum,
			Target:      &metrics.Summary{}, // enabled, no request sent: speedups are null
			Comparison: func() *metrics.Comparison {
				c := fx.sampledComparison
				c.SpeedupTPOT, c.SpeedupE2EL, c.SpeedupOutputThroughput = nil, nil, nil
				return &c
			}(),
		}},
		{name: "rate_mode", res: func() Results {
			f, i := func(v float64) *float64 { return &v }, func(v int) *int { return &v }
			tgt := fx.tgtSum
			arrival := "gamma"
			tgt.Load = &metrics.Load{Mode: "rate", RequestRate: f(4), Arrival: &arrival, Burstiness: f(0.5), MaxConcurrency: i(8),
				ScheduledRate: f(4.2), AchievedRate: f(4.1), MaxLatenessMS: f(12.5), MeanLatenessMS: f(1.25), PeakInFlight: 5}
			return Results{Job: fixtureJob, Target: &tgt,
				GPU: map[string]any{"available": false, "reason": "no GPU"}}
		}()},
		{name: "cut_short", res: cutShort(t, fx)},
	}
}

// cutShort is the fixture job cancelled during the target mode: one speculative request was
// cancelled in flight, and of the target ones one failed and two were cancelled, so no target
// request completed and nothing of the target mode may read as measured.
func cutShort(t *testing.T, fx fixture) Results {
	t.Helper()
	var reqs []metrics.Request
	for _, r := range fx.reqs {
		switch {
		case r.Warmup:
		case r.Mode == metrics.ModeSpeculative && r.Index == 1,
			r.Mode == metrics.ModeTarget && r.Index > 0:
			r.Error, r.Cancelled = "decode at 2 tokens: context canceled (cancelled by the user: test over)", true
		case r.Mode == metrics.ModeTarget:
			r.Error = "prefill: target stage 0 lost"
		}
		reqs = append(reqs, r)
	}
	spec, err := metrics.Summarize(metrics.ModeSpeculative, reqs)
	if err != nil {
		t.Fatal(err)
	}
	target, err := metrics.Summarize(metrics.ModeTarget, reqs)
	if err != nil {
		t.Fatal(err)
	}
	cmp, err := metrics.Compare(spec, target, reqs, reqs, true)
	if err != nil {
		t.Fatal(err)
	}
	return Results{Job: fixtureJob, Speculative: &spec, Target: &target, Comparison: &cmp,
		Warnings: []string{"the job was cancelled by the user (reason: test over) during the target mode: 0 of 3 requests finished, 1 failed, 2 cancelled"}}
}

func TestWriteGolden(t *testing.T) {
	for _, tc := range resultsCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := Write(dir, tc.res); err != nil {
				t.Fatalf("Write: %v", err)
			}
			names := []string{FileResults, FileSpeculative, FileTarget, FileGPU}
			assertDirHolds(t, dir, names)
			for _, name := range names {
				got, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				checkGolden(t, filepath.Join("results", tc.name, name), got)
			}
		})
	}
}

// TestResultsShape pins the top-level keys and the enabled/disabled mode shapes independently
// of the golden files.
func TestResultsShape(t *testing.T) {
	for _, tc := range resultsCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			data, err := json.Marshal(tc.res)
			if err != nil {
				t.Fatal(err)
			}
			var top map[string]json.RawMessage
			if err := json.Unmarshal(data, &top); err != nil {
				t.Fatal(err)
			}
			assertKeys(t, top, "job", "config", "environment", "speculative", "target", "comparison", "gpu", "dataset", "warnings")
			for mode, s := range map[string]*metrics.Summary{"speculative": tc.res.Speculative, "target": tc.res.Target} {
				var m map[string]json.RawMessage
				if err := json.Unmarshal(top[mode], &m); err != nil {
					t.Fatal(err)
				}
				if s == nil {
					assertKeys(t, m, "enabled")
					if string(m["enabled"]) != "false" {
						t.Errorf("%s: enabled = %s, want false", mode, m["enabled"])
					}
					continue
				}
				if string(m["enabled"]) != "true" || m["num_requests"] == nil {
					t.Errorf("%s: enabled = %s, num_requests = %s; want true and a count", mode, m["enabled"], m["num_requests"])
				}
			}
			if string(top["warnings"]) == "null" || (tc.res.Comparison == nil) != (string(top["comparison"]) == "null") {
				t.Errorf("warnings = %s, comparison = %.20s", top["warnings"], top["comparison"])
			}
		})
	}
}

func TestResultsRoundTrip(t *testing.T) {
	for _, tc := range resultsCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			data, err := json.Marshal(tc.res)
			if err != nil {
				t.Fatal(err)
			}
			var back Results
			if err := json.Unmarshal(data, &back); err != nil {
				t.Fatal(err)
			}
			if (back.Speculative == nil) != (tc.res.Speculative == nil) || (back.Target == nil) != (tc.res.Target == nil) {
				t.Fatalf("modes enabled = %v, %v after a round trip, want %v, %v",
					back.Speculative != nil, back.Target != nil, tc.res.Speculative != nil, tc.res.Target != nil)
			}
			again, err := json.Marshal(back)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(compact(t, data), compact(t, again)) {
				t.Errorf("round trip changed the results:\n got %s\nwant %s", again, data)
			}
		})
	}
}

func TestWriteReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileGPU)
	if err := os.WriteFile(path, []byte(`{"old": true, "padding": "longer than the new content"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, Results{}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"available\": false,\n  \"reason\": \"no GPU monitor results were recorded\"\n}\n"
	if string(got) != want {
		t.Errorf("%s = %q, want %q", FileGPU, got, want)
	}
	assertDirHolds(t, dir, []string{FileResults, FileSpeculative, FileTarget, FileGPU})
}

func TestWriteFailureLeavesNoTempFile(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string) (out string)
		wantErr string
	}{
		{
			// a folder where the file should go: the rename fails after the data was written
			name: "rename blocked",
			setup: func(t *testing.T, dir string) string {
				if err := os.MkdirAll(filepath.Join(dir, FileTarget, "x"), 0o755); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			wantErr: "renaming",
		},
		{
			name: "output folder is a file",
			setup: func(t *testing.T, dir string) string {
				out := filepath.Join(dir, "out")
				if err := os.WriteFile(out, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				return out
			},
			wantErr: "writing results",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			err := Write(tt.setup(t, dir), Results{})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Write() error = %v, want one containing %q", err, tt.wantErr)
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if strings.Contains(e.Name(), ".tmp-") {
					t.Errorf("temporary file %s left behind", e.Name())
				}
			}
		})
	}
}

func assertDirHolds(t *testing.T, dir string, want []string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s holds %v, want exactly %v", dir, got, want)
	}
}

func assertKeys(t *testing.T, obj map[string]json.RawMessage, want ...string) {
	t.Helper()
	var got []string
	for k := range obj {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("keys = %v, want %v", got, want)
	}
}

func compact(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
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
