package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
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
	if strings.Contains(lines[0], "q mass") {
		t.Errorf("greedy runs (no q mass recorded) got a q mass column: %s", lines[0])
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
	if _, err := CompareDirs([]string{bad}); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "is not a draftbench") {
		t.Errorf("a broken results file: %v, want an error naming it", err)
	}
	// A file that is not a run's results (notes beside the runs, other JSON).
	for _, body := range []string{"hello\n", `{"a": 1}`} {
		other := filepath.Join(t.TempDir(), "notes.txt")
		if err := os.WriteFile(other, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := CompareDirs([]string{a, other}); err == nil || !strings.Contains(err.Error(), other+" is not a draftbench benchmark_results.json") {
			t.Errorf("%q: %v", body, err)
		}
	}
}

// run writes a run's results with the given config and environment into
// dir; speedup sets the TPOTs (target 10 ms), accept the acceptance rate.
func run(t *testing.T, dir string, cfg, env map[string]any, speedup, accept float64) {
	t.Helper()
	f := func(v float64) *float64 { return &v }
	spec := &metrics.Summary{NumRequests: 4, Completed: 4, OutputThroughput: f(100 * speedup),
		TPOT: &metrics.Distribution{Median: 10 / speedup}, TTFT: &metrics.Distribution{Median: 20},
		SpecStats: &metrics.SpecStats{AcceptanceRate: f(accept), MeanAcceptanceLength: f(1 + 4*accept)}}
	ar := &metrics.Summary{NumRequests: 4, Completed: 4, OutputThroughput: f(100),
		TPOT: &metrics.Distribution{Median: 10}, TTFT: &metrics.Distribution{Median: 18}}
	r := Results{Job: Job{ID: "id", Name: "sweep", Outcome: OutcomeCompleted}, Config: cfg, Environment: env,
		Speculative: spec, Target: ar,
		Comparison: &metrics.Comparison{SpeedupTPOT: f(speedup), Lossless: metrics.Lossless{Checked: 4}}}
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
}

func table(t *testing.T, c *Comparison) []string {
	t.Helper()
	var out strings.Builder
	if err := PrintComparison(&out, c); err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(out.String()), "\n")
}

// A value run several times (sweep.sh --repeat: KNOB-VALUE/run-N) is one
// row: the median of each figure, the range of those that vary, n runs.
func TestCompareRepeats(t *testing.T) {
	parent := t.TempDir()
	cfg := func(gamma int) map[string]any {
		return map[string]any{"generation": map[string]any{"gamma": gamma, "temperature": 0},
			"source": map[string]any{"values": map[string]any{"run": t.Name()}}}
	}
	for i, s := range []float64{1.17, 1.31, 1.25} {
		run(t, filepath.Join(parent, "gamma-4", "run-"+string(rune('1'+i))), cfg(4), nil, s, 0.7)
	}
	run(t, filepath.Join(parent, "gamma-2", "run-1"), cfg(2), nil, 1.1, 0.8)
	run(t, filepath.Join(parent, "gamma-2", "run-2"), cfg(2), nil, 1.2, 0.8)

	c, err := CompareDirs([]string{parent})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Runs) != 5 || len(c.Groups) != 2 {
		t.Fatalf("%d runs in %d groups, want 5 in 2", len(c.Runs), len(c.Groups))
	}
	g2, g4 := c.Groups[0], c.Groups[1]
	if g2.Name != "gamma-2" || g4.Name != "gamma-4" || g4.N != 3 || len(g4.Dirs) != 3 || g4.Settings["generation.gamma"] != 4.0 {
		t.Errorf("groups %q (n %d) and %q (n %d, dirs %v, settings %v)", g2.Name, g2.N, g4.Name, g4.N, g4.Dirs, g4.Settings)
	}
	if s := g4.SpeedupTPOT; s == nil || s.Median != 1.25 || s.Min != 1.17 || s.Max != 1.31 || s.N != 3 {
		t.Errorf("gamma 4's speedup: %+v", s)
	}
	if s := g2.SpeedupTPOT; s == nil || s.Median != (1.1+1.2)/2 {
		t.Errorf("gamma 2's speedup (the mean of the middle two): %+v", s)
	}
	if g4.Completed["speculative"] != 12 || g4.LosslessChecked != 12 {
		t.Errorf("gamma 4's counts are not summed: %v, %d checked", g4.Completed, g4.LosslessChecked)
	}

	lines := table(t, c)
	if len(lines) != 4 {
		t.Fatalf("want a header, two rows and a note:\n%s", strings.Join(lines, "\n"))
	}
	head := strings.Fields(lines[0])
	if !slices.Contains(head, "n") {
		t.Errorf("no n column: %s", lines[0])
	}
	for i, want := range [][]string{
		{"gamma-2", " 2 ", " 2 ", "1.15× (1.10–1.20)", "8 / 8", "8/8"},
		{"gamma-4", " 4 ", " 3 ", "1.25× (1.17–1.31)", "12 / 12", "12/12", "8.00 (7.63–8.55) / 10.00 "},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("row %d lacks %q: %s", i+1, w, lines[i+1])
			}
		}
	}
	// Acceptance is the same in every run (temperature 0): no range.
	if !strings.Contains(lines[2], " 70.0 ") || strings.Contains(lines[2], "70.0 (") {
		t.Errorf("acceptance: %s", lines[2])
	}

	// The JSON keeps every run and adds the groups.
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Runs   []json.RawMessage
		Groups []struct {
			Name        string
			N           int
			SpeedupTPOT Stat `json:"speedup_tpot"`
		}
	}
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Runs) != 5 || len(back.Groups) != 2 || back.Groups[1].N != 3 || back.Groups[1].SpeedupTPOT.Max != 1.31 {
		t.Errorf("JSON: %s", data)
	}

	// Runs of one setting in folders of their own are one row too.
	c, err = CompareDirs([]string{filepath.Join(parent, "gamma-4", "run-1"), filepath.Join(parent, "gamma-4", "run-2")})
	if err != nil {
		t.Fatal(err)
	}
	lines = table(t, c)
	if len(lines) != 3 || !strings.HasPrefix(strings.TrimSpace(lines[1]), "gamma-4 ") || !strings.Contains(lines[2], "settings are the same") {
		t.Errorf("two runs of one setting:\n%s", strings.Join(lines, "\n"))
	}
}

