// Package selftest checks a backend's operations against float64 references
// on fresh random inputs: `worker selftest` runs it on the CUDA backend on a
// GPU machine and on the CPU backend anywhere, and go test runs it on the
// CPU backend.
//
// Every check draws its inputs, stores them through the backend (rounding
// them to its dtype), reads them back and computes the reference in float64
// from what was stored, so the error measured is the operation's own. Output
// tensors are poisoned with NaN first: an element the operation did not
// write shows up as unwritten. The error is ‖out − ref‖₂ / ‖ref‖₂; a check
// passes under 1e-4 in f32 (float32 arithmetic lands far under 1e-3) and
// under 1e-2 when bf16 is involved. Token ids must match exactly.
package selftest

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"text/tabwriter"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/safetensors"
)

// Tolerances on the relative error.
const (
	TolF32  = 1e-4
	TolBF16 = 1e-2
)

// Config controls a run.
type Config struct {
	// Seed draws every input; a run with another seed checks other inputs.
	Seed uint64
	// Reference, when set, runs each check on a second backend too (the CPU
	// backend beside the CUDA one) and reports its error beside.
	Reference backend.Backend
	// WeightDType is the dtype weights are handed to Load in, as a
	// checkpoint would hold them (bf16 by default; f32 and f16 also work).
	WeightDType backend.DType
	// Only, when set, keeps the checks whose op it names.
	Only map[string]bool
}

// Result is one check.
type Result struct {
	Op, Case string
	DType    backend.DType // of the tested tensors (bf16 when any is bf16)
	Err      float64       // relative error, or the fraction of ids that differ
	RefErr   float64       // the same on Config.Reference; NaN when not run
	Tol      float64
	// Unwritten counts output elements the operation left poisoned.
	Unwritten int
	// Failure is set when the operation returned an error or broke a rule
	// other than precision (determinism of random weights, say).
	Failure error
	// Skipped says why the check did not run (the backend lacks the op).
	Skipped string
}

// Passed reports whether the check ran and met its tolerance.
func (r Result) Passed() bool {
	return r.Skipped == "" && r.Failure == nil && r.Unwritten == 0 && !math.IsNaN(r.Err) && r.Err <= r.Tol
}

// Failed counts the checks that ran and did not pass.
func Failed(rs []Result) int {
	n := 0
	for _, r := range rs {
		if r.Skipped == "" && !r.Passed() {
			n++
		}
	}
	return n
}

// Run runs every check on b.
func Run(b backend.Backend, cfg Config) []Result {
	var out []Result
	for _, c := range cases(cfg) {
		if cfg.Only != nil && !cfg.Only[c.op] {
			continue
		}
		out = append(out, runCase(b, cfg, c))
	}
	return out
}

// WriteTable prints the results, one line each, and a closing count.
func WriteTable(w io.Writer, backendName string, rs []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "op\tcase\tdtype\trel err\tcpu err\ttol\tresult\n")
	for _, r := range rs {
		ref := "-"
		if !math.IsNaN(r.RefErr) {
			ref = fmt.Sprintf("%.1e", r.RefErr)
		}
		res := "ok"
		switch {
		case r.Skipped != "":
			res = "n/a: " + r.Skipped
		case r.Failure != nil:
			res = "FAIL: " + r.Failure.Error()
		case r.Unwritten > 0:
			res = fmt.Sprintf("FAIL: %d elements unwritten", r.Unwritten)
		case !r.Passed():
			res = "FAIL: over tolerance"
		}
		errs, tol := "-", "-"
		if r.Skipped == "" {
			errs, tol = fmt.Sprintf("%.1e", r.Err), fmt.Sprintf("%.0e", r.Tol)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Op, r.Case, r.DType, errs, ref, tol, res)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	pass, skip := 0, 0
	for _, r := range rs {
		switch {
		case r.Skipped != "":
			skip++
		case r.Passed():
			pass++
		}
	}
	_, err := fmt.Fprintf(w, "selftest %s: %d passed, %d failed, %d skipped\n", backendName, pass, Failed(rs), skip)
	return err
}

