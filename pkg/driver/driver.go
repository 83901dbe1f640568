// Package driver holds the controller's session drivers (DESIGN §6): the AR
// loop and the speculative draft/verify loop of one request, run over the
// model pipelines' stages on NATS with the step protocol of pkg/protocol.
// The driver keeps the only copy of a session's token sequence S and tells
// every step the cache length it must start from, so a rollback after a
// rejected draft costs no extra message.
package driver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/draftbench/draftbench/pkg/jobrun"
	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/sampling"
)

// Pipeline is one placed model: the subject of its first stage and how many
// stages it has.
type Pipeline struct {
	Subject string
	Stages  int
}

// Stepper sends one step and waits for its reply (protocol.StepClient). Its
// errors name the step (protocol.StepError); the driver adds only what the
// step was for.
type Stepper interface {
	Step(ctx context.Context, subject string, req *protocol.StepRequest) (*protocol.StepReply, error)
}

// Engine runs requests over the target (and drafter) pipelines.
type Engine struct {
	Client    Stepper
	Target    Pipeline
	Drafter   *Pipeline
	DraftTopK int
	// StepTimeout bounds one step; a stage that does not answer in time
	// fails the request instead of hanging the job (0 = 2 minutes).
	StepTimeout time.Duration
	// ResendAfter is how long a step may go unanswered before it is sent
	// again, at least (0: DefaultResendAfter; negative: never). See send.
	ResendAfter time.Duration
	Now         func() time.Time

	mu      sync.Mutex
	slowest map[protocol.Op]time.Duration // per op, of the answered steps
}

// DefaultResendAfter is Engine.ResendAfter's default: far above a step of
// a model that fits a host, short against StepTimeout.
const DefaultResendAfter = 5 * time.Second

var _ jobrun.Engine = (*Engine)(nil)

// session is one request's state in the driver.
type session struct {
	e      *Engine
	g      jobrun.Gen
	id     uuid.UUID
	seq    []int // S: prompt then output
	prompt int
	// margins follow the output token for token while every reply brought
	// them (greedy); nil once one did not.
	margins  []float32
	noMargin bool
	steps    uint64
	done     bool
}

// Generate implements jobrun.Engine.
func (e *Engine) Generate(ctx context.Context, mode metrics.Mode, g jobrun.Gen) (jobrun.GenResult, error) {
	s := &session{e: e, g: g, id: uuid.New(), seq: slices.Clone(g.Prompt), prompt: len(g.Prompt)}
	if mode == metrics.ModeSpeculative && e.Drafter == nil {
		return jobrun.GenResult{}, errors.New("speculative mode without a drafter pipeline")
	}
	defer func() { go s.release(mode) }()
	var rounds []metrics.Round
	var err error
	if mode == metrics.ModeTarget {
		err = s.ar(ctx)
	} else {
		rounds, err = s.speculative(ctx)
	}
	res := jobrun.GenResult{Tokens: s.seq[s.prompt:], Rounds: rounds}
	if !s.noMargin && len(s.margins) == len(res.Tokens) {
		res.Margins = s.margins
	}
	return res, err
}

func (s *session) sampling() protocol.Sampling {
	p := s.g.Params
	return protocol.Sampling{Temperature: p.Temperature, TopK: p.TopK, TopP: p.TopP, VocabLimit: p.VocabLimit, DraftTopK: s.e.DraftTopK}
}

// step sends one request with a fresh per-step seed.
func (s *session) step(ctx context.Context, p Pipeline, req *protocol.StepRequest) (*protocol.StepReply, error) {
	req.Session = s.id
	req.Sampling = s.sampling()
	s.steps++
	req.Seed = splitmix(s.g.Seed ^ splitmix(s.steps))
	timeout := s.e.StepTimeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rep, err := s.e.send(sctx, p.Subject, req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, protocol.StepError(req, p.Subject, fmt.Errorf("no reply within %s (a stage is down or overloaded)", timeout))
		}
		// send's errors (the step client's, or its own) name the step
		// already: wrapping them again would repeat the op and subject.
		return nil, err
	}
	if err := rep.Err(); err != nil {
		return nil, protocol.StepError(req, p.Subject, err)
	}
	return rep, nil
}

