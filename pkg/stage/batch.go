package stage

import (
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/draftbench/draftbench/pkg/kvcache"
	"github.com/draftbench/draftbench/pkg/model"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/sampling"
	"github.com/draftbench/draftbench/pkg/spec"
)

// work is a step taken into a batch.
type work struct {
	*item
	sess *session
}

// step takes the steps of one batch out of queue, in arrival order: at most
// one per session (a session's next step waits for the next batch, so its
// steps stay in order) and within the token budget (a step alone may pass
// it). Releases run as they come. It returns what is left for later.
func (s *Stage) step(queue []*item) []*item {
	now := s.cfg.Clock.Now()
	seen := map[uuid.UUID]bool{}
	var batch []*work
	var rest []*item
	tokens := 0
	for _, it := range queue {
		req := it.req
		if seen[req.Session] {
			rest = append(rest, it)
			continue
		}
		seen[req.Session] = true
		n := req.Positions()
		if req.Op != protocol.OpRelease && len(batch) > 0 && tokens+n > s.cfg.MaxBatchTokens {
			rest = append(rest, it)
			continue
		}
		s.queued.Add(-1)
		if req.Op == protocol.OpRelease {
			s.release(req)
			continue
		}
		w, err := s.prepare(it, now)
		if err != nil {
			s.fail(req, err)
			continue
		}
		batch = append(batch, w)
		tokens += n
	}
	if len(batch) > 0 {
		s.run(batch)
	}
	return rest
}

// prepare finds or creates the session's cache and brings it to the
// request's CacheLen.
func (s *Stage) prepare(it *item, now time.Time) (*work, error) {
	req := it.req
	if req.Op == protocol.OpDraft && !(s.m.IsFirst() && s.m.IsLast()) {
		return nil, fmt.Errorf("draft needs the whole drafter in one stage, this is stage %d of %d (drive a split drafter with decode steps and return_q)", s.cfg.Index, s.cfg.Count)
	}
	need := req.CacheLen + req.Positions()
	if req.Op == protocol.OpDraft {
		need += req.Gamma - 1
	}
	if limit := s.m.Config.MaxPositionEmbeddings; limit > 0 && need > limit {
		return nil, fmt.Errorf("the step would fill %d positions, the model's context is %d", need, limit)
	}
	ss, ok := s.sessions[req.Session]
	if !ok {
		if req.CacheLen > 0 {
			return nil, fmt.Errorf("session %s has no cache here (released, or idle longer than %s) and cache_len %d needs one", req.Session, s.cfg.IdleTimeout, req.CacheLen)
		}
		ss = &session{cache: s.m.NewCache(kvcache.Options{Budget: s.cfg.CacheBudget})}
		s.sessions[req.Session] = ss
		s.nsessions.Add(1)
	}
	ss.used = now
	if have := ss.cache.Len(); have < req.CacheLen {
		return nil, fmt.Errorf("session %s: the cache holds %d positions, the step needs %d", req.Session, have, req.CacheLen)
	} else if have > req.CacheLen {
		if err := ss.cache.Truncate(req.CacheLen); err != nil {
			return nil, fmt.Errorf("session %s: %w", req.Session, err)
		}
	}
	return &work{item: it, sess: ss}, nil
}

// forward runs one batched forward pass and charges its time to every step
// in it.
func (s *Stage) forward(batch []*work, seqs []model.Seq, hidden []float32, draft bool) (*model.Result, error) {
	start := s.cfg.Clock.Now()
	res, err := s.m.Forward(seqs, hidden)
	took := s.cfg.Clock.Now().Sub(start)
	for _, w := range batch {
		w.req.ComputeNS += int64(took)
	}
	if err == nil && s.cfg.OnForward != nil {
		tokens := 0
		for _, q := range seqs {
			tokens += q.N + len(q.Tokens)
		}
		s.cfg.OnForward(ForwardInfo{Sessions: len(seqs), Tokens: tokens, Compute: took, Draft: draft})
	}
	return res, err
}

