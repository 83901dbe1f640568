package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/draftbench/draftbench/pkg/metrics"
)

// A comparison reads the benchmark_results.json of several runs (a gamma
// sweep, drafters side by side, two GPU splits) and puts their headline
// figures in one table, with a column for each setting that differs between
// them.

// Compared is one run of a comparison, as `controller compare --json` writes it.
type Compared struct {
	Dir     string `json:"dir"`
	Job     string `json:"job"`
	Outcome string `json:"outcome,omitempty"`
	// Settings are the job settings (dotted paths of the results' config)
	// whose values differ between the compared runs.
	Settings map[string]any `json:"settings"`

	Completed            map[string]int     `json:"completed"` // per mode
	AcceptanceRate       *float64           `json:"acceptance_rate"`
	MeanAcceptanceLength *float64           `json:"mean_acceptance_length"`
	MedianTPOTMS         map[string]float64 `json:"median_tpot_ms"`
	MedianTTFTMS         map[string]float64 `json:"median_ttft_ms"`
	OutputThroughput     map[string]float64 `json:"output_throughput"`
	SpeedupTPOT          *float64           `json:"speedup_tpot"`
	SpeedupE2EL          *float64           `json:"speedup_e2el"`
	SpeedupThroughput    *float64           `json:"speedup_output_throughput"`
	// Lossless is "checked/identical" figures of the greedy check, or why
	// it was skipped.
	LosslessChecked    int                `json:"lossless_checked"`
	LosslessMismatched int                `json:"lossless_mismatched"`
	LosslessSkipped    string             `json:"lossless_skipped,omitempty"`
	JoulesPerToken     map[string]float64 `json:"joules_per_output_token,omitempty"`

	config map[string]any // flattened
	name   string         // the row's name in the table
}

// Comparison is the runs in order and the settings that differ between them.
type Comparison struct {
	Differs []string   `json:"differs"` // dotted config paths, sorted
	Runs    []Compared `json:"runs"`
}

// ignoredSettings are config paths that differ between runs without being a
// setting of the measurement (the job file's text and where it came from).
var ignoredSettings = []string{"source", "output_dir"}

// CompareDirs reads the results of each path: an output folder holding
// benchmark_results.json, the file itself, or a folder whose subfolders hold
// results (a sweep's parent; earlier-<time> folders set aside by a rerun are
// skipped). A path that holds none is an error naming it.
func CompareDirs(paths []string) (*Comparison, error) {
	var files []string
	for _, p := range paths {
		found, err := resultFiles(p)
		if err != nil {
			return nil, err
		}
		files = append(files, found...)
	}
	c := &Comparison{}
	for _, f := range files {
		run, err := readCompared(f)
		if err != nil {
			return nil, err
		}
		c.Runs = append(c.Runs, run)
	}
	c.Differs = differing(c.Runs)
	trimDirs(c.Runs)
	for i := range c.Runs {
		c.Runs[i].Settings = map[string]any{}
		for _, k := range c.Differs {
			c.Runs[i].Settings[k] = c.Runs[i].config[k]
		}
	}
	// One numeric setting that differs (a sweep): in its order.
	if len(c.Differs) == 1 {
		k := c.Differs[0]
		if allNumbers(c.Runs, k) {
			slices.SortStableFunc(c.Runs, func(a, b Compared) int {
				x, _ := number(a.config[k])
				y, _ := number(b.config[k])
				switch {
				case x < y:
					return -1
				case x > y:
					return 1
				}
				return 0
			})
		}
	}
	return c, nil
}

func resultFiles(p string) ([]string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	direct := filepath.Join(p, FileResults)
	if _, err := os.Stat(direct); err == nil {
		return []string{direct}, nil
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), "earlier-") {
			continue
		}
		f := filepath.Join(p, e.Name(), FileResults)
		if _, err := os.Stat(f); err == nil {
			out = append(out, f)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("compare: %w", err)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("compare: %s holds no %s, nor do its subfolders (give a run's output folder)", p, FileResults)
	}
	return out, nil
}

