// Package jobspec reads draftbench job files: HCL with Nomad-style
// variables, locals and functions (DESIGN §4). It turns a file into a plain
// Job value, validates it without touching the file system, and keeps the
// source position of every field so that later checks can name file:line too.
package jobspec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/draftbench/draftbench/pkg/placement"
)

// Strategy names accepted by placement.strategy; package placement owns
// them (SEED.md, GPU allocation strategies).
const (
	StrategyMultiGPURatio = placement.MultiGPURatio
	StrategySeparate      = placement.Separate
	StrategySame          = placement.Same
	StrategyAuto          = placement.Auto
)

// Dataset kinds, the label of the dataset block.
const (
	DatasetShareGPT  = "sharegpt"
	DatasetSynthetic = "synthetic"
	DatasetPrompts   = "prompts"
)

// Arrival processes for rate mode, as in vLLM's benchmark.
const (
	ArrivalPoisson  = "poisson"
	ArrivalConstant = "constant"
	ArrivalGamma    = "gamma"
)

// Load modes, derived from which load attributes are set.
const (
	LoadModeCount = "num_prompts" // mode 1: a fixed number of prompts
	LoadModeRate  = "rate"        // mode 2: requests per second for a duration
)

// Model roles, the label of a model block.
const (
	RoleTarget  = placement.RoleTarget
	RoleDrafter = placement.RoleDrafter
)

var (
	strategies = placement.Strategies()
	datasets   = []string{DatasetShareGPT, DatasetSynthetic, DatasetPrompts}
	arrivals   = []string{ArrivalPoisson, ArrivalConstant, ArrivalGamma}
	dtypes     = []string{"auto", "bf16", "f16", "f32"}
	// dtypeAliases are the Hugging Face (torch_dtype) spellings, read as ours.
	dtypeAliases = map[string]string{"bfloat16": "bf16", "float16": "f16", "float32": "f32",
		"half": "f16", "float": "f32", "fp16": "f16", "fp32": "f32"} // vLLM's --dtype spellings too
	roles = []string{RoleTarget, RoleDrafter}
)

// normalizeDType maps a dtype as written to its canonical name: any case,
// and the Hugging Face spellings bfloat16, float16 and float32. Unknown
// names are returned as written, for validation to refuse.
func normalizeDType(s string) string {
	t := strings.ToLower(strings.TrimSpace(s))
	if a, ok := dtypeAliases[t]; ok {
		return a
	}
	if oneOf(t, dtypes) {
		return t
	}
	return s
}

// defaultShareGPTFiles are the prompt files the original benchmark read
// from SHAREGPT_DIR (SEED.md).
var defaultShareGPTFiles = []string{
	"sharegpt_gpt4.jsonl",
	"sharegpt_V3_format.jsonl",
	"sharegpt_zh_38K_format.jsonl",
}

// DefaultShareGPTFiles returns the seed's three ShareGPT files, the default
// of dataset "sharegpt".files.
func DefaultShareGPTFiles() []string {
	return append([]string(nil), defaultShareGPTFiles...)
}

// Job is one parsed job file. JSON names follow the HCL names; the value is
// written under "config" in benchmark_results.json and sent over NATS. The
// controller assigns the job id; it is not part of the file.
type Job struct {
	Name       string     `json:"name"`
	OutputDir  string     `json:"output_dir,omitempty"` // empty: the controller picks results/<name>-<short id>
	Seed       int64      `json:"seed"`
	Models     Models     `json:"models"`
	Placement  Placement  `json:"placement"`
	Dataset    Dataset    `json:"dataset"`
	Load       Load       `json:"load"`
	Batch      Batch      `json:"batch"`
	Generation Generation `json:"generation"`
	Modes      Modes      `json:"modes"`
	GPUMonitor GPUMonitor `json:"gpu_monitor"`

	// Warnings are findings that do not stop the job (a setting that has no
	// effect), one line each with its position. Parse and UnmarshalJSON
	// leave it empty rather than nil, so that it encodes as [] where a
	// caller puts it in JSON of its own.
	Warnings []string `json:"warnings,omitempty"`

	// Source is what the job was parsed from, enough to parse it again
	// elsewhere with the same result (see Source.Parse).
	Source *Source `json:"source,omitempty"`

	// Pos maps a field path to where it was set in the file. Paths are the
	// HCL names joined by dots, labels included: "job", "output_dir",
	// "model.target", "model.target.gpus", "placement.strategy",
	// "dataset.sharegpt.dir", "load.rate", "variable.num_prompts". A block's
	// entry is its header. Fields left at their default have no entry.
	Pos map[string]hcl.Range `json:"-"`
	// envFrom maps a field path to the environment variable its value was
	// read from (env("NAME", ...) with NAME set), for errors to name it.
	envFrom map[string]string
}

