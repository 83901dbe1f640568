package stage

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/kvcache"
	"github.com/draftbench/draftbench/pkg/model"
	"github.com/draftbench/draftbench/pkg/protocol"
)

// Defaults for Config.
const (
	DefaultMaxBatchTokens = 2048
	DefaultIdleTimeout    = 10 * time.Minute
)

// Clock tells the time; tests pass a fake one to drive idle timeouts.
type Clock interface{ Now() time.Time }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Config describes one stage.
type Config struct {
	// Model is the shard to serve. When nil, New loads layers [First, Last)
	// of ModelDir onto Backend.
	Model       *model.Model
	ModelDir    string
	First, Last int
	Backend     backend.Backend

	Conn     *nats.Conn
	Subjects protocol.Subjects
	// Instance is the model instance id; the stage serves
	// Subjects.Stage(Instance, Index).
	Instance string
	// Index is this stage's k, Count the instance's number of stages.
	Index, Count int
	// Next overrides the subject steps are forwarded to; "" means
	// Subjects.Stage(Instance, Index+1). Unused on the last stage.
	Next string

	Logger hclog.Logger // nil: discarded
	Clock  Clock        // nil: the system clock
	// MaxBatchTokens is the token budget of one batched forward pass; a
	// single step larger than it runs alone (0: DefaultMaxBatchTokens).
	MaxBatchTokens int
	// IdleTimeout frees the caches of a session that sent nothing for that
	// long (0: DefaultIdleTimeout).
	IdleTimeout time.Duration
	// CacheBudget, when set, bounds the bytes of every session's cache
	// together; a step that would pass it fails instead of exhausting memory.
	// The serving goroutine alone touches it: stages must not share one.
	CacheBudget *kvcache.Budget
	// OnForward, when set, is called after every forward pass in the serving
	// goroutine (metrics, tests); it must return quickly.
	OnForward func(ForwardInfo)
}

// ForwardInfo describes one batched forward pass.
type ForwardInfo struct {
	Sessions int           // sequences in the batch
	Tokens   int           // positions fed
	Compute  time.Duration // wall time of model.Forward
	Draft    bool          // a drafter continuation step (draft ops after their first token)
}

// Stage serves one shard of one model instance over NATS.
type Stage struct {
	cfg       Config
	m         *model.Model
	log       hclog.Logger
	subject   string
	next      string
	asm       *protocol.Assembler
	in        chan *item
	done      chan struct{}
	ready     chan struct{}
	served    atomic.Bool
	queued    atomic.Int64
	nsessions atomic.Int64
	sessions  map[uuid.UUID]*session // serving goroutine only
}

// item is a decoded step waiting to be run.
type item struct {
	req    *protocol.StepRequest
	hidden []float32 // rows from the previous stage (not on stage 0)
}

type session struct {
	cache *kvcache.Seq
	used  time.Time
}

