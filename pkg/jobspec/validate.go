package jobspec

import (
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// jobName keeps names usable in the default output folder and in logs.
var jobName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Validate checks the job's values without touching the file system. Parse
// already calls it; it is for jobs built or changed in Go. The error is an
// *Error with every problem, located when the job came from a file.
func (j *Job) Validate() error {
	return newError(j.validate(nil))
}

// validator collects problems, staying quiet about fields under a path in
// skip (they already failed to decode).
type validator struct {
	j     *Job
	skip  map[string]bool
	diags hcl.Diagnostics
}

func (v *validator) errorf(path string, format string, args ...any) {
	for p := path; ; {
		if v.skip[p] {
			return
		}
		i := strings.LastIndexByte(p, '.')
		if i < 0 {
			break
		}
		p = p[:i]
	}
	if name := v.j.envFrom[path]; name != "" {
		format += " (from the environment variable " + name + ")"
	}
	v.diags = append(v.diags, errorf(v.j.rangeOf(path), format, args...))
}

// atLeast reports value < min at path.
func (v *validator) atLeast(path string, value, min int, meaning string) {
	if value < min {
		v.errorf(path, "%s must be at least %d%s, got %d", path, min, meaning, value)
	}
}

func (v *validator) enum(path, value string, allowed []string) {
	if !oneOf(value, allowed) {
		v.errorf(path, "%s %q is not one of %s", path, value, strings.Join(allowed, ", "))
	}
}

func (j *Job) validate(skip map[string]bool) hcl.Diagnostics {
	v := &validator{j: j, skip: skip}
	if !jobName.MatchString(j.Name) {
		v.errorf("job", "job name %q must start with a letter or digit and hold only letters, digits, '.', '_' and '-'", j.Name)
	}
	v.models()
	v.placement()
	v.dataset()
	v.load()

	b := j.Batch
	v.atLeast("batch.size", b.Size, 1, "")
	v.atLeast("batch.max_length", b.MaxLength, 1, "")

	g := j.Generation
	v.atLeast("generation.max_new_tokens", g.MaxNewTokens, 1, "")
	if g.Gamma < 1 || g.Gamma > maxGamma {
		v.errorf("generation.gamma", "generation.gamma must be between 1 and %d, got %d", maxGamma, g.Gamma)
	}
	if g.Temperature < 0 {
		v.errorf("generation.temperature", "generation.temperature must be 0 (greedy) or more, got %g", g.Temperature)
	}
	v.atLeast("generation.top_k", g.TopK, 0, " (0 turns it off)")
	if !(g.TopP > 0 && g.TopP <= 1) {
		v.errorf("generation.top_p", "generation.top_p must be in (0, 1], got %g", g.TopP)
	}
	if g.DraftTopK < -1 { // 0, in a job built by code, is the default
		v.errorf("generation.draft_top_k", "generation.draft_top_k must be 1 or more, or -1 for the drafter's whole distribution, got %d", g.DraftTopK)
	}
	if b.Enabled && b.MaxLength >= 1 && g.MaxNewTokens >= b.MaxLength {
		v.errorf("generation.max_new_tokens",
			"generation.max_new_tokens (%d) leaves no room for a prompt in batch.max_length (%d); lower it or raise batch.max_length",
			g.MaxNewTokens, b.MaxLength)
	}

	if !j.Modes.Speculative && !j.Modes.TargetAR {
		v.errorf("modes", "modes.speculative and modes.target_ar are both false; enable at least one")
	}
	if j.GPUMonitor.Interval <= 0 {
		v.errorf("gpu_monitor.interval", "gpu_monitor.interval must be above 0, got %s", j.GPUMonitor.Interval)
	}
	if c := j.GPUMonitor.CooldownBelowC; c < 0 || c > 120 {
		v.errorf("gpu_monitor.cooldown_below_c", "gpu_monitor.cooldown_below_c must be between 0 (off) and 120 °C, got %d", c)
	}
	if j.GPUMonitor.CooldownTimeout < 0 {
		v.errorf("gpu_monitor.cooldown_timeout", "gpu_monitor.cooldown_timeout must not be negative, got %s", j.GPUMonitor.CooldownTimeout)
	}
	return v.diags
}

func (v *validator) models() {
	j := v.j
	check := func(role string, m *Model) {
		p := "model." + role
		if strings.TrimSpace(m.Path) == "" {
			v.errorf(p+".path", "%s.path is missing or empty; set it to a Hugging Face model folder", p)
		}
		if j.Placement.Strategy == StrategyMultiGPURatio {
			v.atLeast(p+".gpus", m.GPUs, 1, " under multi_gpu_ratio")
		} else if m.GPUs < 0 {
			v.errorf(p+".gpus", "%s.gpus must be at least 1, got %d", p, m.GPUs)
		}
		v.atLeast(p+".stages", m.Stages, 0, " (0 = one per host)")
		// A stage needs at least one device. The placement planner checks
		// this too, but names the field "target.stages" and points at
		// placement.strategy; here the message and position are the field's.
		switch j.Placement.Strategy {
		case StrategySame, StrategySeparate:
			if m.Stages > 1 {
				v.errorf(p+".stages", "%s.stages (%d) needs %d devices, but placement.strategy %q gives each model one device; use 0 or 1",
					p, m.Stages, m.Stages, j.Placement.Strategy)
			}
		default: // multi_gpu_ratio: gpus is the count; auto: the upper bound
			if m.GPUs >= 1 && m.Stages > m.GPUs {
				v.errorf(p+".stages", "%s.stages (%d) is more than its %d gpus; a stage needs at least one device", p, m.Stages, m.GPUs)
			}
		}
		switch {
		case m.DType == "f16":
			// A checkpoint's f16 is read (auto), but no backend stores it.
			v.errorf(p+".dtype", "%s.dtype \"f16\": no backend stores weights in f16; use auto (an f16 checkpoint is computed in f32 on CPUs, bf16 on GPUs), bf16 or f32", p)
		case !oneOf(m.DType, dtypes):
			v.errorf(p+".dtype", "%s.dtype %q is not one of %s (or the Hugging Face names bfloat16, float32)",
				p, m.DType, strings.Join(slices.DeleteFunc(slices.Clone(dtypes), func(d string) bool { return d == "f16" }), ", "))
		}
	}
	for _, x := range j.roleModels() {
		check(x.role, x.m)
	}
	if j.Models.Drafter == nil && j.Modes.Speculative {
		v.errorf("modes.speculative", "modes.speculative is on but the job has no model \"drafter\" block; add one or set modes { speculative = false }")
	}
}

func (v *validator) placement() {
	p := v.j.Placement
	v.enum("placement.strategy", p.Strategy, strategies)
	if _, err := p.DeviceRefs(); err != nil {
		v.errorf("placement.devices", "placement.devices %q: %s", p.Devices, err)
	}
}

func (v *validator) dataset() {
	ds := v.j.Dataset
	path := "dataset." + ds.Kind
	switch ds.Kind {
	case DatasetShareGPT:
		if strings.TrimSpace(ds.Dir) == "" {
			v.errorf(path+".dir", "%s.dir is empty; set it to the folder holding the ShareGPT files (SHAREGPT_DIR)", path)
		}
		if len(ds.Files) == 0 {
			v.errorf(path+".files", "%s.files is empty; leave it out for %s", path, strings.Join(defaultShareGPTFiles, ", "))
		}
		for i, f := range ds.Files {
			if strings.TrimSpace(f) == "" {
				v.errorf(path+".files", "%s.files[%d] is empty", path, i)
			}
		}
	case DatasetSynthetic:
		v.atLeast(path+".input_tokens", ds.InputTokens, 1, "")
		if ds.RangeRatio < 0 || ds.RangeRatio >= 1 {
			v.errorf(path+".range_ratio", "%s.range_ratio must be in [0, 1), got %g", path, ds.RangeRatio)
		}
	case DatasetPrompts:
		if len(ds.Prompts) == 0 {
			v.errorf(path+".prompts", "%s.prompts is empty; list at least one prompt", path)
		}
		for i, s := range ds.Prompts {
			if strings.TrimSpace(s) == "" {
				v.errorf(path+".prompts", "%s.prompts[%d] is empty", path, i)
			}
		}
	default:
		v.errorf("dataset", "dataset %q is not one of %s", ds.Kind, strings.Join(datasets, ", "))
	}
}

func (v *validator) load() {
	l := v.j.Load
	switch l.Mode {
	case LoadModeCount:
		v.atLeast("load.num_prompts", l.NumPrompts, 1, "")
		// Rate-mode settings without a rate are a half-written mode 2,
		// whatever their value (a job file's written attributes are in Pos).
		for _, f := range []struct {
			name string
			set  bool
		}{{"duration", l.Duration != 0}, {"arrival", l.Arrival != ""}, {"burstiness", l.Burstiness != 0}} {
			if _, written := v.j.Pos["load."+f.name]; f.set || written {
				v.errorf("load."+f.name, "load.%s needs load.rate; duration, arrival and burstiness belong to rate mode (mode 2)", f.name)
			}
		}
	case LoadModeRate:
		if l.NumPrompts != 0 {
			v.errorf("load.rate", "load.rate and load.num_prompts are both set; use num_prompts (mode 1) or rate with duration (mode 2)")
		}
		if !(l.Rate > 0) {
			v.errorf("load.rate", "load.rate must be above 0 requests per second, got %g", l.Rate)
		}
		if l.Duration <= 0 {
			v.errorf("load.duration", "load.duration must be above 0, got %s", l.Duration)
		}
		v.enum("load.arrival", l.Arrival, arrivals)
		if !(l.Burstiness > 0) {
			v.errorf("load.burstiness", "load.burstiness must be above 0, got %g", l.Burstiness)
		} else if l.Burstiness != 1 && l.Arrival != ArrivalGamma {
			v.errorf("load.burstiness", "load.burstiness only applies with load.arrival = %q (got %q)", ArrivalGamma, l.Arrival)
		}
	default:
		v.errorf("load", "load mode %q is not one of %s, %s", l.Mode, LoadModeCount, LoadModeRate)
	}
	v.atLeast("load.max_concurrency", l.MaxConcurrency, 0, " (0 = unlimited)")
	v.atLeast("load.warmup_requests", l.WarmupRequests, 0, "")
}