// UnmarshalJSON decodes a job as encoding/json would, with Warnings
// empty rather than nil as after Parse, so that a job sent as JSON equals
// the parsed one.
func (j *Job) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		return nil // as encoding/json does for null
	}
	type plain Job // without this method
	if err := json.Unmarshal(b, (*plain)(j)); err != nil {
		return err
	}
	if j.Warnings == nil {
		j.Warnings = []string{}
	}
	return nil
}

// Models holds the two model blocks.
type Models struct {
	Target  Model  `json:"target"`
	Drafter *Model `json:"drafter,omitempty"` // nil when the file has no drafter
}

// Model is one model "target" or model "drafter" block.
type Model struct {
	Path   string `json:"path"`
	GPUs   int    `json:"gpus,omitempty"`   // devices under multi_gpu_ratio; at most this many under auto (0 = any); unused by same/separate
	DType  string `json:"dtype"`            // auto | bf16 | f16 | f32
	Stages int    `json:"stages,omitempty"` // pipeline stages; 0 = one per host among its devices
}

// String summarises the job in one line for logs.
func (j *Job) String() string {
	load := fmt.Sprintf("%d prompts", j.Load.NumPrompts)
	if j.Load.Mode == LoadModeRate {
		load = fmt.Sprintf("%g req/s for %s", j.Load.Rate, j.Load.Duration)
	}
	return fmt.Sprintf("job %q: %s dataset, %s, strategy %s", j.Name, j.Dataset.Kind, load, j.Placement.Strategy)
}

// roleModel is a model with its role, for checks that treat both alike.
type roleModel struct {
	role string
	m    *Model
}

// roleModels returns the target and, when the job has one, the drafter.
func (j *Job) roleModels() []roleModel {
	out := []roleModel{{RoleTarget, &j.Models.Target}}
	if j.Models.Drafter != nil {
		out = append(out, roleModel{RoleDrafter, j.Models.Drafter})
	}
	return out
}

// Placement is the placement block.
type Placement struct {
	Strategy string `json:"strategy"`
	// Devices is the device list as written ("0,1,2,3" or
	// "host-a:0-3,host-b:0-3"); empty means the devices the workers report
	// (a worker honours its own CUDA_VISIBLE_DEVICES). DeviceRefs parses it.
	Devices string `json:"devices,omitempty"`
}

// Dataset is the dataset block; Kind is its label and only the fields of
// that kind are set.
type Dataset struct {
	Kind string `json:"kind"`

	Dir   string   `json:"dir,omitempty"`   // sharegpt
	Files []string `json:"files,omitempty"` // sharegpt, names inside Dir

	InputTokens int     `json:"input_tokens,omitempty"` // synthetic: prompt length in tokens
	RangeRatio  float64 `json:"range_ratio,omitempty"`  // synthetic: lengths vary uniformly by ±ratio, as vLLM's random dataset

	Prompts []string `json:"prompts,omitempty"` // prompts: the prompts themselves
}

