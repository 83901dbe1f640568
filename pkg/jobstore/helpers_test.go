package jobstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/cluster"
	"github.com/draftbench/draftbench/pkg/controller"
	"github.com/draftbench/draftbench/pkg/jobrun"
	"github.com/draftbench/draftbench/pkg/jobspec"
	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/report"
)

// waitLimit bounds every wait of these tests: reaching it means a hang,
// not a slow machine, so it is generous and never what a test measures.
const waitLimit = 20 * time.Second

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

// startNATS starts an embedded server with JetStream in dir ("" = a
// temporary folder removed with the server).
func startNATS(t *testing.T, dir string) *natsrv.Server {
	t.Helper()
	srv, err := natsrv.Start(natsrv.Options{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := natsrv.Connect(url, natsrv.ConnectOptions{Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func openStore(t *testing.T, nc *nats.Conn) *Store {
	t.Helper()
	st, err := Open(testContext(t), nc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// served is a Server running on its own embedded NATS server.
type served struct {
	srv    *natsrv.Server
	nc     *nats.Conn
	store  *Store
	server *Server
	client *Client
	runner *fakeRunner
	stop   func() // ends Serve and waits for it
}

// serve starts a Server with runner on srv (a new temporary one when nil).
func serve(t *testing.T, srv *natsrv.Server, runner *fakeRunner, workers func() []cluster.Worker) *served {
	t.Helper()
	if srv == nil {
		srv = startNATS(t, "")
	}
	nc := connect(t, srv.ClientURL())
	s := &served{srv: srv, nc: nc, store: openStore(t, nc), runner: runner}
	var err error
	s.server, err = NewServer(ServerConfig{
		Conn: nc, Store: s.store, Run: runner.run, Workers: workers,
		Check: func(j *jobspec.Job) error { return j.CheckPaths(jobspec.StatFunc(os.Stat)) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.server.Serve(ctx) }()
	select {
	case <-s.server.Ready():
	case err := <-done:
		t.Fatalf("Serve: %v", err)
	case <-time.After(waitLimit):
		t.Fatal("Serve not ready")
	}
	var stopped bool
	s.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	t.Cleanup(s.stop)
	s.client = NewClient(connect(t, srv.ClientURL()), protocol.Subjects{}, 0)
	return s
}

// submit parses testdata/job.hcl with vars and submits it; it fails the
// test unless the controller accepts it.
func (s *served) submit(t *testing.T, vars ...string) string {
	t.Helper()
	job, err := jobspec.ParseFile("testdata/job.hcl", jobspec.Config{Vars: vars})
	if err != nil {
		t.Fatal(err)
	}
	reply, err := s.client.Submit(testContext(t), job.Source)
	if err != nil {
		t.Fatal(err)
	}
	if len(reply.Errors) > 0 {
		t.Fatalf("submission refused: %v", reply.Errors)
	}
	return reply.JobID
}

// waitState follows the job until it ends and returns its final state.
func (s *served) waitEnd(t *testing.T, id string) *protocol.JobStatus {
	t.Helper()
	final, err := s.client.Follow(testContext(t), id, FollowOptions{}, func(Event) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	return final
}

// fakeRunner stands for controller.Run: it emits a record per prompt and
// mode (warmups first), then returns results made from them.
type fakeRunner struct {
	started chan string // the id of every job it starts
	// blockAfter > 0 makes it wait for its context after that many records.
	blockAfter int
	// fail, when set, is returned before any request, as a failed deployment.
	fail error
	// panics is how many of the first jobs make it panic (jobs run one at a time).
	panics int
	// inFlight makes a blocked runner record one more request once its
	// context ends, cut short as jobrun records it: cancelled when the cause
	// is a jobrun.Cancelled, failed otherwise.
	inFlight bool
	// waitFor, when set, is what the runner waits for (SetWaiting) until
	// proceed is closed, before its first request.
	waitFor string
	proceed chan struct{}
}

func newRunner() *fakeRunner { return &fakeRunner{started: make(chan string, 16)} }

func (f *fakeRunner) run(ctx context.Context, job *controller.Job, onRequest func(metrics.Request)) (*jobrun.Result, error) {
	f.started <- job.ID
	if f.panics > 0 {
		f.panics--
		panic("boom")
	}
	if f.waitFor != "" {
		SetWaiting(ctx, f.waitFor)
		select {
		case <-f.proceed:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		SetWaiting(ctx, "")
	}
	if f.fail != nil {
		return nil, f.fail
	}
	var recs []metrics.Request
	emit := func() {
		for _, mode := range modes(job.Spec) {
			for i := range job.Spec.Load.WarmupRequests + job.Spec.Load.NumPrompts {
				if f.blockAfter > 0 && len(recs) == f.blockAfter {
					<-ctx.Done()
					if f.inFlight {
						rec := record(mode, len(recs), i-job.Spec.Load.WarmupRequests, i < job.Spec.Load.WarmupRequests)
						rec.Error = "round 1: verify step: " + ctx.Err().Error()
						var c *jobrun.Cancelled
						rec.Cancelled = errors.As(context.Cause(ctx), &c)
						recs = append(recs, rec)
						onRequest(rec)
					}
					return
				}
				warmup := i < job.Spec.Load.WarmupRequests
				rec := record(mode, len(recs), i-job.Spec.Load.WarmupRequests, warmup)
				recs = append(recs, rec)
				onRequest(rec)
			}
		}
	}
	emit()
	res := &jobrun.Result{Dir: job.Out, Results: results(job, recs), Requests: recs}
	if ctx.Err() != nil {
		return res, fmt.Errorf("%w: %v", controller.ErrEndedEarly, context.Cause(ctx))
	}
	return res, nil
}

func modes(spec *jobspec.Job) []metrics.Mode {
	var out []metrics.Mode
	if spec.Modes.Speculative {
		out = append(out, metrics.ModeSpeculative)
	}
	if spec.Modes.TargetAR {
		out = append(out, metrics.ModeTarget)
	}
	return out
}

var epoch = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// record is a valid request record: four tokens in three emissions, two
// speculative rounds in speculative mode.
func record(mode metrics.Mode, n, index int, warmup bool) metrics.Request {
	sent := epoch.Add(time.Duration(n) * time.Second)
	ms := func(k int) time.Time { return sent.Add(time.Duration(k) * time.Millisecond) }
	r := metrics.Request{
		ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", n), Index: index, Mode: mode, PromptSource: "prompts",
		InputTokens: 3, OutputTokens: 4, Warmup: warmup, SentAt: sent, FinishedAt: ms(25 + n),
		Emissions: []metrics.Emission{{At: ms(10), Tokens: 1}, {At: ms(20), Tokens: 2}, {At: ms(25 + n), Tokens: 1}},
		OutputIDs: []int32{5, 6, 7, 8},
	}
	if mode == metrics.ModeSpeculative {
		r.Rounds = []metrics.Round{
			{Gamma: 2, Drafted: 2, Accepted: 1, Emitted: 2, AcceptedByPosition: []bool{true, false}, Wall: 8 * time.Millisecond, Compute: 6 * time.Millisecond},
			{Gamma: 2, Drafted: 2, Accepted: 0, Emitted: 1, AcceptedByPosition: []bool{false, false}, Wall: 5 * time.Millisecond, Compute: 4 * time.Millisecond},
		}
	}
	return r
}

// results summarises recs as jobrun does.
func results(job *controller.Job, recs []metrics.Request) report.Results {
	res := report.Results{Job: report.Job{ID: job.ID, Name: job.Spec.Name, StartedAt: epoch, FinishedAt: epoch.Add(time.Minute)},
		Config: job.Spec, Warnings: []string{}}
	var spec, target *metrics.Summary
	for _, mode := range modes(job.Spec) {
		s, err := metrics.Summarize(mode, recs)
		if err != nil {
			panic(err) // record builds valid records
		}
		if mode == metrics.ModeSpeculative {
			spec = &s
		} else {
			target = &s
		}
	}
	res.Speculative, res.Target = spec, target
	if spec != nil && target != nil {
		cmp, err := metrics.Compare(*spec, *target, recs, recs, true)
		if err != nil {
			panic(err)
		}
		res.Comparison = &cmp
	}
	return res
}

// jobFor is the controller.Job the server made of spec under id.
func jobFor(spec *jobspec.Job, id string) *controller.Job {
	return &controller.Job{ID: id, Spec: spec, Out: jobrun.DefaultOutputDir(spec.Name, id)}
}
