// Package golden checks a backend against the goldens that Hugging Face
// transformers wrote (testdata/golden, `make golden`): tiny models of each
// architecture, the logits of every prompt position and the greedy tokens
// transformers generated. `worker selftest --goldens DIR` runs it on any
// backend (the CUDA one on a GPU machine); pkg/model's own tests hold the CPU
// backend to tighter limits.
//
// The limit on that error is a fixed one (f32: 1e-3) or, for bf16, the larger
// of 1e-2 and twice what transformers itself reaches in bf16 on the same
// golden (bf16_yardstick.json, written by scripts/golden/bf16_yardstick.py):
// tiny random models have small, crowded logits, and bf16 rounding alone
// moves them by 2–5 %, in transformers as in any engine.
//
// Logits are compared by relative error ‖got − want‖₂ / ‖want‖₂ per row (the
// worst row is reported), teacher-forced along the golden tokens so one early
// difference does not move every later row. Greedy decoding runs free and its
// tokens are compared with transformers' as a second, separate verdict: with
// bf16 weights a near-tie between two logits may flip a token while every
// logit is well within the tolerance, and the table says which happened.
package golden

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/kvcache"
	"github.com/draftbench/draftbench/pkg/model"
	"github.com/draftbench/draftbench/pkg/sampling"
)

// File is one golden: <dir>/<name>.json beside the model in <dir>/models/<name>.
type File struct {
	Model     string `json:"model"`
	DiskDType string `json:"disk_dtype"`
	Prompts   []struct {
		Tokens        []int       `json:"tokens"`
		PrefillLogits [][]float32 `json:"prefill_logits"`
		Greedy        []int       `json:"greedy"`
		StepLogits    [][]float32 `json:"step_logits"`
	} `json:"prompts"`
}

// Result is one model's verdict.
type Result struct {
	Name      string
	DiskDType string
	Rows      int     // logit rows compared
	MaxRel    float64 // worst row's ‖got − want‖ / ‖want‖
	Tol       float64 // the limit on MaxRel
	Yardstick float64 // transformers' own bf16 MaxRel on this golden (0: unknown)
	Tokens    int     // greedy tokens generated
	Mismatch  int     // greedy tokens that differ from transformers' (free-running, after the first difference all count)
	// TieGap is, at the first greedy mismatch, transformers' logit margin
	// between its token and ours (small: a near-tie that rounding flipped).
	TieGap float64
	Err    error
}

// LogitsOK says whether every logit row is within the tolerance.
func (r Result) LogitsOK() bool { return r.Err == nil && r.MaxRel <= r.Tol && !math.IsNaN(r.MaxRel) }

// Names lists the goldens in dir (the *.json files with a model folder).
func Names(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		if st, err := os.Stat(filepath.Join(dir, "models", name)); err == nil && st.IsDir() {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no goldens (<name>.json with models/<name>/); make golden writes them", dir)
	}
	slices.Sort(names)
	return names, nil
}

// Read parses one golden file.
func Read(dir, name string) (*File, error) {
	path := filepath.Join(dir, name+".json")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var g File
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(g.Prompts) == 0 {
		return nil, fmt.Errorf("%s: no prompts", path)
	}
	for i, p := range g.Prompts {
		if len(p.Tokens) == 0 || len(p.PrefillLogits) != len(p.Tokens) || len(p.StepLogits) != len(p.Greedy) {
			return nil, fmt.Errorf("%s: prompt %d: %d tokens, %d prefill rows, %d greedy tokens, %d step rows",
				path, i, len(p.Tokens), len(p.PrefillLogits), len(p.Greedy), len(p.StepLogits))
		}
	}
	return &g, nil
}

// RelErr is ‖got − want‖₂ / ‖want‖₂ in float64 (NaN anywhere gives NaN; a
// length mismatch gives +Inf).
func RelErr(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// Limit is the relative-error limit on logits: Min, or Times the golden's
// transformers bf16 yardstick when that is larger.
type Limit struct {
	Min   float64
	Times float64
}

// F32 and BF16 are the limits for the two storage modes.
var (
	F32  = Limit{Min: 1e-3}
	BF16 = Limit{Min: 1e-2, Times: 2}
)

// Yardsticks reads dir/bf16_yardstick.json (nil when absent).
func Yardsticks(dir string) (map[string]float64, error) {
	data, err := os.ReadFile(filepath.Join(dir, "bf16_yardstick.json"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "bf16_yardstick.json"), err)
	}
	out := map[string]float64{}
	for k, v := range raw {
		if f, ok := v.(float64); ok {
			out[k] = f
		}
	}
	return out, nil
}