// New checks cfg, loads the shard when asked to, and returns a stage that
// Serve starts.
func New(cfg Config) (*Stage, error) {
	if cfg.Conn == nil {
		return nil, errors.New("stage: no NATS connection")
	}
	if cfg.Instance == "" {
		return nil, errors.New("stage: no model instance id")
	}
	if cfg.Count < 1 || cfg.Index < 0 || cfg.Index >= cfg.Count {
		return nil, fmt.Errorf("stage: stage %d of %d is out of range", cfg.Index, cfg.Count)
	}
	name := fmt.Sprintf("stage %s/%d", cfg.Instance, cfg.Index)
	m := cfg.Model
	if m == nil {
		if cfg.ModelDir == "" || cfg.Backend == nil {
			return nil, fmt.Errorf("%s: give a model, or a model folder and a backend to load it on", name)
		}
		var err error
		if m, err = model.Load(cfg.ModelDir, cfg.Backend, model.Options{First: cfg.First, Last: cfg.Last}); err != nil {
			return nil, fmt.Errorf("%s: loading layers [%d,%d) of %s: %w", name, cfg.First, cfg.Last, cfg.ModelDir, err)
		}
	}
	if m.IsFirst() != (cfg.Index == 0) || m.IsLast() != (cfg.Index == cfg.Count-1) {
		return nil, fmt.Errorf("%s of %d holds layers [%d,%d) of %d: the first stage must start at layer 0 and only the last may end at the last layer",
			name, cfg.Count, m.First, m.Last, m.Config.NumHiddenLayers)
	}
	if cfg.MaxBatchTokens <= 0 {
		cfg.MaxBatchTokens = DefaultMaxBatchTokens
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = systemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	s := &Stage{
		cfg:      cfg,
		m:        m,
		log:      cfg.Logger.Named("stage").With("instance", cfg.Instance, "stage", cfg.Index),
		subject:  cfg.Subjects.Stage(cfg.Instance, cfg.Index),
		next:     cfg.Next,
		asm:      protocol.NewAssembler(protocol.AssemblerOptions{Now: cfg.Clock.Now}),
		in:       make(chan *item, 1024),
		done:     make(chan struct{}),
		ready:    make(chan struct{}),
		sessions: map[uuid.UUID]*session{},
	}
	if s.next == "" && !m.IsLast() {
		s.next = cfg.Subjects.Stage(cfg.Instance, cfg.Index+1)
	}
	return s, nil
}

// Subject is the subject the stage serves.
func (s *Stage) Subject() string { return s.subject }

// Ready is closed once Serve's subscription is known to the server: steps
// sent after it are not lost.
func (s *Stage) Ready() <-chan struct{} { return s.ready }

// Sessions is the number of sessions holding a cache.
func (s *Stage) Sessions() int { return int(s.nsessions.Load()) }

// Queued is the number of steps received and not yet taken into a batch.
func (s *Stage) Queued() int { return int(s.queued.Load()) }

// Serve subscribes to the stage subject and runs steps until ctx ends, then
// frees every cache. A Stage serves once.
func (s *Stage) Serve(ctx context.Context) error {
	if s.served.Swap(true) {
		return fmt.Errorf("stage %s/%d: Serve called twice", s.cfg.Instance, s.cfg.Index)
	}
	defer close(s.done)
	sub, err := s.cfg.Conn.QueueSubscribe(s.subject, protocol.StageQueue, s.receive)
	if err != nil {
		return fmt.Errorf("stage %s/%d: subscribing to %s: %w", s.cfg.Instance, s.cfg.Index, s.subject, err)
	}
	defer sub.Unsubscribe()
	// Hidden states of a long prefill exceed nats.go's default 64 MiB of
	// pending bytes; dropping them would fail sessions, and the drivers'
	// concurrency already bounds what is in flight.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return fmt.Errorf("stage %s/%d: %w", s.cfg.Instance, s.cfg.Index, err)
	}
	if err := s.cfg.Conn.Flush(); err != nil {
		return fmt.Errorf("stage %s/%d: subscribing to %s: %w", s.cfg.Instance, s.cfg.Index, s.subject, err)
	}
	s.log.Info("serving", "subject", s.subject, "layers", fmt.Sprintf("[%d,%d)", s.m.First, s.m.Last), "next", s.next)
	close(s.ready)
	s.loop(ctx)
	for id := range s.sessions {
		s.free(id)
	}
	return nil
}

// loop runs batches: it blocks for the first step, then takes everything
// that queued up while the previous forward pass ran.
func (s *Stage) loop(ctx context.Context) {
	tick := time.NewTicker(max(time.Second, min(s.cfg.IdleTimeout/4, time.Minute)))
	defer tick.Stop()
	var queue []*item
	for {
		if len(queue) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				s.sweep()
				continue
			case it := <-s.in:
				queue = append(queue, it)
			}
		}
		for drained := false; !drained; {
			select {
			case it := <-s.in:
				queue = append(queue, it)
			default:
				drained = true
			}
		}
		if ctx.Err() != nil {
			return
		}
		s.sweep()
		queue = s.step(queue)
	}
}