// input is one operand of a check, drawn on the host.
type input struct {
	shape  []int
	weight bool // loaded with Load (else New + Write)
	vals   []float32
}

// kase is one check: its inputs, the operation and its reference.
type kase struct {
	op, name string
	inputs   []input
	// run performs the operation on s with the stored inputs and returns
	// the output values.
	run func(s *side, in []backend.Tensor) ([]float32, error)
	// ref computes the expected output from the inputs as stored.
	ref func(in [][]float32) []float64
	// exact compares ids (or values that must match bit for bit).
	exact bool
	// needs says why a backend cannot run the check ("" when it can).
	needs func(b backend.Backend) string
	// lateRef, when set, replaces ref for checks whose reference needs what
	// run produced on the device (the probabilities a sample is drawn from).
	lateRef func() []float64
	// custom replaces the comparison for checks with their own rules
	// (random weights): it returns the error, the tolerance and a failure.
	custom func(s *side) (float64, float64, error)
}

func runCase(b backend.Backend, cfg Config, c kase) Result {
	r := Result{Op: c.op, Case: c.name, RefErr: math.NaN(), DType: backend.F32}
	if c.needs != nil {
		if why := c.needs(b); why != "" {
			r.Skipped = why
			return r
		}
	}
	s := &side{b: b, wdt: cfg.WeightDType}
	defer s.close()
	if c.custom != nil {
		r.DType = backend.BF16
		r.Err, r.Tol, r.Failure = c.custom(s)
		return r
	}
	in, stored, err := s.upload(c.inputs)
	if err != nil {
		r.Failure = err
		return r
	}
	r.DType = s.dtype(in)
	r.Tol = TolF32
	if r.DType == backend.BF16 {
		r.Tol = TolBF16
	}
	if c.exact {
		r.Tol = 0
	}
	want := c.ref(stored)
	got, err := c.run(s, in)
	if err != nil {
		r.Failure = err
		return r
	}
	if c.lateRef != nil {
		want = c.lateRef()
	}
	r.Err, r.Unwritten, r.Failure = compare(got, want, c.exact)
	if cfg.Reference != nil && (c.needs == nil || c.needs(cfg.Reference) == "") {
		r.RefErr = runReference(cfg.Reference, c, stored, want)
	}
	return r
}

// runReference runs c on the reference backend with the inputs as the
// tested backend stored them; NaN when it cannot.
func runReference(b backend.Backend, c kase, stored [][]float32, want []float64) float64 {
	s := &side{b: b, wdt: backend.F32}
	defer s.close()
	ins := make([]input, len(c.inputs))
	for i, x := range c.inputs {
		ins[i] = input{shape: x.shape, weight: x.weight, vals: stored[i]}
	}
	in, _, err := s.upload(ins)
	if err != nil {
		return math.NaN()
	}
	got, err := c.run(s, in)
	if err != nil {
		return math.NaN()
	}
	if c.lateRef != nil {
		want = c.lateRef()
	}
	e, unwritten, ferr := compare(got, want, c.exact)
	if unwritten > 0 || ferr != nil {
		return math.NaN()
	}
	return e
}

// compare measures got against want: the relative L2 error (NaN anywhere
// makes it NaN), or for exact checks the fraction of differing elements.
// Poisoned (NaN) outputs where the reference is finite count as unwritten.
func compare(got []float32, want []float64, exact bool) (float64, int, error) {
	if len(got) != len(want) {
		return math.NaN(), 0, fmt.Errorf("%d outputs, want %d", len(got), len(want))
	}
	unwritten := 0
	for i, g := range got {
		if math.IsNaN(float64(g)) && !math.IsNaN(want[i]) {
			unwritten++
		}
	}
	if exact {
		diff := 0
		for i, g := range got {
			if float64(g) != want[i] && !(math.IsNaN(float64(g)) && math.IsNaN(want[i])) {
				diff++
			}
		}
		if len(got) == 0 {
			return 0, unwritten, nil
		}
		return float64(diff) / float64(len(got)), unwritten, nil
	}
	var num, den float64
	for i, g := range got {
		d := float64(g) - want[i]
		num += d * d
		den += want[i] * want[i]
	}
	if den == 0 {
		return math.Sqrt(num), unwritten, nil
	}
	return math.Sqrt(num / den), unwritten, nil
}

