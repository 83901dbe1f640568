package jobspec

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// A job with everything required, for tests that add one thing to it.
const (
	jobHead = `job "t" {
  model "target" {
    path = "/m/t"
  }
  model "drafter" {
    path = "/m/d"
  }
  dataset "prompts" {
    prompts = ["hi"]
  }
`
	jobTail = "}\n"
)

// parseErrors parses src as t.hcl and returns the error lines (nil when it
// parsed).
func parseErrors(t *testing.T, src string, cfg Config) []string {
	t.Helper()
	_, err := Parse("t.hcl", []byte(src), cfg)
	if err == nil {
		return nil
	}
	return errorLines(t, err)
}

func checkLines(t *testing.T, got, want []string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors\n got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Unknown attributes and blocks say what the block takes (DESIGN §4), keep
// HCL's "Did you mean" and suggest one where HCL has none.
func TestUnknownNames(t *testing.T) {
	jobAttrs := "job takes attributes output_dir, seed and blocks model, placement, dataset, load, batch, generation, modes, gpu_monitor."
	tests := []struct {
		name string
		src  string
		want string
	}{
		{"attribute", jobHead + "  load {\n    bogus = 1\n  }\n" + jobTail,
			`t.hcl:12,5: Unsupported argument; An argument named "bogus" is not expected here. ` +
				`load takes attributes num_prompts, rate, duration, arrival, burstiness, max_concurrency, warmup_requests and no blocks.`},
		{"HCL's suggestion kept", jobHead + "  batch {\n    enabld = false\n  }\n" + jobTail,
			`t.hcl:12,5: Unsupported argument; An argument named "enabld" is not expected here. Did you mean "enabled"? ` +
				`batch takes attributes enabled, size, max_length and no blocks.`},
		{"suggestion from a known alias", jobHead + "  generation {\n    max_tokens = 5\n  }\n" + jobTail,
			`t.hcl:12,5: Unsupported argument; An argument named "max_tokens" is not expected here. Did you mean "max_new_tokens"? ` +
				`generation takes attributes max_new_tokens, gamma, temperature, top_k, top_p, ignore_eos, draft_top_k and no blocks.`},
		{"no suggestion for a set attribute", jobHead + "  load {\n    num_prompts = 1\n    num_prompt = 2\n  }\n" + jobTail,
			`t.hcl:13,5: Unsupported argument; An argument named "num_prompt" is not expected here. ` +
				`load takes attributes num_prompts, rate, duration, arrival, burstiness, max_concurrency, warmup_requests and no blocks.`},
		{"attribute of job", jobHead + "  bogus = 1\n" + jobTail,
			`t.hcl:11,3: Unsupported argument; An argument named "bogus" is not expected here. ` + jobAttrs},
		{"block by prefix", jobHead + "  batching {}\n" + jobTail,
			`t.hcl:11,3: Unsupported block type; Blocks of type "batching" are not expected here. Did you mean "batch"? ` + jobAttrs},
		{"block by substring", jobHead + "  monitor {}\n" + jobTail,
			`t.hcl:11,3: Unsupported block type; Blocks of type "monitor" are not expected here. Did you mean "gpu_monitor"? ` + jobAttrs},
		{"two attributes on a one-line block", jobHead + "  batch { enabled = true  size = 4 }\n" + jobTail,
			`t.hcl:11,27: Invalid single-argument block definition; A single-line block definition must end with a closing brace immediately after its single argument definition. ` +
				`HCL allows one attribute on a one-line block: put each attribute on a line of its own.`},
		{"block without a close name", jobHead + "  tracing {}\n" + jobTail,
			`t.hcl:11,3: Unsupported block type; Blocks of type "tracing" are not expected here. ` + jobAttrs},
		{"block in a block without blocks", strings.Replace(jobHead, `path = "/m/t"`, `path = "/m/t"`+"\n    lora {}", 1) + jobTail,
			`t.hcl:4,5: Unsupported block type; Blocks of type "lora" are not expected here. ` +
				`model "target" takes attributes path, gpus, dtype, stages and no blocks.`},
		{"dataset attribute", strings.Replace(jobHead, `prompts = ["hi"]`, `prompts = ["hi"]`+"\n    input_tokens = 3", 1) + jobTail,
			`t.hcl:10,5: Unsupported argument; An argument named "input_tokens" is not expected here. ` +
				`dataset "prompts" takes attributes prompts and no blocks.`},
		{"top level attribute", "seed = 1\n" + jobHead + jobTail,
			`t.hcl:1,1: Unsupported argument; An argument named "seed" is not expected here. The top level takes blocks variable, locals, job and no attributes.`},
		{"variable attribute", "variable \"x\" {\n  defualt = 1\n}\n" + jobHead + jobTail,
			`t.hcl:2,3: Unsupported argument; An argument named "defualt" is not expected here. Did you mean "default"? ` +
				`variable "x" takes attributes default, description, type and blocks validation.`},
		{"validation attribute", "variable \"x\" {\n  default = 1\n  validation {\n    condition = var.x > 0\n    error_message = \"positive\"\n    message = \"x\"\n  }\n}\n" + jobHead + jobTail,
			`t.hcl:6,5: Unsupported argument; An argument named "message" is not expected here. ` +
				`validation takes attributes condition, error_message and no blocks.`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkLines(t, parseErrors(t, tc.src, Config{}), []string{tc.want})
		})
	}
}

