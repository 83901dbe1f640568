package jobstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/cluster"
	"github.com/draftbench/draftbench/pkg/controller"
	"github.com/draftbench/draftbench/pkg/jobrun"
	"github.com/draftbench/draftbench/pkg/jobspec"
	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/report"
)

// Runner runs one job to its end. It calls onRequest with every finished
// request and honours ctx: when ctx ends it stops early and still returns
// the results of the requests that finished, as controller.Run does.
type Runner func(ctx context.Context, job *controller.Job, onRequest func(metrics.Request)) (*jobrun.Result, error)

// ServerConfig configures a Server.
type ServerConfig struct {
	Conn  *nats.Conn
	Store *Store
	Run   Runner
	// Check runs on every parsed submission, on the controller's machine
	// (serve: the model folders exist there). A *jobspec.Error goes back
	// to the submitter one line per problem, with file:line.
	Check func(*jobspec.Job) error
	// Workers lists the workers for WorkersList (nil: none).
	Workers func() []cluster.Worker
	Now     func() time.Time // nil: time.Now
	Log     hclog.Logger     // nil: discarded
}

// errShutdown says why jobs end when Serve stops.
var errShutdown = errors.New("the controller shut down")

// shutdown is the cause of the running job's context when Serve stops: the
// job is stopped on purpose, so the requests it cuts short count as
// cancelled (jobrun.Cancelled), though the job itself ends failed.
type shutdown struct{}

func (shutdown) Error() string { return errShutdown.Error() }
func (shutdown) Unwrap() []error {
	return []error{errShutdown, &jobrun.Cancelled{By: "a controller shutdown"}}
}

// Reasons a job ends without finishing, as its status says.
const (
	reasonRestarted = "the controller restarted"
	defaultCancel   = "cancelled by a client"
)

// cancelled is the cause of a job's context when a client cancels it;
// reason is what the status says, given what the user wrote (may be empty).
type cancelled struct{ reason, given string }

func (c *cancelled) Error() string { return c.reason }

// Unwrap makes the cancel a jobrun.Cancelled, so the requests it cuts short
// count as cancelled and the warnings name the user and their reason.
func (c *cancelled) Unwrap() error { return &jobrun.Cancelled{By: "the user", Reason: c.given} }

// Server queues submitted jobs and runs them one at a time, recording each
// change in the Store, and answers the job and worker requests of
// DESIGN §5 plus JobsList and WorkersList.
type Server struct {
	cfg   ServerConfig
	subj  protocol.Subjects
	log   hclog.Logger
	wake  chan struct{} // a job was queued
	ready chan struct{} // closed once requests are answered

	mu      sync.Mutex
	queue   []*entry
	running *entry
	closed  bool // shutting down: submissions are refused
}

// entry is a job this controller holds (queued or running).
type entry struct {
	job    *controller.Job
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu sync.Mutex // serialises changes of st and their Save, so the last change is the one stored
	st protocol.JobStatus
}

// NewServer checks cfg.
func NewServer(cfg ServerConfig) (*Server, error) {
	switch {
	case cfg.Conn == nil:
		return nil, errors.New("jobstore: server without a NATS connection")
	case cfg.Store == nil:
		return nil, errors.New("jobstore: server without a store")
	case cfg.Run == nil:
		return nil, errors.New("jobstore: server without a runner")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	if cfg.Workers == nil {
		cfg.Workers = func() []cluster.Worker { return nil }
	}
	return &Server{cfg: cfg, subj: cfg.Store.Subjects(), log: cfg.Log.Named("jobs"),
		wake: make(chan struct{}, 1), ready: make(chan struct{})}, nil
}

// Serve answers requests and runs the queued jobs until ctx ends. Then it
// refuses new submissions, cancels the running job (its partial results
// are written and published), fails the queued ones, and returns. Jobs a
// previous controller left unfinished are failed first.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.checkAlone(); err != nil {
		return err
	}
	ended, err := s.cfg.Store.Recover(ctx, s.cfg.Now(), reasonRestarted)
	if err != nil {
		return err
	}
	for _, st := range ended {
		s.log.Warn("job left unfinished by the previous controller marked failed", "job", st.JobID, "name", st.Name)
	}
	subs, err := s.subscribe()
	defer func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	}()
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.closed = true
		running := s.running
		s.mu.Unlock()
		if running != nil {
			running.cancel(shutdown{})
		}
	})
	defer stop()
	s.log.Info("accepting jobs", "submit", s.subj.JobsSubmit())
	close(s.ready)
	for e := s.next(ctx); e != nil; e = s.next(ctx) {
		s.run(e)
	}

	s.mu.Lock()
	s.closed = true
	queued := s.queue
	s.queue = nil
	s.mu.Unlock()
	for _, e := range queued {
		s.finishQueued(e, protocol.JobFailed, errShutdown.Error()+" before the job started")
	}
	return nil
}