// Load is the load block. Mode says which of the two load modes applies.
type Load struct {
	Mode           string   `json:"mode"`
	NumPrompts     int      `json:"num_prompts,omitempty"`
	Rate           float64  `json:"rate,omitempty"`       // requests per second
	Duration       Duration `json:"duration,omitempty"`   // how long rate mode sends requests
	Arrival        string   `json:"arrival,omitempty"`    // poisson | constant | gamma
	Burstiness     float64  `json:"burstiness,omitempty"` // gamma shape; 1 is poisson
	MaxConcurrency int      `json:"max_concurrency"`      // 0 = unlimited
	WarmupRequests int      `json:"warmup_requests"`
}

// Batch is the batch block.
type Batch struct {
	Enabled   bool `json:"enabled"`
	Size      int  `json:"size"`
	MaxLength int  `json:"max_length"`
}

// Generation is the generation block.
type Generation struct {
	MaxNewTokens int     `json:"max_new_tokens"`
	Gamma        int     `json:"gamma"`
	Temperature  float64 `json:"temperature"`
	TopK         int     `json:"top_k"` // 0 = off
	TopP         float64 `json:"top_p"`
	IgnoreEOS    bool    `json:"ignore_eos"`
	// DraftTopK is how many of the drafter's most likely ids its q keeps
	// when sampling (temperature > 0): the drafter draws from that cut q and
	// the acceptance rule judges by it, so the output follows the target
	// exactly either way, but a small cut of a flat distribution lowers
	// acceptance. -1 keeps the whole distribution (vLLM's rejection
	// sampler does; the q of every drafted position then travels whole,
	// vocabulary-sized, from the drafter's stage to the target's).
	DraftTopK int `json:"draft_top_k"`
}

// Modes is the modes block: which decoding modes run.
type Modes struct {
	Speculative bool `json:"speculative"`
	TargetAR    bool `json:"target_ar"`
}

// GPUMonitor is the gpu_monitor block.
type GPUMonitor struct {
	Enabled  bool     `json:"enabled"`
	Interval Duration `json:"interval"`
	// CooldownBelowC, when above 0, makes each mode wait until every GPU is
	// cooler than this many °C (at most CooldownTimeout), so the second mode
	// does not start on hot, throttled GPUs; each wait is in the results.
	CooldownBelowC  int      `json:"cooldown_below_c,omitempty"`
	CooldownTimeout Duration `json:"cooldown_timeout,omitempty"`
}

// Defaults of the seed (SEED.md, run_benchmark.sh).
const (
	defaultNumPrompts   = 100
	defaultRate         = 1.0
	defaultDuration     = Duration(300 * time.Second)
	defaultBatchSize    = 4
	defaultMaxLength    = 512
	defaultMaxNewTokens = 100
	defaultGamma        = 4
	defaultTopP         = 1.0
	defaultDraftTopK    = 64 // spec.DefaultDraftTopK
	defaultInterval     = Duration(time.Second)
	// defaultCooldownTimeout bounds a cool-down wait when cooldown_below_c is set.
	defaultCooldownTimeout = Duration(5 * time.Minute)
	defaultTargetGPUs      = 6
	defaultDrafterGPUs     = 2
	defaultInputTokens     = 128
	defaultBurstiness      = 1.0
	maxGamma               = 32
	defaultDType           = "auto"
)

// Duration is a time.Duration written in HCL and JSON as a Go/Nomad
// duration string ("300s", "5m") or a number of seconds.
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as a string such as "5m0s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.String())
}

// UnmarshalJSON accepts a duration string or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := ParseDuration(s)
		if err != nil {
			return err
		}
		*d = v
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("duration %s: want a string such as \"300s\" or a number of seconds", b)
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}

// ParseDuration reads "300s", "1m30s" or a bare number of seconds ("300",
// "1.5"), so the seed's AUTO_DURATION=300 and GPU_MONITOR_INTERVAL=1.0 keep
// working.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		return Duration(secs * float64(time.Second)), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; use a Go duration such as \"300s\" or \"5m\", or a number of seconds", s)
	}
	return Duration(v), nil
}