func TestSuggest(t *testing.T) {
	blocks := []string{"model", "placement", "dataset", "load", "batch", "generation", "modes", "gpu_monitor"}
	tests := []struct{ given, want string }{
		{"batching", "batch"},
		{"sampling", "generation"},
		{"generate", "generation"},
		{"datasets", "dataset"},
		{"gpu", "gpu_monitor"},
		{"tracing", ""},
		{"x", ""},
	}
	for _, tc := range tests {
		if got := suggest(tc.given, blocks); got != tc.want {
			t.Errorf("suggest(%q) = %q, want %q", tc.given, got, tc.want)
		}
	}
}

// Variable problems name the variable, point at its declaration and say
// where the bad value came from.
func TestVariableMessages(t *testing.T) {
	const decls = `variable "num_prompts" {
  default = 100
}
variable "flag" {
  default = true
}
variable "path" {
  default = null
}
`
	withPath := []string{"path=/m"}
	job := decls + `job "t" {
  model "target" {
    path = var.path
  }
  model "drafter" {
    path = "/m/d"
  }
  dataset "prompts" {
    prompts = ["hi"]
  }
  load {
    num_prompts = var.num_prompts
  }
  modes {
    speculative = var.flag
  }
}
`
	declared := "declared: flag, num_prompts, path"
	tests := []struct {
		name string
		src  string
		cfg  Config
		want []string
	}{
		{"bad -var", job, Config{Vars: append(withPath, "num_prompts=abc")}, []string{
			`t.hcl:1,10: variable "num_prompts" from -var num_prompts=abc: "abc" is not a number`,
		}},
		{"bad environment value", job, Config{Vars: withPath, Env: map[string]string{"DRAFTBENCH_VAR_num_prompts": "ten"}}, []string{
			`t.hcl:1,10: variable "num_prompts" from DRAFTBENCH_VAR_num_prompts=ten: "ten" is not a number`,
		}},
		{"bad -var-file value", job, Config{Vars: withPath, VarFiles: []string{"site.hcl"},
			ReadFile: func(string) ([]byte, error) { return []byte("num_prompts = \"x\"\n"), nil }}, []string{
			`site.hcl:1,1: variable "num_prompts" from -var-file site.hcl: "x" is not a number`,
		}},
		{"undeclared -var", job, Config{Vars: append(withPath, "g=1")}, []string{
			`-var g=1: variable "g" is not declared; ` + declared,
		}},
		{"undeclared -var, close to a declared one", job, Config{Vars: append(withPath, "num_prompt=1")}, []string{
			`-var num_prompt=1: variable "num_prompt" is not declared; ` + declared + `. Did you mean "num_prompts"?`,
		}},
		{"undeclared -var, none declared", jobHead + jobTail, Config{Vars: []string{"g=1"}}, []string{
			`-var g=1: variable "g" is not declared; the job file declares no variables`,
		}},
		{"undeclared in a var file", job, Config{Vars: withPath, VarFiles: []string{"site.hcl"},
			ReadFile: func(string) ([]byte, error) { return []byte("g = 1\n"), nil }}, []string{
			`site.hcl:1,1: variable "g" is not declared; ` + declared,
		}},
		{"reference to an undeclared variable", strings.Replace(job, "var.num_prompts", "var.g", 1), Config{Vars: withPath}, []string{
			`t.hcl:21,19: variable "g" is not declared; ` + declared,
		}},
		{"reference inside a template", strings.Replace(job, "var.path", `"${var.dir}/t"`, 1), Config{Vars: withPath}, []string{
			`t.hcl:12,15: variable "dir" is not declared; ` + declared,
		}},
		{"reference to an undeclared local", "locals {\n  a = 1\n}\n" + strings.Replace(jobHead, `"/m/t"`, "local.b", 1) + jobTail, Config{}, []string{
			`t.hcl:6,12: local.b is not defined; defined locals: a`,
		}},
		{"default null needs a value", job, Config{}, []string{
			`t.hcl:7,10: variable "path" needs a value (its default is null); give it with -var path=..., a -var-file or DRAFTBENCH_VAR_path`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkLines(t, parseErrors(t, tc.src, tc.cfg), tc.want)
		})
	}
}

