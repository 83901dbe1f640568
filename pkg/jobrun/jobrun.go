// Package jobrun runs one benchmark job: it picks the prompts, drives the
// load in each decoding mode (speculative, then target AR, on the same
// prompts in the same seeded order), timestamps every token on the client
// side, and turns the records into the result files and the console summary.
//
// Where the tokens come from is behind Engine: the NATS session drivers of
// the controller in a cluster, or models in this process (tests, `worker`).
package jobrun

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"

	"github.com/draftbench/draftbench/pkg/dataset"
	"github.com/draftbench/draftbench/pkg/dirlock"
	"github.com/draftbench/draftbench/pkg/jobspec"
	"github.com/draftbench/draftbench/pkg/loadgen"
	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/report"
	"github.com/draftbench/draftbench/pkg/sampling"
	"github.com/draftbench/draftbench/pkg/spec"
)

// Gen is one generation request handed to an Engine.
type Gen struct {
	ID           string // request UUID
	Index        int
	Prompt       []int
	MaxNewTokens int
	Gamma        int
	Params       sampling.Params
	StopTokens   []int
	IgnoreEOS    bool
	Seed         uint64
	// OnEmit must be called with every batch of new tokens as soon as they
	// are final (after the rollback of a speculative round); the runner
	// timestamps it for TTFT and ITL.
	OnEmit func(tokens []int)
}

// GenResult is what an Engine returns for a request.
type GenResult struct {
	Tokens []int
	Rounds []metrics.Round // speculative only, with wall and worker compute time
	// Margins, when the engine knows them (greedy), are sampling.Margin of
	// the target logits each of Tokens was chosen from.
	Margins []float32
}

// Engine produces tokens for one request in one mode.
type Engine interface {
	Generate(ctx context.Context, mode metrics.Mode, g Gen) (GenResult, error)
}

// Tokenizer is what the runner needs of the target's tokenizer.
type Tokenizer interface {
	Encode(text string) ([]int, error)
	VocabSize() int
	EOS() []int
	SpecialTokens() map[string]int
}

// Phases receives the start of each mode, of each idle stretch (a cool-down) and of the
// idle time after the last mode (the GPU monitor attributes energy by them).
type Phases interface {
	Mark(phase string, t time.Time)
}

// Options configure a run.
type Options struct {
	Log       hclog.Logger
	Console   io.Writer // the summary; nil = discard
	Progress  io.Writer // progress bar or lines; nil = discard
	Terminal  bool      // Progress is a terminal: draw a bar
	Now       func() time.Time
	OnRequest func(metrics.Request) // each finished request (live results)
	Phases    Phases
	// GPU returns the GPU section once the modes have run (nil: unavailable).
	GPU func(outputTokens map[metrics.Mode]int) any
	// BeforeMode runs before each mode starts (the GPU cool-down); nil: none. It marks
	// the phases it makes (a cool-down is idle) with phases, which passes them on to
	// Phases and keeps them for a rebuild (Kept.Marks).
	BeforeMode func(ctx context.Context, mode metrics.Mode, phases Phases)
	// Power gives the power-over-time series for the plot (nil: none).
	Power       func() []report.PowerSeries
	Environment any
	// KeepGPU is kept (as JSON) in the job file for a rebuild after a crash:
	// what the GPU section needs besides the phase marks and the samples (the
	// controller's monitor setup; see Kept.GPU). nil: nothing.
	KeepGPU any
	JobID   string
	// MaxContext is the shortest max_position_embeddings of the job's models
	// (0: unknown). Without batching, prompts too long to leave room for
	// max_new_tokens and gamma are left out (counted as too_long) rather
	// than failing their requests.
	MaxContext int
}

// Cancelled is the cause to cancel a run's context with when someone stops the run on
// purpose (a user's cancel, a controller shutdown) rather than because something failed. The
// requests it cuts short count as cancelled, not failed, and the warnings say who stopped the
// run and why. A plain context.Canceled (an interrupt) is a cancel too; any other cause (a lost
// worker, a dead stage) fails the requests it cuts short.
type Cancelled struct {
	By     string // who stopped the run: "the user", "a controller shutdown"
	Reason string // why, when they said; may be empty
}