// Ready is closed once Serve answers requests.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// checkAlone refuses to serve beside another controller on the same
// prefix: both would take every submission.
func (s *Server) checkAlone() error {
	subject := JobsList(s.subj)
	_, err := s.cfg.Conn.Request(subject, nil, time.Second)
	switch {
	case err == nil:
		return fmt.Errorf("another controller already answers on %s at %s: stop it first", subject, s.cfg.Conn.ConnectedUrlRedacted())
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, nats.ErrTimeout):
		return nil
	}
	return fmt.Errorf("jobstore: asking %s for another controller: %w", subject, err)
}

func (s *Server) subscribe() ([]*nats.Subscription, error) {
	status, statusTok, err := jobWildcard(s.subj.JobStatus(jobToken))
	if err != nil {
		return nil, err
	}
	cancel, cancelTok, err := jobWildcard(s.subj.JobCancel(jobToken))
	if err != nil {
		return nil, err
	}
	handlers := []struct {
		subject string
		handle  func(*nats.Msg) any
	}{
		{s.subj.JobsSubmit(), s.onSubmit},
		{status, func(m *nats.Msg) any { return s.onStatus(m, statusTok) }},
		{cancel, func(m *nats.Msg) any { return s.onCancel(m, cancelTok) }},
		{JobsList(s.subj), s.onJobs},
		{WorkersList(s.subj), s.onWorkers},
	}
	var subs []*nats.Subscription
	for _, h := range handlers {
		sub, err := s.cfg.Conn.Subscribe(h.subject, func(m *nats.Msg) { s.respond(m, h.handle(m)) })
		if err != nil {
			return subs, fmt.Errorf("jobstore: subscribing to %s: %w", h.subject, err)
		}
		subs = append(subs, sub)
	}
	if err := s.cfg.Conn.Flush(); err != nil {
		return subs, fmt.Errorf("jobstore: subscribing: %w", err)
	}
	return subs, nil
}

func (s *Server) respond(m *nats.Msg, reply any) {
	if m.Reply == "" {
		return
	}
	var data []byte
	var err error
	if msg, ok := reply.(protocol.Message); ok {
		data, err = protocol.Encode(msg)
	} else {
		data, err = json.Marshal(reply)
	}
	if err != nil {
		s.log.Error("encoding a reply", "subject", m.Subject, "error", err)
		return
	}
	if err := m.Respond(data); err != nil {
		s.log.Warn("answering a request", "subject", m.Subject, "error", err)
	}
}

func (s *Server) onSubmit(m *nats.Msg) any {
	var req protocol.JobSubmit
	if err := protocol.Decode(m.Data, &req); err != nil {
		return &protocol.JobSubmitReply{Errors: []string{err.Error()}}
	}
	spec, err := req.Job.Parse()
	if err != nil {
		return refused(err)
	}
	if s.cfg.Check != nil {
		if err := s.cfg.Check(spec); err != nil {
			return refused(err)
		}
	}
	job := controller.NewJob(spec, "")
	if abs, err := filepath.Abs(job.Out); err == nil {
		job.Out = abs // status is read from elsewhere: say where on this machine
	}
	e := &entry{job: job, st: protocol.JobStatus{JobID: job.ID, Name: spec.Name, State: protocol.JobQueued,
		OutputDir: job.Out, Submitted: s.cfg.Now(), Progress: initialProgress(spec)}}
	waiting := func(what string) { s.setWaiting(e, what) }
	e.ctx, e.cancel = context.WithCancelCause(context.WithValue(context.Background(), waitingKey{}, waiting))

	// Held across the save so a shutdown cannot slip between storing the
	// job and queueing it, which would leave it queued for nobody.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return &protocol.JobSubmitReply{Errors: []string{errShutdown.Error() + ": submit the job again once it is back"}}
	}
	if err := s.cfg.Store.Save(context.Background(), &e.st); err != nil {
		return &protocol.JobSubmitReply{Errors: []string{err.Error()}}
	}
	s.queue = append(s.queue, e)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	s.log.Info("job queued", "job", job.ID, "name", spec.Name, "queued", len(s.queue))
	return &protocol.JobSubmitReply{JobID: job.ID, Name: spec.Name, Warnings: spec.Warnings}
}

// refused turns a parse or check error into the reply's lines.
func refused(err error) *protocol.JobSubmitReply {
	var jerr *jobspec.Error
	if errors.As(err, &jerr) {
		return &protocol.JobSubmitReply{Errors: jerr.Lines()}
	}
	return &protocol.JobSubmitReply{Errors: []string{err.Error()}}
}