// Check loads each golden model in dir onto be and compares it.
func Check(dir string, be backend.Backend, lim Limit) ([]Result, error) {
	return CheckEach(dir, func() (backend.Backend, func(), error) { return be, func() {}, nil }, lim)
}

// CheckEach is Check with a backend of its own for each golden, from open
// (closed by the func open returns once the golden is checked): a backend
// that places weights as they load then places each model afresh.
func CheckEach(dir string, open func() (backend.Backend, func(), error), lim Limit) ([]Result, error) {
	names, err := Names(dir)
	if err != nil {
		return nil, err
	}
	ys, err := Yardsticks(dir)
	if err != nil {
		return nil, err
	}
	out := make([]Result, 0, len(names))
	for _, name := range names {
		tol := lim.Min
		if y := ys[name]; lim.Times*y > tol {
			tol = lim.Times * y
		}
		be, done, err := open()
		if err != nil {
			return out, err
		}
		r := checkOne(dir, name, be, tol)
		done()
		r.Yardstick = ys[name]
		out = append(out, r)
	}
	return out, nil
}

// open reads golden name of dir and loads its model onto be (the caller
// frees it); the golden comes back even when the model does not load.
func open(dir, name string, be backend.Backend) (*File, *model.Model, error) {
	g, err := Read(dir, name)
	if err != nil {
		return nil, nil, err
	}
	m, err := model.Load(filepath.Join(dir, "models", name), be, model.Options{})
	if err != nil {
		return g, nil, err
	}
	return g, m, nil
}

func checkOne(dir, name string, be backend.Backend, tol float64) (r Result) {
	r = Result{Name: name, Tol: tol}
	g, m, err := open(dir, name, be)
	if g != nil {
		r.DiskDType = g.DiskDType
	}
	if err != nil {
		r.Err = err
		return r
	}
	defer m.Free()
	worse := func(got, want []float32) {
		r.Rows++
		e := RelErr(got, want)
		if math.IsNaN(e) || e > r.MaxRel {
			r.MaxRel = e
		}
	}
	r.TieGap = math.NaN()
	for pi, p := range g.Prompts {
		// Teacher-forced: prompt (every position), then the golden tokens one step at a time.
		cache := m.NewCache(kvcache.Options{})
		res, err := m.Forward([]model.Seq{{Cache: cache, Tokens: p.Tokens, AllLogits: true}}, nil)
		if err != nil {
			r.Err = fmt.Errorf("prompt %d prefill: %w", pi, err)
			return r
		}
		for i, row := range res.Logits[0] {
			worse(row, p.PrefillLogits[i])
		}
		in := []int{p.Greedy[0]}
		for s := 1; s < len(p.Greedy); s++ {
			res, err := m.Forward([]model.Seq{{Cache: cache, Tokens: in}}, nil)
			if err != nil {
				r.Err = fmt.Errorf("prompt %d step %d: %w", pi, s, err)
				return r
			}
			worse(res.Logits[0][0], p.StepLogits[s])
			in = []int{p.Greedy[s]}
		}
		cache.Free()
		// Free-running greedy decode.
		cache = m.NewCache(kvcache.Options{})
		in = p.Tokens
		diverged := false
		for s := range p.Greedy {
			res, err := m.Forward([]model.Seq{{Cache: cache, Tokens: in}}, nil)
			if err != nil {
				r.Err = fmt.Errorf("prompt %d greedy step %d: %w", pi, s, err)
				return r
			}
			tok := sampling.Argmax(res.Logits[0][0], 0)
			r.Tokens++
			if tok != p.Greedy[s] || diverged {
				if !diverged && math.IsNaN(r.TieGap) {
					want := p.StepLogits[s]
					r.TieGap = float64(want[p.Greedy[s]]) - float64(want[tok])
				}
				diverged = true
				r.Mismatch++
			}
			in = []int{tok}
		}
		cache.Free()
	}
	return r
}

// Failed counts results whose logits are off or that could not run.
func Failed(rs []Result) int {
	n := 0
	for _, r := range rs {
		if !r.LogitsOK() {
			n++
		}
	}
	return n
}