// Booleans written as text (env(), -var, DRAFTBENCH_VAR_) accept any case
// and 1/0; dtype accepts the Hugging Face names.
func TestLenientValues(t *testing.T) {
	const boolJob = `variable "spec" {
  default = true
}
job "t" {
  model "target" {
    path  = "/m/t"
    dtype = env("DTYPE", "auto")
  }
  model "drafter" {
    path = "/m/d"
  }
  dataset "prompts" {
    prompts = ["hi"]
  }
  batch {
    enabled = env("ENABLE_BATCH", true)
  }
  modes {
    speculative = var.spec
  }
  generation {
    gamma = env("GAMMA", 4)
  }
}
`
	tests := []struct {
		name    string
		cfg     Config
		batch   bool
		spec    bool
		dtype   string
		wantErr string
	}{
		{"defaults", Config{}, true, true, "auto", ""},
		{"False", Config{Env: map[string]string{"ENABLE_BATCH": "False"}}, false, true, "auto", ""},
		{"FALSE", Config{Env: map[string]string{"ENABLE_BATCH": "FALSE"}}, false, true, "auto", ""},
		{"True", Config{Env: map[string]string{"ENABLE_BATCH": "True"}}, true, true, "auto", ""},
		{"0", Config{Env: map[string]string{"ENABLE_BATCH": "0"}}, false, true, "auto", ""},
		{"spaces", Config{Env: map[string]string{"ENABLE_BATCH": " false "}}, false, true, "auto", ""},
		{"yes is refused", Config{Env: map[string]string{"ENABLE_BATCH": "yes"}}, false, false, "",
			`t.hcl:16,5: batch.enabled must be true or false (any case, or the strings "1" and "0"), got string "yes" (from the environment variable ENABLE_BATCH)`},
		{"-var False", Config{Vars: []string{"spec=False"}}, true, false, "auto", ""},
		{"DRAFTBENCH_VAR_ TRUE", Config{Env: map[string]string{"DRAFTBENCH_VAR_spec": "TRUE"}}, true, true, "auto", ""},
		{"bfloat16", Config{Env: map[string]string{"DTYPE": "bfloat16"}}, true, true, "bf16", ""},
		{"float16 is read, and refused as storage", Config{Env: map[string]string{"DTYPE": "float16"}}, false, false, "",
			`t.hcl:7,5: model.target.dtype "f16": no backend stores weights in f16; use auto (an f16 checkpoint is computed in f32 on CPUs, bf16 on GPUs), bf16 or f32 (from the environment variable DTYPE)`},
		{"float32", Config{Env: map[string]string{"DTYPE": "float32"}}, true, true, "f32", ""},
		{"vLLM's float", Config{Env: map[string]string{"DTYPE": "float"}}, true, true, "f32", ""},
		{"a number with blanks", Config{Env: map[string]string{"GAMMA": " 6 "}}, true, true, "auto", ""},
		{"a bad number names its variable", Config{Env: map[string]string{"GAMMA": "six"}}, false, false, "",
			`t.hcl:22,5: generation.gamma must be a number, got string "six" (from the environment variable GAMMA)`},
		{"a number out of range names its variable", Config{Env: map[string]string{"GAMMA": "0"}}, false, false, "",
			`t.hcl:22,5: generation.gamma must be between 1 and 32, got 0 (from the environment variable GAMMA)`},
		{"BF16", Config{Env: map[string]string{"DTYPE": "BF16"}}, true, true, "bf16", ""},
		{"fp8 is refused", Config{Env: map[string]string{"DTYPE": "fp8"}}, false, false, "",
			`t.hcl:7,5: model.target.dtype "fp8" is not one of auto, bf16, f32 (or the Hugging Face names bfloat16, float32) (from the environment variable DTYPE)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			job, err := Parse("t.hcl", []byte(boolJob), tc.cfg)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err = %v, want %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if job.Batch.Enabled != tc.batch || job.Modes.Speculative != tc.spec || job.Models.Target.DType != tc.dtype {
				t.Errorf("batch.enabled %t, modes.speculative %t, dtype %q; want %t, %t, %q",
					job.Batch.Enabled, job.Modes.Speculative, job.Models.Target.DType, tc.batch, tc.spec, tc.dtype)
			}
		})
	}
}

// validation blocks in variable blocks, as in Nomad and Terraform.
func TestValidationBlocks(t *testing.T) {
	const decl = `variable "n" {
  type    = number
  default = 4

  validation {
    condition     = var.n >= 1
    error_message = "n must be at least 1."
  }
  validation {
    condition     = var.n <= 32
    error_message = format("n must be at most 32, not %d.", var.n)
  }
}
`
	job := decl + strings.Replace(jobHead, `job "t" {`, "job \"t\" {\n  seed = var.n", 1) + jobTail
	tests := []struct {
		name string
		src  string
		cfg  Config
		want []string
	}{
		{"default passes", job, Config{}, nil},
		{"-var passes", job, Config{Vars: []string{"n=32"}}, nil},
		{"first rule", job, Config{Vars: []string{"n=0"}}, []string{
			`t.hcl:6,5: invalid value 0 for variable "n" (from -var n=0): n must be at least 1.`,
		}},
		{"second rule", job, Config{Env: map[string]string{"DRAFTBENCH_VAR_n": "40"}}, []string{
			`t.hcl:10,5: invalid value 40 for variable "n" (from DRAFTBENCH_VAR_n=40): n must be at most 32, not 40.`,
		}},
		{"a bad default is refused too", strings.Replace(job, "default = 4", "default = 0", 1), Config{}, []string{
			`t.hcl:6,5: invalid value 0 for variable "n" (from its default): n must be at least 1.`,
		}},
		{"string value quoted", `variable "mode" {
  default = "auto"
  validation {
    condition     = contains(["auto", "count"], var.mode)
    error_message = "mode must be auto or count."
  }
}
` + jobHead + jobTail, Config{Vars: []string{"mode=cnt"}}, []string{
			`t.hcl:4,5: invalid value "cnt" for variable "mode" (from -var mode=cnt): mode must be auto or count.`,
		}},
		{"condition must refer to the variable", "variable \"a\" {\n  default = 1\n  validation {\n    condition = 1 > 0\n    error_message = \"x\"\n  }\n}\n" + jobHead + jobTail, Config{}, []string{
			`t.hcl:4,5: variable "a": a validation condition must refer to var.a, the value it checks`,
		}},
		{"condition and message required", "variable \"a\" {\n  default = 1\n  validation {\n  }\n}\n" + jobHead + jobTail, Config{}, []string{
			`t.hcl:3,3: variable "a": a validation block needs condition = <an expression of var.a that is true for a good value>`,
			`t.hcl:3,3: variable "a": a validation block needs error_message = "...", said when the condition is false`,
		}},
		{"condition must be a bool", "variable \"a\" {\n  default = 1\n  validation {\n    condition = var.a\n    error_message = \"x\"\n  }\n}\n" + jobHead + jobTail, Config{}, []string{
			`t.hcl:4,5: variable "a": a validation condition must be true or false, got number 1`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkLines(t, parseErrors(t, tc.src, tc.cfg), tc.want)
		})
	}
}

// hcl/benchmark.hcl: every SEED knob under its original name, the mode
// variable refusing typos, and one warm-up request per mode by default.
func TestBenchmarkKnobs(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "hcl", "benchmark.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	parse := func(env map[string]string, vars ...string) (*Job, error) {
		e := map[string]string{"SHAREGPT_DIR": "/data/sharegpt"}
		for k, v := range env {
			e[k] = v
		}
		return Parse("hcl/benchmark.hcl", src, Config{Env: e, Vars: vars})
	}
	tests := []struct {
		knob, value string
		got         func(*Job) any
		want        any
	}{
		{"CUDA_VISIBLE_DEVICES", "0,1,2,3", func(j *Job) any { return j.Placement.Devices }, "0,1,2,3"},
		{"GPU_STRATEGY", "auto", func(j *Job) any { return j.Placement.Strategy }, "auto"},
		{"TARGET_GPU_RATIO", "5", func(j *Job) any { return j.Models.Target.GPUs }, 5},
		{"DRAFTER_GPU_RATIO", "3", func(j *Job) any { return j.Models.Drafter.GPUs }, 3},
		{"NUM_PROMPTS", "7", func(j *Job) any { return j.Load.NumPrompts }, 7},
		{"AUTO_RATE", "2.5", func(j *Job) any { return j.Load.Rate }, 2.5},
		{"AUTO_DURATION", "60", func(j *Job) any { return j.Load.Duration.String() }, "1m0s"},
		{"ENABLE_BATCH", "False", func(j *Job) any { return j.Batch.Enabled }, false},
		{"BATCH_SIZE", "8", func(j *Job) any { return j.Batch.Size }, 8},
		{"MAX_BATCH_LENGTH", "1024", func(j *Job) any { return j.Batch.MaxLength }, 1024},
		{"GENERATION_LENGTH", "50", func(j *Job) any { return j.Generation.MaxNewTokens }, 50},
		{"GAMMA_VALUE", "6", func(j *Job) any { return j.Generation.Gamma }, 6},
		{"ENABLE_SPECULATIVE", "false", func(j *Job) any { return j.Modes.Speculative }, false},
		{"ENABLE_TARGET", "FALSE", func(j *Job) any { return j.Modes.TargetAR }, false},
		{"ENABLE_GPU_MONITOR", "false", func(j *Job) any { return j.GPUMonitor.Enabled }, false},
		{"GPU_MONITOR_INTERVAL", "0.5", func(j *Job) any { return j.GPUMonitor.Interval.String() }, "500ms"},
		{"SHAREGPT_DIR", "/other", func(j *Job) any { return j.Dataset.Dir }, "/other"},
		{"TARGET_MODEL", "/m/big", func(j *Job) any { return j.Models.Target.Path }, "/m/big"},
		{"DRAFTER_MODEL", "/m/small", func(j *Job) any { return j.Models.Drafter.Path }, "/m/small"},
		{"WARMUP_REQUESTS", "0", func(j *Job) any { return j.Load.WarmupRequests }, 0},
	}
	// Rate-mode knobs apply only in rate mode.
	needs := map[string]map[string]string{"AUTO_DURATION": {"AUTO_RATE": "1"}}
	for _, tc := range tests {
		t.Run(tc.knob, func(t *testing.T) {
			env := map[string]string{tc.knob: tc.value}
			for k, v := range needs[tc.knob] {
				env[k] = v
			}
			job, err := parse(env)
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.got(job); got != tc.want {
				t.Errorf("%s=%s gives %v, want %v", tc.knob, tc.value, got, tc.want)
			}
		})
	}

	t.Run("warm-up by default", func(t *testing.T) {
		for _, vars := range [][]string{nil, {"mode=rate"}} {
			job, err := parse(nil, vars...)
			if err != nil {
				t.Fatal(err)
			}
			if job.Load.WarmupRequests != 1 {
				t.Errorf("vars %v: warmup_requests %d, want 1", vars, job.Load.WarmupRequests)
			}
		}
	})
	t.Run("mode typo refused", func(t *testing.T) {
		_, err := parse(nil, "mode=rates")
		want := `hcl/benchmark.hcl:22,5: invalid value "rates" for variable "mode" (from -var mode=rates): mode must be auto, count or rate.`
		if err == nil || err.Error() != want {
			t.Errorf("err = %v, want %s", err, want)
		}
	})
}

// Warnings is [] in JSON, never null (controller validate --json), also
// after a job travels as JSON.
func TestWarningsNeverNull(t *testing.T) {
	job, err := Parse("t.hcl", []byte(jobHead+jobTail), Config{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]any{"warnings": job.Warnings})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"warnings":[]}` {
		t.Errorf("warnings encode as %s, want []", b)
	}
	enc, err := json.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	var sent Job
	if err := json.Unmarshal(enc, &sent); err != nil {
		t.Fatal(err)
	}
	if sent.Warnings == nil {
		t.Error("Warnings is nil after a JSON round trip")
	}
}

// A stages value that cannot fit is reported under its full field name,
// model.<role>.stages, at the attribute, whatever the strategy.
func TestStagesFieldNames(t *testing.T) {
	job := func(strategy, target, drafter string) string {
		return `job "t" {
  model "target" {
    path = "/m/t"
` + target + `
  }
  model "drafter" {
    path = "/m/d"
` + drafter + `
  }
  placement {
    strategy = "` + strategy + `"
  }
  dataset "prompts" {
    prompts = ["hi"]
  }
}
`
	}
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"separate", job("separate", "    stages = 3", ""), []string{
			`t.hcl:4,5: model.target.stages (3) needs 3 devices, but placement.strategy "separate" gives each model one device; use 0 or 1`,
		}},
		{"same, drafter", job("same", "", "    stages = 2"), []string{
			`t.hcl:8,5: model.drafter.stages (2) needs 2 devices, but placement.strategy "same" gives each model one device; use 0 or 1`,
		}},
		{"separate, one stage is fine", job("separate", "    stages = 1", ""), nil},
		{"negative under separate", job("separate", "    stages = -1", ""), []string{
			`t.hcl:4,5: model.target.stages must be at least 0 (0 = one per host), got -1`,
		}},
		{"auto with gpus as the bound", job("auto", "    gpus = 2\n    stages = 3", ""), []string{
			`t.hcl:5,5: model.target.stages (3) is more than its 2 gpus; a stage needs at least one device`,
		}},
		{"multi_gpu_ratio", job("multi_gpu_ratio", "    gpus = 2\n    stages = 3", ""), []string{
			`t.hcl:5,5: model.target.stages (3) is more than its 2 gpus; a stage needs at least one device`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkLines(t, parseErrors(t, tc.src, Config{}), tc.want)
		})
	}
}
