package report

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/draftbench/draftbench/pkg/metrics"
)

// sweepRun writes the results of one run of a gamma sweep into dir.
func sweepRun(t *testing.T, dir string, gamma int, tpotSpec, tpotAR, accept float64) {
	t.Helper()
	f := func(v float64) *float64 { return &v }
	spec := &metrics.Summary{NumRequests: 4, Completed: 4, OutputThroughput: f(100 * tpotAR / tpotSpec),
		TPOT: &metrics.Distribution{Median: tpotSpec}, TTFT: &metrics.Distribution{Median: 20},
		SpecStats: &metrics.SpecStats{AcceptanceRate: f(accept), MeanAcceptanceLength: f(1 + accept*float64(gamma))}}
	ar := &metrics.Summary{NumRequests: 4, Completed: 3, Failed: 1, OutputThroughput: f(100),
		TPOT: &metrics.Distribution{Median: tpotAR}, TTFT: &metrics.Distribution{Median: 18}}
	cfg := map[string]any{"name": "sweep", "seed": 42,
		"generation": map[string]any{"gamma": gamma, "temperature": 0, "max_new_tokens": 64},
		"source":     map[string]any{"filename": "job.hcl", "env": map[string]any{"GAMMA": gamma}}}
	r := Results{Job: Job{ID: "id", Name: "sweep", Outcome: OutcomeCompleted}, Config: cfg,
		Speculative: spec, Target: ar,
		Comparison: &metrics.Comparison{SpeedupTPOT: f(tpotAR / tpotSpec), Lossless: metrics.Lossless{Checked: 3, Mismatched: 1}},
		GPU:        map[string]any{"available": true, "joules_per_output_token": map[string]float64{"speculative": 0.5, "target": 0.75}}}
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
}

func TestCompareSweep(t *testing.T) {
	parent := t.TempDir()
	sweepRun(t, filepath.Join(parent, "g8"), 8, 12, 10, 0.4)
	sweepRun(t, filepath.Join(parent, "g2"), 2, 8, 10, 0.8)
	sweepRun(t, filepath.Join(parent, "g4"), 4, 7, 10, 0.7)
	// A rerun's set-aside results are not a run of the sweep.
	sweepRun(t, filepath.Join(parent, "g4", "earlier-20261127-101010"), 5, 1, 1, 1)
	sweepRun(t, filepath.Join(parent, "earlier-20261127-101010"), 6, 1, 1, 1)
	if err := os.MkdirAll(filepath.Join(parent, "notes"), 0o755); err != nil {
		t.Fatal(err)
	}

	c, err := CompareDirs([]string{parent})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Differs, []string{"generation.gamma"}) {
		t.Fatalf("differs = %v, want only generation.gamma (source is not a setting)", c.Differs)
	}
	var order []any
	for _, r := range c.Runs {
		order = append(order, r.Settings["generation.gamma"])
	}
	if !reflect.DeepEqual(order, []any{2.0, 4.0, 8.0}) {
		t.Fatalf("rows by gamma: %v, want 2, 4, 8", order)
	}
	g4 := c.Runs[1]
	if *g4.SpeedupTPOT != 10.0/7 || *g4.AcceptanceRate != 0.7 || g4.MedianTPOTMS["target"] != 10 ||
		g4.Completed["target"] != 3 || g4.JoulesPerToken["target"] != 0.75 {
		t.Errorf("g4 read as %+v", g4)
	}

	var out strings.Builder
	if err := PrintComparison(&out, c); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) != 4 {
		t.Fatalf("table of %d lines, want a header and 3 rows:\n%s", len(lines), text)
	}
	for _, want := range []string{"gamma", "speedup TPOT", "J/token spec/AR"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("header lacks %q: %s", want, lines[0])
		}
	}
	for i, want := range [][]string{
		{"g2", " 2 ", "1.25×", "80.0", "2/3", "4 / 3", "8.00 / 10.00", "0.500 / 0.750"},
		{"g4", " 4 ", "1.43×", "70.0", "3.80"},
		{"g8", " 8 ", "0.83×", "40.0"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("row %d lacks %q: %s", i+1, w, lines[i+1])
			}
		}
	}
	if strings.Contains(text, parent) {
		t.Errorf("rows carry the shared parent folder:\n%s", text)
	}

	// The JSON form carries the same runs and the full folders.
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Differs []string
		Runs    []struct {
			Dir      string
			Settings map[string]any
		}
	}
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Runs) != 3 || back.Runs[0].Dir != filepath.Join(parent, "g2") || back.Runs[0].Settings["generation.gamma"] != 2.0 {
		t.Errorf("JSON: %s", data)
	}
}

func TestCompareArguments(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	sweepRun(t, a, 4, 7, 10, 0.7)
	sweepRun(t, b, 4, 8, 10, 0.7)
	// A results file named directly, and a folder.
	c, err := CompareDirs([]string{filepath.Join(b, FileResults), a})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Runs) != 2 || c.Runs[0].Dir != b || len(c.Differs) != 0 {
		t.Fatalf("runs %+v, differs %v", c.Runs, c.Differs)
	}
	var out strings.Builder
	if err := PrintComparison(&out, c); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "settings are the same") {
		t.Errorf("same settings not said:\n%s", out.String())
	}

	// The same job on other cards, or measured by another build, is not
	// the same setting.
	h100, h200 := filepath.Join(dir, "h100"), filepath.Join(dir, "h200")
	for _, r := range []struct {
		dir, card, version string
	}{{h100, "NVIDIA H100 80GB HBM3", "v1"}, {h200, "NVIDIA H200", "v2"}} {
		gpu := map[string]any{"available": true, "devices": []map[string]any{
			{"index": 0, "name": r.card, "host": "a", "role": "target"},
			{"index": 0, "name": r.card, "host": "a", "role": "drafter"},
			{"index": 1, "name": r.card, "host": "a", "role": "target"}}}
		if err := Write(r.dir, Results{Job: Job{Name: "x"}, Config: map[string]any{"seed": 1}, GPU: gpu,
			Environment: map[string]any{"version": r.version}}); err != nil {
			t.Fatal(err)
		}
	}
	c, err = CompareDirs([]string{h100, h200})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Differs, []string{"draftbench_version", "gpus"}) || c.Runs[0].Settings["gpus"] != "2× NVIDIA H100 80GB HBM3" {
		t.Errorf("differs %v, settings %v", c.Differs, c.Runs[0].Settings)
	}

	empty := t.TempDir()
	if _, err := CompareDirs([]string{a, empty}); err == nil || !strings.Contains(err.Error(), empty) {
		t.Errorf("a folder without results: %v, want an error naming it", err)
	}
	if _, err := CompareDirs([]string{filepath.Join(dir, "missing")}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a missing folder: %v", err)
	}
	bad := filepath.Join(t.TempDir(), FileResults)
	if err := os.WriteFile(bad, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := CompareDirs([]string{bad}); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("a broken results file: %v, want an error naming it", err)
	}
}
