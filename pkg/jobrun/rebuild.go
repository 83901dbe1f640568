package jobrun

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/draftbench/draftbench/pkg/jobspec"
	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/report"
	"github.com/draftbench/draftbench/pkg/sampling"
)

// phaseIdle is the phase of the time outside the modes (Phases).
const phaseIdle = "idle"

// Kept is what a run keeps in its output folder (report.FileJob, JSON) while it runs: what
// its results need besides requests.jsonl that only the running process knows, so that a
// controller restarted after a crash can write them (Rebuild). The run writes it once it has
// chosen its prompts, rewrites it (atomically) at every phase mark and removes it once its
// results are written. It stays small: the spec, two sections of the results, the warnings
// known at the start, the GPU monitor's setup and one mark per phase.
type Kept struct {
	ID      string       `json:"id"`
	Started time.Time    `json:"started"`
	Spec    *jobspec.Job `json:"spec"`
	// Environment and Dataset are the results' sections of these names as the run writes
	// them (absent in the files of versions that did not keep them).
	Environment json.RawMessage `json:"environment,omitempty"`
	Dataset     json.RawMessage `json:"dataset,omitempty"`
	// Warnings are the results' warnings known before the first request: the job's, the
	// dataset's, an earlier run's files set aside.
	Warnings []string `json:"warnings,omitempty"`
	// Planned is the number of requests each mode sends, warm-up left out.
	Planned int `json:"planned,omitempty"`
	// GPU is Options.KeepGPU: what the GPU section needs besides the marks and the samples
	// (the controller's monitor setup, which RebuildOptions.GPU reads back).
	GPU json.RawMessage `json:"gpu,omitempty"`
	// Marks are the phase marks of the run (Phases: modes, cool-downs, the idle time after
	// the last mode), in the order they were made.
	Marks []Mark `json:"marks,omitempty"`
}

// Mark is one phase mark: Phase (a mode, or "idle") starts at T.
type Mark struct {
	Phase string    `json:"phase"`
	T     time.Time `json:"t"`
}

// keptFile is a running job's Kept and the file that holds it.
type keptFile struct {
	path string
	mu   sync.Mutex
	k    Kept
}

// keepJob writes k, with the environment and dataset sections and the GPU setup, into dir.
func keepJob(dir string, k Kept, environment, dataset, gpu any) (*keptFile, error) {
	var err error
	for _, f := range []struct {
		to *json.RawMessage
		v  any
	}{{&k.Environment, environment}, {&k.Dataset, dataset}, {&k.GPU, gpu}} {
		if *f.to, err = encode(f.v); err != nil {
			return nil, fmt.Errorf("keeping the job's spec in %s: %w", dir, err)
		}
	}
	f := &keptFile{path: filepath.Join(dir, report.FileJob), k: k}
	if err := f.write(); err != nil {
		return nil, fmt.Errorf("keeping the job's spec in %s: %w", dir, err)
	}
	return f, nil
}

// encode marshals v as the results files do (no HTML escaping), so a kept section is written
// back byte for byte as the run would have written it; nil stays nil.
func encode(v any) (json.RawMessage, error) {
	if v == nil {
		return nil, nil
	}
	return report.MarshalLine(v)
}

func (f *keptFile) write() error {
	data, err := encode(f.k)
	if err != nil {
		return err
	}
	return report.WriteFileAtomic(f.path, data)
}

// mark keeps a phase mark.
func (f *keptFile) mark(phase string, t time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.k.Marks = append(f.k.Marks, Mark{Phase: phase, T: t})
	return f.write()
}

// keptPhases passes a run's phase marks on to its Phases (nil: none) and keeps them.
type keptPhases struct {
	inner Phases
	kept  *keptFile
	log   hclog.Logger
}

func (p *keptPhases) Mark(phase string, t time.Time) {
	if p.inner != nil {
		p.inner.Mark(phase, t)
	}
	if err := p.kept.mark(phase, t); err != nil {
		p.log.Warn("keeping a phase mark for the results after a crash", "phase", phase, "error", err)
	}
}

// RebuildOptions configure Rebuild.
type RebuildOptions struct {
	// GPU, when set, rebuilds the GPU section from what the run kept (k.GPU, k.Marks) and
	// what the monitor's samples left elsewhere (the controller's GPU stream). until is the
	// last moment the run is known to have been running (its last finished request or
	// phase mark); outputTokens holds each mode's output tokens of the finished requests.
	// Without it the section says the readings are not available.
	GPU func(k *Kept, until time.Time, outputTokens map[metrics.Mode]int) RebuiltGPU
	// Written, when set, receives the results once they are in dir (also when the run had
	// written them itself before the crash), so the controller can publish them as the
	// job's summary record: `tail --from-start` replays a rebuilt job like any other.
	Written func(report.Results)
}

// RebuiltGPU is a GPU section rebuilt after a crash.
type RebuiltGPU struct {
	Section any                  // the "gpu" key; nil: not available
	Power   []report.PowerSeries // the power plot's series
	// Warnings say what the section covers and what it lacks, for the results' warnings.
	Warnings []string
}

