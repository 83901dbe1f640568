package jobrun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/draftbench/draftbench/pkg/dirlock"
	"github.com/draftbench/draftbench/pkg/jobspec"
	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/model"
	"github.com/draftbench/draftbench/pkg/placement"
	"github.com/draftbench/draftbench/pkg/report"
	"github.com/draftbench/draftbench/pkg/tinymodel"
)

// testJob runs n synthetic prompts, two at a time, in both modes.
func testJob(t *testing.T, n int) *jobspec.Job {
	t.Helper()
	src := fmt.Sprintf(`job "cut-short" {
  seed = 3
  model "target" { path = "/models/target" }
  model "drafter" { path = "/models/drafter" }
  placement { strategy = "same" }
  dataset "synthetic" { input_tokens = 4 }
  load {
    num_prompts     = %d
    max_concurrency = 2
    warmup_requests = 0
  }
  generation {
    max_new_tokens = 3
    gamma          = 2
    temperature    = 0
  }
  modes {
    speculative = true
    target_ar   = true
  }
  gpu_monitor { enabled = false }
}
`, n)
	job, err := jobspec.Parse("test.hcl", []byte(src), jobspec.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return job
}

type fakeTokenizer struct{}

func (fakeTokenizer) Encode(text string) ([]int, error) { return []int{1, 2, 3}, nil }
func (fakeTokenizer) VocabSize() int                    { return 100 }
func (fakeTokenizer) EOS() []int                        { return nil }
func (fakeTokenizer) SpecialTokens() map[string]int     { return map[string]int{"<eos>": 0} }

// stopAfter completes the first `done` requests; the ones after it emit a token and wait in
// flight until two are waiting, then the job's context is ended with cause (a cancel, a lost
// worker), as the controller does, and they end with the context's error.
type stopAfter struct {
	done  int
	stop  context.CancelCauseFunc
	cause error

	mu       sync.Mutex
	calls    int
	inFlight int
}

func (e *stopAfter) Generate(ctx context.Context, mode metrics.Mode, g Gen) (GenResult, error) {
	e.mu.Lock()
	e.calls++
	n := e.calls
	e.mu.Unlock()
	var res GenResult
	emit := func(tok int) {
		g.OnEmit([]int{tok})
		res.Tokens = append(res.Tokens, tok)
		if mode == metrics.ModeSpeculative {
			res.Rounds = append(res.Rounds, metrics.Round{Gamma: g.Gamma, Drafted: 1, Accepted: 1, Emitted: 1, AcceptedByPosition: []bool{true}})
		}
	}
	if n <= e.done {
		for i := range g.MaxNewTokens {
			emit(10 + i)
		}
		return res, nil
	}
	emit(10)
	e.mu.Lock()
	e.inFlight++
	if e.inFlight == 2 {
		e.stop(e.cause)
	}
	e.mu.Unlock()
	<-ctx.Done()
	return res, fmt.Errorf("round 1: verify step of session x on draftbench.stage.target-1.0: %w", ctx.Err())
}

// TestRunCutShort: a job whose context ends during the speculative mode, by a user's cancel
// or by a failure (a lost worker). The requests in flight count as cancelled or failed as the
// cause says; the warnings name the cause and count the finished requests right; the target
// mode, which never ran, is said not to have run and none of its figures is a number.
func TestRunCutShort(t *testing.T) {
	lost := errors.New("worker 1a2b3c4d on host gpu-7 stopped sending heartbeats")
	for _, tc := range []struct {
		name                 string
		prompts              int
		cause                error
		failed, cancelled    int
		cutShort, targetSkip string
		recordError          string
	}{
		{"cancelled by the user", 10, &Cancelled{By: "the user", Reason: "test over"}, 0, 2,
			"the job was cancelled by the user (reason: test over) during the speculative mode: 4 of 10 requests finished, 2 cancelled",
			"the target mode did not run: the job was cancelled by the user (reason: test over) before it",
			"round 1: verify step of session x on draftbench.stage.target-1.0: context canceled (cancelled by the user: test over)"},
		// the last two requests were in flight: every request had been sent
		{"cancelled with every request sent", 6, &Cancelled{By: "the user"}, 0, 2,
			"the job was cancelled by the user during the speculative mode: 4 of 6 requests finished, 2 cancelled",
			"the target mode did not run: the job was cancelled by the user before it",
			"round 1: verify step of session x on draftbench.stage.target-1.0: context canceled (cancelled by the user)"},
		{"interrupted", 10, context.Canceled, 0, 2,
			"the job was cancelled during the speculative mode: 4 of 10 requests finished, 2 cancelled",
			"the target mode did not run: the job was cancelled before it",
			"round 1: verify step of session x on draftbench.stage.target-1.0: context canceled"},
		{"a worker was lost", 10, lost, 2, 0,
			"the job failed (worker 1a2b3c4d on host gpu-7 stopped sending heartbeats) during the speculative mode: 4 of 10 requests finished, 2 failed",
			"the target mode did not run: the job failed (worker 1a2b3c4d on host gpu-7 stopped sending heartbeats) before it",
			"round 1: verify step of session x on draftbench.stage.target-1.0: context canceled (worker 1a2b3c4d on host gpu-7 stopped sending heartbeats)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			dir := t.TempDir()
			var console strings.Builder
			res, err := Run(ctx, testJob(t, tc.prompts), fakeTokenizer{}, &stopAfter{done: 4, stop: cancel, cause: tc.cause}, dir,
				Options{Console: &console})
			if err != nil {
				t.Fatal(err)
			}
			r := res.Results
			if s := r.Speculative; s.NumRequests != 6 || s.Completed != 4 || s.Failed != tc.failed || s.Cancelled != tc.cancelled {
				t.Errorf("speculative: %d requests, %d completed, %d failed, %d cancelled; want 6, 4, %d, %d",
					s.NumRequests, s.Completed, s.Failed, s.Cancelled, tc.failed, tc.cancelled)
			}
			for _, rec := range res.Requests {
				if !rec.Completed() && rec.Error != tc.recordError {
					t.Errorf("request %d: error %q, want %q", rec.Index, rec.Error, tc.recordError)
				}
			}
			wantOutcome := report.OutcomeFailed
			if tc.cancelled > 0 {
				wantOutcome = report.OutcomeCancelled
			}
			if r.Job.Outcome != wantOutcome || !strings.HasPrefix(tc.cutShort, r.Job.Reason+" during") {
				t.Errorf("job outcome %q, reason %q; want %q and the start of %q", r.Job.Outcome, r.Job.Reason, wantOutcome, tc.cutShort)
			}
			want := []string{tc.cutShort, tc.targetSkip}
			if strings.Join(r.Warnings, "\n") != strings.Join(want, "\n") {
				t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(r.Warnings, "\n"), strings.Join(want, "\n"))
			}

			// The target mode never ran: nothing of it may read as a measurement.
			if r.Target == nil || r.Target.NumRequests != 0 {
				t.Fatalf("target summary %+v, want an enabled mode without requests", r.Target)
			}
			data, err := os.ReadFile(filepath.Join(dir, report.FileTarget))
			if err != nil {
				t.Fatal(err)
			}
			var target map[string]json.RawMessage
			if err := json.Unmarshal(data, &target); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"duration_s", "request_throughput", "output_throughput", "total_token_throughput",
				"ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"} {
				if string(target[k]) != "null" {
					t.Errorf("%s: %s = %s, want null", report.FileTarget, k, target[k])
				}
			}
			if c := r.Comparison; c == nil || c.SpeedupTPOT != nil || c.SpeedupE2EL != nil || c.SpeedupOutputThroughput != nil {
				t.Errorf("comparison %+v, want null speedups", c)
			}

			out := console.String()
			targetBlock := "======= Serving Benchmark Result (target) ========\n" +
				"Did not run: no target request was sent.\n" +
				"==================================================\n"
			if !strings.Contains(out, targetBlock) {
				t.Errorf("console summary does not say the target mode did not run:\n%s", out)
			}
			if !strings.Contains(out, "Warning: "+tc.cutShort) {
				t.Errorf("console summary lacks the warning %q:\n%s", tc.cutShort, out)
			}
		})
	}
}

