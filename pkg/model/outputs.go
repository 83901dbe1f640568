package model

import (
	"errors"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/sampling"
	"github.com/draftbench/draftbench/pkg/spec"
)

// outputs fills res from the logits [rows, V] of a step: each sequence's
// rows (all its new positions with AllLogits, else its last) as logits, as
// picks for Greedy sequences, and for Sampled ones as probabilities, a drawn
// token, top-k qs or a verify verdict. What the backend can do where the
// logits are it does there (backend.Picker, Prober, Drawer, TopKer,
// Verifier); the logits come to the host only for what it cannot.
func (m *Model) outputs(res *Result, seqs []Seq, counts []int, logits backend.Tensor) error {
	o := newOutputs(m, logits)
	defer o.close()
	if err := o.readLogits(seqs); err != nil {
		return err
	}
	o.planDraws(seqs, counts)
	res.Logits = make([][][]float32, len(seqs))
	j := 0
	for i, s := range seqs {
		n := 1
		if s.AllLogits {
			n = counts[i]
		}
		if err := o.fill(res, i, s, j, n, len(seqs)); err != nil {
			return err
		}
		j += n
	}
	return nil
}

// outs is one step's outputs in the making: the logits tensor, what the
// backend offers, and what has been computed per vocabulary limit or set of
// sampling parameters (every row at once, so a batch costs one call).
type outs struct {
	m      *Model
	logits backend.Tensor
	V      int
	flat   []float32 // every row's logits on the host (only when needed)

	picker    backend.Picker
	prober    backend.Prober
	drawer    backend.Drawer
	topKer    backend.TopKer
	verifier  backend.Verifier
	canPick   bool
	canProbe  bool
	canDraw   bool
	canTopK   bool
	canVerify bool

	picks  map[int]picked
	probed map[sampling.Params]*probed
	draws  map[sampling.Params][]float32 // each drawing row's uniform
}

type picked struct {
	ids     []int32
	margins []float32
}

// probed is the device's probabilities for one set of parameters: the
// tensor (freed with the outputs), read back on first need, its rows'
// top-k qs per k, its rows' draws.
type probed struct {
	t      backend.Tensor
	host   []float32
	sparse map[int][]sampling.Sparse
	drawn  []int32
}

func newOutputs(m *Model, logits backend.Tensor) *outs {
	o := &outs{m: m, logits: logits, V: m.Config.VocabSize, picks: map[int]picked{},
		probed: map[sampling.Params]*probed{}, draws: map[sampling.Params][]float32{}}
	o.picker, o.canPick = m.b.(backend.Picker)
	o.prober, o.canProbe = m.b.(backend.Prober)
	o.drawer, o.canDraw = m.b.(backend.Drawer)
	o.topKer, o.canTopK = m.b.(backend.TopKer)
	o.verifier, o.canVerify = m.b.(backend.Verifier)
	return o
}

func (o *outs) close() {
	for _, p := range o.probed {
		o.m.b.Free(p.t)
	}
}

// readLogits brings every row's logits to the host when some sequence
// wants logits or the backend cannot pick or make probabilities.
func (o *outs) readLogits(seqs []Seq) error {
	dense := false
	for _, s := range seqs {
		switch {
		case s.Greedy:
			dense = dense || !o.canPick
		case s.Sampled != nil:
			dense = dense || !o.canProbe
		default:
			dense = true
		}
	}
	if !dense {
		return nil
	}
	o.flat = make([]float32, backend.Rows(o.logits)*o.V)
	return o.m.b.Read(o.logits, o.flat)
}

// planDraws notes each drawing sequence's uniform at its last row, so one
// device call per set of parameters draws them all.
func (o *outs) planDraws(seqs []Seq, counts []int) {
	if !o.canProbe || !o.canDraw {
		return
	}
	j := 0
	for i, s := range seqs {
		n := 1
		if s.AllLogits {
			n = counts[i]
		}
		if s.Draw {
			us := o.draws[*s.Sampled]
			if us == nil {
				us = make([]float32, backend.Rows(o.logits))
				o.draws[*s.Sampled] = us
			}
			us[j+n-1] = float32(s.U)
		}
		j += n
	}
}

// rows are n rows of f from row r0, each a vocabulary wide.
func (o *outs) rows(f []float32, r0, n int) [][]float32 {
	out := make([][]float32, n)
	for r := range n {
		out[r] = f[(r0+r)*o.V : (r0+r+1)*o.V : (r0+r+1)*o.V]
	}
	return out
}