// Rebuild writes the results files of a job a controller left unfinished (it crashed) from
// the records in dir's requests.jsonl and what the run kept there (Kept): the modes' figures
// and the comparison, the environment and dataset sections, the warnings known at the start
// and which modes the crash cut or came before, with the outcome failed for reason; the GPU
// section and power plot come from opt.GPU. Requests in flight at the crash are not in
// requests.jsonl, and the warnings say so; finished_at is the last thing the run recorded
// (finished when it recorded nothing). It returns false, and no error, when dir holds no
// kept job (a run that finished, or one of a version that kept none).
func Rebuild(dir, jobID, reason string, finished time.Time, opt RebuildOptions) (bool, error) {
	keptPath := filepath.Join(dir, report.FileJob)
	kst, err := os.Stat(keptPath)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// Another run writing the folder now is not the one that was cut.
	lock, err := LockOutput(dir)
	if err != nil {
		return false, err
	}
	defer lock.Release()
	data, err := os.ReadFile(keptPath)
	if err != nil {
		return false, err
	}
	var kept Kept
	if err := json.Unmarshal(data, &kept); err != nil || kept.Spec == nil {
		return false, fmt.Errorf("reading %s: %v", keptPath, err)
	}
	if kept.ID != jobID {
		return false, fmt.Errorf("%s is job %s's, not %s's", keptPath, kept.ID, jobID)
	}
	// Cut between writing the results and removing the kept spec: done.
	if rst, err := os.Stat(filepath.Join(dir, report.FileResults)); err == nil && !rst.ModTime().Before(kst.ModTime()) {
		if opt.Written != nil {
			var res report.Results
			if data, err := os.ReadFile(filepath.Join(dir, report.FileResults)); err == nil && json.Unmarshal(data, &res) == nil {
				opt.Written(res)
			}
		}
		os.Remove(keptPath)
		return true, nil
	}
	f, err := os.Open(filepath.Join(dir, report.FileRequests))
	if err != nil {
		return false, err
	}
	all, _, err := report.ReadRequests(f) // a line cut by the crash is left out
	f.Close()
	if err != nil {
		return false, err
	}
	job := kept.Spec
	var modes []metrics.Mode
	if job.Modes.Speculative {
		modes = append(modes, metrics.ModeSpeculative)
	}
	if job.Modes.TargetAR {
		modes = append(modes, metrics.ModeTarget)
	}
	until := lastKnown(&kept, all)
	// When the controller stopped is not known; the last thing the run recorded is.
	if until.After(kept.Started) {
		finished = until
	}
	res := report.Results{
		Job: report.Job{ID: kept.ID, Name: job.Name, StartedAt: kept.Started, FinishedAt: finished,
			Outcome: report.OutcomeFailed, Reason: reason},
		Config: job,
	}
	// A nil RawMessage in an interface would be written as null too; these keep the
	// results' own nil for a run without them.
	if kept.Environment != nil {
		res.Environment = kept.Environment
	}
	if kept.Dataset != nil {
		res.Dataset = kept.Dataset
	}
	warnings := slices.Clone(kept.Warnings)
	warnings = append(warnings, "written from requests.jsonl after the controller stopped ("+reason+"): requests in flight then are not in it, and finished_at is the last finished request or phase mark")
	if kept.Dataset == nil {
		warnings = append(warnings, "the run kept neither its environment nor its dataset statistics (a version before they were kept): they are not in these results")
	}
	warnings = append(warnings, cutModes(&kept, modes, "failed ("+reason+")", all)...)
	gpu := func(out map[metrics.Mode]int) (any, []report.PowerSeries, []string) {
		var r RebuiltGPU
		if opt.GPU != nil {
			r = opt.GPU(&kept, until, out)
		}
		if r.Section != nil {
			return r.Section, r.Power, r.Warnings
		}
		if !job.GPUMonitor.Enabled {
			return map[string]any{"available": false, "reason": "gpu_monitor is disabled in the job"}, nil, r.Warnings
		}
		why := "the results were written after the controller stopped (" + reason + ") and the GPU monitor's readings were not read back"
		return map[string]any{"available": false, "reason": why}, nil,
			append(r.Warnings, "the GPU monitor's readings are not in these results: "+why)
	}
	greedy := sampling.Params{Temperature: job.Generation.Temperature, TopK: job.Generation.TopK, TopP: job.Generation.TopP}.Greedy()
	res, err = summarize(dir, job, res, all, modes, nil, greedy, warnings, gpu, hclog.NewNullLogger())
	if err != nil {
		return false, err
	}
	if opt.Written != nil {
		opt.Written(res)
	}
	os.Remove(keptPath)
	return true, nil
}

// cutModes are the warnings a rebuild gives, from the marks the run kept, for the mode the
// crash cut short and the modes it came before, as the run itself words them; how completes
// "the job …". None when the run kept no marks (a version before they were kept).
func cutModes(k *Kept, modes []metrics.Mode, how string, recs []metrics.Request) []string {
	if len(k.Marks) == 0 || len(modes) == 0 {
		return nil
	}
	ran := map[metrics.Mode]bool{}
	var last metrics.Mode
	for _, m := range k.Marks {
		if m.Phase != phaseIdle {
			last = metrics.Mode(m.Phase)
			ran[last] = true
		}
	}
	// The idle mark after the last mode: every mode ended before the crash.
	allDone := k.Marks[len(k.Marks)-1].Phase == phaseIdle && last == modes[len(modes)-1]
	var out []string
	for _, m := range modes {
		switch {
		case !ran[m]:
			out = append(out, notRun(how, m))
		case m == last && !allDone && k.Planned > 0:
			if w := cutShort(how, m, k.Planned, recs); w != "" {
				out = append(out, w)
			}
		}
	}
	return out
}

// lastKnown is the last moment a run is known to have been running: its last finished
// request or phase mark (its start when it has neither).
func lastKnown(k *Kept, recs []metrics.Request) time.Time {
	t := k.Started
	for _, m := range k.Marks {
		if m.T.After(t) {
			t = m.T
		}
	}
	for _, r := range recs {
		if r.FinishedAt.After(t) {
			t = r.FinishedAt
		}
	}
	return t
}
