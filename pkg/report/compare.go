package report

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

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
	DraftQMass           *float64           `json:"draft_q_mass,omitempty"`
	DraftCostRatio       *float64           `json:"draft_cost_ratio,omitempty"`
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

	config map[string]any       // flattened
	name   string               // the row's name in the table
	models map[string]modelNote // per role, from the results' environment
}

// modelNote is what a run says of one of its models beside its setting: the
// path as the job wrote it, and the layers and parameters the run found.
type modelNote struct {
	written    string
	layers     int
	parameters int64
}

// Comparison is the runs in order, the settings that differ between them,
// and the runs grouped by those settings.
type Comparison struct {
	Differs []string   `json:"differs"` // dotted config paths, sorted
	Runs    []Compared `json:"runs"`
	// Groups are the runs whose settings are all equal (a value of a sweep
	// run several times), in the order of the runs: one row of the table.
	Groups []Group `json:"groups"`
}

// Group is the runs of a comparison whose differing settings are all equal,
// with each figure's median and range over them. Counts are summed.
type Group struct {
	Name     string         `json:"name"` // the row's name: the runs' common folder
	N        int            `json:"n"`
	Dirs     []string       `json:"dirs"`
	Settings map[string]any `json:"settings"`

	Completed            map[string]int  `json:"completed"` // per mode, summed
	AcceptanceRate       *Stat           `json:"acceptance_rate"`
	MeanAcceptanceLength *Stat           `json:"mean_acceptance_length"`
	DraftQMass           *Stat           `json:"draft_q_mass,omitempty"`
	DraftCostRatio       *Stat           `json:"draft_cost_ratio,omitempty"`
	MedianTPOTMS         map[string]Stat `json:"median_tpot_ms"`
	MedianTTFTMS         map[string]Stat `json:"median_ttft_ms"`
	OutputThroughput     map[string]Stat `json:"output_throughput"`
	SpeedupTPOT          *Stat           `json:"speedup_tpot"`
	SpeedupE2EL          *Stat           `json:"speedup_e2el"`
	SpeedupThroughput    *Stat           `json:"speedup_output_throughput"`
	LosslessChecked      int             `json:"lossless_checked"`    // summed
	LosslessMismatched   int             `json:"lossless_mismatched"` // summed
	LosslessSkipped      string          `json:"lossless_skipped,omitempty"`
	JoulesPerToken       map[string]Stat `json:"joules_per_output_token,omitempty"`

	models map[string]modelNote // of its first run
}

// Stat is one figure over a group's runs (those that measured it).
type Stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// ignoredSettings are config paths that differ between runs without being a
// setting of the measurement (the job file's text and where it came from,
// and what validation warned of it).
var ignoredSettings = []string{"source", "output_dir", "warnings"}

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
				x, y := sweepOrder(k, a.config[k]), sweepOrder(k, b.config[k])
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
	c.Groups = groupRuns(c.Runs, c.Differs)
	return c, nil
}

// sweepOrder is where a numeric setting's value sorts in a sweep's table:
// its value, except draft_top_k's -1 (the drafter's whole q), which is more
// than any count of ids.
func sweepOrder(k string, v any) float64 {
	x, _ := number(v)
	if k == "generation.draft_top_k" && x == -1 {
		return math.Inf(1)
	}
	return x
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
	var out []string
	if err := findResults(p, 1, &out); err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("compare: %s holds no %s, nor do its subfolders (give a run's output folder)", p, FileResults)
	}
	return out, nil
}

// maxRunDepth is how deep below a given folder runs are looked for: a
// folder of sweeps, each a folder of values, each a folder of repeats.
const maxRunDepth = 4

// findResults appends the results files of dir's subfolders, descending
// into those that hold none (not into a run's folder, nor earlier-<time>).
func findResults(dir string, depth int, out *[]string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), "earlier-") {
			continue
		}
		sub := filepath.Join(dir, e.Name())
		f := filepath.Join(sub, FileResults)
		if _, err := os.Stat(f); err == nil {
			*out = append(*out, f)
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if depth < maxRunDepth {
			if err := findResults(sub, depth+1, out); err != nil {
				return err
			}
		}
	}
	return nil
}