// fill sets sequence i's outputs (rows [j, j+n) of the logits).
func (o *outs) fill(res *Result, i int, s Seq, j, n, nseq int) error {
	switch {
	case s.Greedy:
		p, err := o.pick(s.VocabLimit)
		if err != nil {
			return err
		}
		if res.Picks == nil {
			res.Picks = make([][]Pick, nseq)
		}
		res.Picks[i] = make([]Pick, n)
		for r := range n {
			res.Picks[i][r] = Pick{Token: int(p.ids[j+r]), Margin: p.margins[j+r]}
		}
	case s.Verify != nil:
		if res.Verdicts == nil {
			res.Verdicts = make([]*Verdict, nseq)
		}
		v, err := o.verify(s, j+n-len(s.Verify.Drafts)-1)
		if err != nil {
			return err
		}
		res.Verdicts[i] = v
	case s.Draw:
		if res.Drawn == nil {
			res.Drawn = make([]int, nseq)
			for k := range res.Drawn {
				res.Drawn[k] = -1
			}
		}
		x, err := o.draw(s, j+n-1)
		if err != nil {
			return err
		}
		res.Drawn[i] = x
	case s.Sampled != nil && s.DraftTopK != 0:
		if res.Sparse == nil {
			res.Sparse = make([][]sampling.Sparse, nseq)
		}
		qs, err := o.topK(*s.Sampled, s.DraftTopK, j, n)
		if err != nil {
			return err
		}
		res.Sparse[i] = qs
	case s.Sampled != nil:
		if res.Probs == nil {
			res.Probs = make([][][]float32, nseq)
		}
		rows, err := o.hostProbs(*s.Sampled, j, n)
		if err != nil {
			return err
		}
		res.Probs[i] = rows
	default:
		res.Logits[i] = o.rows(o.flat, j, n)
	}
	return nil
}

// pick is every row's argmax and margin over ids < limit.
func (o *outs) pick(limit int) (picked, error) {
	if p, ok := o.picks[limit]; ok {
		return p, nil
	}
	var p picked
	if o.canPick {
		var err error
		if p.ids, p.margins, err = o.picker.ArgmaxMargin(o.logits, limit); err != nil {
			return p, err
		}
	} else {
		rows := len(o.flat) / o.V
		p.ids, p.margins = make([]int32, rows), make([]float32, rows)
		for r := range rows {
			x, mg := sampling.ArgmaxMargin(o.flat[r*o.V:(r+1)*o.V], limit)
			p.ids[r], p.margins[r] = int32(x), mg
		}
	}
	o.picks[limit] = p
	return p, nil
}

// probe is the device's probabilities of every row under p (a Prober).
func (o *outs) probe(p sampling.Params) (*probed, error) {
	if pr, ok := o.probed[p]; ok {
		return pr, nil
	}
	pt, err := o.prober.Probs(o.logits, p)
	if err != nil {
		return nil, err
	}
	pr := &probed{t: pt, sparse: map[int][]sampling.Sparse{}}
	o.probed[p] = pr
	return pr, nil
}

// hostProbs is rows [r0, r0+n)'s probabilities under p on the host: the
// device's (every row read back once per set), or computed here from the
// logits for just those rows.
func (o *outs) hostProbs(p sampling.Params, r0, n int) ([][]float32, error) {
	if !o.canProbe {
		out := make([][]float32, n)
		for r, row := range o.rows(o.flat, r0, n) {
			out[r] = sampling.Probs(row, p)
		}
		return out, nil
	}
	pr, err := o.probe(p)
	if err != nil {
		return nil, err
	}
	if pr.host == nil {
		f := make([]float32, backend.Rows(o.logits)*o.V)
		if err := o.m.b.Read(pr.t, f); err != nil {
			return nil, err
		}
		pr.host = f
	}
	return o.rows(pr.host, r0, n), nil
}

// topK is rows [r0, r0+n)'s top-k qs under p: cut on the device (a TopKer,
// every row at once per set) or here for just those rows.
func (o *outs) topK(p sampling.Params, k, r0, n int) ([]sampling.Sparse, error) {
	if !o.canProbe || !o.canTopK {
		rows, err := o.hostProbs(p, r0, n)
		if err != nil {
			return nil, err
		}
		qs := make([]sampling.Sparse, n)
		for r, row := range rows {
			qs[r] = sampling.TopKSparse(row, k)
		}
		return qs, nil
	}
	pr, err := o.probe(p)
	if err != nil {
		return nil, err
	}
	qs, ok := pr.sparse[k]
	if !ok {
		if qs, err = o.topKer.TopKSparse(pr.t, k); err != nil {
			return nil, err
		}
		pr.sparse[k] = qs
	}
	return qs[r0 : r0+n : r0+n], nil
}