// send sends req and waits for its reply. A NATS server that stops (one
// member of a cluster) drops the messages passing through it, and a step
// whose request or reply was among them is never answered. Steps are
// idempotent (pkg/protocol: every stage truncates to CacheLen first, the
// same step from the same cache length and seed gives the same answer, and
// a session's steps run in the order they arrive), so send sends the step
// again when it has waited longer than ResendAfter and four times the
// slowest answered step of its op, and takes the first reply. A copy that
// was only slow is computed twice, never wrongly: it reaches each stage
// before the session's next step, which the driver sends only after a reply.
func (e *Engine) send(ctx context.Context, subject string, req *protocol.StepRequest) (*protocol.StepReply, error) {
	if e.ResendAfter < 0 {
		return e.Client.Step(ctx, subject, req)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// The copies still waiting end with ctx; waiting for them means each
	// copy was published before the session's next step can be.
	defer wg.Wait()
	defer cancel()
	type result struct {
		rep  *protocol.StepReply
		err  error
		took time.Duration // from this copy's sending to its reply
	}
	results := make(chan result)
	attempt := func() {
		r := *req // Step sets its own reply subject on each copy
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			rep, err := e.Client.Step(ctx, subject, &r)
			select {
			case results <- result{rep, err, time.Since(start)}:
			case <-ctx.Done():
			}
		}()
	}
	attempt()
	timer := time.NewTimer(e.resendAfter(req.Op))
	defer timer.Stop()
	for {
		select {
		case r := <-results:
			if r.err == nil {
				// The copy that answered first was not lost: its time is
				// a step's time, so a step slower than ResendAfter stops
				// being sent twice once one of its kind has been answered.
				e.observe(req.Op, r.took)
			}
			return r.rep, r.err
		case <-ctx.Done():
			return nil, protocol.StepError(req, subject, ctx.Err())
		case <-timer.C:
			attempt()
			timer.Reset(e.resendAfter(req.Op))
		}
	}
}

