package jobstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/draftbench/draftbench/pkg/cluster"
	"github.com/draftbench/draftbench/pkg/jobspec"
	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/report"
)

// collected is what a Follow delivered.
type collected struct {
	requests []metrics.Request
	progress []protocol.JobStatus
	summary  *report.Results
	stored   []bool // Event.Stored of every event, in order
}

func collect(c *collected) func(Event) error {
	return func(ev Event) error {
		c.stored = append(c.stored, ev.Stored)
		switch {
		case ev.Request != nil:
			c.requests = append(c.requests, *ev.Request)
		case ev.Progress != nil:
			c.progress = append(c.progress, *ev.Progress)
		case ev.Summary != nil:
			c.summary = ev.Summary
		}
		return nil
	}
}

// Submit, status, list and a replay of the results: every record the
// runner produced comes back, then the summary, which prints exactly as
// the runner's own results do.
func TestSubmitRunFollow(t *testing.T) {
	s := serve(t, nil, newRunner(), nil)
	ctx := testContext(t)
	id := s.submit(t, "num_prompts=2")
	final := s.waitEnd(t, id)
	if final.State != protocol.JobSucceeded || final.Error != "" {
		t.Fatalf("final state %s (%q), want succeeded", final.State, final.Error)
	}

	st, err := s.client.Status(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	wantProgress := []protocol.JobProgress{{Mode: "speculative", Completed: 2, Total: 2}, {Mode: "target", Completed: 2, Total: 2}}
	if st.Name != "fixture" || !reflect.DeepEqual(st.Progress, wantProgress) || st.Started == nil || st.Finished == nil ||
		!strings.HasSuffix(st.OutputDir, "results/fixture-"+id[:8]) || !strings.HasPrefix(st.OutputDir, "/") {
		t.Errorf("Status() = %+v", st)
	}
	jobs, err := s.client.Jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || !reflect.DeepEqual(jobs[0], *st) {
		t.Errorf("Jobs() = %+v, want [%+v]", jobs, *st)
	}

	var got collected
	if _, err := s.client.Follow(ctx, id, FollowOptions{}, collect(&got)); err != nil {
		t.Fatal(err)
	}
	// One warmup and two prompts per mode.
	if len(got.requests) != 6 {
		t.Fatalf("replayed %d request records, want 6", len(got.requests))
	}
	for i, r := range got.requests {
		want := record(r.Mode, i, r.Index, r.Warmup)
		wantJSON, _ := report.MarshalLine(want)
		gotJSON, _ := report.MarshalLine(r)
		if !bytes.Equal(gotJSON, wantJSON) {
			t.Errorf("record %d:\n got  %s\n want %s", i, gotJSON, wantJSON)
		}
	}
	var states []protocol.JobState
	for _, p := range got.progress {
		if len(states) == 0 || states[len(states)-1] != p.State {
			states = append(states, p.State)
		}
	}
	if want := []protocol.JobState{protocol.JobQueued, protocol.JobRunning, protocol.JobSucceeded}; !reflect.DeepEqual(states, want) {
		t.Errorf("progress states %v, want %v", states, want)
	}
	if got.summary == nil {
		t.Fatal("no summary replayed")
	}
	var fromStream, fromRunner bytes.Buffer
	if err := report.PrintSummary(&fromStream, *got.summary); err != nil {
		t.Fatal(err)
	}
	job, _ := jobspec.ParseFile("testdata/job.hcl", jobspec.Config{Vars: []string{"num_prompts=2"}})
	if err := report.PrintSummary(&fromRunner, results(jobFor(job, id), got.requests)); err != nil {
		t.Fatal(err)
	}
	if fromStream.String() != fromRunner.String() {
		t.Errorf("summary from the stream:\n%s\nfrom the runner:\n%s", fromStream.String(), fromRunner.String())
	}
}

// A job the controller cannot run is refused with file:line and nothing runs.
func TestSubmitRefused(t *testing.T) {
	runner := newRunner()
	s := serve(t, nil, runner, nil)
	read := func(name string) string {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	for _, tc := range []struct {
		name string
		src  jobspec.Source
		want []string
	}{
		{"invalid strategy", jobspec.Source{Filename: "testdata/bad-strategy.hcl", HCL: read("testdata/bad-strategy.hcl")},
			[]string{`testdata/bad-strategy.hcl:10,5: placement.strategy "ratio" is not one of multi_gpu_ratio, separate, same, auto`}},
		{"model folder missing on the controller", jobspec.Source{Filename: "testdata/missing-model.hcl", HCL: read("testdata/missing-model.hcl")},
			[]string{`testdata/missing-model.hcl:3,5: model.target.path "testdata/models/no-such-model": it does not exist`}},
		{"syntax error", jobspec.Source{Filename: "broken.hcl", HCL: "job \"x\" {\n  seed = \n}\n"},
			[]string{"broken.hcl:2,"}},
		{"variable not declared", jobspec.Source{Filename: "testdata/job.hcl", HCL: read("testdata/job.hcl"), Vars: []string{"nope=1"}},
			[]string{"nope"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reply, err := s.client.Submit(testContext(t), &tc.src)
			if err != nil {
				t.Fatal(err)
			}
			if reply.JobID != "" || len(reply.Errors) != len(tc.want) {
				t.Fatalf("reply = %+v, want %d error(s)", reply, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(reply.Errors[i], w) && !strings.Contains(reply.Errors[i], w) {
					t.Errorf("error %d = %q, want %q", i, reply.Errors[i], w)
				}
			}
		})
	}
	jobs, err := s.client.Jobs(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 0 || len(runner.started) != 0 {
		t.Errorf("refused jobs were stored (%d) or run (%d)", len(jobs), len(runner.started))
	}
}

func TestCancel(t *testing.T) {
	for _, tc := range []struct {
		name string
		// act submits what it needs and cancels one job; it returns that job's id.
		act       func(t *testing.T, s *served) string
		state     protocol.JobState
		errorText string
		requests  int // request records published for the job
		summary   bool
	}{
		{"running job keeps its finished requests", func(t *testing.T, s *served) string {
			id := s.submit(t)
			<-s.runner.started
			waitRecords(t, s, id, 2)
			if err := s.client.Cancel(testContext(t), id, "operator asked"); err != nil {
				t.Fatal(err)
			}
			return id
		}, protocol.JobCancelled, "operator asked; the results of the finished requests are in ", 2, true},
		{"queued job never runs", func(t *testing.T, s *served) string {
			first := s.submit(t)
			<-s.runner.started // first blocks the queue
			second := s.submit(t)
			if err := s.client.Cancel(testContext(t), second, ""); err != nil {
				t.Fatal(err)
			}
			if err := s.client.Cancel(testContext(t), first, ""); err != nil {
				t.Fatal(err)
			}
			return second
		}, protocol.JobCancelled, "cancelled by a client before the job started", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runner := newRunner()
			runner.blockAfter = 2
			s := serve(t, nil, runner, nil)
			id := tc.act(t, s)
			var got collected
			final, err := s.client.Follow(testContext(t), id, FollowOptions{}, collect(&got))
			if err != nil {
				t.Fatal(err)
			}
			if final.State != tc.state || !strings.HasPrefix(final.Error, tc.errorText) {
				t.Errorf("final state %s (%q), want %s (%q)", final.State, final.Error, tc.state, tc.errorText)
			}
			if len(got.requests) != tc.requests || (got.summary != nil) != tc.summary {
				t.Errorf("%d records and summary %v, want %d and %v", len(got.requests), got.summary != nil, tc.requests, tc.summary)
			}
			// A job with results points at them; one that never ran, at nothing.
			if (final.OutputDir != "") != tc.summary {
				t.Errorf("output %q, want one only with results", final.OutputDir)
			}
			s.stop()
			for len(runner.started) > 0 {
				if started := <-runner.started; started == id && tc.requests == 0 {
					t.Errorf("the cancelled queued job %s ran", id)
				}
			}
		})
	}
}

// waitRecords follows job until n request records arrived.
func waitRecords(t *testing.T, s *served, id string, n int) {
	t.Helper()
	errEnough := errors.New("enough")
	seen := 0
	_, err := s.client.Follow(testContext(t), id, FollowOptions{}, func(ev Event) error {
		if ev.Request != nil {
			seen++
		}
		if seen == n {
			return errEnough
		}
		return nil
	})
	if !errors.Is(err, errEnough) {
		t.Fatalf("waiting for %d records: %v", n, err)
	}
}

func TestCancelRefused(t *testing.T) {
	s := serve(t, nil, newRunner(), nil)
	done := s.submit(t, "num_prompts=1")
	s.waitEnd(t, done)
	for _, tc := range []struct {
		name, id, want string
	}{
		{"finished job", done, "already succeeded"},
		{"unknown job", idD, "no such job"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.client.Cancel(testContext(t), tc.id, "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Cancel() error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// A job whose runner fails before any request ends failed, with no summary.
func TestRunnerFails(t *testing.T) {
	runner := newRunner()
	runner.fail = errors.New("no worker is registered: start `worker --nats URL` on the GPU hosts")
	s := serve(t, nil, runner, nil)
	id := s.submit(t)
	var got collected
	final, err := s.client.Follow(testContext(t), id, FollowOptions{}, collect(&got))
	if err != nil {
		t.Fatal(err)
	}
	if final.State != protocol.JobFailed || final.Error != runner.fail.Error() || got.summary != nil {
		t.Errorf("final %s (%q), summary %v; want failed with the runner's error, no summary", final.State, final.Error, got.summary != nil)
	}
	// Nothing was written: status must not point at a results folder.
	if final.OutputDir != "" {
		t.Errorf("output %q for a job that wrote no file, want none", final.OutputDir)
	}
}

// The requests in flight when a job is stopped on purpose (a cancel, a
// shutdown) count as cancelled, not failed; the runner sees the stop as a
// jobrun.Cancelled.
func TestStoppedJobCountsCancelledRequests(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stop  func(t *testing.T, s *served, id string)
		state protocol.JobState
	}{
		{"cancel", func(t *testing.T, s *served, id string) {
			if err := s.client.Cancel(testContext(t), id, "operator asked"); err != nil {
				t.Fatal(err)
			}
		}, protocol.JobCancelled},
		{"shutdown", func(t *testing.T, s *served, id string) { s.stop() }, protocol.JobFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runner := newRunner()
			runner.blockAfter, runner.inFlight = 3, true // the warmup, two measured, then one in flight
			s := serve(t, nil, runner, nil)
			id := s.submit(t)
			<-runner.started
			waitRecords(t, s, id, 3)
			tc.stop(t, s, id)
			var final *protocol.JobStatus
			deadline := time.Now().Add(waitLimit)
			for {
				st, err := s.store.Get(testContext(t), id)
				if err != nil {
					t.Fatal(err)
				}
				if Final(st.State) {
					final = st
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("job still %s", st.State)
				}
				time.Sleep(10 * time.Millisecond)
			}
			want := protocol.JobProgress{Mode: "speculative", Completed: 2, Cancelled: 1, Total: 3}
			if final.State != tc.state || len(final.Progress) == 0 || final.Progress[0] != want {
				t.Errorf("final %s, progress %+v; want %s and %+v", final.State, final.Progress, tc.state, want)
			}
		})
	}
}

// A job waiting before its first request (for a worker) says so in its
// status, and says nothing of it once it runs or ends.
func TestWaiting(t *testing.T) {
	runner := newRunner()
	runner.waitFor, runner.proceed = "a worker to join", make(chan struct{})
	s := serve(t, nil, runner, nil)
	id := s.submit(t)
	<-runner.started
	deadline := time.Now().Add(waitLimit)
	for {
		st, err := s.client.Status(testContext(t), id)
		if err != nil {
			t.Fatal(err)
		}
		if st.State == protocol.JobRunning && st.Waiting == "a worker to join" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %s, waiting %q; want running and waiting for a worker", st.State, st.Waiting)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(runner.proceed)
	if final := s.waitEnd(t, id); final.State != protocol.JobSucceeded || final.Waiting != "" {
		t.Errorf("final %s, waiting %q; want succeeded, waiting for nothing", final.State, final.Waiting)
	}
}

// On shutdown the running job is stopped with its results kept, the
// queued ones fail, and new submissions find nobody.
func TestShutdown(t *testing.T) {
	runner := newRunner()
	runner.blockAfter = 1
	s := serve(t, nil, runner, nil)
	running := s.submit(t)
	<-runner.started
	queued := s.submit(t)
	waitRecords(t, s, running, 1)
	s.stop()

	store := s.store
	for _, tc := range []struct {
		id, want string
	}{
		{running, "the controller shut down during the job; the results of the finished requests are in "},
		{queued, "the controller shut down before the job started"},
	} {
		st, err := store.Get(testContext(t), tc.id)
		if err != nil {
			t.Fatal(err)
		}
		if st.State != protocol.JobFailed || !strings.HasPrefix(st.Error, tc.want) {
			t.Errorf("job %s: %s (%q), want failed (%q)", tc.id[:8], st.State, st.Error, tc.want)
		}
	}
	job, _ := jobspec.ParseFile("testdata/job.hcl", jobspec.Config{})
	if _, err := s.client.Submit(testContext(t), job.Source); !errors.Is(err, ErrNoController) {
		t.Errorf("Submit() after shutdown: %v, want ErrNoController", err)
	}
}

// A controller started again on the same store lists its jobs, replays
// their results, and fails the one that was running when it died.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	srv := startNATS(t, dir)
	s := serve(t, srv, newRunner(), nil)
	done := s.submit(t, "num_prompts=1")
	s.waitEnd(t, done)
	// A job the controller held when it died: stored as running, never ended.
	died := status(idD, protocol.JobRunning, 0)
	if err := s.store.Save(testContext(t), &died); err != nil {
		t.Fatal(err)
	}
	s.stop()
	srv.Shutdown()

	again := serve(t, startNATS(t, dir), newRunner(), nil)
	ctx := testContext(t)
	jobs, err := again.client.Jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]protocol.JobState{}
	for _, j := range jobs {
		states[j.JobID] = j.State
	}
	if want := map[string]protocol.JobState{done: protocol.JobSucceeded, idD: protocol.JobFailed}; !reflect.DeepEqual(states, want) {
		t.Errorf("jobs after restart = %v, want %v", states, want)
	}
	st, err := again.client.Status(ctx, idD)
	if err != nil {
		t.Fatal(err)
	}
	if st.Error != "the controller restarted while the job was running" {
		t.Errorf("died job error = %q", st.Error)
	}
	var got collected
	final, err := again.client.Follow(ctx, done, FollowOptions{}, collect(&got))
	if err != nil {
		t.Fatal(err)
	}
	if final.State != protocol.JobSucceeded || len(got.requests) != 4 || got.summary == nil {
		t.Errorf("replay after restart: %s, %d records, summary %v; want succeeded, 4, a summary", final.State, len(got.requests), got.summary != nil)
	}
}

func TestSecondControllerRefused(t *testing.T) {
	s := serve(t, nil, newRunner(), nil)
	nc := connect(t, s.srv.ClientURL())
	other, err := NewServer(ServerConfig{Conn: nc, Store: openStore(t, nc), Run: newRunner().run})
	if err != nil {
		t.Fatal(err)
	}
	err = other.Serve(testContext(t))
	if err == nil || !strings.Contains(err.Error(), "another controller already answers on draftbench.jobs.list") {
		t.Fatalf("second Serve() error = %v", err)
	}
}

func TestWorkersList(t *testing.T) {
	seen := epoch.Add(time.Second)
	workers := []cluster.Worker{
		{ID: idA, Host: "gpu-1", Version: "v1", Joined: epoch, LastSeen: seen,
			Devices: []protocol.Device{{Index: 0, Name: "H100", MemoryBytes: 80 << 30, Kind: protocol.DeviceGPU}}},
		{ID: idB, Host: "gpu-2", Version: "v1", Joined: epoch, LastSeen: epoch, Lost: true},
	}
	for _, tc := range []struct {
		name string
		list func() []cluster.Worker
		want []cluster.Worker
	}{
		{"none", nil, nil},
		{"two", func() []cluster.Worker { return workers }, workers},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := serve(t, nil, newRunner(), tc.list)
			got, err := s.client.Workers(testContext(t))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Workers() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNoController(t *testing.T) {
	srv := startNATS(t, "")
	client := NewClient(connect(t, srv.ClientURL()), protocol.Subjects{}, 0)
	ctx := testContext(t)
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"status", func() error { _, err := client.Status(ctx, idA); return err }},
		{"jobs", func() error { _, err := client.Jobs(ctx); return err }},
		{"workers", func() error { _, err := client.Workers(ctx); return err }},
		{"cancel", func() error { return client.Cancel(ctx, idA, "") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			want := "no controller answered on " + srv.ClientURL() + ": is `controller serve` running?"
			if !errors.Is(err, ErrNoController) || err.Error() != want {
				t.Errorf("error = %v, want %q", err, want)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	s := serve(t, nil, newRunner(), nil)
	ctx := testContext(t)
	for _, st := range []protocol.JobStatus{status(idA, protocol.JobSucceeded, 1), status("aaaabbbb-0000-4000-8000-000000000005", protocol.JobFailed, 2)} {
		if err := s.store.Save(ctx, &st); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		arg, want, errText string
	}{
		{idC, idC, ""}, // a whole id is taken as it is
		{"aaaaaaaa", idA, ""},
		{"aaaa", "", `"aaaa" is the beginning of 2 job ids`},
		{"ffff", "", `no job id starts with "ffff"`},
		{"", "", "the job id is empty"},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			got, err := s.client.Resolve(ctx, tc.arg)
			if tc.errText != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errText) {
					t.Errorf("Resolve(%q) error = %v, want %q", tc.arg, err, tc.errText)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("Resolve(%q) = %q, %v; want %q", tc.arg, got, err, tc.want)
			}
		})
	}
}

func TestLatest(t *testing.T) {
	for _, tc := range []struct {
		name string
		jobs []protocol.JobStatus
		want string
	}{
		{"none", nil, ""},
		{"the running one", []protocol.JobStatus{status(idA, protocol.JobSucceeded, 1), status(idB, protocol.JobRunning, 2), status(idC, protocol.JobQueued, 3)}, idB},
		{"else the newest", []protocol.JobStatus{status(idB, protocol.JobSucceeded, 5), status(idA, protocol.JobFailed, 1)}, idB},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Latest(tc.jobs)
			if got.JobID != tc.want || ok != (tc.want != "") {
				t.Errorf("Latest() = %s, %v; want %s", got.JobID, ok, tc.want)
			}
		})
	}
}

// A runner that panics fails its job, and the controller runs the next one.
func TestRunnerPanics(t *testing.T) {
	runner := newRunner()
	runner.panics = 1
	s := serve(t, nil, runner, nil)
	first := s.submit(t, "num_prompts=1")
	second := s.submit(t, "num_prompts=1")
	for _, tc := range []struct {
		id, errText string
		state       protocol.JobState
	}{
		{first, "internal error: boom (the controller's log has the stack)", protocol.JobFailed},
		{second, "", protocol.JobSucceeded},
	} {
		if final := s.waitEnd(t, tc.id); final.State != tc.state || final.Error != tc.errText {
			t.Errorf("job %s: %s (%q), want %s (%q)", tc.id[:8], final.State, final.Error, tc.state, tc.errText)
		}
	}
}

func TestFitList(t *testing.T) {
	var jobs []protocol.JobStatus
	for i := range 20 {
		jobs = append(jobs, status(fmt.Sprintf("%08d-0000-4000-8000-000000000000", i), protocol.JobSucceeded, i))
	}
	one, _ := json.Marshal(jobs[0])
	for _, tc := range []struct {
		name    string
		limit   int64
		omitted int
	}{
		{"all fit", 1 << 20, 0},
		{"room for about ten", int64(10*len(one) + 40), 10},
		{"room for none", 10, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			list := fitList(slices.Clone(jobs), tc.limit)
			if list.Omitted != tc.omitted || len(list.Jobs) != 20-tc.omitted {
				t.Fatalf("omitted %d, kept %d; want %d omitted", list.Omitted, len(list.Jobs), tc.omitted)
			}
			if len(list.Jobs) > 0 && list.Jobs[len(list.Jobs)-1].JobID != jobs[19].JobID {
				t.Errorf("the newest job was dropped")
			}
		})
	}
}