func readCompared(path string) (Compared, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Compared{}, fmt.Errorf("compare: %w", err)
	}
	var r Results
	if err := json.Unmarshal(data, &r); err != nil || r.Job.Name == "" && r.Job.ID == "" {
		why := "it holds no job"
		if err != nil {
			why = err.Error()
		}
		return Compared{}, fmt.Errorf("compare: %s is not a draftbench %s (%s); give runs' output folders, or a folder holding them", path, FileResults, why)
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
		c.AcceptanceRate, c.MeanAcceptanceLength, c.DraftQMass, c.DraftCostRatio = s.AcceptanceRate, s.MeanAcceptanceLength, s.DraftQMass, s.DraftCostRatio
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
	var env struct {
		Target  *environmentModel `json:"target"`
		Drafter *environmentModel `json:"drafter"`
	}
	if raw, ok := r.Environment.(json.RawMessage); ok && len(raw) > 0 {
		var v struct {
			Version string `json:"version"`
			Engine  string `json:"engine"` // "in-process" for controller run --in-process
		}
		if json.Unmarshal(raw, &v) == nil && v.Version != "" {
			c.config[settingVersion] = v.Version
		}
		// An in-process run has no stages or messaging: its figures are
		// not those of a cluster run of the same job.
		c.config[settingEngine] = "stages over NATS"
		if v.Engine != "" {
			c.config[settingEngine] = v.Engine
		}
		if json.Unmarshal(raw, &env) != nil {
			env.Target, env.Drafter = nil, nil // a shape this build does not know: no notes
		}
	}
	// A model is a setting by the folder it names, not by how the path was
	// written: ./m, m/ and /abs/m (from where the run ran) are one setting.
	c.models = map[string]modelNote{}
	for _, m := range []struct {
		role string
		env  *environmentModel
	}{{"target", env.Target}, {"drafter", env.Drafter}} {
		key := "models." + m.role + ".path"
		written, ok := c.config[key].(string)
		if !ok || written == "" {
			continue
		}
		note := modelNote{written: written}
		recorded := ""
		if m.env != nil {
			recorded, note.layers, note.parameters = m.env.Path, m.env.Layers, m.env.Parameters
		}
		c.config[key] = modelPath(written, recorded)
		c.models[m.role] = note
	}
	// The dataset's folder likewise.
	if dir, ok := c.config["dataset.dir"].(string); ok && dir != "" {
		c.config["dataset.dir"] = modelPath(dir, "")
	}
	return c, nil
}

// environmentModel is the part of the results' environment.target and
// .drafter (the model's description) a comparison shows.
type environmentModel struct {
	Path       string `json:"path"`
	Layers     int    `json:"layers"`
	Parameters int64  `json:"parameters"`
}

// modelPath is the folder a model path names, as comparable as the results
// allow. The results hold the path as the job wrote it; where the run
// recorded an absolute path in its environment, that one. A relative path is
// relative to the folder the run ran in, which the results do not record:
// it is taken relative to the folder compare runs in (where sweep.sh runs
// it: where it ran the runs) when it names a folder there, and otherwise
// only cleaned. Symbolic links are not resolved: a link moved between two
// runs (latest -> another model) names two models, and resolving it now
// would make them one.
func modelPath(written, recorded string) string {
	p := written
	if filepath.IsAbs(recorded) {
		p = recorded
	}
	p = filepath.Clean(p)
	if !filepath.IsAbs(p) {
		abs, err := filepath.Abs(p)
		if err != nil {
			return p
		}
		if st, err := os.Stat(abs); err != nil || !st.IsDir() {
			return p
		}
		p = abs
	}
	return p
}