// TestLoadPlanBatching: with batching, prompts go in batches of batch.size;
// without it (the seed's ENABLE_BATCH=false) one by one in count mode, unless
// max_concurrency says otherwise; rate mode sends at the arrival times.
func TestLoadPlanBatching(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		enabled              bool
		mode                 string
		maxConcurrency       int
		wantBatch, wantConcr int
	}{
		{"batches", true, jobspec.LoadModeCount, 0, 4, 0},
		{"one by one", false, jobspec.LoadModeCount, 0, 0, 1},
		{"max_concurrency wins", false, jobspec.LoadModeCount, 3, 0, 3},
		{"rate mode", false, jobspec.LoadModeRate, 0, 0, 0},
		{"rate mode, batching on", true, jobspec.LoadModeRate, 0, 0, 0}, // arrivals are not gated into batches
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := &jobspec.Job{}
			job.Batch.Enabled, job.Batch.Size = tc.enabled, 4
			job.Load.Mode, job.Load.NumPrompts, job.Load.MaxConcurrency = tc.mode, 8, tc.maxConcurrency
			job.Load.Rate = 2
			p := loadPlan(job)
			if p.BatchSize != tc.wantBatch || p.MaxConcurrency != tc.wantConcr {
				t.Errorf("batch size %d, max concurrency %d; want %d, %d", p.BatchSize, p.MaxConcurrency, tc.wantBatch, tc.wantConcr)
			}
		})
	}
}