// initialProgress has one zero entry per enabled mode; Total is known in
// count mode only.
func initialProgress(spec *jobspec.Job) []protocol.JobProgress {
	total := 0
	if spec.Load.Mode != jobspec.LoadModeRate {
		total = spec.Load.NumPrompts
	}
	var out []protocol.JobProgress
	if spec.Modes.Speculative {
		out = append(out, protocol.JobProgress{Mode: string(metrics.ModeSpeculative), Total: total})
	}
	if spec.Modes.TargetAR {
		out = append(out, protocol.JobProgress{Mode: string(metrics.ModeTarget), Total: total})
	}
	return out
}

// onStatus answers a JobStatus, or an Ack with the error for a job it
// does not know (JobStatus has no field for one).
func (s *Server) onStatus(m *nats.Msg, tok int) any {
	id, err := jobFromSubject(m.Subject, tok)
	if err != nil {
		return &protocol.Ack{Error: err.Error()}
	}
	st, err := s.cfg.Store.Get(context.Background(), id)
	if err != nil {
		return &protocol.Ack{Error: err.Error()}
	}
	return st
}

func (s *Server) onCancel(m *nats.Msg, tok int) any {
	id, err := jobFromSubject(m.Subject, tok)
	if err != nil {
		return &protocol.Ack{Error: err.Error()}
	}
	var req protocol.JobCancel
	if err := protocol.Decode(m.Data, &req); err != nil {
		return &protocol.Ack{Error: err.Error()}
	}
	if err := s.Cancel(id, req.Reason); err != nil {
		return &protocol.Ack{Error: err.Error()}
	}
	return &protocol.Ack{}
}

// Cancel cancels job id: a queued job ends at once, the running one when
// its runner has stopped and written the results of its finished requests.
func (s *Server) Cancel(id, reason string) error {
	given := reason
	if reason == "" {
		reason = defaultCancel
	}
	s.mu.Lock()
	if e := s.running; e != nil && e.job.ID == id {
		s.mu.Unlock()
		e.cancel(&cancelled{reason: reason, given: given})
		s.log.Info("cancelling the running job", "job", id, "reason", reason)
		return nil
	}
	for i, e := range s.queue {
		if e.job.ID == id {
			s.queue = append(s.queue[:i:i], s.queue[i+1:]...)
			s.mu.Unlock()
			s.finishQueued(e, protocol.JobCancelled, reason+" before the job started")
			return nil
		}
	}
	s.mu.Unlock()
	st, err := s.cfg.Store.Get(context.Background(), id)
	if err != nil {
		return err
	}
	if Final(st.State) {
		return fmt.Errorf("job %s already %s", id, st.State)
	}
	return fmt.Errorf("job %s is %s but this controller does not hold it", id, st.State)
}

func (s *Server) finishQueued(e *entry, state protocol.JobState, why string) {
	e.cancel(nil)
	now := s.cfg.Now()
	s.update(e, func(st *protocol.JobStatus) {
		// It never ran: no file was written, so no output folder to point at.
		st.State, st.Error, st.Finished, st.OutputDir = state, why, &now, ""
	})
	s.log.Info("job ended before it started", "job", e.job.ID, "state", state, "reason", why)
}

func (s *Server) onJobs(*nats.Msg) any {
	jobs, err := s.cfg.Store.List(context.Background())
	if err != nil {
		return &JobList{V: listVersion, Error: err.Error()}
	}
	return fitList(jobs, s.cfg.Conn.MaxPayload()-replyHeadroom)
}

// replyHeadroom is what a reply's framing may take of max_payload.
const replyHeadroom = 1024

// fitList drops the oldest jobs until the list fits in limit bytes: a
// reply over the server's max_payload would not be sent at all, and the
// client would read that as no controller.
func fitList(jobs []protocol.JobStatus, limit int64) *JobList {
	list := &JobList{V: listVersion, Jobs: jobs}
	for {
		data, err := json.Marshal(list)
		if err != nil || int64(len(data)) <= limit || len(list.Jobs) == 0 {
			return list
		}
		drop := max(1, len(list.Jobs)/10)
		list.Jobs = list.Jobs[drop:]
		list.Omitted += drop
	}
}

func (s *Server) onWorkers(*nats.Msg) any {
	return &WorkerList{V: listVersion, Workers: s.cfg.Workers()}
}

// next takes the oldest queued job and marks it running, or returns nil
// once ctx ends.
func (s *Server) next(ctx context.Context) *entry {
	for {
		s.mu.Lock()
		if ctx.Err() == nil && len(s.queue) > 0 {
			e := s.queue[0]
			s.queue = s.queue[1:]
			s.running = e
			s.mu.Unlock()
			return e
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		}
	}
}