// run executes a batch and hands each step on: its hidden rows to the next
// stage, or its answer to the caller.
func (s *Stage) run(batch []*work) {
	seqs := make([]model.Seq, len(batch))
	var hidden []float32
	if !s.m.IsFirst() && len(batch) == 1 {
		hidden = batch[0].hidden // nothing to stack
	}
	for i, w := range batch {
		seqs[i] = s.seq(w, w.req.Op == protocol.OpVerify)
		if s.m.IsFirst() {
			seqs[i].Tokens = w.req.Feed()
		} else {
			seqs[i].N = w.req.Positions()
			if len(batch) > 1 {
				hidden = append(hidden, w.hidden...)
			}
		}
	}
	res, err := s.forward(batch, seqs, hidden, false)
	if err != nil {
		if len(batch) > 1 {
			// Run the steps one by one so that only the step at fault fails;
			// a failed pass leaves every cache length as it was.
			for _, w := range batch {
				s.run([]*work{w})
			}
			return
		}
		s.fail(batch[0].req, fmt.Errorf("forward pass: %w", err))
		return
	}
	if !s.m.IsLast() {
		s.pass(batch, res.Hidden)
		return
	}
	var drafts []*drafting
	for i, w := range batch {
		out := outputOf(res, i)
		switch w.req.Op {
		case protocol.OpVerify:
			s.verify(w, out)
		case protocol.OpDraft:
			d := &drafting{work: w, rng: sampling.NewRNG(w.req.Seed)}
			if err := d.take(out.last()); err != nil {
				s.fail(w.req, err)
				continue
			}
			drafts = append(drafts, d)
		default:
			s.sample(w, out.last())
		}
	}
	s.draft(drafts)
}

// seq is a step's share of a batched pass. On the last stage a greedy
// step asks for picks (argmax and margin) and a sampled one for
// probabilities instead of logits, both computed where the logits are; all
// asks for every new position (a verify step).
func (s *Stage) seq(w *work, all bool) model.Seq {
	q := model.Seq{Cache: w.sess.cache, AllLogits: all && s.m.IsLast()}
	if !s.m.IsLast() {
		return q
	}
	if p := w.req.Sampling.Params(); p.Greedy() {
		q.Greedy, q.VocabLimit = true, p.VocabLimit
	} else {
		q.Sampled = &p
		switch {
		case w.req.Op == protocol.OpDraft || w.req.ReturnQ:
			// A drafter's step: its q, cut where the probabilities are.
			q.DraftTopK = draftTopK(w.req.Sampling)
		case w.req.Op == protocol.OpVerify:
			// The acceptance rule applied where the probabilities are.
			q.Verify = &model.VerifySpec{Drafts: w.req.Drafts, Q: sparseQs(w.req.Q), Seed: w.req.Seed}
		default:
			// An autoregressive step: its token, drawn where the
			// probabilities are at the uniform pick would have used.
			q.Draw, q.U = true, sampling.NewRNG(w.req.Seed).Float64()
		}
	}
	return q
}

// sparseQs are a verify request's draft distributions.
func sparseQs(q []protocol.Sparse) []sampling.Sparse {
	qs := make([]sampling.Sparse, len(q))
	for i, x := range q {
		qs[i] = x.Sampling()
	}
	return qs
}

// draftTopK is the k of a drafter's top-k q (negative: the whole support).
func draftTopK(smp protocol.Sampling) int {
	if smp.DraftTopK != 0 {
		return smp.DraftTopK
	}
	return spec.DefaultDraftTopK
}

// output is what the last stage's pass gave one step (model.Result), as
// seq asked for it: per requested position, picks for a greedy step; for a
// sampled one the drawn token, the drafter's qs or the verify verdict.
type output struct {
	picks   []model.Pick
	sparse  []sampling.Sparse
	drawn   int // -1: none
	verdict *model.Verdict
}