// slowEngine answers every request after d, with three tokens.
type slowEngine struct{ d time.Duration }

func (e slowEngine) Generate(ctx context.Context, mode metrics.Mode, g Gen) (GenResult, error) {
	select {
	case <-time.After(e.d):
	case <-ctx.Done():
		return GenResult{}, ctx.Err()
	}
	var res GenResult
	for i := range 3 {
		g.OnEmit([]int{10 + i})
		res.Tokens = append(res.Tokens, 10+i)
	}
	return res, nil
}

// TestRateModeSendsAtArrivalTimes: in rate mode requests leave at their
// arrival times with batching on (the default), so a cluster slower than
// one batch per gap still gets the offered rate; the results say how the
// mode was sent, and a full max_concurrency that holds sends back is a
// warning naming it.
func TestRateModeSendsAtArrivalTimes(t *testing.T) {
	run := func(t *testing.T, maxConcurrency int) report.Results {
		src := fmt.Sprintf(`job "rate" {
  model "target" { path = "/models/target" }
  dataset "synthetic" { input_tokens = 4 }
  load {
    rate            = 40
    duration        = "500ms"
    arrival         = "constant"
    max_concurrency = %d
  }
  batch {
    enabled = true
    size    = 2
  }
  generation {
    max_new_tokens = 3
    temperature    = 0
  }
  modes {
    speculative = false
    target_ar   = true
  }
  gpu_monitor { enabled = false }
}
`, maxConcurrency)
		job, err := jobspec.Parse("rate.hcl", []byte(src), jobspec.Config{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := Run(context.Background(), job, fakeTokenizer{}, slowEngine{150 * time.Millisecond}, t.TempDir(),
			Options{Console: io.Discard})
		if err != nil {
			t.Fatal(err)
		}
		return res.Results
	}
	t.Run("no cap", func(t *testing.T) {
		r := run(t, 0)
		l := r.Target.Load
		if l == nil || l.Mode != "rate" || *l.RequestRate != 40 || l.Arrival == nil || *l.Arrival != "constant" || l.BatchSize != nil || l.MaxConcurrency != nil {
			t.Fatalf("load %+v", l)
		}
		// 20 sends 25 ms apart, each answered after 150 ms: about six in
		// flight. Gated into batches of two it would be two, at 13 req/s.
		if l.PeakInFlight < 3 || *l.AchievedRate < 25 || *l.AchievedRate > 48 {
			t.Errorf("peak in flight %d, achieved %.1f req/s; want the arrivals kept (about 6 and 40)", l.PeakInFlight, *l.AchievedRate)
		}
		if r.Target.Completed != 20 || len(r.Warnings) != 0 {
			t.Errorf("%d completed, warnings %q", r.Target.Completed, r.Warnings)
		}
	})
	t.Run("max_concurrency holds sends back", func(t *testing.T) {
		r := run(t, 1)
		l := r.Target.Load
		if l == nil || l.MaxConcurrency == nil || *l.MaxConcurrency != 1 || l.PeakInFlight != 1 {
			t.Fatalf("load %+v", l)
		}
		if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "target mode: the sends fell behind the arrival times") ||
			!strings.Contains(r.Warnings[0], "load.max_concurrency 1 was reached") {
			t.Errorf("warnings %q", r.Warnings)
		}
	})
}

// TestOutputFolderOneRunAtATime: a run refuses a folder another run is
// writing, instead of setting its files aside under it.
func TestOutputFolderOneRunAtATime(t *testing.T) {
	dir := t.TempDir()
	held, err := dirlock.Take(dir, report.FileLock)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), testJob(t, 1), fakeTokenizer{}, &stopAfter{done: 10}, dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "the output folder "+dir+" is in use by process") {
		t.Errorf("a run into a folder being written: %v", err)
	}
	held.Release()
	res, err := Run(context.Background(), testJob(t, 1), fakeTokenizer{}, &stopAfter{done: 10}, dir, Options{})
	if err != nil {
		t.Fatalf("once the folder is free: %v", err)
	}
	if j := res.Results.Job; j.Outcome != report.OutcomeCompleted || j.Reason != "" {
		t.Errorf("a whole run: outcome %q, reason %q; want completed", j.Outcome, j.Reason)
	}
}

