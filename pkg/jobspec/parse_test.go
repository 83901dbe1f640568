package jobspec

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// parseFixture parses testdata/<name> with the file's base name in errors.
func parseFixture(t *testing.T, name string, cfg Config) (*Job, error) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return Parse(filepath.Base(name), src, cfg)
}

func errorLines(t *testing.T, err error) []string {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	return e.Lines()
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"syntax.hcl", []string{
			`syntax.hcl:6,19: Invalid expression; Expected the start of an expression, but found an invalid expression token.`,
		}},
		{"unknown.hcl", []string{
			`unknown.hcl:1,1: Unsupported block type; Blocks of type "jobs" are not expected here. Did you mean "job"? The top level takes blocks variable, locals, job and no attributes.`,
			`unknown.hcl:6,5: Unsupported argument; An argument named "layers" is not expected here. model "target" takes attributes path, gpus, dtype, stages and no blocks.`,
			`unknown.hcl:8,3: model "helper" is not one of target, drafter`,
			`unknown.hcl:12,5: Unsupported argument; An argument named "prompts" is not expected here. dataset "synthetic" takes attributes input_tokens, range_ratio and no blocks.`,
			`unknown.hcl:15,5: Unsupported argument; An argument named "num_prompt" is not expected here. Did you mean "num_prompts"? load takes attributes num_prompts, rate, duration, arrival, burstiness, max_concurrency, warmup_requests and no blocks.`,
			`unknown.hcl:17,3: Unsupported block type; Blocks of type "sampling" are not expected here. Did you mean "generation"? job takes attributes output_dir, seed and blocks model, placement, dataset, load, batch, generation, modes, gpu_monitor.`,
		}},
		{"enums.hcl", []string{
			`enums.hcl:4,5: model.target.dtype "fp8" is not one of auto, bf16, f32 (or the Hugging Face names bfloat16, float32)`,
			`enums.hcl:10,5: placement.strategy "ratio" is not one of multi_gpu_ratio, separate, same, auto`,
			`enums.hcl:12,3: dataset "csv" is not one of sharegpt, synthetic, prompts`,
			`enums.hcl:17,5: load.arrival "uniform" is not one of poisson, constant, gamma`,
		}},
		{"counts.hcl", []string{
			`counts.hcl:4,5: model.target.gpus must be at least 1, got 0`,
			`counts.hcl:5,5: model.target.stages must be at least 0 (0 = one per host), got -1`,
			`counts.hcl:12,5: dataset.synthetic.input_tokens must be at least 1, got 0`,
			`counts.hcl:15,5: load.num_prompts must be at least 1, got 0`,
			`counts.hcl:16,5: load.max_concurrency must be at least 0 (0 = unlimited), got -1`,
			`counts.hcl:17,5: load.warmup_requests must be at least 0, got -2`,
			`counts.hcl:20,5: batch.size must be at least 1, got 0`,
			`counts.hcl:21,5: batch.max_length must be at least 1, got -1`,
			`counts.hcl:24,5: generation.max_new_tokens must be at least 1, got 0`,
			`counts.hcl:25,5: generation.gamma must be between 1 and 32, got 33`,
			`counts.hcl:28,5: gpu_monitor.interval must be above 0, got 0s`,
		}},
		{"load.hcl", []string{
			`load.hcl:11,5: load.rate and load.num_prompts are both set; use num_prompts (mode 1) or rate with duration (mode 2)`,
			`load.hcl:15,1: a file holds one job block; the first is at load.hcl:1,1`,
		}},
		{"rate_parts.hcl", []string{
			`rate_parts.hcl:10,5: load.duration needs load.rate; duration, arrival and burstiness belong to rate mode (mode 2)`,
			`rate_parts.hcl:11,5: load.burstiness needs load.rate; duration, arrival and burstiness belong to rate mode (mode 2)`,
		}},
		{"burstiness.hcl", []string{
			`burstiness.hcl:11,5: load.duration must be above 0, got -5s`,
			`burstiness.hcl:12,5: load.burstiness only applies with load.arrival = "gamma" (got "poisson")`,
		}},
		{"sampling.hcl", []string{
			`sampling.hcl:13,5: generation.max_new_tokens (128) leaves no room for a prompt in batch.max_length (128); lower it or raise batch.max_length`,
			`sampling.hcl:14,5: generation.temperature must be 0 (greedy) or more, got -0.5`,
			`sampling.hcl:15,5: generation.top_k must be at least 0 (0 turns it off), got -1`,
			`sampling.hcl:16,5: generation.top_p must be in (0, 1], got 1.5`,
			`sampling.hcl:17,5: generation.draft_top_k must be 1 or more, or -1 for the drafter's whole distribution, got -2`,
		}},
		{"zero-rate-knobs.hcl", []string{
			`zero-rate-knobs.hcl:2,3: output_dir is empty; leave it out for the default results/<job name>-<short id>`,
			`zero-rate-knobs.hcl:8,5: load.duration needs load.rate; duration, arrival and burstiness belong to rate mode (mode 2)`,
			`zero-rate-knobs.hcl:9,5: load.burstiness needs load.rate; duration, arrival and burstiness belong to rate mode (mode 2)`,
		}},
		{"draft-top-k-zero.hcl", []string{
			`draft-top-k-zero.hcl:11,5: generation.draft_top_k must be 1 or more, or -1 for the drafter's whole distribution, got 0`,
		}},
		{"models.hcl", []string{
			`models.hcl:1,1: job "models" has no model "target" block; add model "target" { path = "/models/..." }`,
			`models.hcl:2,3: output_dir is empty; leave it out for the default results/<job name>-<short id>`,
			`models.hcl:4,5: model.drafter.path is missing or empty; set it to a Hugging Face model folder`,
			`models.hcl:6,3: a job holds one model "drafter" block; the first is at models.hcl:3,3`,
			`models.hcl:10,5: dataset.prompts.prompts is empty; list at least one prompt`,
			`models.hcl:12,3: a job holds one dataset block; the first is at models.hcl:9,3`,
			`models.hcl:13,3: modes.speculative and modes.target_ar are both false; enable at least one`,
		}},
		{"no_drafter.hcl", []string{
			`no_drafter.hcl:1,1: modes.speculative is on but the job has no model "drafter" block; add one or set modes { speculative = false }`,
			`no_drafter.hcl:6,5: placement.devices "0,1,1": device 1 is listed twice`,
			`no_drafter.hcl:9,5: dataset.sharegpt.dir is empty; set it to the folder holding the ShareGPT files (SHAREGPT_DIR)`,
			`no_drafter.hcl:10,5: dataset.sharegpt.files is empty; leave it out for sharegpt_gpt4.jsonl, sharegpt_V3_format.jsonl, sharegpt_zh_38K_format.jsonl`,
		}},
		{"types.hcl", []string{
			`types.hcl:2,3: seed must be a whole number, got 1.5`,
			`types.hcl:4,5: model.target.path must be a string, got tuple`,
			`types.hcl:11,5: dataset.sharegpt.files must be a list of strings, got string "sharegpt_gpt4.jsonl"`,
			`types.hcl:14,5: load.num_prompts must be a number, got string "ten"`,
			`types.hcl:17,5: generation.gamma must be a whole number, got 2.5`,
			`types.hcl:18,5: generation.ignore_eos must be true or false (any case, or the strings "1" and "0"), got string "yes"`,
			`types.hcl:21,5: gpu_monitor.interval: "1 second" is not a duration; use a Go duration such as "300s" or "5m", or a number of seconds`,
		}},
		{"variables.hcl", []string{
			`variables.hcl:1,10: variable "needed" has no value; give it a default, -var needed=..., a -var-file or DRAFTBENCH_VAR_needed`,
			`variables.hcl:5,3: variable "count": default is not a valid number: a number is required`,
			`variables.hcl:8,1: variable "count" is declared twice; the first is at variables.hcl:3,1`,
		}},
		{"no_job.hcl", []string{
			`no_job.hcl:1,1: no_job.hcl has no job block; add job "name" { ... }`,
		}},
		{"references.hcl", []string{
			`references.hcl:2,3: local.a refers to itself, directly or through other locals`,
			`references.hcl:3,3: local.b refers to itself, directly or through other locals`,
			`references.hcl:8,12: variable "missing" is not declared; the job file declares no variables`,
			`references.hcl:11,5: model.drafter.path is missing or empty; set it to a Hugging Face model folder`,
			`references.hcl:14,20: Call to unknown function; There is no function named "nosuchfunc".`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			job, err := parseFixture(t, filepath.Join("invalid", tc.file), Config{})
			if err == nil {
				t.Fatalf("parsed %s without error: %v", tc.file, job)
			}
			got := errorLines(t, err)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors\n got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if err.Error() != strings.Join(tc.want, "\n") {
				t.Errorf("Error() = %q, want the lines joined by newlines", err.Error())
			}
		})
	}
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		file string
		want Job
	}{
		{"minimal.hcl", Job{
			Name: "minimal",
			Models: Models{
				Target:  Model{Path: "/models/target", GPUs: 6, DType: "auto"},
				Drafter: &Model{Path: "/models/drafter", GPUs: 2, DType: "auto"},
			},
			Placement:  Placement{Strategy: "multi_gpu_ratio"},
			Dataset:    Dataset{Kind: "synthetic", InputTokens: 128},
			Load:       Load{Mode: "num_prompts", NumPrompts: 100},
			Batch:      Batch{Enabled: true, Size: 4, MaxLength: 512},
			Generation: Generation{MaxNewTokens: 100, Gamma: 4, TopP: 1, IgnoreEOS: true, DraftTopK: 64},
			Modes:      Modes{Speculative: true, TargetAR: true},
			GPUMonitor: GPUMonitor{Enabled: true, Interval: Duration(time.Second), CooldownTimeout: defaultCooldownTimeout},
			Warnings:   []string{},
		}},
		{"everything.hcl", Job{
			Name:      "everything",
			OutputDir: "results/everything",
			Seed:      7,
			Models: Models{
				Target:  Model{Path: "/models/target", GPUs: 3, DType: "bf16", Stages: 3},
				Drafter: &Model{Path: "/models/drafter", GPUs: 1, DType: "f32"},
			},
			Placement: Placement{Strategy: "multi_gpu_ratio", Devices: "0,1,2,3"},
			Dataset:   Dataset{Kind: "sharegpt", Dir: "/data/sharegpt", Files: []string{"sharegpt_gpt4.jsonl"}},
			Load: Load{Mode: "rate", Rate: 2.5, Duration: Duration(5 * time.Minute), Arrival: "gamma",
				Burstiness: 0.5, MaxConcurrency: 8, WarmupRequests: 3},
			Batch:      Batch{Enabled: false, Size: 16, MaxLength: 2048},
			Generation: Generation{MaxNewTokens: 256, Gamma: 8, Temperature: 0.7, TopK: 50, TopP: 0.9, DraftTopK: 256},
			Modes:      Modes{Speculative: true},
			GPUMonitor: GPUMonitor{Interval: Duration(250 * time.Millisecond), CooldownTimeout: defaultCooldownTimeout},
			Warnings:   []string{},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			job, err := parseFixture(t, filepath.Join("valid", tc.file), Config{})
			if err != nil {
				t.Fatal(err)
			}
			if job.Source == nil || job.Source.Filename != tc.file {
				t.Errorf("Source = %+v, want the file name %s", job.Source, tc.file)
			}
			job.Source, job.Pos = nil, nil
			if !reflect.DeepEqual(*job, tc.want) {
				g, _ := json.MarshalIndent(job, "", " ")
				w, _ := json.MarshalIndent(tc.want, "", " ")
				t.Errorf("job\n got %s\nwant %s", g, w)
			}
		})
	}
}

