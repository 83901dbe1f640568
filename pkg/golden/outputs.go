package golden

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/kvcache"
	"github.com/draftbench/draftbench/pkg/model"
	"github.com/draftbench/draftbench/pkg/sampling"
	"github.com/draftbench/draftbench/pkg/spec"
)

// Outputs is one golden model's check of a step's outputs as a backend
// makes them where the logits are: greedy picks, probabilities, a drawn
// token, a drafter's top-k q and a verify step's verdict, each against the
// host's own functions (pkg/sampling, pkg/spec) applied to what the same
// backend computed (its logits, its probabilities), so every difference is
// one of the output path, never of rounding in the layers. On the CPU the
// host computes them all and the check is a tautology; on a GPU it checks
// the device kernels and the model's use of them on a real step.
type Outputs struct {
	Name     string
	Checks   int
	Failures []string
	Err      error
}

// CheckOutputs runs the outputs check on every golden model in dir.
func CheckOutputs(dir string, be backend.Backend) ([]Outputs, error) {
	names, err := Names(dir)
	if err != nil {
		return nil, err
	}
	var out []Outputs
	for _, name := range names {
		out = append(out, checkOutputs(dir, name, be))
	}
	return out, nil
}

// OutputFailures counts the failed checks and errors.
func OutputFailures(rs []Outputs) int {
	n := 0
	for _, r := range rs {
		n += len(r.Failures)
		if r.Err != nil {
			n++
		}
	}
	return n
}

// WriteOutputs prints one line per golden and a summary line.
func WriteOutputs(w io.Writer, label string, rs []Outputs) error {
	var b strings.Builder
	checks := 0
	for _, r := range rs {
		checks += r.Checks
		switch {
		case r.Err != nil:
			fmt.Fprintf(&b, "%-12s FAIL: %v\n", r.Name, r.Err)
		case len(r.Failures) > 0:
			fmt.Fprintf(&b, "%-12s %d checks, FAIL: %s\n", r.Name, r.Checks, strings.Join(r.Failures, "; "))
		default:
			fmt.Fprintf(&b, "%-12s %d checks, ok\n", r.Name, r.Checks)
		}
	}
	fmt.Fprintf(&b, "outputs %s: %d checks, %d failed\n", label, checks, OutputFailures(rs))
	_, err := io.WriteString(w, b.String())
	return err
}

func checkOutputs(dir, name string, be backend.Backend) (r Outputs) {
	r.Name = name
	g, m, err := open(dir, name, be)
	if err != nil {
		r.Err = err
		return r
	}
	defer m.Free()
	fail := func(format string, a ...any) { r.Failures = append(r.Failures, fmt.Sprintf(format, a...)) }
	// step runs one prefill of toks on a fresh cache.
	step := func(q model.Seq, toks []int) (*model.Result, error) {
		c := m.NewCache(kvcache.Options{})
		defer c.Free()
		q.Cache, q.Tokens = c, toks
		return m.Forward([]model.Seq{q}, nil)
	}
	toks := g.Prompts[0].Tokens
	if len(toks) < 4 {
		r.Err = fmt.Errorf("golden %s: a prompt of %d tokens is too short for the check", name, len(toks))
		return r
	}
	params := sampling.Params{Temperature: 0.9, TopK: 40}
	const k, seed, u = 8, 5, 0.37

	logits, err := step(model.Seq{AllLogits: true}, toks)
	if err != nil {
		r.Err = err
		return r
	}
	L := logits.Logits[0]

	// Greedy picks: argmax and margin of each row, to the bit.
	res, err := step(model.Seq{AllLogits: true, Greedy: true}, toks)
	if err != nil {
		r.Err = err
		return r
	}
	for i, row := range L {
		r.Checks++
		x, mg := sampling.ArgmaxMargin(row, 0)
		if p := res.Picks[0][i]; p.Token != x || p.Margin != mg {
			fail("pick %d: %d (margin %g), the logits say %d (%g)", i, p.Token, p.Margin, x, mg)
		}
	}

	// Probabilities: the backend's own, compared with the host's from its
	// logits within a tolerance (the device computes in f32), and the
	// reference for the checks after.
	res, err = step(model.Seq{AllLogits: true, Sampled: &params}, toks)
	if err != nil {
		r.Err = err
		return r
	}
	P := res.Probs[0]
	for i, row := range L {
		r.Checks++
		if e := RelErr(P[i], sampling.Probs(row, params)); !(e < 1e-3) {
			fail("probabilities of row %d: relative error %.3g against the host's", i, e)
		}
	}

	// A drafter's q: TopKSparse of the backend's probabilities, to the bit.
	res, err = step(model.Seq{AllLogits: true, Sampled: &params, DraftTopK: k}, toks)
	if err != nil {
		r.Err = err
		return r
	}
	for i := range P {
		r.Checks++
		want, got := sampling.TopKSparse(P[i], k), res.Sparse[0][i]
		if !slices.Equal(got.IDs, want.IDs) || !slices.Equal(got.Probs, want.Probs) {
			fail("top-%d q of row %d: %v %v, want %v %v", k, i, got.IDs, got.Probs, want.IDs, want.Probs)
		}
	}

	// A drawn token: sampling.Sample of the last row at the uniform (as a
	// float32 where the backend draws it).
	_, drawer := be.(backend.Drawer)
	uu := float64(u)
	if drawer {
		uu = float64(float32(u))
	}
	res, err = step(model.Seq{Sampled: &params, Draw: true, U: u}, toks)
	if err != nil {
		r.Err = err
		return r
	}
	r.Checks++
	if want := sampling.Sample(P[len(P)-1], uu); res.Drawn[0] != want {
		fail("drawn token %d, want %d", res.Drawn[0], want)
	}

	// A verify step over the prompt's last three tokens as drafts, with q
	// giving them most of its mass: the verdict of spec.Verify (host) or
	// spec.VerifyAt with the uniforms drawn up front as float32s (device).
	gamma := 3
	drafts := toks[len(toks)-gamma:]
	qs := make([]sampling.Sparse, gamma)
	for i, x := range drafts {
		other := int32((x + 1) % len(L[0]))
		qs[i] = sampling.Sparse{IDs: []int32{int32(x), other}, Probs: []float32{0.7, 0.3}}
	}
	rows := P[len(P)-gamma-1:]
	_, verifier := be.(backend.Verifier)
	for s := uint64(seed); s < seed+4; s++ {
		res, err = step(model.Seq{AllLogits: true, Sampled: &params, Verify: &model.VerifySpec{Drafts: drafts, Q: qs, Seed: s}}, toks)
		if err != nil {
			r.Err = err
			return r
		}
		var want spec.Verdict
		if verifier {
			want, err = spec.VerifySeeded(drafts, qs, rows, s)
		} else {
			want, err = spec.Verify(drafts, qs, rows, false, sampling.NewRNG(s))
		}
		r.Checks++
		v := res.Verdicts[0]
		switch {
		case err != nil || v.Err != nil:
			if (err == nil) != (v.Err == nil) {
				fail("verify (seed %d): error %v, the host's %v", s, v.Err, err)
			}
		case v.Accepted != want.Accepted || !slices.Equal(v.Emitted, want.Emitted):
			fail("verify (seed %d): %d accepted, emitted %v; want %d, %v", s, v.Accepted, v.Emitted, want.Accepted, want.Emitted)
		}
	}
	return r
}