func readCompared(path string) (Compared, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Compared{}, fmt.Errorf("compare: %w", err)
	}
	var r Results
	if err := json.Unmarshal(data, &r); err != nil {
		return Compared{}, fmt.Errorf("compare: %s: %w", path, err)
	}
	c := Compared{Dir: filepath.Dir(path), Job: r.Job.Name, Outcome: r.Job.Outcome,
		Completed: map[string]int{}, MedianTPOTMS: map[string]float64{}, MedianTTFTMS: map[string]float64{},
		OutputThroughput: map[string]float64{}, config: map[string]any{}}
	for _, m := range []struct {
		name string
		s    *modeFigures
	}{{"speculative", figures(r.Speculative)}, {"target", figures(r.Target)}} {
		if m.s == nil {
			continue
		}
		c.Completed[m.name] = m.s.completed
		if m.s.tpot != nil {
			c.MedianTPOTMS[m.name] = *m.s.tpot
		}
		if m.s.ttft != nil {
			c.MedianTTFTMS[m.name] = *m.s.ttft
		}
		if m.s.throughput != nil {
			c.OutputThroughput[m.name] = *m.s.throughput
		}
	}
	if s := r.Speculative; s != nil && s.SpecStats != nil {
		c.AcceptanceRate, c.MeanAcceptanceLength = s.AcceptanceRate, s.MeanAcceptanceLength
	}
	if cmp := r.Comparison; cmp != nil {
		c.SpeedupTPOT, c.SpeedupE2EL, c.SpeedupThroughput = cmp.SpeedupTPOT, cmp.SpeedupE2EL, cmp.SpeedupOutputThroughput
		c.LosslessChecked, c.LosslessMismatched, c.LosslessSkipped = cmp.Lossless.Checked, cmp.Lossless.Mismatched, cmp.Lossless.Skipped
	}
	gpus := "none monitored"
	if raw, ok := r.GPU.(json.RawMessage); ok {
		var g gpuView
		if json.Unmarshal(raw, &g) == nil {
			if len(g.JoulesPerOutputToken) > 0 {
				c.JoulesPerToken = g.JoulesPerOutputToken
			}
			if len(g.Devices) > 0 {
				gpus = gpuKinds(g)
			}
		}
	}
	if raw, ok := r.Config.(json.RawMessage); ok && len(raw) > 0 {
		var cfg any
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return Compared{}, fmt.Errorf("compare: %s: config: %w", path, err)
		}
		flatten("", cfg, c.config)
	}
	// Not settings of the job, but they change the figures as much: the
	// cards it ran on and the build that measured.
	c.config[settingGPUs] = gpus
	if raw, ok := r.Environment.(json.RawMessage); ok && len(raw) > 0 {
		var env struct {
			Version string `json:"version"`
		}
		if json.Unmarshal(raw, &env) == nil && env.Version != "" {
			c.config[settingVersion] = env.Version
		}
	}
	return c, nil
}

// Pseudo-settings read from the results' gpu and environment sections.
const (
	settingGPUs    = "gpus"
	settingVersion = "draftbench_version"
)

// gpuKinds is the monitored GPUs as "2× NVIDIA H100 80GB HBM3", one entry
// per model name.
func gpuKinds(g gpuView) string {
	seen := map[string]bool{}
	count := map[string]int{}
	var names []string
	for _, d := range g.Devices {
		key := fmt.Sprintf("%s/%d", d.Host, d.Index)
		if seen[key] {
			continue
		}
		seen[key] = true
		if count[d.Name] == 0 {
			names = append(names, d.Name)
		}
		count[d.Name]++
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%d× %s", count[n], n)
	}
	return strings.Join(parts, " + ")
}

// modeFigures are one mode's headline figures (nil where not measured).
type modeFigures struct {
	completed  int
	tpot, ttft *float64
	throughput *float64
}

func figures(s *metrics.Summary) *modeFigures {
	if s == nil {
		return nil
	}
	f := &modeFigures{completed: s.Completed, throughput: s.OutputThroughput}
	if s.TPOT != nil {
		f.tpot = &s.TPOT.Median
	}
	if s.TTFT != nil {
		f.ttft = &s.TTFT.Median
	}
	return f
}

// flatten writes v's leaves into out under dotted paths; lists are leaves.
func flatten(prefix string, v any, out map[string]any) {
	if m, ok := v.(map[string]any); ok {
		for k, x := range m {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			flatten(p, x, out)
		}
		return
	}
	out[prefix] = v
}