func outputOf(res *model.Result, i int) output {
	o := output{drawn: -1}
	if res.Drawn != nil {
		o.drawn = res.Drawn[i]
	}
	if res.Verdicts != nil {
		o.verdict = res.Verdicts[i]
	}
	if res.Picks != nil {
		o.picks = res.Picks[i]
	}
	if res.Sparse != nil {
		o.sparse = res.Sparse[i]
	}
	return o
}

// len is the number of positions o holds.
func (o output) len() int {
	switch {
	case o.picks != nil:
		return len(o.picks)
	case o.sparse != nil:
		return len(o.sparse)
	case o.drawn >= 0:
		return 1
	}
	return 0
}

// last is the last position's share alone.
func (o output) last() output {
	r := o.len() - 1
	a := output{drawn: o.drawn}
	switch {
	case o.picks != nil:
		a.picks = o.picks[r:]
	case o.sparse != nil:
		a.sparse = o.sparse[r:]
	}
	return a
}

// pass forwards each step with its rows of the batch's hidden states.
func (s *Stage) pass(batch []*work, hidden []float32) {
	H := s.m.Config.HiddenSize
	row := 0
	for _, w := range batch {
		n := w.req.Positions()
		t := &protocol.Tensor{Shape: []int{n, H}, Data: hidden[row*H : (row+n)*H]}
		row += n
		if err := protocol.Send(s.cfg.Conn, s.next, w.req.Session.String(), w.req, t); err != nil {
			s.fail(w.req, fmt.Errorf("forwarding to %s: %w", s.next, err))
		}
	}
}

// pick is a step's token at its (one) position: greedy, the pass's pick
// with its margin (q, when asked for, the point mass on it); sampled, a
// draw from the drafter's q the pass cut, which it returns: the target
// judges the draft by it.
func pick(o output, smp protocol.Sampling, wantQ bool, rng sampling.RNG) (int, float32, *protocol.Sparse, error) {
	if o.len() == 0 {
		// A sampled step's draw found no mass: Probs gives none to a row
		// without a usable logit.
		return 0, 0, nil, sampling.ErrNoUsableLogit
	}
	if p := smp.Params(); p.Greedy() {
		x := o.picks[0]
		if err := sampling.ChoiceError(x.Token, x.Margin); err != nil {
			return 0, 0, nil, err
		}
		var q *protocol.Sparse
		if wantQ {
			q = &protocol.Sparse{IDs: []int32{int32(x.Token)}, Probs: []float32{1}}
		}
		return x.Token, x.Margin, q, nil
	}
	sq := o.sparse[0]
	x := sq.Sample(rng.Float64())
	if x < 0 {
		return 0, 0, nil, sampling.ErrNoUsableLogit
	}
	wire := protocol.SparseOf(sq)
	return x, 0, &wire, nil
}

// sample answers prefill and decode with the next token: greedy with its
// margin, sampled as drawn in the pass (or with its q for a split drafter).
func (s *Stage) sample(w *work, o output) {
	var x int
	var m float32
	var q *protocol.Sparse
	if o.drawn >= 0 {
		x = o.drawn
	} else {
		var err error
		if x, m, q, err = pick(o, w.req.Sampling, w.req.ReturnQ, sampling.NewRNG(w.req.Seed)); err != nil {
			s.fail(w.req, err)
			return
		}
	}
	rep := &protocol.StepReply{Tokens: []int{x}}
	if w.req.Sampling.Params().Greedy() {
		rep.Margins = []float32{m}
	}
	if q != nil {
		rep.Q = []protocol.Sparse{*q}
	}
	rep.Session, rep.Op, rep.CacheLen, rep.ComputeNS = w.req.Session, w.req.Op, w.sess.cache.Len(), w.req.ComputeNS
	s.reply(w.req.Reply, rep, nil)
}