// draw is the token drawn at row at s.U: on the device (a Drawer, at the
// float32 uniform planDraws noted, every drawing row of the set at once) or
// here.
func (o *outs) draw(s Seq, at int) (int, error) {
	if !o.canProbe || !o.canDraw {
		rows, err := o.hostProbs(*s.Sampled, at, 1)
		if err != nil {
			return 0, err
		}
		return sampling.Sample(rows[0], s.U), nil
	}
	pr, err := o.probe(*s.Sampled)
	if err != nil {
		return 0, err
	}
	if pr.drawn == nil {
		if pr.drawn, err = o.drawer.Sample(pr.t, o.draws[*s.Sampled]); err != nil {
			return 0, err
		}
	}
	return int(pr.drawn[at]), nil
}

// verify applies s.Verify's rule to rows [first, first+γ] of the logits: on
// the device (their probabilities made and judged there, two numbers back)
// when the backend can, else on probabilities on the host. A backend that
// judges on the device takes its uniforms up front (spec.VerifyAt's order,
// as float32s), and so does its host fallback, so a seed gives one verdict
// on that backend whichever path a step takes; other backends draw them as
// spec.Verify does. The rule's own errors are the step's, not the pass's.
func (o *outs) verify(s Seq, first int) (*Verdict, error) {
	vs := s.Verify
	gamma := len(vs.Drafts)
	if !o.canProbe || !o.canVerify || !deviceJudgeable(vs, o.V) {
		ps, err := o.hostProbs(*s.Sampled, first, gamma+1)
		if err != nil {
			return nil, err
		}
		var v spec.Verdict
		if o.canVerify {
			v, err = spec.VerifySeeded(vs.Drafts, vs.Q, ps, vs.Seed)
		} else {
			v, err = spec.Verify(vs.Drafts, vs.Q, ps, false, sampling.NewRNG(vs.Seed))
		}
		return &Verdict{Verdict: v, Err: err}, nil
	}
	b := o.m.b
	var pt backend.Tensor
	if first == 0 && gamma+1 == backend.Rows(o.logits) {
		// The step is this verify alone: its rows are all the logits.
		pr, err := o.probe(*s.Sampled)
		if err != nil {
			return nil, err
		}
		pt = pr.t
	} else {
		sub := b.New(gamma+1, o.V)
		defer b.Free(sub)
		if err := b.CopyRows(sub, 0, o.logits, first, gamma+1); err != nil {
			return nil, err
		}
		var err error
		if pt, err = o.prober.Probs(sub, *s.Sampled); err != nil {
			return nil, err
		}
		defer b.Free(pt)
	}
	drafts := make([]int32, gamma)
	for i, x := range vs.Drafts {
		drafts[i] = int32(x)
	}
	ua, ur, ub := spec.Uniforms(vs.Seed, gamma)
	acc, tok, err := o.verifier.Verify(pt, drafts, vs.Q, false, ua, ur, ub)
	if errors.Is(err, backend.ErrBadDraft) {
		return &Verdict{Err: err}, nil
	}
	if err != nil {
		return nil, err
	}
	v := spec.Verdict{Accepted: acc, AcceptedByPosition: make([]bool, gamma)}
	for i := range acc {
		v.AcceptedByPosition[i] = true
		v.Emitted = append(v.Emitted, vs.Drafts[i])
	}
	v.Emitted = append(v.Emitted, int(tok))
	return &Verdict{Verdict: v}, nil
}

// deviceJudgeable says whether a device can apply the rule to vs as the host
// would: drafts inside the vocabulary, one q per draft, no id twice in a q
// (a device reads and subtracts a q's entries in parallel; the host takes
// the first match and subtracts in order).
func deviceJudgeable(vs *VerifySpec, vocab int) bool {
	if len(vs.Q) != len(vs.Drafts) {
		return false
	}
	for i, x := range vs.Drafts {
		if x < 0 || x >= vocab {
			return false
		}
		seen := make(map[int32]bool, len(vs.Q[i].IDs))
		for _, id := range vs.Q[i].IDs {
			if seen[id] || id < 0 || int(id) >= vocab {
				return false
			}
			seen[id] = true
		}
	}
	return true
}