// With many settings differing, the columns go to what a speculative
// decoding sweep varies, not to the dataset's (long) settings.
func TestCompareColumnsRanked(t *testing.T) {
	dir := t.TempDir()
	long := func(n int, word string) []any {
		var ps []any
		for i := 0; i < n; i++ {
			ps = append(ps, strings.Repeat(word+" ", 10))
		}
		return ps
	}
	for i, r := range []struct {
		temp, tokens, rate, conc float64
		files                    []any
		prompts                  []any
	}{
		{0, 64, 1, 0, []any{"a.jsonl"}, long(8, "sea")},
		{0.8, 128, 2, 4, []any{"b.jsonl", "c.jsonl"}, long(8, "sky")},
	} {
		cfg := map[string]any{
			"generation": map[string]any{"gamma": 4, "temperature": r.temp, "max_new_tokens": r.tokens},
			"load":       map[string]any{"rate": r.rate, "max_concurrency": r.conc},
			"dataset": map[string]any{"kind": []string{"prompts", "sharegpt"}[i], "dir": fmt.Sprintf("/data/%d", i),
				"files": r.files, "prompts": r.prompts},
		}
		run(t, filepath.Join(dir, fmt.Sprintf("run-%d", i)), cfg, nil, 1.2, 0.7)
	}
	c, err := CompareDirs([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	lines := table(t, c)
	head := strings.Fields(lines[0])
	if want := []string{"run", "temperature", "max_new_tokens", "max_concurrency", "rate", "ok"}; !reflect.DeepEqual(head[:len(want)], want) {
		t.Errorf("columns %v, want %v first", head, want)
	}
	text := strings.Join(lines, "\n")
	for _, want := range []string{
		"dataset.dir differs too: /data/0, /data/1",
		"dataset.files differs too: [1 item], [2 items]",
		"dataset.kind differs too: prompts, sharegpt",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("lacks %q:\n%s", want, text)
		}
	}
	// Two lists of one length read apart by a hash, not by their text.
	var prompts string
	for _, l := range lines {
		if strings.HasPrefix(l, "dataset.prompts differs too: ") {
			prompts = l
		}
	}
	if !regexp.MustCompile(`^dataset.prompts differs too: \[8 items\] #[0-9a-f]{6}, \[8 items\] #[0-9a-f]{6}$`).MatchString(prompts) {
		t.Errorf("prompts shown as %q", prompts)
	}
}

// Model folders are compared as folders: a relative path (from where
// compare runs) and an absolute one to the same folder are one setting,
// shown by the folder's name with what the run found in it.
func TestCompareModelPaths(t *testing.T) {
	work := t.TempDir()
	t.Chdir(work)
	for _, d := range []string{"models/drafter-L1", "other/drafter-L1", "models/tiny-drafter"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(work, "data", "sg"), 0o755); err != nil {
		t.Fatal(err)
	}
	n := 0
	cfg := func(drafter string) map[string]any {
		// The same dataset folder, written two ways: one setting.
		dir := "data/sg"
		if n++; n%2 == 0 {
			dir = filepath.Join(work, "data", "sg") + "/"
		}
		return map[string]any{"models": map[string]any{
			"target":  map[string]any{"path": "models/target", "dtype": "auto"},
			"drafter": map[string]any{"path": drafter, "dtype": "auto"}},
			"dataset": map[string]any{"kind": "sharegpt", "dir": dir}}
	}
	env := func(drafter string, layers int, params int64) map[string]any {
		return map[string]any{"version": "v1",
			"target":  map[string]any{"path": "models/target", "layers": 12, "parameters": 38836224},
			"drafter": map[string]any{"path": drafter, "layers": layers, "parameters": params}}
	}
	results := filepath.Join(work, "results")
	for _, r := range []struct{ dir, path string }{
		{"rel", "models/drafter-L1"},
		{"abs", filepath.Join(work, "models", "drafter-L1") + "/"},
		{"dot", "./models/../models/drafter-L1"},
	} {
		run(t, filepath.Join(results, r.dir), cfg(r.path), env(r.path, 1, 7367424), 1.2, 0.7)
	}
	run(t, filepath.Join(results, "other"), cfg("other/drafter-L1"), env("other/drafter-L1", 1, 7367424), 1.1, 0.6)
	run(t, filepath.Join(results, "two"), cfg("models/tiny-drafter"), env("models/tiny-drafter", 2, 12_500_000), 1.3, 0.75)

	c, err := CompareDirs([]string{"results"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Differs, []string{"models.drafter.path"}) {
		t.Fatalf("differs %v, want only the drafter", c.Differs)
	}
	if len(c.Groups) != 3 || c.Groups[0].N != 3 {
		t.Fatalf("groups %+v: want the three paths to one folder as one", c.Groups)
	}
	if p := c.Groups[0].Settings["models.drafter.path"]; p != filepath.Join(work, "models", "drafter-L1") {
		t.Errorf("the drafter's setting is %v, want the absolute folder", p)
	}
	lines := table(t, c)
	if head := strings.Fields(lines[0]); head[1] != "drafter" {
		t.Errorf("model column named %q: %s", head[1], lines[0])
	}
	for i, want := range []string{"models/drafter-L1 (1 layer, 7.4M)", "other/drafter-L1 (1 layer, 7.4M)", " tiny-drafter (2 layers, 12.5M)"} {
		if !strings.Contains(lines[i+1], want) {
			t.Errorf("row %d lacks %q: %s", i+1, want, lines[i+1])
		}
	}
}

// TestCompareQMass: sampled runs that recorded how much of the drafter's
// mass their q kept (a draft_top_k sweep) get a q mass column.
func TestCompareQMass(t *testing.T) {
	parent := t.TempDir()
	f := func(v float64) *float64 { return &v }
	for _, r := range []struct {
		k            int
		accept, mass float64
	}{{64, 0.155, 0.384}, {-1, 0.834, 1}} {
		spec := &metrics.Summary{NumRequests: 8, Completed: 8, TPOT: &metrics.Distribution{Median: 10},
			SpecStats: &metrics.SpecStats{AcceptanceRate: f(r.accept), MeanAcceptanceLength: f(2), DraftQMass: f(r.mass),
				DraftCostRatio: f(0.125)}}
		cfg := map[string]any{"name": "q", "generation": map[string]any{"temperature": 0.8, "draft_top_k": r.k},
			"warnings": []any{fmt.Sprintf("a warning of run %d", r.k)}} // not a setting
		res := Results{Job: Job{ID: "id", Name: "q", Outcome: OutcomeCompleted}, Config: cfg, Speculative: spec}
		if err := Write(filepath.Join(parent, fmt.Sprintf("k%d", r.k)), res); err != nil {
			t.Fatal(err)
		}
	}
	c, err := CompareDirs([]string{parent})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Differs, []string{"generation.draft_top_k"}) {
		t.Errorf("differs = %v, want only generation.draft_top_k (warnings are not a setting)", c.Differs)
	}
	var out strings.Builder
	if err := PrintComparison(&out, c); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "q mass %") {
		t.Fatalf("want a q mass column:\n%s", out.String())
	}
	if !strings.Contains(lines[0], "draft c") {
		t.Errorf("want a draft c column:\n%s", out.String())
	}
	for _, want := range []string{"38.4", "100.0", "0.12"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	// draft_top_k -1 (the whole q) sorts after every count of ids.
	if !strings.Contains(lines[1], "k64") || !strings.Contains(lines[2], "k-1") {
		t.Errorf("rows not in the order 64, -1:\n%s", out.String())
	}
}

// TestCompareEngine: an in-process run and a run over NATS stages of the
// same job are two rows (an engine column), not one setting's repeats.
func TestCompareEngine(t *testing.T) {
	parent := t.TempDir()
	for name, env := range map[string]map[string]any{
		"nats":   {"version": "v1"},
		"inproc": {"version": "v1", "engine": "in-process"},
	} {
		res := Results{Job: Job{ID: "id", Name: "e", Outcome: OutcomeCompleted}, Environment: env,
			Config: map[string]any{"name": "e", "generation": map[string]any{"gamma": 4}}}
		if err := Write(filepath.Join(parent, name), res); err != nil {
			t.Fatal(err)
		}
	}
	c, err := CompareDirs([]string{parent})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Differs, []string{"engine"}) || len(c.Groups) != 2 {
		t.Fatalf("differs %v, %d groups; want engine and 2 rows", c.Differs, len(c.Groups))
	}
}