func TestCheckOffered(t *testing.T) {
	offered := []placement.Device{{Host: "w3", Index: 0}}
	for _, tc := range []struct{ devices, want string }{
		{`"0,1"`, `test.hcl:4,3: placement.devices names device 1, which no worker offers (the workers offer w3:0)`},
		{`"w3:0,w3:2"`, `test.hcl:4,3: placement.devices names device w3:2, which no worker offers (the workers offer w3:0)`},
		{`"w3:0"`, ""},
		{`"w9:0"`, ""}, // no worker on w9: the deployment says so
	} {
		src := "job \"x\" {\n  model \"target\" { path = \"/m\" }\n  placement {\n  devices = " + tc.devices + "\n  strategy = \"same\"\n  }\n  dataset \"prompts\" { prompts = [\"hi\"] }\n  modes { speculative = false }\n}\n"
		job, err := jobspec.Parse("test.hcl", []byte(src), jobspec.Config{})
		if err != nil {
			t.Fatal(err)
		}
		err = CheckOffered(job, offered)
		if got := fmt.Sprint(err); (tc.want == "" && err != nil) || (tc.want != "" && !strings.HasPrefix(got, tc.want)) {
			t.Errorf("devices %s: %v, want %q", tc.devices, err, tc.want)
		}
	}
}