// side holds the tensors of one check on one backend.
type side struct {
	b     backend.Backend
	wdt   backend.DType
	frees []backend.Tensor
}

func (s *side) close() {
	for _, t := range s.frees {
		s.b.Free(t)
	}
}

func (s *side) keep(t backend.Tensor) backend.Tensor {
	s.frees = append(s.frees, t)
	return t
}

// upload stores the inputs and reads them back as stored.
func (s *side) upload(ins []input) ([]backend.Tensor, [][]float32, error) {
	ts := make([]backend.Tensor, len(ins))
	stored := make([][]float32, len(ins))
	for i, x := range ins {
		var t backend.Tensor
		var err error
		if x.weight {
			t, err = s.load(x.shape, x.vals, s.wdt)
		} else {
			t, err = s.act(x.shape, x.vals)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("storing input %d %v: %w", i, x.shape, err)
		}
		ts[i] = t
		if stored[i], err = s.read(t); err != nil {
			return nil, nil, fmt.Errorf("reading input %d back: %w", i, err)
		}
	}
	return ts, stored, nil
}

func (s *side) dtype(ts []backend.Tensor) backend.DType {
	for _, t := range ts {
		if t.DType() == backend.BF16 {
			return backend.BF16
		}
	}
	probe := s.b.New(1)
	defer s.b.Free(probe)
	return probe.DType()
}

// load hands vals to the backend as a checkpoint of dtype dt would.
func (s *side) load(shape []int, vals []float32, dt backend.DType) (backend.Tensor, error) {
	raw, err := safetensors.FromFloat32(fileDType(dt), vals)
	if err != nil {
		return nil, err
	}
	t, err := s.b.Load(shape, dt, raw)
	if err != nil {
		return nil, err
	}
	return s.keep(t), nil
}

// act makes an activation holding vals.
func (s *side) act(shape []int, vals []float32) (backend.Tensor, error) {
	t := s.keep(s.b.New(shape...))
	if err := s.b.Write(t, vals); err != nil {
		return nil, err
	}
	return t, nil
}

// out makes an activation full of NaN: whatever the operation does not
// write stays NaN.
func (s *side) out(shape ...int) (backend.Tensor, error) {
	t := s.keep(s.b.New(shape...))
	poison := make([]float32, backend.Elems(t))
	for i := range poison {
		poison[i] = float32(math.NaN())
	}
	if err := s.b.Write(t, poison); err != nil {
		return nil, err
	}
	return t, nil
}

func (s *side) read(t backend.Tensor) ([]float32, error) {
	v := make([]float32, backend.Elems(t))
	err := s.b.Read(t, v)
	return v, err
}

// readAll appends the values of ts, one after another, to out.
func (s *side) readAll(out []float32, ts []backend.Tensor) ([]float32, error) {
	for _, t := range ts {
		v, err := s.read(t)
		if err != nil {
			return nil, err
		}
		out = append(out, v...)
	}
	return out, nil
}

// gen draws the inputs of one run.
type gen struct{ r *rand.Rand }

func (g gen) normal(n int, mean, std float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(mean + std*g.r.NormFloat64())
	}
	return v
}

func (g gen) act(std float64, shape ...int) input {
	return input{shape: shape, vals: g.normal(prod(shape), 0, std)}
}

func (g gen) weight(mean, std float64, shape ...int) input {
	return input{shape: shape, weight: true, vals: g.normal(prod(shape), mean, std)}
}

func (k kase) withLateRef(f func() []float64) kase {
	k.lateRef = f
	return k
}

func prod(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// fileDType names a backend dtype as safetensors does.
func fileDType(d backend.DType) safetensors.DType {
	switch d {
	case backend.BF16:
		return safetensors.BF16
	case backend.F16:
		return safetensors.F16
	}
	return safetensors.F32
}