// run runs e to its end and records how it ended.
func (s *Server) run(e *entry) {
	log := s.log.With("job", e.job.ID, "name", e.job.Spec.Name)
	began := time.Now() // the file system's clock, whatever cfg.Now is
	started := s.cfg.Now()
	s.update(e, func(st *protocol.JobStatus) { st.State, st.Started = protocol.JobRunning, &started })
	log.Info("job started")
	res, err := s.call(e)
	if err == nil && res != nil {
		err = res.NothingMeasured() // its files are written; the job did not measure
	}
	cause := context.Cause(e.ctx)
	e.cancel(nil)
	if res != nil {
		if perr := s.cfg.Store.PublishSummary(context.Background(), e.job.ID, res.Results); perr != nil {
			log.Error("publishing the summary", "error", perr)
		}
	}
	finished := s.cfg.Now()
	var c *cancelled
	var final protocol.JobStatus
	// The final state is saved under s.mu, so a cancel either finds the job
	// running or finds its final state stored, never a gap between the two.
	s.mu.Lock()
	s.running = nil
	s.update(e, func(st *protocol.JobStatus) {
		st.Finished, st.Waiting = &finished, ""
		switch {
		case res != nil:
			if abs, aerr := filepath.Abs(res.Dir); aerr == nil {
				st.OutputDir = abs
			}
		case !wroteRecords(st.OutputDir, began):
			// It ended before writing anything: there are no results to point at.
			st.OutputDir = ""
		}
		stopped := false // by a cancel or a shutdown, not by a failure
		switch {
		case err == nil:
			st.State = protocol.JobSucceeded
		case errors.Is(cause, errShutdown):
			st.State, st.Error, stopped = protocol.JobFailed, errShutdown.Error()+" during the job", true
		case errors.As(cause, &c):
			st.State, st.Error, stopped = protocol.JobCancelled, c.reason, true
		default:
			st.State, st.Error = protocol.JobFailed, err.Error()
		}
		if stopped && res != nil {
			st.Error += "; the results of the finished requests are in " + st.OutputDir
		}
		final = *st
	})
	s.mu.Unlock()
	if final.State != protocol.JobSucceeded {
		log.Warn("job ended", "state", final.State, "error", final.Error)
		return
	}
	log.Info("job succeeded", "output", final.OutputDir)
}

// call runs the runner; a panic fails the job instead of the controller,
// which has other jobs queued.
func (s *Server) call(e *entry) (res *jobrun.Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("the job runner panicked", "job", e.job.ID, "panic", p, "stack", string(debug.Stack()))
			res, err = nil, fmt.Errorf("internal error: %v (the controller's log has the stack)", p)
		}
	}()
	return s.cfg.Run(e.ctx, e.job, func(r metrics.Request) { s.onRequest(e, r) })
}

// onRequest publishes a finished request and counts it.
func (s *Server) onRequest(e *entry, r metrics.Request) {
	// Not e.ctx: the records of a cancelled job are still wanted.
	if err := s.cfg.Store.PublishRequest(context.Background(), e.job.ID, r); err != nil {
		s.log.Error("publishing a request record", "job", e.job.ID, "error", err)
	}
	if r.Warmup {
		return // not counted, as the progress bar does not count it
	}
	s.update(e, func(st *protocol.JobStatus) {
		for i := range st.Progress {
			if st.Progress[i].Mode == string(r.Mode) {
				switch {
				case r.Cancelled:
					st.Progress[i].Cancelled++
				case r.Failed():
					st.Progress[i].Failed++
				default:
					st.Progress[i].Completed++
				}
			}
		}
	})
}

// waitingKey holds, in the context a runner gets, the function that sets
// its job's JobStatus.Waiting.
type waitingKey struct{}

// SetWaiting records in the status of the job that ctx runs what the job
// waits for before it can start ("a worker to join …"), so that status
// shows it rather than a bare "running"; "" clears it. A context that is
// not a job's (a test, controller run) is ignored.
func SetWaiting(ctx context.Context, what string) {
	if f, ok := ctx.Value(waitingKey{}).(func(string)); ok {
		f(what)
	}
}

func (s *Server) setWaiting(e *entry, what string) {
	s.update(e, func(st *protocol.JobStatus) {
		if !Final(st.State) {
			st.Waiting = what
		}
	})
}

// wroteRecords reports whether request records were written in dir since
// the job began: then a job that returned no results still left some.
func wroteRecords(dir string, since time.Time) bool {
	if dir == "" {
		return false
	}
	fi, err := os.Stat(filepath.Join(dir, report.FileRequests))
	// a coarse file system clock may round the time down by up to a second
	return err == nil && !fi.ModTime().Before(since.Add(-time.Second))
}

// update changes e's status and saves it; a failed save is logged, as the
// job itself is not harmed by it.
func (s *Server) update(e *entry, change func(*protocol.JobStatus)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	change(&e.st)
	if err := s.cfg.Store.Save(context.Background(), &e.st); err != nil {
		s.log.Error("saving the job state", "job", e.job.ID, "state", e.st.State, "error", err)
	}
}