// receive runs in the subscription's goroutine: reassemble, decode, check
// what only the transport knows, and queue.
func (s *Stage) receive(msg *nats.Msg) {
	f, err := s.asm.Add(msg)
	if err != nil {
		s.log.Warn("dropping a malformed message", "error", err)
		if msg.Reply != "" {
			s.reply(msg.Reply, &protocol.StepReply{}, err)
		}
		return
	}
	if f == nil {
		return
	}
	req := &protocol.StepRequest{}
	if err := protocol.Decode(f.Control, req); err != nil {
		to := req.Reply
		if to == "" {
			to = f.Reply
		}
		s.log.Warn("dropping a bad step request", "error", err, "reply", to)
		if to != "" {
			s.reply(to, &protocol.StepReply{Session: req.Session, Op: req.Op}, err)
		}
		return
	}
	it := &item{req: req}
	if err := s.attach(it, f.Tensor); err != nil {
		s.reply(req.Reply, &protocol.StepReply{Session: req.Session, Op: req.Op}, err)
		return
	}
	s.queued.Add(1)
	select {
	case s.in <- it:
	case <-s.done:
		s.queued.Add(-1)
	}
}

// attach checks that the hidden states match the step: none on the first
// stage, one row of the model's width per position on the others.
func (s *Stage) attach(it *item, t *protocol.Tensor) error {
	if s.m.IsFirst() || it.req.Op == protocol.OpRelease {
		if t != nil {
			return fmt.Errorf("hidden states sent to a stage that takes token ids")
		}
		return nil
	}
	H := s.m.Config.HiddenSize
	if t == nil || len(t.Shape) != 2 || t.Shape[0] != it.req.Positions() || t.Shape[1] != H {
		var shape []int
		if t != nil {
			shape = t.Shape
		}
		return fmt.Errorf("hidden states of shape %v, want [%d %d] for %d positions", shape, it.req.Positions(), H, it.req.Positions())
	}
	it.hidden = t.Data
	return nil
}

// reply sends rep to subject, marked with this stage and, when err is set,
// the failure.
func (s *Stage) reply(subject string, rep *protocol.StepReply, err error) {
	if subject == "" {
		return
	}
	rep.Stage = s.cfg.Index
	if err != nil {
		rep.Error = fmt.Sprintf("stage %s/%d: %v", s.cfg.Instance, s.cfg.Index, err)
	}
	if err := protocol.Send(s.cfg.Conn, subject, rep.Session.String(), rep, nil); err != nil {
		s.log.Error("replying", "subject", subject, "session", rep.Session, "error", err)
	}
}

// fail answers a step with an error.
func (s *Stage) fail(req *protocol.StepRequest, err error) {
	s.log.Debug("step failed", "session", req.Session, "op", req.Op, "error", err)
	s.reply(req.Reply, &protocol.StepReply{Session: req.Session, Op: req.Op}, err)
}

func (s *Stage) sweep() {
	now := s.cfg.Clock.Now()
	for id, ss := range s.sessions {
		if idle := now.Sub(ss.used); idle > s.cfg.IdleTimeout {
			s.log.Info("freeing an idle session", "session", id, "idle", idle, "positions", ss.cache.Len())
			s.free(id)
		}
	}
}

func (s *Stage) free(id uuid.UUID) {
	if ss, ok := s.sessions[id]; ok {
		ss.cache.Free()
		delete(s.sessions, id)
		s.nsessions.Add(-1)
	}
}

// release frees a session here and passes the release on, so every stage
// frees it; the last stage confirms to the caller.
func (s *Stage) release(req *protocol.StepRequest) {
	s.free(req.Session)
	if !s.m.IsLast() {
		if err := protocol.Send(s.cfg.Conn, s.next, req.Session.String(), req, nil); err != nil {
			s.fail(req, fmt.Errorf("forwarding the release to %s: %w", s.next, err))
		}
		return
	}
	s.reply(req.Reply, &protocol.StepReply{Session: req.Session, Op: protocol.OpRelease}, nil)
}