// verify applies the acceptance rule at the positions from the last of
// Tokens on (p_1..p_{γ+1}) and rolls the cache back to the kept prefix:
// CacheLen + len(Tokens) + accepted.
func (s *Stage) verify(w *work, o output) {
	req := w.req
	params := req.Sampling.Params()
	first := len(req.Tokens) - 1
	var v spec.Verdict
	var err error
	var margins []float32
	switch {
	case params.Greedy():
		// The target's choices, picked in the pass: no dense one-hot rows
		// of the vocabulary's size.
		picks := o.picks[min(first, len(o.picks)):]
		choice := make([]int, len(picks))
		margins = make([]float32, len(picks))
		for i, p := range picks {
			choice[i], margins[i] = p.Token, p.Margin
			if err = sampling.ChoiceError(p.Token, p.Margin); err != nil {
				err = fmt.Errorf("verifying position %d of %d: %w", i+1, len(picks), err)
				break
			}
		}
		if err == nil {
			v, err = spec.VerifyGreedy(req.Drafts, choice)
		}
	case o.verdict != nil:
		v, err = o.verdict.Verdict, o.verdict.Err // the rule, applied in the pass
	default:
		err = fmt.Errorf("the pass gave no verdict")
	}
	if err != nil {
		s.fail(req, err)
		return
	}
	keep := req.CacheLen + len(req.Tokens) + v.Accepted
	if err := w.sess.cache.Truncate(keep); err != nil {
		s.fail(req, fmt.Errorf("rolling back to %d positions: %w", keep, err))
		return
	}
	rep := &protocol.StepReply{Session: req.Session, Op: req.Op, Tokens: v.Emitted,
		Accepted: v.Accepted, AcceptedByPosition: v.AcceptedByPosition,
		CacheLen: keep, ComputeNS: req.ComputeNS}
	if margins != nil {
		// Emitted token i is the target's choice at p_{i+1}.
		rep.Margins = margins[:len(v.Emitted)]
	}
	s.reply(req.Reply, rep, nil)
}

// drafting is a draft step in progress.
type drafting struct {
	*work
	rng    sampling.RNG
	tokens []int
	qs     []protocol.Sparse
}

func (d *drafting) take(o output) error {
	x, _, q, err := pick(o, d.req.Sampling, true, d.rng)
	if err != nil {
		return fmt.Errorf("draft %d: %w", len(d.tokens)+1, err)
	}
	d.tokens = append(d.tokens, x)
	d.qs = append(d.qs, *q)
	return nil
}

// draft finishes the draft steps of a batch in lockstep: each round feeds
// every unfinished session its last draft in one batched pass. The last
// draft is never fed, so the drafter's cache ends at CacheLen + len(Tokens)
// + Gamma - 1 (spec.GenerateSpeculative's drafter invariant).
func (s *Stage) draft(active []*drafting) {
	for len(active) > 0 {
		var next []*drafting
		for _, d := range active {
			if len(d.tokens) == d.req.Gamma {
				s.reply(d.req.Reply, &protocol.StepReply{Session: d.req.Session, Op: d.req.Op, Tokens: d.tokens,
					Q: d.qs, CacheLen: d.sess.cache.Len(), ComputeNS: d.req.ComputeNS}, nil)
				continue
			}
			next = append(next, d)
		}
		if len(next) == 0 {
			return
		}
		batch := make([]*work, len(next))
		seqs := make([]model.Seq, len(next))
		for i, d := range next {
			batch[i] = d.work
			seqs[i] = s.seq(d.work, false)
			seqs[i].Tokens = d.tokens[len(d.tokens)-1:]
		}
		res, err := s.forward(batch, seqs, nil, true)
		if err != nil {
			for _, d := range next {
				s.fail(d.req, fmt.Errorf("draft %d: forward pass: %w", len(d.tokens)+1, err))
			}
			return
		}
		active = active[:0]
		for i, d := range next {
			if err := d.take(outputOf(res, i)); err != nil {
				s.fail(d.req, err)
				continue
			}
			active = append(active, d)
		}
	}
}