func (c *Cancelled) Error() string {
	s := "cancelled"
	if c.By != "" {
		s += " by " + c.By
	}
	if c.Reason != "" {
		s += ": " + c.Reason
	}
	return s
}

// ending says how a run whose context ended is ending, completing "the job …": "was cancelled
// by the user (reason: wrong model)", or "failed (worker … stopped sending heartbeats)"; and
// whether that is a cancel. The context must be done.
func ending(ctx context.Context) (how string, cancel bool) {
	cause := context.Cause(ctx)
	var c *Cancelled
	switch {
	case errors.As(cause, &c):
		how = "was cancelled"
		if c.By != "" {
			how += " by " + c.By
		}
		if c.Reason != "" {
			how += " (reason: " + c.Reason + ")"
		}
		return how, true
	case cause == nil, errors.Is(cause, context.Canceled):
		return "was cancelled", true
	case errors.Is(cause, context.DeadlineExceeded):
		return "ran out of time", false
	}
	return "failed (" + cause.Error() + ")", false
}

// cutShort is the warning for a mode its run's end stopped before all its requests finished,
// or "" when they all finished anyway; how completes "the job …" (ending).
func cutShort(how string, mode metrics.Mode, planned int, recs []metrics.Request) string {
	var done, failed, cancelled int
	for _, r := range recs {
		switch {
		case r.Mode != mode || r.Warmup:
		case r.Cancelled:
			cancelled++
		case r.Failed():
			failed++
		default:
			done++
		}
	}
	if done >= planned {
		return ""
	}
	w := fmt.Sprintf("the job %s during the %s mode: %d of %d requests finished", how, mode, done, planned)
	if failed > 0 {
		w += fmt.Sprintf(", %d failed", failed)
	}
	if cancelled > 0 {
		w += fmt.Sprintf(", %d cancelled", cancelled)
	}
	return w
}

// notRun is the warning for a mode a run's end came before; how completes "the job …".
func notRun(how string, mode metrics.Mode) string {
	return fmt.Sprintf("the %s mode did not run: the job %s before it", mode, how)
}

// Result is what a run produced.
type Result struct {
	Dir      string
	Results  report.Results
	Requests []metrics.Request
}

// NothingMeasured is an error when a mode sent requests and none completed:
// the run wrote its files, but a script must not take it for a benchmark.
func (r *Result) NothingMeasured() error {
	for _, m := range []struct {
		mode metrics.Mode
		s    *metrics.Summary
	}{{metrics.ModeSpeculative, r.Results.Speculative}, {metrics.ModeTarget, r.Results.Target}} {
		if m.s == nil || m.s.NumRequests == 0 || m.s.Completed > 0 {
			continue
		}
		first := ""
		for _, rec := range r.Requests {
			if rec.Mode == m.mode && rec.Error != "" {
				first = " (the first: " + rec.Error + ")"
				break
			}
		}
		return fmt.Errorf("no %s request completed: %d failed, %d cancelled%s", m.mode, m.s.Failed, m.s.Cancelled, first)
	}
	return nil
}