// Pseudo-settings read from the results' gpu and environment sections.
const (
	settingGPUs    = "gpus"
	settingVersion = "draftbench_version"
	settingEngine  = "engine"
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

// groupRuns puts the runs whose differing settings are all equal into one
// group each, in the order of their first run.
func groupRuns(runs []Compared, differs []string) []Group {
	index := map[string]int{}
	var members [][]int
	for i, r := range runs {
		parts := make([]string, len(differs))
		for j, k := range differs {
			parts[j] = canonical(r.Settings[k])
		}
		key := strings.Join(parts, "\x00")
		g, ok := index[key]
		if !ok {
			g = len(members)
			index[key] = g
			members = append(members, nil)
		}
		members[g] = append(members[g], i)
	}
	var allDirs []string
	for _, r := range runs {
		allDirs = append(allDirs, r.Dir)
	}
	all := commonParent(allDirs)
	groups := make([]Group, len(members))
	for g, m := range members {
		groups[g] = makeGroup(runs, m, all, len(members))
	}
	return groups
}

func makeGroup(runs []Compared, members []int, all string, groups int) Group {
	first := runs[members[0]]
	g := Group{N: len(members), Settings: first.Settings, models: first.models, Completed: map[string]int{}}
	var names []string
	var accept, length, qmass, cost, spTPOT, spE2EL, spTput []*float64
	tpot, ttft, tput, jpt := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	for _, i := range members {
		r := runs[i]
		g.Dirs = append(g.Dirs, r.Dir)
		names = append(names, runName(r))
		for m, n := range r.Completed {
			g.Completed[m] += n
		}
		accept, length, qmass = append(accept, r.AcceptanceRate), append(length, r.MeanAcceptanceLength), append(qmass, r.DraftQMass)
		cost = append(cost, r.DraftCostRatio)
		spTPOT, spE2EL, spTput = append(spTPOT, r.SpeedupTPOT), append(spE2EL, r.SpeedupE2EL), append(spTput, r.SpeedupThroughput)
		for _, x := range []struct {
			from map[string]float64
			to   map[string][]float64
		}{{r.MedianTPOTMS, tpot}, {r.MedianTTFTMS, ttft}, {r.OutputThroughput, tput}, {r.JoulesPerToken, jpt}} {
			for m, v := range x.from {
				x.to[m] = append(x.to[m], v)
			}
		}
		g.LosslessChecked += r.LosslessChecked
		g.LosslessMismatched += r.LosslessMismatched
		if g.LosslessSkipped == "" {
			g.LosslessSkipped = r.LosslessSkipped
		}
	}
	if g.LosslessChecked > 0 {
		g.LosslessSkipped = "" // some runs checked: their sum is the figure
	}
	g.AcceptanceRate, g.MeanAcceptanceLength, g.DraftQMass = statOf(accept), statOf(length), statOf(qmass)
	g.DraftCostRatio = statOf(cost)
	g.SpeedupTPOT, g.SpeedupE2EL, g.SpeedupThroughput = statOf(spTPOT), statOf(spE2EL), statOf(spTput)
	g.MedianTPOTMS, g.MedianTTFTMS, g.OutputThroughput = statsOf(tpot), statsOf(ttft), statsOf(tput)
	if len(jpt) > 0 {
		g.JoulesPerToken = statsOf(jpt)
	}
	g.Name = groupName(names, g.Dirs, all, groups)
	return g
}

// groupName names a group's row: its run's name, else the folder its runs
// share (gamma-4 for gamma-4/run-1..3), else their names.
func groupName(names, dirs []string, all string, groups int) string {
	if len(names) == 1 {
		return names[0]
	}
	sep := string(filepath.Separator)
	if gc := commonParent(dirs); gc != "" {
		switch {
		case all == "":
			return gc
		case strings.HasPrefix(gc, all+sep):
			return strings.TrimPrefix(gc, all+sep)
		case groups == 1:
			return filepath.Base(gc)
		}
	}
	if joined := strings.Join(names, ", "); len(joined) <= 40 {
		return joined
	}
	return fmt.Sprintf("%s, … (%d runs)", names[0], len(names))
}

// commonParent is the deepest folder above every one of dirs ("" when it is
// the root or the working folder).
func commonParent(dirs []string) string {
	if len(dirs) == 0 {
		return ""
	}
	common := filepath.Dir(dirs[0])
	for _, d := range dirs[1:] {
		for common != "." && common != "/" && !strings.HasPrefix(d, common+string(filepath.Separator)) {
			common = filepath.Dir(common)
		}
	}
	if common == "." || common == "/" {
		return ""
	}
	return common
}

func statOf(vs []*float64) *Stat {
	var xs []float64
	for _, v := range vs {
		if v != nil {
			xs = append(xs, *v)
		}
	}
	if len(xs) == 0 {
		return nil
	}
	slices.Sort(xs)
	n := len(xs)
	med := xs[n/2]
	if n%2 == 0 {
		med = (xs[n/2-1] + xs[n/2]) / 2
	}
	return &Stat{Median: med, Min: xs[0], Max: xs[n-1], N: n}
}

func statsOf(m map[string][]float64) map[string]Stat {
	out := make(map[string]Stat, len(m))
	for k, vs := range m {
		ps := make([]*float64, len(vs))
		for i := range vs {
			ps[i] = &vs[i]
		}
		out[k] = *statOf(ps)
	}
	return out
}

// maxSettingColumns is how many differing settings get a column; the rest
// are listed under the table.
const maxSettingColumns = 4

// settingOrder ranks the settings for the columns: what a sweep of
// speculative decoding varies first, the dataset last (and any setting
// whose values are long after all the others).
var settingOrder = []string{
	"generation.gamma", "generation.temperature", "generation.max_new_tokens", "generation.top_p",
	"generation.top_k", "generation.draft_top_k", "generation.",
	"models.drafter.path", "models.target.path", "models.drafter.dtype", "models.target.dtype",
	"placement.", "models.", settingGPUs,
	"load.", "batch.", "modes.", settingEngine, settingVersion,
}

func settingRank(k string) int {
	for i, p := range settingOrder {
		if k == p || strings.HasSuffix(p, ".") && strings.HasPrefix(k, p) {
			return i
		}
	}
	if strings.HasPrefix(k, "dataset.") {
		return len(settingOrder) + 1
	}
	return len(settingOrder)
}

// longSetting is how wide a value may be before its column goes last.
const longSetting = 40

// rankColumns orders the differing settings for the table.
func rankColumns(differs []string, cells map[string][]string) []string {
	long := map[string]bool{}
	for _, k := range differs {
		for _, s := range cells[k] {
			if utf8.RuneCountInString(s) > longSetting {
				long[k] = true
			}
		}
	}
	out := slices.Clone(differs)
	slices.SortStableFunc(out, func(a, b string) int {
		if long[a] != long[b] {
			if long[a] {
				return 1
			}
			return -1
		}
		if d := settingRank(a) - settingRank(b); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	return out
}

// modelSetting splits models.<role>.<attribute>.
func modelSetting(k string) (role, attr string, ok bool) {
	parts := strings.Split(k, ".")
	if len(parts) != 3 || parts[0] != "models" {
		return "", "", false
	}
	return parts[1], parts[2], true
}

// columnName is a setting's header: target and drafter for the model
// folders, "drafter dtype" for another attribute of a model, else the
// shortest unambiguous end of its path.
func columnName(k string, all []string) string {
	if role, attr, ok := modelSetting(k); ok {
		if attr == "path" {
			return role
		}
		return role + " " + attr
	}
	return shortName(k, all)
}

// columnCells is each group's value of setting k as the table shows it:
// a model folder by its name (more of its path where two names meet) with
// its layers and parameters; a list by its length; a long text cut short.
// Different values that would read the same get a short hash.
func columnCells(k string, groups []Group) []string {
	cells := make([]string, len(groups))
	if role, attr, ok := modelSetting(k); ok && attr == "path" {
		// Each folder by the fewest trailing parts of its written path that
		// no other folder's path ends in.
		parts := make([][]string, len(groups))
		for i, g := range groups {
			w := g.models[role].written
			if w == "" {
				w, _ = g.Settings[k].(string)
			}
			parts[i] = strings.Split(strings.Trim(filepath.ToSlash(filepath.Clean(w)), "/"), "/")
		}
		suffix := func(i, n int) string { return strings.Join(parts[i][max(0, len(parts[i])-n):], "/") }
		for i, g := range groups {
			v := canonical(g.Settings[k])
			for n := 1; ; n++ {
				cells[i] = suffix(i, n)
				clash := false
				for j, o := range groups {
					if canonical(o.Settings[k]) != v && suffix(j, n) == cells[i] {
						clash = true
					}
				}
				if !clash || n >= len(parts[i]) {
					break
				}
			}
		}
		disambiguate(k, groups, cells)
		for i, g := range groups {
			if note := g.models[role]; note.layers > 0 {
				layers := "layers"
				if note.layers == 1 {
					layers = "layer"
				}
				cells[i] += fmt.Sprintf(" (%d %s, %s)", note.layers, layers, count(note.parameters))
			}
		}
		return cells
	}
	for i, g := range groups {
		cells[i] = display(g.Settings[k])
	}
	disambiguate(k, groups, cells)
	return cells
}

// disambiguate adds a short hash of the value to cells that read the same
// as another value's.
func disambiguate(k string, groups []Group, cells []string) {
	values := map[string]map[string]bool{}
	for i, g := range groups {
		if values[cells[i]] == nil {
			values[cells[i]] = map[string]bool{}
		}
		values[cells[i]][canonical(g.Settings[k])] = true
	}
	for i, g := range groups {
		if len(values[cells[i]]) > 1 {
			cells[i] += " #" + shortHash(canonical(g.Settings[k]))
		}
	}
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:3])
}

// count is a parameter count as 7.4M or 8.2B.
func count(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fK", float64(n)/1e3)
	}
	return strconv.FormatInt(n, 10)
}