// WriteTable prints one line per model and a summary line starting
// "goldens <label>:".
func WriteTable(w io.Writer, label string, rs []Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%-12s %-9s %5s %11s %12s %7s  %-14s %s\n", "golden", "disk", "rows", "max rel err", "HF bf16 err", "limit", "greedy tokens", "verdict")
	tokOK := 0
	for _, r := range rs {
		if r.Err != nil {
			fmt.Fprintf(&b, "%-12s %-9s %5s %11s %12s %7.1e  %-14s FAIL: %v\n", r.Name, r.DiskDType, "-", "-", "-", r.Tol, "-", r.Err)
			continue
		}
		greedy := fmt.Sprintf("%d/%d equal", r.Tokens-r.Mismatch, r.Tokens)
		verdict := "ok"
		if !r.LogitsOK() {
			verdict = "FAIL: logits"
		}
		if r.Mismatch > 0 {
			verdict += fmt.Sprintf(" (greedy diverged at a logit margin of %.2g in transformers)", r.TieGap)
		} else {
			tokOK++
		}
		y := "-"
		if r.Yardstick > 0 {
			y = fmt.Sprintf("%.2e", r.Yardstick)
		}
		fmt.Fprintf(&b, "%-12s %-9s %5d %11.2e %12s %7.1e  %-14s %s\n", r.Name, r.DiskDType, r.Rows, r.MaxRel, y, r.Tol, greedy, verdict)
	}
	fmt.Fprintf(&b, "goldens %s: %d of %d within their limits, greedy tokens equal on %d of %d\n",
		label, len(rs)-Failed(rs), len(rs), tokOK, len(rs))
	_, err := io.WriteString(w, b.String())
	return err
}

// Invariance is one model's batch-invariance measurement: the logits of the
// same positions computed one token per step (decode) and in steps of
// several tokens (a verify step), teacher-forced along the golden tokens.
type Invariance struct {
	Name      string
	Rows      int     // positions compared
	MaxAbs    float64 // largest |Δlogit| between the two ways
	Identical bool    // every logit bit for bit the same
	Err       error
}

// CheckInvariance measures, for each golden in dir, whether be gives a
// position the same logits in a decode step and inside a step of chunk
// positions. A batch-invariant backend gives identical logits, which makes
// greedy speculative decoding reproduce greedy decoding exactly.
func CheckInvariance(dir string, be backend.Backend, chunk int) ([]Invariance, error) {
	names, err := Names(dir)
	if err != nil {
		return nil, err
	}
	var out []Invariance
	for _, name := range names {
		out = append(out, invarianceOne(dir, name, be, chunk))
	}
	return out, nil
}

func invarianceOne(dir, name string, be backend.Backend, chunk int) (r Invariance) {
	r = Invariance{Name: name, Identical: true}
	g, m, err := open(dir, name, be)
	if err != nil {
		r.Err = err
		return r
	}
	defer m.Free()
	for pi, p := range g.Prompts {
		toks := append(slices.Clone(p.Tokens), p.Greedy...)
		run := func(step int) ([][]float32, error) {
			cache := m.NewCache(kvcache.Options{})
			defer cache.Free()
			if _, err := m.Forward([]model.Seq{{Cache: cache, Tokens: p.Tokens}}, nil); err != nil {
				return nil, err
			}
			var rows [][]float32
			for at := len(p.Tokens); at < len(toks); at += step {
				n := min(step, len(toks)-at)
				res, err := m.Forward([]model.Seq{{Cache: cache, Tokens: toks[at : at+n], AllLogits: true}}, nil)
				if err != nil {
					return nil, err
				}
				rows = append(rows, res.Logits[0]...)
			}
			return rows, nil
		}
		one, err := run(1)
		if err != nil {
			r.Err = fmt.Errorf("prompt %d, one token per step: %w", pi, err)
			return r
		}
		many, err := run(chunk)
		if err != nil {
			r.Err = fmt.Errorf("prompt %d, %d tokens per step: %w", pi, chunk, err)
			return r
		}
		for i := range one {
			r.Rows++
			for j := range one[i] {
				if one[i][j] != many[i][j] {
					r.Identical = false
					r.MaxAbs = max(r.MaxAbs, math.Abs(float64(one[i][j])-float64(many[i][j])))
				}
			}
		}
	}
	return r
}

// WriteInvariance prints one line per model and a summary line starting
// "invariance <label>:".
func WriteInvariance(w io.Writer, label string, chunk int, rs []Invariance) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%-12s %5s  %-36s\n", "golden", "rows", fmt.Sprintf("decode vs steps of %d tokens", chunk))
	same := 0
	for _, r := range rs {
		switch {
		case r.Err != nil:
			fmt.Fprintf(&b, "%-12s %5s  error: %v\n", r.Name, "-", r.Err)
		case r.Identical:
			same++
			fmt.Fprintf(&b, "%-12s %5d  bit-identical\n", r.Name, r.Rows)
		default:
			fmt.Fprintf(&b, "%-12s %5d  max |Δlogit| %.3g\n", r.Name, r.Rows, r.MaxAbs)
		}
	}
	fmt.Fprintf(&b, "invariance %s: %d of %d goldens bit-identical between decode and %d-token steps "+
		"(a measurement, not a check: only the CPU backend with bf16 weights and --batch-invariant GPU stages are built to be)\n",
		label, same, len(rs), chunk)
	_, err := io.WriteString(w, b.String())
	return err
}