// TestRebuild: the results of a run a controller left unfinished are
// written from its requests.jsonl and the spec it kept, with the figures the
// run itself would have written and the outcome failed.
func TestRebuild(t *testing.T) {
	dir := t.TempDir()
	job := testJob(t, 4)
	res, err := Run(context.Background(), job, fakeTokenizer{}, &stopAfter{done: 100}, dir, Options{JobID: "job-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, report.FileJob)); !os.IsNotExist(err) {
		t.Errorf("a finished run left %s: %v", report.FileJob, err)
	}
	if ok, err := Rebuild(dir, "job-1", "x", time.Now(), RebuildOptions{}); ok || err != nil {
		t.Errorf("Rebuild of a finished run: %v, %v; want nothing done", ok, err)
	}
	// As a crash of a version that kept only the spec leaves it: the records and the kept
	// spec, no results.
	for _, f := range []string{report.FileResults, report.FileSpeculative, report.FileTarget, report.FileGPU} {
		os.Remove(filepath.Join(dir, f))
	}
	if _, err := keepJob(dir, Kept{ID: "job-1", Started: time.Now(), Spec: job}, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if ok, err := Rebuild(dir, "job-2", "x", time.Now(), RebuildOptions{}); ok || err == nil || !strings.Contains(err.Error(), "is job job-1's, not job-2's") {
		t.Errorf("Rebuild for another job: %v, %v", ok, err)
	}
	held, err := dirlock.Take(dir, report.FileLock)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := Rebuild(dir, "job-1", "x", time.Now(), RebuildOptions{}); ok || err == nil {
		t.Errorf("Rebuild of a folder another run is writing: %v, %v", ok, err)
	}
	held.Release()
	ok, err := Rebuild(dir, "job-1", "the controller restarted while the job was running", time.Now(), RebuildOptions{})
	if !ok || err != nil {
		t.Fatalf("Rebuild: %v, %v", ok, err)
	}
	data, err := os.ReadFile(filepath.Join(dir, report.FileResults))
	if err != nil {
		t.Fatal(err)
	}
	var got report.Results
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	want := res.Results
	if got.Job.ID != "job-1" || got.Job.Outcome != report.OutcomeFailed || got.Job.Reason != "the controller restarted while the job was running" {
		t.Errorf("job %+v", got.Job)
	}
	if got.Speculative.Completed != want.Speculative.Completed || got.Target.Completed != want.Target.Completed ||
		got.Speculative.TotalOutputTokens != want.Speculative.TotalOutputTokens || *got.Speculative.AcceptanceRate != *want.Speculative.AcceptanceRate {
		t.Errorf("rebuilt figures differ from the run's: %+v / %+v", got.Speculative, want.Speculative)
	}
	if got.Comparison == nil || got.Comparison.Lossless.Checked != want.Comparison.Lossless.Checked {
		t.Errorf("comparison %+v, want %+v", got.Comparison, want.Comparison)
	}
	if _, err := os.Stat(filepath.Join(dir, report.FileJob)); !os.IsNotExist(err) {
		t.Errorf("the kept spec is still there after the rebuild: %v", err)
	}
	if w := strings.Join(got.Warnings, "\n"); !strings.Contains(w, "the run kept neither its environment nor its dataset statistics") ||
		!strings.Contains(w, "written from requests.jsonl after the controller stopped") {
		t.Errorf("the warnings do not say what an older kept file lacks: %q", got.Warnings)
	}
}

// phaseLog records the phase marks a run passes on.
type phaseLog struct {
	mu    sync.Mutex
	marks []Mark
}

func (p *phaseLog) Mark(phase string, t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.marks = append(p.marks, Mark{Phase: phase, T: t})
}

// TestRebuildKeepsWhatOnlyTheRunKnew: a controller that crashed during the target mode left
// the kept job file and requests.jsonl as they were then. The rebuilt results hold the
// environment and dataset sections the run would have written, its warnings known at the
// start, say which mode the crash cut and how far it got, and take the GPU section and its
// warnings from RebuildOptions.GPU, which gets the monitor setup and the phase marks the run
// kept (a cool-down's idle mark too) and the time of the last thing the run is known to have
// done.
func TestRebuildKeepsWhatOnlyTheRunKnew(t *testing.T) {
	dir := t.TempDir()
	job := testJob(t, 4)
	job.Load.MaxConcurrency = 1 // the crash comes after exactly two target requests
	job.Warnings = []string{"a warning of the job file"}
	env := map[string]any{"controller_host": "ctl-1", "note": "a <b> & c", "workers": []string{"w1", "w2"}}
	var kept, records []byte
	targets := 0
	phases := &phaseLog{}
	opt := Options{JobID: "job-1", Environment: env, Phases: phases,
		KeepGPU: map[string]any{"interval_ns": 1000},
		BeforeMode: func(_ context.Context, mode metrics.Mode, ph Phases) {
			if mode == metrics.ModeTarget {
				ph.Mark("idle", time.Now()) // a cool-down
			}
		},
		OnRequest: func(r metrics.Request) {
			if r.Mode != metrics.ModeTarget {
				return
			}
			if targets++; targets == 2 { // the crash: what the folder holds now is what is left
				var err error
				if kept, err = os.ReadFile(filepath.Join(dir, report.FileJob)); err != nil {
					t.Error(err)
				}
				if records, err = os.ReadFile(filepath.Join(dir, report.FileRequests)); err != nil {
					t.Error(err)
				}
			}
		}}
	res, err := Run(context.Background(), job, fakeTokenizer{}, &stopAfter{done: 100}, dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	if kept == nil || records == nil {
		t.Fatal("the run's files were not seen mid-run")
	}
	var passed []string
	for _, m := range phases.marks {
		passed = append(passed, m.Phase)
	}
	if strings.Join(passed, " ") != "speculative idle target idle" {
		t.Errorf("the run's Phases got %v, want speculative, idle, target, idle", passed)
	}
	for _, f := range []string{report.FileResults, report.FileSpeculative, report.FileTarget, report.FileGPU} {
		os.Remove(filepath.Join(dir, f))
	}
	if err := os.WriteFile(filepath.Join(dir, report.FileJob), kept, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, report.FileRequests), records, 0o644); err != nil {
		t.Fatal(err)
	}
	var lastFinished time.Time
	for _, line := range strings.Split(strings.TrimSpace(string(records)), "\n") {
		var r metrics.Request
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if r.FinishedAt.After(lastFinished) {
			lastFinished = r.FinishedAt
		}
	}

	reason := "the controller restarted while the job was running"
	var gotKept *Kept
	var gotUntil time.Time
	var gotOut map[metrics.Mode]int
	section := map[string]any{"available": true, "devices": []any{}, "rebuilt": "from the stream"}
	var written *report.Results
	ok, err := Rebuild(dir, "job-1", reason, time.Now(), RebuildOptions{
		GPU: func(k *Kept, until time.Time, out map[metrics.Mode]int) RebuiltGPU {
			gotKept, gotUntil, gotOut = k, until, out
			return RebuiltGPU{Section: section, Warnings: []string{"the GPU figures cover less"}}
		},
		Written: func(r report.Results) { written = &r }})
	if !ok || err != nil {
		t.Fatalf("Rebuild: %v, %v", ok, err)
	}
	if gotKept == nil {
		t.Fatal("RebuildOptions.GPU was not called")
	}
	var phasesKept []string
	for i, m := range gotKept.Marks {
		phasesKept = append(phasesKept, m.Phase)
		if i < len(phases.marks) && !m.T.Equal(phases.marks[i].T) {
			t.Errorf("kept mark %d at %v, the run marked it at %v", i, m.T, phases.marks[i].T)
		}
	}
	if strings.Join(phasesKept, " ") != "speculative idle target" {
		t.Errorf("kept marks %v, want speculative, idle, target", phasesKept)
	}
	if string(gotKept.GPU) != `{"interval_ns":1000}` || gotKept.Planned != 4 {
		t.Errorf("kept GPU setup %s, planned %d", gotKept.GPU, gotKept.Planned)
	}
	if !gotUntil.Equal(lastFinished) {
		t.Errorf("until %v, want the last finished request's %v", gotUntil, lastFinished)
	}
	if gotOut[metrics.ModeSpeculative] != res.Results.Speculative.TotalOutputTokens || gotOut[metrics.ModeTarget] != 2*3 {
		t.Errorf("output tokens %v", gotOut)
	}

	data, err := os.ReadFile(filepath.Join(dir, report.FileResults))
	if err != nil {
		t.Fatal(err)
	}
	var got report.Results
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got.Job.Outcome != report.OutcomeFailed || got.Job.Reason != reason || !got.Job.StartedAt.Equal(res.Results.Job.StartedAt) {
		t.Errorf("job %+v", got.Job)
	}
	// Not the restart's time: the last the run recorded.
	if !got.Job.FinishedAt.Equal(lastFinished) {
		t.Errorf("finished_at %v, want the last finished request's %v", got.Job.FinishedAt, lastFinished)
	}
	// What was written is handed on, for the summary record.
	if written == nil || written.Job != got.Job || written.Target.Completed != 2 {
		t.Errorf("Written got %+v", written)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{{"environment", got.Environment, res.Results.Environment}, {"dataset", got.Dataset, res.Results.Dataset}, {"gpu", got.GPU, section}} {
		want, err := encode(c.want)
		if err != nil {
			t.Fatal(err)
		}
		if g, _ := encode(c.got); string(g) != string(want) {
			t.Errorf("rebuilt %s %s, want %s", c.name, g, want)
		}
	}
	if !strings.Contains(string(data), `"note": "a <b> & c"`) {
		t.Errorf("the environment is not written as the run writes it:\n%s", data)
	}
	if got.Target.Completed != 2 || got.Speculative.Completed != 4 {
		t.Errorf("completed %d speculative, %d target; want 4 and 2", got.Speculative.Completed, got.Target.Completed)
	}
	wantWarnings := []string{
		"a warning of the job file",
		"written from requests.jsonl after the controller stopped (" + reason + "): requests in flight then are not in it, and finished_at is the last finished request or phase mark",
		"the job failed (" + reason + ") during the target mode: 2 of 4 requests finished",
		"the GPU figures cover less",
	}
	if strings.Join(got.Warnings, "\n") != strings.Join(wantWarnings, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got.Warnings, "\n"), strings.Join(wantWarnings, "\n"))
	}
	gpuFile, err := os.ReadFile(filepath.Join(dir, report.FileGPU))
	if err != nil || !strings.Contains(string(gpuFile), `"rebuilt": "from the stream"`) {
		t.Errorf("%s: %s %v", report.FileGPU, gpuFile, err)
	}
}

// TestRebuildSaysWhichModesDidNotRun: a crash during the first mode leaves the later one
// said not to have run, as the run itself would say; without a GPU rebuild the section
// says why the readings are missing, and so do the warnings.
func TestRebuildSaysWhichModesDidNotRun(t *testing.T) {
	dir := t.TempDir()
	job := testJob(t, 4)
	job.GPUMonitor.Enabled = true
	if _, err := keepJob(dir, Kept{ID: "job-1", Started: time.Now(), Spec: job, Planned: 4,
		Marks: []Mark{{Phase: "speculative", T: time.Now()}}}, nil, map[string]int{"records": 4}, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, report.FileRequests), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, err := Rebuild(dir, "job-1", "it stopped", time.Now(), RebuildOptions{}); !ok || err != nil {
		t.Fatalf("Rebuild: %v, %v", ok, err)
	}
	data, err := os.ReadFile(filepath.Join(dir, report.FileResults))
	if err != nil {
		t.Fatal(err)
	}
	var got report.Results
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	w := strings.Join(got.Warnings, "\n")
	for _, want := range []string{
		"the job failed (it stopped) during the speculative mode: 0 of 4 requests finished",
		"the target mode did not run: the job failed (it stopped) before it",
		"the GPU monitor's readings are not in these results: the results were written after the controller stopped (it stopped)",
	} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	compact := func(v any) string {
		var b bytes.Buffer
		if err := json.Compact(&b, v.(json.RawMessage)); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	if g := compact(got.GPU); !strings.Contains(g, `"available":false`) || !strings.Contains(g, "were not read back") {
		t.Errorf("gpu %s", g)
	}
	if d := compact(got.Dataset); d != `{"records":4}` {
		t.Errorf("dataset %s", d)
	}
}

func TestCheckPositions(t *testing.T) {
	job := testJob(t, 1) // max_new_tokens 3, gamma 2, batching on with max_length 512
	info := &model.Info{Path: "/m/t", MaxPositions: 4096}
	if err := checkPositions(job, "target", info); err != nil {
		t.Errorf("a model long enough: %v", err)
	}
	info.MaxPositions = 256
	if err := checkPositions(job, "target", info); err == nil || !strings.Contains(err.Error(), "batch.max_length 512 (+ gamma 2 drafted past it) is past the target's max_position_embeddings 256") {
		t.Errorf("max_length past the model: %v", err)
	}
	info.MaxPositions = 513 // 512 + gamma 2 do not fit
	if err := checkPositions(job, "target", info); err == nil {
		t.Error("max_length + gamma past the model accepted")
	}
	job.Batch.Enabled = false
	info.MaxPositions = 9 // synthetic input_tokens 4 + 3 + 2
	if err := checkPositions(job, "target", info); err != nil {
		t.Errorf("a synthetic prompt that fits: %v", err)
	}
	info.MaxPositions = 8
	if err := checkPositions(job, "target", info); err == nil || !strings.Contains(err.Error(), "input_tokens 4 + max_new_tokens 3 + gamma 2 is past the target's max_position_embeddings 8") {
		t.Errorf("a synthetic prompt past the model: %v", err)
	}
	job.Dataset.Kind = jobspec.DatasetPrompts
	info.MaxPositions = 5
	if err := checkPositions(job, "drafter", info); err == nil || !strings.Contains(err.Error(), "generation.max_new_tokens 3 (+ gamma 2 + 1) is past the drafter's max_position_embeddings 5") {
		t.Errorf("generation past the model: %v", err)
	}
	if err := checkPositions(job, "drafter", nil); err != nil {
		t.Errorf("no drafter: %v", err)
	}
}

// TestPromptsPastTheContext: without batching, prompts that leave no room for
// max_new_tokens and gamma in the models' context are left out, counted.
func TestPromptsPastTheContext(t *testing.T) {
	src := "job \"x\" {\n  model \"target\" { path = \"/m\" }\n  dataset \"prompts\" { prompts = [\"a\", \"b\"] }\n" +
		"  batch { enabled = false }\n  generation {\n    max_new_tokens = 3\n    gamma = 2\n  }\n  modes { speculative = false }\n}\n"
	job, err := jobspec.Parse("test.hcl", []byte(src), jobspec.Config{})
	if err != nil {
		t.Fatal(err)
	}
	// fakeTokenizer makes every prompt 3 tokens: 3 + 3 + 2 fit in 8.
	if sel, _, err := selectPrompts(job, fakeTokenizer{}, 2, 8); err != nil || len(sel.Prompts) != 2 {
		t.Errorf("prompts that fit: %v, %v", sel.Prompts, err)
	}
	if _, _, err := selectPrompts(job, fakeTokenizer{}, 2, 7); err == nil {
		t.Error("prompts past the context were used")
	}
	if sel, _, err := selectPrompts(job, fakeTokenizer{}, 2, 0); err != nil || len(sel.Prompts) != 2 {
		t.Errorf("unknown context: %v, %v", sel.Prompts, err)
	}
}

// TestDatasetErrorsOnce: a dataset with no usable prompt fails the run with
// one located line, the dataset named once (it was named twice).
func TestDatasetErrorsOnce(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad.jsonl"), []byte("{not json\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`job "empty" {
  model "target" { path = "/models/target" }
  dataset "sharegpt" {
    dir   = %q
    files = ["bad.jsonl"]
  }
  load { num_prompts = 2 }
  modes {
    speculative = false
    target_ar   = true
  }
  gpu_monitor { enabled = false }
}
`, dir)
	job, err := jobspec.Parse("empty.hcl", []byte(src), jobspec.Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), job, fakeTokenizer{}, slowEngine{}, t.TempDir(), Options{Console: io.Discard})
	if err == nil || !strings.HasPrefix(err.Error(), "empty.hcl:4,") || strings.Count(err.Error(), `dataset "sharegpt"`) != 1 ||
		!strings.Contains(err.Error(), "no usable prompts") {
		t.Errorf("err = %v; want one located line naming the dataset once", err)
	}
}

// TestModelInfosAbsolute: the environment names a model folder the job
// gives relative to the working folder by its absolute path, so results of
// runs started from different folders compare.
func TestModelInfosAbsolute(t *testing.T) {
	dir := t.TempDir()
	s := tinymodel.Default()
	s.Hidden, s.Intermediate, s.Layers, s.Heads, s.KVHeads, s.HeadDim, s.TokVocab = 32, 64, 1, 2, 1, 16, 300
	if err := tinymodel.Write(filepath.Join(dir, "target"), s); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	job := &jobspec.Job{}
	job.Models.Target.Path = "./target/"
	target, _, err := ModelInfos(job)
	if err != nil {
		t.Fatal(err)
	}
	real, _ := filepath.EvalSymlinks(filepath.Join(dir, "target"))
	if got, _ := filepath.EvalSymlinks(target.Path); !filepath.IsAbs(target.Path) || got != real {
		t.Errorf("target path %q, want %q", target.Path, real)
	}
}

// TestCutQWarning: a sampled run whose drafter's q kept under 95 % of its
// mass on average gets a warning naming the mass and the knob; greedy runs
// (no mass known), runs without a speculative mode and q's that kept
// nearly everything get none.
func TestCutQWarning(t *testing.T) {
	spec := func(m *float64) *metrics.Summary {
		return &metrics.Summary{SpecStats: &metrics.SpecStats{DraftQMass: m}}
	}
	low, high := 0.384, 0.97
	if w := cutQ(spec(&low), 64); !strings.Contains(w, "kept 38.4% of its probability mass") || !strings.Contains(w, "draft_top_k = 64") {
		t.Errorf("q kept 38.4%%: %q", w)
	}
	for name, s := range map[string]*metrics.Summary{"no speculative mode": nil, "target summary": {}, "greedy": spec(nil), "97% kept": spec(&high)} {
		if w := cutQ(s, 64); w != "" {
			t.Errorf("%s: %q, want no warning", name, w)
		}
	}
}

// TestPlanErrorPoints: a planning error that one setting is at fault for
// points at that setting's line, not at placement.strategy.
func TestPlanErrorPoints(t *testing.T) {
	dir := t.TempDir()
	target, drafter := filepath.Join(dir, "t"), filepath.Join(dir, "d")
	if err := tinymodel.Write(target, tinymodel.Default()); err != nil {
		t.Fatal(err)
	}
	if err := tinymodel.WriteDrafter(target, drafter, 1); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`job "p" {
  model "target" {
    path   = %q
    stages = 3
  }
  model "drafter" { path = %q }
  placement {
    strategy = "auto"
  }
  dataset "synthetic" {}
}
`, target, drafter)
	job, err := jobspec.Parse("p.hcl", []byte(src), jobspec.Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, err = Plan(job, []placement.Device{{Index: 0, MemoryBytes: 80 << 30}})
	if err == nil || !strings.HasPrefix(err.Error(), "p.hcl:4,5: model.target.stages = 3 but target has 1 device") {
		t.Errorf("err = %v, want it at the stages line", err)
	}

	// A ratio split over fewer devices warns at placement.devices.
	src = strings.Replace(strings.Replace(src, "    stages = 3\n", "", 1), `strategy = "auto"`, "strategy = \"multi_gpu_ratio\"\n    devices  = \"0-3\"", 1)
	if job, err = jobspec.Parse("p.hcl", []byte(src), jobspec.Config{}); err != nil {
		t.Fatal(err)
	}
	var four []placement.Device
	for i := range 4 {
		four = append(four, placement.Device{Index: i, MemoryBytes: 80 << 30})
	}
	if _, _, _, err = Plan(job, four); err != nil {
		t.Fatal(err)
	}
	if len(job.Warnings) != 1 || !strings.HasPrefix(job.Warnings[0], "p.hcl:8,5: multi_gpu_ratio asks for 8 devices") {
		t.Errorf("warnings %q, want the ratio note at the devices line", job.Warnings)
	}
}