// display is a setting's value in a cell.
func display(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if x == "" {
			return `""`
		}
		if utf8.RuneCountInString(x) > longSetting {
			r := []rune(x)
			return string(r[:longSetting-1]) + "…"
		}
		return x
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case []any:
		if len(x) == 1 {
			return "[1 item]"
		}
		return fmt.Sprintf("[%d items]", len(x))
	default:
		return canonical(v)
	}
}

// PrintComparison writes the comparison as an aligned table, a row per
// group of runs with equal settings.
func PrintComparison(w io.Writer, c *Comparison) error {
	groups := c.Groups
	if groups == nil {
		groups = groupRuns(c.Runs, c.Differs)
	}
	cells := map[string][]string{}
	for _, k := range c.Differs {
		cells[k] = columnCells(k, groups)
	}
	cols := rankColumns(c.Differs, cells)
	var rest []string
	if len(cols) > maxSettingColumns {
		cols, rest = cols[:maxSettingColumns], cols[maxSettingColumns:]
	}
	repeated := slices.ContainsFunc(groups, func(g Group) bool { return g.N > 1 })
	head := []string{"run"}
	for _, k := range cols {
		head = append(head, columnName(k, c.Differs))
	}
	if repeated {
		head = append(head, "n")
	}
	// Sampled runs: how much of the drafter's mass its cut q kept, which
	// the acceptance beside it depends on (generation.draft_top_k).
	qmass := slices.ContainsFunc(groups, func(g Group) bool { return g.DraftQMass != nil })
	cost := slices.ContainsFunc(groups, func(g Group) bool { return g.DraftCostRatio != nil })
	head = append(head, "ok spec/AR", "accept %")
	if qmass {
		head = append(head, "q mass %")
	}
	head = append(head, "accept len")
	if cost {
		head = append(head, "draft c")
	}
	head = append(head, "TPOT p50 ms spec/AR", "TTFT p50 ms spec/AR",
		"speedup TPOT", "E2EL", "tok/s", "lossless")
	jpt := slices.ContainsFunc(groups, func(g Group) bool { return len(g.JoulesPerToken) > 0 })
	if jpt {
		head = append(head, "J/token spec/AR")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for i, g := range groups {
		row := []string{g.Name}
		for _, k := range cols {
			row = append(row, cells[k][i])
		}
		if repeated {
			row = append(row, strconv.Itoa(g.N))
		}
		row = append(row,
			countPair(g.Completed),
			stat(scaleStat(g.AcceptanceRate, 100), 1, ""))
		if qmass {
			row = append(row, stat(scaleStat(g.DraftQMass, 100), 1, ""))
		}
		row = append(row, stat(g.MeanAcceptanceLength, 2, ""))
		if cost {
			row = append(row, stat(g.DraftCostRatio, 3, ""))
		}
		row = append(row,
			statPair(g.MedianTPOTMS, 2),
			statPair(g.MedianTTFTMS, 1),
			stat(g.SpeedupTPOT, 2, "×"),
			stat(g.SpeedupE2EL, 2, "×"),
			stat(g.SpeedupThroughput, 2, "×"),
			lossless(g.LosslessChecked, g.LosslessMismatched, g.LosslessSkipped))
		if jpt {
			row = append(row, statPair(g.JoulesPerToken, 3))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	switch {
	case len(c.Differs) == 0 && len(c.Runs) > 1:
		fmt.Fprintf(w, "The %d runs' settings are the same: the row is their median, (min–max) the machine's run-to-run spread.\n", len(c.Runs))
	case repeated:
		fmt.Fprintln(w, "A row of n runs shows each figure's median and (min–max) over them; ok and lossless are summed.")
	}
	for _, k := range rest {
		fmt.Fprintf(w, "%s differs too: %s\n", k, strings.Join(cells[k], ", "))
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
// as the runs' own folder names, a lone run's by its last part (the full
// folders are kept in the JSON).
func trimDirs(runs []Compared) {
	if len(runs) == 1 && runs[0].Dir != "" && runs[0].Dir != "." {
		runs[0].name = filepath.Base(runs[0].Dir)
		return
	}
	dirs := make([]string, len(runs))
	for i, r := range runs {
		dirs[i] = r.Dir
	}
	common := commonParent(dirs)
	if common == "" {
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

// stat is a figure's median, and its range where the runs differ in the
// digits shown: 1.25× (1.17–1.31).
func stat(s *Stat, digits int, unit string) string {
	if s == nil {
		return "-"
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', digits, 64) }
	out := f(s.Median) + unit
	if lo, hi := f(s.Min), f(s.Max); lo != hi {
		out += " (" + lo + "–" + hi + ")"
	}
	return out
}

func scaleStat(s *Stat, by float64) *Stat {
	if s == nil {
		return nil
	}
	return &Stat{Median: s.Median * by, Min: s.Min * by, Max: s.Max * by, N: s.N}
}

func statPair(m map[string]Stat, digits int) string {
	get := func(k string) *Stat {
		if s, ok := m[k]; ok {
			return &s
		}
		return nil
	}
	return stat(get("speculative"), digits, "") + " / " + stat(get("target"), digits, "")
}

func countPair(m map[string]int) string {
	get := func(k string) string {
		if n, ok := m[k]; ok {
			return strconv.Itoa(n)
		}
		return "-"
	}
	return get("speculative") + " / " + get("target")
}

func lossless(checked, mismatched int, skipped string) string {
	if skipped != "" || checked == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%d", checked-mismatched, checked)
}