// LockOutput takes output folder dir (created if missing) for one run: a
// second one would set the first one's files aside while it still appends
// to them. The error says when another run holds it.
func LockOutput(dir string) (*dirlock.Lock, error) {
	lock, err := dirlock.Take(dir, report.FileLock)
	if errors.Is(err, dirlock.ErrHeld) {
		return nil, fmt.Errorf("the output folder %s is %w, writing another run's results: give this run its own output_dir in the job file (controller run also takes --out)", dir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("the output folder %s: %w", dir, err)
	}
	return lock, nil
}

// Run executes job with engine and writes its result files into dir.
func Run(ctx context.Context, job *jobspec.Job, tok Tokenizer, engine Engine, dir string, opt Options) (*Result, error) {
	if opt.Log == nil {
		opt.Log = hclog.NewNullLogger()
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Console == nil {
		opt.Console = io.Discard
	}
	if opt.JobID == "" {
		opt.JobID = uuid.NewString()
	}
	log := opt.Log.Named("jobrun")
	if !job.Modes.Speculative && !job.Modes.TargetAR {
		return nil, errors.New("jobrun: both modes are disabled")
	}
	plan := loadPlan(job)
	schedule, err := loadgen.Schedule(plan)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	n := len(schedule)
	sel, dataWarnings, err := selectPrompts(job, tok, n, opt.MaxContext)
	if err != nil {
		return nil, err
	}
	var warnings []string
	warnings = append(warnings, job.Warnings...)
	if sel.Warning != "" {
		dataWarnings = append(dataWarnings, sel.Warning)
	}
	// Skipped records and missing files are in the results' dataset stats,
	// and said on the console too, where the user looks.
	for _, w := range dataWarnings {
		warnings = append(warnings, w)
		log.Warn(w)
	}
	lock, err := LockOutput(dir)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	if aside, err := report.SetAside(dir); err != nil {
		return nil, err
	} else if aside != "" {
		w := fmt.Sprintf("%s held the results of an earlier run: moved them to %s (give each run its own output_dir in the job file, or controller run --out, to keep runs apart)", dir, aside)
		warnings = append(warnings, w)
		log.Warn(w)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	kept, err := keepJob(dir, Kept{ID: opt.JobID, Started: opt.Now(), Spec: job, Warnings: slices.Clone(warnings), Planned: n},
		opt.Environment, sel.Stats, opt.KeepGPU)
	if err != nil {
		return nil, err
	}
	phases := &keptPhases{inner: opt.Phases, kept: kept, log: log}
	app, err := report.OpenAppender(filepath.Join(dir, report.FileRequests))
	if err != nil {
		return nil, err
	}
	defer app.Close()

	params := sampling.Params{Temperature: job.Generation.Temperature, TopK: job.Generation.TopK, TopP: job.Generation.TopP,
		VocabLimit: tok.VocabSize()}
	stops := tok.EOS()
	started := kept.k.Started
	var modes []metrics.Mode
	if job.Modes.Speculative {
		modes = append(modes, metrics.ModeSpeculative)
	}
	if job.Modes.TargetAR {
		modes = append(modes, metrics.ModeTarget)
	}

	var mu sync.Mutex
	var all []metrics.Request
	loads := map[metrics.Mode]*metrics.Load{}
	for _, mode := range modes {
		if ctx.Err() != nil {
			// this mode and every later one: none of them ran
			for _, m := range modes[slices.Index(modes, mode):] {
				how, _ := ending(ctx)
				w := notRun(how, m)
				warnings = append(warnings, w)
				log.Warn(w)
			}
			break
		}
		if opt.BeforeMode != nil {
			opt.BeforeMode(ctx, mode, phases)
		}
		phases.Mark(string(mode), opt.Now())
		log.Info("running mode", "mode", mode, "requests", n, "warmup", plan.WarmupRequests)
		prog := report.NewProgress(n, report.ProgressOptions{Writer: opt.Progress, IsTerminal: opt.Terminal, Label: string(mode), Now: opt.Now})
		handler := func(ctx context.Context, r loadgen.Request) error {
			p := sel.Prompts[r.Index%len(sel.Prompts)]
			rec := runOne(ctx, engine, mode, r, p, job, params, stops, opt.Now)
			mu.Lock()
			all = append(all, rec)
			mu.Unlock()
			if err := app.Append(rec); err != nil {
				log.Error("writing requests.jsonl", "error", err)
			}
			if opt.OnRequest != nil {
				opt.OnRequest(rec)
			}
			if !r.Warmup {
				prog.Done(rec.Failed())
			}
			switch {
			case rec.Cancelled:
				log.Debug("request cancelled", "mode", mode, "index", r.Index, "error", rec.Error)
				return errors.New(rec.Error)
			case rec.Failed():
				log.Warn("request failed", "mode", mode, "index", r.Index, "error", rec.Error)
				return errors.New(rec.Error)
			}
			return nil
		}
		rep, err := loadgen.Run(ctx, plan, handler)
		prog.Close()
		if err != nil && !errors.Is(err, context.Canceled) {
			return nil, fmt.Errorf("%s mode: %w", mode, err)
		}
		loads[mode] = loadOf(plan, rep)
		if w := behindSchedule(mode, loads[mode]); w != "" {
			warnings = append(warnings, w)
			log.Warn(w)
		}
		log.Info("mode finished", "mode", mode, "sent", rep.Sent, "planned", rep.Planned, "elapsed", rep.Elapsed)
		// Also when every request was sent before the end: the ones in flight were cut short.
		if ctx.Err() != nil {
			mu.Lock()
			how, _ := ending(ctx)
			w := cutShort(how, mode, rep.Planned, all)
			mu.Unlock()
			if w != "" {
				warnings = append(warnings, w)
				log.Warn(w)
			}
		}
	}
	phases.Mark("idle", opt.Now())
	if err := app.Close(); err != nil {
		return nil, err
	}

	jobInfo := report.Job{ID: opt.JobID, Name: job.Name, StartedAt: started, FinishedAt: opt.Now(), Outcome: report.OutcomeCompleted}
	if ctx.Err() != nil {
		how, cancel := ending(ctx)
		jobInfo.Outcome, jobInfo.Reason = report.OutcomeFailed, "the job "+how
		if cancel {
			jobInfo.Outcome = report.OutcomeCancelled
		}
	}
	res := report.Results{
		Job:         jobInfo,
		Config:      job,
		Environment: opt.Environment,
		Dataset:     sel.Stats,
	}
	gpu := func(out map[metrics.Mode]int) (section any, power []report.PowerSeries, notes []string) {
		if opt.GPU != nil {
			section = opt.GPU(out)
		}
		if opt.Power != nil {
			power = opt.Power()
		}
		return section, power, nil
	}
	res, err = summarize(dir, job, res, all, modes, loads, params.Greedy(), warnings, gpu, log)
	if err != nil {
		return nil, err
	}
	// What the run kept (Kept) was for a controller that would have to
	// write these files after a crash (Rebuild); they are written.
	os.Remove(filepath.Join(dir, report.FileJob))
	if err := report.PrintSummary(opt.Console, res); err != nil {
		return nil, err
	}
	return &Result{Dir: dir, Results: res, Requests: all}, nil
}

// summarize fills res's modes (with how each was sent, loads, where known)
// and comparison from the request records, its
// GPU section and the power plot's series from gpu (given each mode's output
// tokens; its notes are added to the warnings), and writes the results files
// and plots into dir.
func summarize(dir string, job *jobspec.Job, res report.Results, all []metrics.Request, modes []metrics.Mode,
	loads map[metrics.Mode]*metrics.Load, greedy bool,
	warnings []string, gpu func(outputTokens map[metrics.Mode]int) (any, []report.PowerSeries, []string), log hclog.Logger) (report.Results, error) {
	var samples = map[metrics.Mode]*metrics.Samples{}
	out := map[metrics.Mode]int{}
	var summaries = map[metrics.Mode]*metrics.Summary{}
	for _, mode := range modes {
		s, err := metrics.Collect(mode, all)
		if err != nil {
			return res, err
		}
		samples[mode] = s
		sum := s.Summary()
		sum.Load = loads[mode]
		summaries[mode] = &sum
		out[mode] = sum.TotalOutputTokens
	}
	res.Speculative, res.Target = summaries[metrics.ModeSpeculative], summaries[metrics.ModeTarget]
	topK := job.Generation.DraftTopK
	if topK == 0 { // a job built in code: the default
		topK = spec.DefaultDraftTopK
	}
	if w := cutQ(res.Speculative, topK); w != "" {
		warnings = append(warnings, w)
		log.Warn(w)
	}
	if res.Speculative != nil && res.Target != nil {
		var specReqs, targetReqs []metrics.Request
		for _, r := range all {
			if r.Mode == metrics.ModeSpeculative {
				specReqs = append(specReqs, r)
			} else {
				targetReqs = append(targetReqs, r)
			}
		}
		cmp, err := metrics.Compare(*res.Speculative, *res.Target, specReqs, targetReqs, greedy)
		if err != nil {
			return res, err
		}
		res.Comparison = &cmp
		if cmp.Lossless.Mismatched > 0 {
			w := fmt.Sprintf("lossless check: %d of %d requests differ between speculative and target (temperature 0)", cmp.Lossless.Mismatched, cmp.Lossless.Checked)
			if n := cmp.Lossless.NearTies; n > 0 {
				w += fmt.Sprintf("; %d of them first differ at a near-tie (both runs' top two logits within %.3g of each other, relative): rounding that differs between verify and decode steps, not speculative decoding", n, metrics.NearTieMargin)
			}
			warnings = append(warnings, w)
		}
	}
	section, power, notes := gpu(out)
	res.GPU = section
	res.Warnings = append(warnings, notes...)
	if err := report.Write(dir, res); err != nil {
		return res, err
	}
	_, skipped := report.WritePlots(dir, report.PlotData{
		Speculative: samples[metrics.ModeSpeculative], Target: samples[metrics.ModeTarget], Power: power})
	for _, s := range skipped {
		log.Debug("plot skipped", "plot", s.Plot, "reason", s.Reason)
	}
	return res, nil
}

// runOne runs one request and records it, never failing: an error becomes
// the record's Error so nothing measured before it is lost.
func runOne(ctx context.Context, engine Engine, mode metrics.Mode, r loadgen.Request, p dataset.Prompt, job *jobspec.Job,
	params sampling.Params, stops []int, now func() time.Time) metrics.Request {
	rec := metrics.Request{ID: uuid.NewString(), Index: r.Index, Mode: mode, PromptSource: p.Source,
		InputTokens: len(p.Tokens), Warmup: r.Warmup}
	var emu sync.Mutex
	g := Gen{ID: rec.ID, Index: r.Index, Prompt: p.Tokens, MaxNewTokens: job.Generation.MaxNewTokens,
		Gamma: job.Generation.Gamma, Params: params, StopTokens: stops, IgnoreEOS: job.Generation.IgnoreEOS,
		Seed: requestSeed(job.Seed, p.ID),
		OnEmit: func(tokens []int) {
			at := now()
			emu.Lock()
			rec.Emissions = append(rec.Emissions, metrics.Emission{At: at, Tokens: len(tokens)})
			for _, t := range tokens {
				rec.OutputIDs = append(rec.OutputIDs, int32(t))
			}
			emu.Unlock()
		}}
	if mode == metrics.ModeTarget {
		g.Gamma = 0
	}
	rec.SentAt = now()
	res, err := engine.Generate(ctx, mode, g)
	rec.FinishedAt = now()
	emu.Lock()
	defer emu.Unlock()
	rec.OutputTokens = len(rec.OutputIDs)
	rec.Rounds = res.Rounds
	if err != nil {
		rec.Error = err.Error()
		if ctx.Err() != nil {
			// Cut short by the run's end: by a cancel, or by the failure that ended the job.
			_, rec.Cancelled = ending(ctx)
			cause := context.Cause(ctx)
			var c *Cancelled
			switch {
			case errors.As(cause, &c):
				rec.Error += " (" + c.Error() + ")" // "cancelled by the user: …"
			case !errors.Is(err, cause) && !errors.Is(cause, context.Canceled):
				rec.Error += " (" + cause.Error() + ")"
			}
		}
		return rec
	}
	if len(res.Tokens) != len(rec.OutputIDs) {
		rec.Error = fmt.Sprintf("engine returned %d tokens but emitted %d", len(res.Tokens), len(rec.OutputIDs))
	}
	if len(res.Margins) == len(rec.OutputIDs) && rec.Error == "" {
		rec.OutputMargins = res.Margins
	}
	return rec
}

// requestSeed gives each prompt its own sampling stream, the same in both modes.
func requestSeed(jobSeed int64, prompt int) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%d", jobSeed, prompt)
	return h.Sum64()
}

// loadPlan turns the job's load and batch blocks into a loadgen plan.
func loadPlan(job *jobspec.Job) loadgen.Plan {
	p := loadgen.Plan{MaxConcurrency: job.Load.MaxConcurrency, WarmupRequests: job.Load.WarmupRequests, Seed: uint64(job.Seed)}
	if job.Load.Mode == jobspec.LoadModeRate {
		p.Rate, p.Duration, p.Arrival, p.Burstiness = job.Load.Rate, job.Load.Duration.Std(), loadgen.Arrival(job.Load.Arrival), job.Load.Burstiness
	} else {
		p.NumRequests = job.Load.NumPrompts
	}
	switch {
	case job.Load.Mode == jobspec.LoadModeRate:
		// Each request at its arrival time, batched or not, as vLLM's
		// --request-rate does: gating arrivals into batches would cut the
		// offered rate to what the cluster finishes (the stages still batch
		// the steps of whatever is in flight).
	case job.Batch.Enabled:
		p.BatchSize = job.Batch.Size
	case p.MaxConcurrency == 0:
		// The seed's ENABLE_BATCH=false: prompts one by one.
		p.MaxConcurrency = 1
	}
	return p
}

// loadOf is the results' account of how a mode's requests were sent.
func loadOf(p loadgen.Plan, rep loadgen.Report) *metrics.Load {
	l := &metrics.Load{Mode: jobspec.LoadModeCount, PeakInFlight: rep.PeakInFlight}
	positive := func(v float64) *float64 {
		if v > 0 {
			return &v
		}
		return nil
	}
	ms := func(d time.Duration) *float64 {
		v := float64(d) / float64(time.Millisecond)
		return &v
	}
	if p.Rate > 0 {
		arrival := string(p.Arrival)
		if arrival == "" {
			arrival = string(loadgen.Poisson)
		}
		l.Mode, l.RequestRate, l.Arrival = jobspec.LoadModeRate, positive(p.Rate), &arrival
		b := p.Burstiness
		if b == 0 {
			b = 1
		}
		l.Burstiness = &b
		l.ScheduledRate, l.AchievedRate = positive(rep.ScheduledRate), positive(rep.AchievedRate)
		if rep.Sent > 0 {
			l.MaxLatenessMS, l.MeanLatenessMS = ms(rep.MaxLateness), ms(rep.MeanLateness)
		}
	}
	if p.MaxConcurrency > 0 {
		l.MaxConcurrency = &p.MaxConcurrency
	}
	if p.BatchSize > 0 {
		l.BatchSize = &p.BatchSize
	}
	return l
}

// cutQWarnBelow is the mass of the drafter's distribution its q must keep
// on average before the results warn that the cut, not the drafter, set
// the acceptance.
const cutQWarnBelow = 0.95

// cutQ is the warning for a sampled speculative run whose drafter's q, cut
// to draft_top_k ids, kept less than cutQWarnBelow of the drafter's
// probability mass, or "". Cutting changes acceptance either way (a
// renormalised q can match a peaked target better), so it says that the
// figure reflects the cut, not which way.
func cutQ(s *metrics.Summary, topK int) string {
	if s == nil || s.SpecStats == nil || s.DraftQMass == nil || *s.DraftQMass >= cutQWarnBelow {
		return ""
	}
	return fmt.Sprintf("speculative mode: the drafter's q kept %.1f%% of its probability mass on average "+
		"(generation.draft_top_k = %d): the drafter drew its drafts from that cut, renormalised q and the acceptance rule "+
		"judged them against it, so acceptance reflects the cut as well as the drafter; draft_top_k = -1 (the whole q, "+
		"more bytes per round) measures the drafter itself",
		100**s.DraftQMass, topK)
}

// behindSchedule is the warning for a rate-mode run whose sends fell behind
// their arrival times (a full max_concurrency, a cluster slower than the
// offered load), or "".
func behindSchedule(mode metrics.Mode, l *metrics.Load) string {
	if l == nil || l.Mode != jobspec.LoadModeRate || l.AchievedRate == nil || l.ScheduledRate == nil || l.MaxLatenessMS == nil {
		return ""
	}
	slow := *l.AchievedRate < 0.9**l.ScheduledRate
	late := *l.MaxLatenessMS > max(250, 1000 / *l.ScheduledRate)
	if !slow && !late {
		return ""
	}
	w := fmt.Sprintf("%s mode: the sends fell behind the arrival times (%.3g req/s achieved of %.3g scheduled; up to %.0f ms late, %.0f ms on average)",
		mode, *l.AchievedRate, *l.ScheduledRate, *l.MaxLatenessMS, *l.MeanLatenessMS)
	if l.MaxConcurrency != nil && l.PeakInFlight >= *l.MaxConcurrency {
		w += fmt.Sprintf(": load.max_concurrency %d was reached", *l.MaxConcurrency)
	} else {
		w += ": the load generator could not keep up"
	}
	return w + "; latencies are timed from each send, so the wait before it is not in them"
}

// selectPrompts loads the job's dataset and takes n prompts in a seeded order.
func selectPrompts(job *jobspec.Job, tok Tokenizer, n, maxContext int) (dataset.Selection, []string, error) {
	seed := uint64(job.Seed)
	// batch.max_length bounds a whole sequence (SEED: the maximum sequence
	// length in a batch): a prompt gets what the new tokens leave of it.
	maxLen := 0
	if job.Batch.Enabled {
		maxLen = max(1, job.Batch.MaxLength-job.Generation.MaxNewTokens)
	}
	take := dataset.TakeOptions{Seed: seed, Tokenizer: tok, MaxLength: maxLen}
	if room := maxContext - job.Generation.MaxNewTokens - job.Generation.Gamma; !job.Batch.Enabled && maxContext > 0 && room > 0 {
		take.MaxPromptTokens = room
	}
	switch job.Dataset.Kind {
	case "prompts":
		d, err := dataset.Inline(job.Dataset.Prompts)
		if err != nil {
			return dataset.Selection{}, nil, job.Errorf("dataset.prompts.prompts", "%w", err) // says dataset "prompts" itself
		}
		sel, err := d.Take(n, take)
		return sel, d.Warnings(), err
	case "sharegpt":
		d, err := dataset.LoadShareGPT(job.Dataset.Dir, job.Dataset.Files, dataset.LoadOptions{})
		if err != nil {
			return dataset.Selection{}, nil, job.Errorf("dataset.sharegpt.dir", "%w", err) // as validate locates it
		}
		sel, err := d.Take(n, take)
		return sel, d.Warnings(), err
	case "synthetic":
		var avoid []int
		for _, id := range tok.SpecialTokens() {
			avoid = append(avoid, id)
		}
		// Lengths drawn around input_tokens are cut to what batch.max_length
		// (or, without batching, the models' context) leaves a prompt.
		limit := maxLen
		if limit == 0 {
			limit = take.MaxPromptTokens
		}
		sel, err := dataset.Synthetic(n, dataset.SyntheticConfig{InputTokens: job.Dataset.InputTokens, RangeRatio: job.Dataset.RangeRatio,
			MaxTokens: limit, VocabLo: 0, VocabHi: tok.VocabSize(), Avoid: avoid, Seed: seed})
		return sel, nil, err
	}
	return dataset.Selection{}, nil, fmt.Errorf("dataset kind %q is not one of sharegpt, synthetic, prompts", job.Dataset.Kind)
}

// DefaultOutputDir is results/<job name>-<first 8 characters of the id>,
// the name made safe as one file name (FileName): a job name comes from
// whoever submitted the job and must not lead anywhere else.
func DefaultOutputDir(jobName, jobID string) string {
	short := jobID
	if len(short) > 8 {
		short = short[:8]
	}
	return filepath.Join("results", fmt.Sprintf("%s-%s", FileName(jobName), short))
}

// maxFileName bounds FileName's result, well under the 255 bytes of common
// file systems, leaving room for the id suffix.
const maxFileName = 96

// FileName makes a user's string one safe path element: ASCII letters,
// digits, '.', '-' and '_' stay, every other byte (separators, spaces,
// control and non-ASCII characters) becomes '_', leading dots become '_' (no
// "..", no hidden file), an empty string becomes "_", and a long result is
// cut and ends in a hash of the whole input so that different long names
// stay apart. Safe names pass unchanged.
func FileName(s string) string {
	b := []byte(s)
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			b[i] = '_'
		}
	}
	for i := 0; i < len(b) && b[i] == '.'; i++ {
		b[i] = '_'
	}
	if len(b) == 0 {
		return "_"
	}
	if len(b) <= maxFileName {
		return string(b)
	}
	h := fnv.New32a()
	h.Write([]byte(s))
	return fmt.Sprintf("%s-%08x", b[:maxFileName-9], h.Sum32())
}