// differing is the config paths whose values are not the same in every run.
func differing(runs []Compared) []string {
	keys := map[string]bool{}
	for _, r := range runs {
		for k := range r.config {
			keys[k] = true
		}
	}
	var out []string
	for k := range keys {
		if ignored(k) {
			continue
		}
		first := canonical(runs[0].config[k])
		for _, r := range runs[1:] {
			if canonical(r.config[k]) != first {
				out = append(out, k)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

func ignored(k string) bool {
	for _, p := range ignoredSettings {
		if k == p || strings.HasPrefix(k, p+".") {
			return true
		}
	}
	return false
}

func canonical(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func number(v any) (float64, bool) {
	f, ok := v.(float64)
	return f, ok
}

func allNumbers(runs []Compared, k string) bool {
	for _, r := range runs {
		if _, ok := number(r.config[k]); !ok {
			return false
		}
	}
	return true
}

// maxSettingColumns is how many differing settings get a column; the rest
// are listed under the table.
const maxSettingColumns = 4

// PrintComparison writes the comparison as an aligned table.
func PrintComparison(w io.Writer, c *Comparison) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	cols := c.Differs
	var rest []string
	if len(cols) > maxSettingColumns {
		cols, rest = cols[:maxSettingColumns], cols[maxSettingColumns:]
	}
	head := []string{"run"}
	for _, k := range cols {
		head = append(head, shortName(k, c.Differs))
	}
	head = append(head, "ok spec/AR", "accept %", "accept len", "TPOT p50 ms spec/AR", "TTFT p50 ms spec/AR",
		"speedup TPOT", "E2EL", "tok/s", "lossless")
	jpt := false
	for _, r := range c.Runs {
		if len(r.JoulesPerToken) > 0 {
			jpt = true
		}
	}
	if jpt {
		head = append(head, "J/token spec/AR")
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, r := range c.Runs {
		row := []string{runName(r)}
		for _, k := range cols {
			row = append(row, setting(r.Settings[k]))
		}
		row = append(row,
			pair(intp(r.Completed, "speculative"), intp(r.Completed, "target"), "%.0f"),
			opt(scale(r.AcceptanceRate, 100), "%.1f"),
			opt(r.MeanAcceptanceLength, "%.2f"),
			pair(floatp(r.MedianTPOTMS, "speculative"), floatp(r.MedianTPOTMS, "target"), "%.2f"),
			pair(floatp(r.MedianTTFTMS, "speculative"), floatp(r.MedianTTFTMS, "target"), "%.1f"),
			opt(r.SpeedupTPOT, "%.2f×"),
			opt(r.SpeedupE2EL, "%.2f×"),
			opt(r.SpeedupThroughput, "%.2f×"),
			lossless(r))
		if jpt {
			row = append(row, pair(floatp(r.JoulesPerToken, "speculative"), floatp(r.JoulesPerToken, "target"), "%.3f"))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(c.Differs) == 0 && len(c.Runs) > 1 {
		fmt.Fprintln(w, "The runs' settings are the same: the spread is the machine's.")
	}
	for _, k := range rest {
		vals := make([]string, len(c.Runs))
		for i, r := range c.Runs {
			vals[i] = setting(r.Settings[k])
		}
		fmt.Fprintf(w, "%s differs too: %s\n", k, strings.Join(vals, ", "))
	}
	for _, r := range c.Runs {
		if r.Outcome != "" && r.Outcome != OutcomeCompleted {
			fmt.Fprintf(w, "%s: the run was %s; its figures cover what finished.\n", r.Dir, r.Outcome)
		}
	}
	return nil
}

// shortName is k's last part, or more of it when that is ambiguous among all.
func shortName(k string, all []string) string {
	parts := strings.Split(k, ".")
	for n := 1; n <= len(parts); n++ {
		s := strings.Join(parts[len(parts)-n:], ".")
		clash := false
		for _, o := range all {
			if o != k && (o == s || strings.HasSuffix(o, "."+s)) {
				clash = true
			}
		}
		if !clash {
			return s
		}
	}
	return k
}

// trimDirs drops the folder every run's Dir shares, so the table's rows read
// as the runs' own folder names (absolute paths are kept in the JSON).
func trimDirs(runs []Compared) {
	if len(runs) < 2 {
		return
	}
	common := filepath.Dir(runs[0].Dir)
	for _, r := range runs[1:] {
		for common != "." && common != "/" && !strings.HasPrefix(r.Dir, common+string(filepath.Separator)) {
			common = filepath.Dir(common)
		}
	}
	if common == "." || common == "/" {
		return
	}
	for i := range runs {
		runs[i].name = strings.TrimPrefix(runs[i].Dir, common+string(filepath.Separator))
	}
}

func runName(r Compared) string {
	if r.name != "" {
		return r.name
	}
	if r.Dir == "" || r.Dir == "." {
		return r.Job
	}
	return r.Dir
}

func setting(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if x == "" {
			return `""`
		}
		return x
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	default:
		return canonical(v)
	}
}

func opt(v *float64, format string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf(format, *v)
}

func scale(v *float64, by float64) *float64 {
	if v == nil {
		return nil
	}
	x := *v * by
	return &x
}

func floatp(m map[string]float64, k string) *float64 {
	if v, ok := m[k]; ok {
		return &v
	}
	return nil
}

func intp(m map[string]int, k string) *float64 {
	if v, ok := m[k]; ok {
		f := float64(v)
		return &f
	}
	return nil
}

func pair(a, b *float64, format string) string {
	return opt(a, format) + " / " + opt(b, format)
}

func lossless(r Compared) string {
	if r.LosslessSkipped != "" || r.LosslessChecked == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%d", r.LosslessChecked-r.LosslessMismatched, r.LosslessChecked)
}