func (e *Engine) resendAfter(op protocol.Op) time.Duration {
	base := e.ResendAfter
	if base == 0 {
		base = DefaultResendAfter
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return max(base, 4*e.slowest[op])
}

func (e *Engine) observe(op protocol.Op, d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.slowest == nil {
		e.slowest = map[protocol.Op]time.Duration{}
	}
	e.slowest[op] = max(e.slowest[op], d)
}

// emit appends a reply's tokens to S, cut at MaxNewTokens and after a stop
// token, reports them and returns how many it kept; it marks the session
// done when generation is over.
func (s *session) emit(rep *protocol.StepReply) int {
	tokens := rep.Tokens
	if len(rep.Margins) != len(tokens) {
		s.noMargin = true
	}
	var out []int
	for i, t := range tokens {
		if !s.noMargin && len(s.seq)-s.prompt < s.g.MaxNewTokens {
			s.margins = append(s.margins, rep.Margins[i])
		}
		if len(s.seq)-s.prompt >= s.g.MaxNewTokens {
			break
		}
		out = append(out, t)
		s.seq = append(s.seq, t)
		if !s.g.IgnoreEOS && slices.Contains(s.g.StopTokens, t) {
			s.done = true
			break
		}
	}
	if len(s.seq)-s.prompt >= s.g.MaxNewTokens {
		s.done = true
	}
	if len(out) > 0 && s.g.OnEmit != nil {
		s.g.OnEmit(out)
	}
	return len(out)
}

func (s *session) ar(ctx context.Context) error {
	rep, err := s.step(ctx, s.e.Target, &protocol.StepRequest{Op: protocol.OpPrefill, Tokens: s.seq})
	if err != nil {
		return err // "prefill step of session … on …: …"
	}
	s.emit(rep)
	for !s.done {
		rep, err := s.step(ctx, s.e.Target, &protocol.StepRequest{Op: protocol.OpDecode, CacheLen: len(s.seq) - 1, Tokens: s.seq[len(s.seq)-1:]})
		if err != nil {
			return fmt.Errorf("after %d tokens: %w", len(s.seq)-s.prompt, err)
		}
		s.emit(rep)
	}
	return nil
}

// speculative runs the draft/verify rounds. Invariants (pkg/protocol): the
// target holds S minus its last token before each round; the drafter holds
// dLen ≤ len(S)-1 positions and is fed S[dLen:] at the start of its draft.
func (s *session) speculative(ctx context.Context) ([]metrics.Round, error) {
	rep, err := s.step(ctx, s.e.Target, &protocol.StepRequest{Op: protocol.OpPrefill, Tokens: s.seq})
	if err != nil {
		return nil, err
	}
	s.emit(rep)
	var rounds []metrics.Round
	dLen := 0
	for round := 1; !s.done; round++ {
		start := s.e.now()
		drafts, qs, dCache, compute, err := s.draft(ctx, dLen)
		if err != nil {
			return rounds, fmt.Errorf("round %d: %w", round, err)
		}
		v, err := s.step(ctx, s.e.Target, &protocol.StepRequest{Op: protocol.OpVerify, CacheLen: len(s.seq) - 1,
			Tokens: s.seq[len(s.seq)-1:], Drafts: drafts, Q: qs})
		if err != nil {
			return rounds, fmt.Errorf("round %d: %w", round, err)
		}
		emitted := s.emit(v)
		dLen = min(dCache, len(s.seq)-1)
		wall := s.e.now().Sub(start)
		rounds = append(rounds, metrics.Round{Gamma: s.g.Gamma, Drafted: len(drafts), Accepted: v.Accepted,
			Emitted: emitted, AcceptedByPosition: v.AcceptedByPosition, Wall: wall,
			Compute: compute + time.Duration(v.ComputeNS), DraftCompute: compute,
			QMass: sampling.MeanKept(qs, func(q protocol.Sparse) float32 { return q.Kept })})
	}
	return rounds, nil
}

// draft proposes gamma tokens: one draft step on a single-stage drafter, or
// gamma decode steps with ReturnQ when the drafter is split over stages.
// It returns the drafts, their q, the drafter's cache length afterwards and
// the drafter's compute time.
func (s *session) draft(ctx context.Context, dLen int) ([]int, []protocol.Sparse, int, time.Duration, error) {
	p := *s.e.Drafter
	gamma := s.g.Gamma
	if p.Stages <= 1 {
		rep, err := s.step(ctx, p, &protocol.StepRequest{Op: protocol.OpDraft, CacheLen: dLen, Tokens: s.seq[dLen:], Gamma: gamma})
		if err != nil {
			return nil, nil, 0, 0, err
		}
		if len(rep.Tokens) != gamma {
			return nil, nil, 0, 0, fmt.Errorf("drafter returned %d drafts, asked for %d", len(rep.Tokens), gamma)
		}
		return rep.Tokens, rep.Q, rep.CacheLen, time.Duration(rep.ComputeNS), nil
	}
	var drafts []int
	var qs []protocol.Sparse
	var compute time.Duration
	cache, in := dLen, s.seq[dLen:]
	for i := 0; i < gamma; i++ {
		rep, err := s.step(ctx, p, &protocol.StepRequest{Op: protocol.OpDecode, CacheLen: cache, Tokens: in, ReturnQ: true})
		if err != nil {
			return nil, nil, 0, 0, fmt.Errorf("draft %d: %w", i+1, err)
		}
		if len(rep.Tokens) != 1 || len(rep.Q) != 1 {
			return nil, nil, 0, 0, fmt.Errorf("draft %d: the drafter returned %d tokens and %d distributions", i+1, len(rep.Tokens), len(rep.Q))
		}
		cache += len(in)
		drafts = append(drafts, rep.Tokens[0])
		qs = append(qs, rep.Q[0])
		compute += time.Duration(rep.ComputeNS)
		in = rep.Tokens
	}
	return drafts, qs, cache, compute, nil
}

// release frees the session on every stage of the pipelines it used. It
// runs after the request, even a failed or cancelled one, in the background
// with its own deadline (stages also free idle sessions themselves).
func (s *session) release(mode metrics.Mode) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pipes := []Pipeline{s.e.Target}
	if mode == metrics.ModeSpeculative && s.e.Drafter != nil {
		pipes = append(pipes, *s.e.Drafter)
	}
	for _, p := range pipes {
		_, _ = s.e.Client.Step(ctx, p.Subject, &protocol.StepRequest{Session: s.id, Op: protocol.OpRelease})
	}
}

// splitmix is SplitMix64's finaliser (Steele et al. 2014): distinct seeds per step.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// now is the engine's clock (Now, else the system clock); Generate runs
// concurrently, so the field is never written here.
func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}