// Every field set in the file has a position; defaults have none.
func TestPositions(t *testing.T) {
	job, err := parseFixture(t, "valid/minimal.hcl", Config{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want string
	}{
		{"job", "minimal.hcl:2,1"},
		{"model.target", "minimal.hcl:3,3"},
		{"model.target.path", "minimal.hcl:4,5"},
		{"model.drafter.path", "minimal.hcl:7,5"},
		{"dataset.synthetic", "minimal.hcl:9,3"},
		{"model.target.gpus", "minimal.hcl:3,3"}, // a default: its block
		{"load.rate", "minimal.hcl:2,1"},         // no load block: the job
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			if got := job.Where(tc.path); got != tc.want {
				t.Errorf("Where(%q) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
	if _, ok := job.Pos["load.num_prompts"]; ok {
		t.Error("Pos has load.num_prompts, which the file does not set")
	}
}

func TestErrorf(t *testing.T) {
	job, err := parseFixture(t, "valid/everything.hcl", Config{})
	if err != nil {
		t.Fatal(err)
	}
	cause := errors.New("multi_gpu_ratio needs 4 devices")
	err = job.Errorf("placement.devices", "placement: %w", cause)
	want := "everything.hcl:19,5: placement: multi_gpu_ratio needs 4 devices"
	if err.Error() != want {
		t.Errorf("Errorf = %q, want %q", err, want)
	}
	if !errors.Is(err, cause) {
		t.Error("Errorf lost the %w cause")
	}

	unparsed := &Job{Name: "built"}
	if got := unparsed.Errorf("load.rate", "too fast").Error(); got != "too fast" {
		t.Errorf("Errorf without positions = %q, want %q", got, "too fast")
	}
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name string
		file string
		cfg  Config
		want []string
	}{
		{"none", "vars.hcl", Config{Vars: []string{"model_dir=/m"}}, []string{}},
		{"unused drafter", "vars.hcl", Config{Vars: []string{"model_dir=/m", "speculative=false"}}, []string{
			`vars.hcl:34,3: model "drafter" is not loaded: modes.speculative is false`,
		}},
		{"sampling knobs at temperature 0", "greedy-knobs.hcl", Config{}, []string{
			`greedy-knobs.hcl:10,5: generation.top_k = 5 has no effect at generation.temperature 0 (greedy decoding and drafting draw from no distribution); set a temperature above 0 to sample`,
			`greedy-knobs.hcl:11,5: generation.top_p = 0.9 has no effect at generation.temperature 0 (greedy decoding and drafting draw from no distribution); set a temperature above 0 to sample`,
			`greedy-knobs.hcl:12,5: generation.draft_top_k = 8 has no effect at generation.temperature 0 (greedy decoding and drafting draw from no distribution); set a temperature above 0 to sample`,
		}},
		{"gpus under same", "warnings.hcl", Config{}, []string{
			`warnings.hcl:5,5: model.target.gpus has no effect with placement.strategy "same", which gives each model one device`,
			`warnings.hcl:7,3: model "drafter" is not loaded: modes.speculative is false`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			job, err := parseFixture(t, filepath.Join("valid", tc.file), tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(job.Warnings, tc.want) {
				t.Errorf("warnings %q, want %q", job.Warnings, tc.want)
			}
			if job.Models.Target.GPUs != 0 && job.Placement.Strategy == "same" {
				t.Errorf("gpus %d kept under same, want 0", job.Models.Target.GPUs)
			}
		})
	}
}

// A job built in Go has no positions; its problems still come out, one a line.
func TestValidateBuilt(t *testing.T) {
	job := &Job{
		Name:       "built",
		Models:     Models{Target: Model{Path: "/m", DType: "auto"}},
		Placement:  Placement{Strategy: "same"},
		Dataset:    Dataset{Kind: "prompts", Prompts: []string{"hi", " "}},
		Load:       Load{Mode: "rate", Rate: 1, Duration: Duration(time.Minute), Arrival: "poisson", Burstiness: 1},
		Batch:      Batch{Size: 1, MaxLength: 8},
		Generation: Generation{MaxNewTokens: 4, Gamma: 0, TopP: 1},
		Modes:      Modes{TargetAR: true},
		GPUMonitor: GPUMonitor{Interval: Duration(time.Second)},
	}
	want := "dataset.prompts.prompts[1] is empty\ngeneration.gamma must be between 1 and 32, got 0"
	err := job.Validate()
	if err == nil || err.Error() != want {
		t.Fatalf("Validate = %v, want %q", err, want)
	}
	job.Generation.Gamma = 4
	job.Dataset.Prompts = []string{"hi"}
	if err := job.Validate(); err != nil {
		t.Fatalf("Validate of a fixed job: %v", err)
	}
}
