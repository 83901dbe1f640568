// Package report writes what a benchmark run leaves behind: the results JSON files, the
// requests.jsonl log, the plots, the console summary, and the progress shown while it runs.
package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/draftbench/draftbench/pkg/metrics"
)

// The files of an output folder (SEED.md "Outputs", DESIGN §7).
const (
	FileResults     = "benchmark_results.json"
	FileSpeculative = "benchmark_results_speculative.json"
	FileTarget      = "benchmark_results_target.json"
	FileGPU         = "benchmark_results_gpu.json"
	FileRequests    = "requests.jsonl"
	DirPlots        = "plots"
	// FileLock, kept locked while a run writes the folder, holds its pid.
	FileLock = ".draftbench.lock"
	// FileJob holds, while a job runs, what its results need besides
	// requests.jsonl and only the running process knows (JSON, jobrun.Kept:
	// the spec, the environment and dataset sections, the warnings known at
	// the start, the GPU monitor's setup and the phase marks), so a
	// controller restarted after a crash can write them (jobrun.Rebuild).
	// It is removed once the results are written.
	FileJob = ".draftbench-job.json"
)

// Job identifies the run in the results.
type Job struct {
	ID         string    `json:"id"` // UUID
	Name       string    `json:"name"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Outcome is how the run ended: OutcomeCompleted, OutcomeCancelled or
	// OutcomeFailed, with Reason saying why for the last two ("" in files
	// written before it existed).
	Outcome string `json:"outcome,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// How a run ended (Job.Outcome).
const (
	OutcomeCompleted = "completed" // every planned request was sent and answered (some may have failed)
	OutcomeCancelled = "cancelled" // a user's cancel, Ctrl-C or a controller shutdown cut it short
	OutcomeFailed    = "failed"    // a lost worker, a dead stage or a deadline cut it short
)

// Results is everything benchmark_results.json holds. Config, Environment, GPU and Dataset
// belong to other packages and are written as they marshal (any value, or a json.RawMessage).
//
// A nil Speculative or Target means the mode was disabled: it is written as {"enabled": false},
// and an enabled mode's summary carries "enabled": true next to its figures, so a reader can
// always test one key. A nil Comparison (a mode disabled) is written as null. A nil GPU is
// written as {"available": false, "reason": ...}, the shape gpumon uses without NVML.
type Results struct {
	Job         Job
	Config      any
	Environment any
	Speculative *metrics.Summary
	Target      *metrics.Summary
	Comparison  *metrics.Comparison
	GPU         any
	Dataset     any
	Warnings    []string
}

// noGPU is written when the caller passes no GPU results at all.
var noGPU = map[string]any{"available": false, "reason": "no GPU monitor results were recorded"}

// modeResult is the JSON of one mode: {"enabled": false} or the summary with "enabled": true.
type modeResult struct {
	Enabled bool `json:"enabled"`
	*metrics.Summary
}

func newModeResult(s *metrics.Summary) modeResult { return modeResult{Enabled: s != nil, Summary: s} }

func (m *modeResult) summary() *metrics.Summary {
	if m == nil || !m.Enabled {
		return nil
	}
	if m.Summary == nil {
		return &metrics.Summary{}
	}
	return m.Summary
}

func (r Results) gpu() any {
	if r.GPU == nil {
		return noGPU
	}
	return r.GPU
}

// MarshalJSON writes the benchmark_results.json object, keys in a fixed order.
func (r Results) MarshalJSON() ([]byte, error) {
	warnings := r.Warnings
	if warnings == nil {
		warnings = []string{}
	}
	return encodeJSON(resultsJSON[any, modeResult]{r.Job, r.Config, r.Environment, newModeResult(r.Speculative),
		newModeResult(r.Target), r.Comparison, r.gpu(), r.Dataset, warnings}, false)
}

// MarshalLine is v as one line of JSON (no newline) the way the results files and
// requests.jsonl are written: without HTML escaping, so a record published on NATS or kept
// for a rebuild is byte for byte what the files hold.
func MarshalLine(v any) ([]byte, error) {
	data, err := encodeJSON(v, false)
	return bytes.TrimSuffix(data, []byte("\n")), err
}

// encodeJSON marshals v without json.Marshal's HTML escaping: the files are read by people and
// tools, not embedded in web pages, and "temperature > 0" should read as written.
func encodeJSON(v any, indent bool) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if indent {
		enc.SetIndent("", "  ")
	}
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil // Encode ends it with a newline
}

// UnmarshalJSON reads benchmark_results.json back, for status and tail on a finished job. The
// parts other packages own come back as json.RawMessage; a disabled mode comes back nil.
func (r *Results) UnmarshalJSON(data []byte) error {
	var in resultsJSON[json.RawMessage, *modeResult]
	if err := json.Unmarshal(data, &in); err != nil {
		return fmt.Errorf("decoding results: %w", err)
	}
	*r = Results{Job: in.Job, Config: in.Config, Environment: in.Environment, Comparison: in.Comparison,
		GPU: in.GPU, Dataset: in.Dataset, Warnings: in.Warnings,
		Speculative: in.Speculative.summary(), Target: in.Target.summary()}
	return nil
}

// resultsJSON is the layout of benchmark_results.json; O is how other packages' parts travel,
// M how a mode does.
type resultsJSON[O any, M any] struct {
	Job         Job                 `json:"job"`
	Config      O                   `json:"config"`
	Environment O                   `json:"environment"`
	Speculative M                   `json:"speculative"`
	Target      M                   `json:"target"`
	Comparison  *metrics.Comparison `json:"comparison"`
	GPU         O                   `json:"gpu"`
	Dataset     O                   `json:"dataset"`
	Warnings    []string            `json:"warnings"`
}

// Write writes the four results files into dir, creating it if needed. Each file is written
// atomically, so a crash leaves either the previous file or the new one, never half of one.
// benchmark_results_{speculative,target,gpu}.json hold exactly what the matching key of
// benchmark_results.json holds.
func Write(dir string, r Results) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	files := []struct {
		name string
		v    any
	}{
		{FileSpeculative, newModeResult(r.Speculative)},
		{FileTarget, newModeResult(r.Target)},
		{FileGPU, r.gpu()},
		{FileResults, r}, // last: its presence means the others are complete
	}
	for _, f := range files {
		data, err := encodeJSON(f.v, true)
		if err != nil {
			return fmt.Errorf("encoding %s: %w", f.name, err)
		}
		if err := writeAtomic(filepath.Join(dir, f.name), data); err != nil {
			return fmt.Errorf("writing results: %w", err)
		}
	}
	return nil
}

// WriteFileAtomic writes data to path as Write writes the results files: a crash leaves either
// the previous file or the new one.
func WriteFileAtomic(path string, data []byte) error { return writeAtomic(path, data) }

// writeAtomic writes data to path through a temporary file in the same folder and a rename,
// which POSIX makes atomic within one file system.
func writeAtomic(path string, data []byte) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("creating temporary file for %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	// Sync before rename: otherwise a power loss can leave the new name on an empty file.
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("setting mode of %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("renaming %s to %s: %w", tmp.Name(), path, err)
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename durable. Best effort: some platforms cannot sync a folder, and the
// file itself is already complete on disk.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}
