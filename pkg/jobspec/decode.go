package jobspec

import (
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Block schemas. Every attribute is optional to HCL; missing required ones
// are reported by validate with a message that says what to write.
var (
	jobSchema = &hcl.BodySchema{
		Attributes: attrs("output_dir", "seed"),
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "model", LabelNames: []string{"role"}},
			{Type: "placement"},
			{Type: "dataset", LabelNames: []string{"kind"}},
			{Type: "load"},
			{Type: "batch"},
			{Type: "generation"},
			{Type: "modes"},
			{Type: "gpu_monitor"},
		},
	}
	modelSchema      = &hcl.BodySchema{Attributes: attrs("path", "gpus", "dtype", "stages")}
	placementSchema  = &hcl.BodySchema{Attributes: attrs("strategy", "devices")}
	loadSchema       = &hcl.BodySchema{Attributes: attrs("num_prompts", "rate", "duration", "arrival", "burstiness", "max_concurrency", "warmup_requests")}
	batchSchema      = &hcl.BodySchema{Attributes: attrs("enabled", "size", "max_length")}
	generationSchema = &hcl.BodySchema{Attributes: attrs("max_new_tokens", "gamma", "temperature", "top_k", "top_p", "ignore_eos", "draft_top_k")}
	modesSchema      = &hcl.BodySchema{Attributes: attrs("speculative", "target_ar")}
	gpuMonitorSchema = &hcl.BodySchema{Attributes: attrs("enabled", "interval", "cooldown_below_c", "cooldown_timeout")}
	datasetSchemas   = map[string]*hcl.BodySchema{
		DatasetShareGPT:  {Attributes: attrs("dir", "files")},
		DatasetSynthetic: {Attributes: attrs("input_tokens", "range_ratio")},
		DatasetPrompts:   {Attributes: attrs("prompts")},
	}
)

func attrs(names ...string) []hcl.AttributeSchema {
	out := make([]hcl.AttributeSchema, len(names))
	for i, n := range names {
		out[i] = hcl.AttributeSchema{Name: n}
	}
	return out
}

// decoder turns the job block into a Job, recording where each field was
// set and which fields failed to evaluate (validate stays quiet about those
// so that one mistake gives one message).
type decoder struct {
	ctx    *hcl.EvalContext
	diags  hcl.Diagnostics
	pos    map[string]hcl.Range
	failed map[string]bool
	// envOf names the environment variable an attribute written as
	// env("NAME", default) read, for its errors; envSet says whether it was
	// set (else the default was the value).
	envOf  map[string]string
	envSet func(name string) bool
}

func (d *decoder) job(b *hcl.Block) *Job {
	j := &Job{
		Name:       b.Labels[0],
		Placement:  Placement{Strategy: StrategyMultiGPURatio},
		Batch:      Batch{Enabled: true, Size: defaultBatchSize, MaxLength: defaultMaxLength},
		Generation: Generation{MaxNewTokens: defaultMaxNewTokens, Gamma: defaultGamma, TopP: defaultTopP, IgnoreEOS: true, DraftTopK: defaultDraftTopK},
		Modes:      Modes{Speculative: true, TargetAR: true},
		GPUMonitor: GPUMonitor{Enabled: true, Interval: defaultInterval, CooldownTimeout: defaultCooldownTimeout},
		Pos:        d.pos,
	}
	d.pos["job"] = b.DefRange
	content := d.content(b.Body, jobSchema, "job")
	a := content.Attributes
	if d.str(a, "", "output_dir", &j.OutputDir) && strings.TrimSpace(j.OutputDir) == "" {
		d.errorf("output_dir", "output_dir is empty; leave it out for the default results/<job name>-<short id>")
	}
	d.int64(a, "", "seed", &j.Seed)

	seen := map[string]*hcl.Block{}
	for _, blk := range content.Blocks {
		key := blk.Type
		if len(blk.Labels) > 0 && blk.Type == "model" {
			key = blk.Type + "." + blk.Labels[0]
		}
		if first, ok := seen[key]; ok {
			what := blk.Type
			if blk.Type == "model" {
				what = fmt.Sprintf("model %q", blk.Labels[0])
			}
			d.diags = append(d.diags, errorf(blk.DefRange.Ptr(), "a job holds one %s block; the first is at %s", what, where(first.DefRange)))
			continue
		}
		seen[key] = blk
		switch blk.Type {
		case "model":
			d.model(j, blk)
		case "placement":
			d.pos["placement"] = blk.DefRange
			a := d.content(blk.Body, placementSchema, "placement").Attributes
			d.str(a, "placement", "strategy", &j.Placement.Strategy)
			d.devices(a, "placement", "devices", &j.Placement.Devices)
		case "dataset":
			d.dataset(j, blk)
		case "load":
			d.pos["load"] = blk.DefRange
			a := d.content(blk.Body, loadSchema, "load").Attributes
			d.integer(a, "load", "num_prompts", &j.Load.NumPrompts)
			d.float(a, "load", "rate", &j.Load.Rate)
			d.duration(a, "load", "duration", &j.Load.Duration)
			d.str(a, "load", "arrival", &j.Load.Arrival)
			d.float(a, "load", "burstiness", &j.Load.Burstiness)
			d.integer(a, "load", "max_concurrency", &j.Load.MaxConcurrency)
			d.integer(a, "load", "warmup_requests", &j.Load.WarmupRequests)
		case "batch":
			d.pos["batch"] = blk.DefRange
			a := d.content(blk.Body, batchSchema, "batch").Attributes
			d.boolean(a, "batch", "enabled", &j.Batch.Enabled)
			d.integer(a, "batch", "size", &j.Batch.Size)
			d.integer(a, "batch", "max_length", &j.Batch.MaxLength)
		case "generation":
			d.pos["generation"] = blk.DefRange
			a := d.content(blk.Body, generationSchema, "generation").Attributes
			d.integer(a, "generation", "max_new_tokens", &j.Generation.MaxNewTokens)
			d.integer(a, "generation", "gamma", &j.Generation.Gamma)
			d.float(a, "generation", "temperature", &j.Generation.Temperature)
			d.integer(a, "generation", "top_k", &j.Generation.TopK)
			d.float(a, "generation", "top_p", &j.Generation.TopP)
			d.boolean(a, "generation", "ignore_eos", &j.Generation.IgnoreEOS)
			d.integer(a, "generation", "draft_top_k", &j.Generation.DraftTopK)
		case "modes":
			d.pos["modes"] = blk.DefRange
			a := d.content(blk.Body, modesSchema, "modes").Attributes
			d.boolean(a, "modes", "speculative", &j.Modes.Speculative)
			d.boolean(a, "modes", "target_ar", &j.Modes.TargetAR)
		case "gpu_monitor":
			d.pos["gpu_monitor"] = blk.DefRange
			a := d.content(blk.Body, gpuMonitorSchema, "gpu_monitor").Attributes
			d.boolean(a, "gpu_monitor", "enabled", &j.GPUMonitor.Enabled)
			d.duration(a, "gpu_monitor", "interval", &j.GPUMonitor.Interval)
			d.integer(a, "gpu_monitor", "cooldown_below_c", &j.GPUMonitor.CooldownBelowC)
			d.duration(a, "gpu_monitor", "cooldown_timeout", &j.GPUMonitor.CooldownTimeout)
		}
	}

	if _, ok := seen["model.target"]; !ok {
		d.failed["model.target"] = true
		d.errorf("job", "job %q has no model \"target\" block; add model \"target\" { path = \"/models/...\" }", j.Name)
	}
	if _, ok := seen["dataset"]; !ok {
		d.failed["dataset"] = true
		d.errorf("job", "job %q has no dataset block; add dataset \"sharegpt\", \"synthetic\" or \"prompts\"", j.Name)
	}
	d.defaults(j)
	return j
}

// defaults fills the fields whose default depends on other fields.
func (d *decoder) defaults(j *Job) {
	_, rateSet := d.pos["load.rate"]
	if rateSet {
		j.Load.Mode = LoadModeRate
		if !d.set("load.duration") {
			j.Load.Duration = defaultDuration
		}
		if !d.set("load.arrival") {
			j.Load.Arrival = ArrivalPoisson
		}
		if !d.set("load.burstiness") {
			j.Load.Burstiness = defaultBurstiness
		}
	} else {
		j.Load.Mode = LoadModeCount
		if !d.set("load.num_prompts") {
			j.Load.NumPrompts = defaultNumPrompts
		}
	}

	// gpus is the split of multi_gpu_ratio (SEED: TARGET_GPU_RATIO,
	// DRAFTER_GPU_RATIO) and an optional upper bound under auto; same and
	// separate place each model on one device.
	defaultGPUs := map[string]int{RoleTarget: defaultTargetGPUs, RoleDrafter: defaultDrafterGPUs}
	for _, x := range j.roleModels() {
		key := "model." + x.role + ".gpus"
		switch {
		case j.Placement.Strategy == StrategyMultiGPURatio:
			if !d.set(key) {
				x.m.GPUs = defaultGPUs[x.role]
			}
		case (j.Placement.Strategy == StrategySame || j.Placement.Strategy == StrategySeparate) && d.written(key):
			d.diags = append(d.diags, warnf(d.rangePtr(key), "%s has no effect with placement.strategy %q, which gives each model one device",
				key, j.Placement.Strategy))
			x.m.GPUs = 0
		}
	}
	if j.Models.Drafter != nil && !j.Modes.Speculative {
		d.diags = append(d.diags, warnf(d.rangePtr("model.drafter"), "model \"drafter\" is not loaded: modes.speculative is false"))
	}
	d.samplingKnobs(j)
}

// samplingKnobs refuses a written draft_top_k of 0 (a job built in code
// means the default by it; a job file that writes it would run as 64 and be
// recorded as 0), and warns of the sampling knobs a greedy run ignores: a
// sweep of one at temperature 0 would run the same job once per value.
func (d *decoder) samplingKnobs(j *Job) {
	g := j.Generation
	if d.written("generation.draft_top_k") && g.DraftTopK == 0 {
		d.fail("generation.draft_top_k", "generation.draft_top_k must be 1 or more, or -1 for the drafter's whole distribution, got 0")
	}
	if g.Temperature != 0 || d.failed["generation.temperature"] {
		return
	}
	for _, k := range []struct {
		key     string
		ignored bool
		value   any
	}{
		{"generation.top_k", g.TopK != 0, g.TopK},
		{"generation.top_p", g.TopP != defaultTopP, g.TopP},
		{"generation.draft_top_k", g.DraftTopK != defaultDraftTopK && g.DraftTopK != 0, g.DraftTopK},
	} {
		if d.written(k.key) && k.ignored {
			d.diags = append(d.diags, warnf(d.rangePtr(k.key),
				"%s = %v has no effect at generation.temperature 0 (greedy decoding and drafting draw from no distribution); set a temperature above 0 to sample",
				k.key, k.value))
		}
	}
}

func (d *decoder) model(j *Job, b *hcl.Block) {
	role := b.Labels[0]
	if !oneOf(role, roles) {
		d.diags = append(d.diags, errorf(b.DefRange.Ptr(), "model %q is not one of %s", role, strings.Join(roles, ", ")))
		return
	}
	path := "model." + role
	d.pos[path] = b.DefRange
	m := Model{DType: defaultDType}
	a := d.content(b.Body, modelSchema, fmt.Sprintf("model %q", role)).Attributes
	d.str(a, path, "path", &m.Path)
	if d.integer(a, path, "gpus", &m.GPUs) && m.GPUs < 1 {
		d.fail(path+".gpus", "%s.gpus must be at least 1, got %d", path, m.GPUs)
	}
	if d.str(a, path, "dtype", &m.DType) {
		m.DType = normalizeDType(m.DType)
	}
	d.integer(a, path, "stages", &m.Stages)
	if role == RoleTarget {
		j.Models.Target = m
	} else {
		j.Models.Drafter = &m
	}
}

func (d *decoder) dataset(j *Job, b *hcl.Block) {
	kind := b.Labels[0]
	schema, ok := datasetSchemas[kind]
	if !ok {
		d.failed["dataset"] = true
		d.diags = append(d.diags, errorf(b.DefRange.Ptr(), "dataset %q is not one of %s", kind, strings.Join(datasets, ", ")))
		return
	}
	path := "dataset." + kind
	d.pos["dataset"] = b.DefRange
	d.pos[path] = b.DefRange
	ds := Dataset{Kind: kind}
	a := d.content(b.Body, schema, fmt.Sprintf("dataset %q", kind)).Attributes
	switch kind {
	case DatasetShareGPT:
		ds.Files = DefaultShareGPTFiles()
		d.str(a, path, "dir", &ds.Dir)
		d.strings(a, path, "files", &ds.Files)
	case DatasetSynthetic:
		ds.InputTokens = defaultInputTokens
		d.integer(a, path, "input_tokens", &ds.InputTokens)
		d.float(a, path, "range_ratio", &ds.RangeRatio)
	case DatasetPrompts:
		d.strings(a, path, "prompts", &ds.Prompts)
	}
	j.Dataset = ds
}

func (d *decoder) content(body hcl.Body, schema *hcl.BodySchema, in string) *hcl.BodyContent {
	content, diags := bodyContent(body, schema, in)
	d.diags = append(d.diags, diags...)
	return content
}

func (d *decoder) set(key string) bool {
	_, ok := d.pos[key]
	return ok
}

// written says whether the file set key to a value that decoded.
func (d *decoder) written(key string) bool { return d.set(key) && !d.failed[key] }

func (d *decoder) rangePtr(key string) *hcl.Range {
	if r, ok := d.pos[key]; ok {
		return &r
	}
	return nil
}

func (d *decoder) errorf(key string, format string, args ...any) {
	d.diags = append(d.diags, errorf(d.rangePtr(key), format, args...))
}

func (d *decoder) fail(key string, format string, args ...any) {
	d.failed[key] = true
	if name := d.setEnv(key); name != "" {
		format += " (from the environment variable " + name + ")"
	}
	d.errorf(key, format, args...)
}

// setEnv is the environment variable key's value came from, when it was
// set (not the env() default), else "".
func (d *decoder) setEnv(key string) string {
	if name := d.envOf[key]; name != "" && d.envSet != nil && d.envSet(name) {
		return name
	}
	return ""
}

// envSources are the fields whose values came from set environment
// variables (Job.envFrom).
func (d *decoder) envSources() map[string]string {
	var out map[string]string
	for key := range d.envOf {
		if name := d.setEnv(key); name != "" {
			if out == nil {
				out = map[string]string{}
			}
			out[key] = name
		}
	}
	return out
}

// envName is NAME when expr reads one environment variable, env("NAME",
// ...), anywhere in it (`local.rate_mode ? env("AUTO_RATE", 1.0) : null`),
// else "".
func envName(expr hcl.Expression) string {
	node, ok := expr.(hclsyntax.Node)
	if !ok {
		return ""
	}
	var names []string
	hclsyntax.VisitAll(node, func(n hclsyntax.Node) hcl.Diagnostics {
		call, ok := n.(*hclsyntax.FunctionCallExpr)
		if !ok || call.Name != "env" || len(call.Args) == 0 {
			return nil
		}
		if v, diags := call.Args[0].Value(nil); !diags.HasErrors() && v.Type() == cty.String && !v.IsNull() {
			names = append(names, v.AsString())
		}
		return nil
	})
	if len(names) != 1 {
		return ""
	}
	return names[0]
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// value evaluates attribute name of a block at path. It returns false when
// the attribute is absent or null (null means "use the default", which is
// what a conditional such as `cond ? 8 : null` wants) or when evaluation
// failed (the error is recorded).
func (d *decoder) value(attrs hcl.Attributes, path, name string) (cty.Value, string, bool) {
	a, ok := attrs[name]
	if !ok {
		return cty.NilVal, "", false
	}
	key := join(path, name)
	if env := envName(a.Expr); env != "" {
		if d.envOf == nil {
			d.envOf = map[string]string{}
		}
		d.envOf[key] = env
	}
	v, diags := a.Expr.Value(d.ctx)
	if diags.HasErrors() {
		d.diags = append(d.diags, diags...)
		d.failed[key] = true
		d.pos[key] = a.Range
		return cty.NilVal, key, false
	}
	if !v.IsWhollyKnown() {
		// Unknown only follows an earlier error (a local that failed).
		d.failed[key] = true
		d.pos[key] = a.Range
		return cty.NilVal, key, false
	}
	if v.IsNull() {
		return cty.NilVal, key, false
	}
	d.pos[key] = a.Range
	return v, key, true
}

func (d *decoder) str(attrs hcl.Attributes, path, name string, dst *string) bool {
	v, key, ok := d.value(attrs, path, name)
	if !ok {
		return false
	}
	if !v.Type().IsPrimitiveType() {
		d.fail(key, "%s must be a string, got %s", key, v.Type().FriendlyName())
		return false
	}
	s, _ := convert.Convert(v, cty.String) // every primitive converts to string
	*dst = s.AsString()
	return true
}

func (d *decoder) number(attrs hcl.Attributes, path, name string) (*big.Float, string, bool) {
	v, key, ok := d.value(attrs, path, name)
	if !ok {
		return nil, key, false
	}
	if v.Type() == cty.String { // " 5" from the environment reads as 5
		v = cty.StringVal(strings.TrimSpace(v.AsString()))
	}
	n, err := convert.Convert(v, cty.Number)
	if err != nil {
		d.fail(key, "%s must be a number, got %s", key, describe(v))
		return nil, key, false
	}
	return n.AsBigFloat(), key, true
}

func (d *decoder) integer(attrs hcl.Attributes, path, name string, dst *int) bool {
	var i int64
	if !d.int64(attrs, path, name, &i) {
		return false
	}
	*dst = int(i)
	return true
}

func (d *decoder) int64(attrs hcl.Attributes, path, name string, dst *int64) bool {
	f, key, ok := d.number(attrs, path, name)
	if !ok {
		return false
	}
	if !f.IsInt() {
		d.fail(key, "%s must be a whole number, got %s", key, f.Text('g', -1))
		return false
	}
	i, acc := f.Int64()
	if acc != big.Exact {
		d.fail(key, "%s is out of range, got %s", key, f.Text('g', -1))
		return false
	}
	*dst = i
	return true
}

func (d *decoder) float(attrs hcl.Attributes, path, name string, dst *float64) bool {
	f, _, ok := d.number(attrs, path, name)
	if !ok {
		return false
	}
	*dst, _ = f.Float64()
	return true
}

func (d *decoder) boolean(attrs hcl.Attributes, path, name string, dst *bool) bool {
	v, key, ok := d.value(attrs, path, name)
	if !ok {
		return false
	}
	if v.Type() == cty.String {
		// Booleans from the environment: env("ENABLE_BATCH", true) gives
		// "False" when a Python user writes ENABLE_BATCH=False.
		if b, ok := parseBool(v.AsString()); ok {
			*dst = b
			return true
		}
	} else if b, err := convert.Convert(v, cty.Bool); err == nil {
		*dst = b.True()
		return true
	}
	d.fail(key, "%s must be true or false (any case, or the strings \"1\" and \"0\"), got %s", key, describe(v))
	return false
}

func (d *decoder) strings(attrs hcl.Attributes, path, name string, dst *[]string) bool {
	v, key, ok := d.value(attrs, path, name)
	if !ok {
		return false
	}
	l, err := convert.Convert(v, cty.List(cty.String))
	if err != nil {
		d.fail(key, "%s must be a list of strings, got %s", key, describe(v))
		return false
	}
	out := make([]string, 0, l.LengthInt())
	for _, e := range l.AsValueSlice() {
		if e.IsNull() {
			d.fail(key, "%s holds a null element", key)
			return false
		}
		out = append(out, e.AsString())
	}
	*dst = out
	return true
}

// duration reads "300s", "5m" or a number of seconds.
func (d *decoder) duration(attrs hcl.Attributes, path, name string, dst *Duration) bool {
	v, key, ok := d.value(attrs, path, name)
	if !ok {
		return false
	}
	switch v.Type() {
	case cty.Number:
		secs, _ := v.AsBigFloat().Float64()
		*dst = Duration(secs * float64(time.Second))
		return true
	case cty.String:
		dur, err := ParseDuration(v.AsString())
		if err != nil {
			d.fail(key, "%s: %s", key, err)
			return false
		}
		*dst = dur
		return true
	default:
		d.fail(key, "%s must be a duration such as \"300s\" or a number of seconds, got %s", key, describe(v))
		return false
	}
}

// devices reads placement.devices: a string ("0,1,2", "host-a:0-3") or a
// list of indices or strings, kept as the string form.
func (d *decoder) devices(attrs hcl.Attributes, path, name string, dst *string) bool {
	v, key, ok := d.value(attrs, path, name)
	if !ok {
		return false
	}
	t := v.Type()
	switch {
	case t.IsPrimitiveType():
		return d.str(attrs, path, name, dst)
	case t.IsListType() || t.IsTupleType() || t.IsSetType():
		var parts []string
		for _, e := range v.AsValueSlice() {
			s, err := convert.Convert(e, cty.String)
			if err != nil || s.IsNull() || !e.Type().IsPrimitiveType() {
				d.fail(key, "%s must list device indices or \"host:index\" strings, got an element of type %s", key, e.Type().FriendlyName())
				return false
			}
			parts = append(parts, s.AsString())
		}
		*dst = strings.Join(parts, ",")
		return true
	default:
		d.fail(key, "%s must be a string such as \"0,1,2,3\" or a list, got %s", key, t.FriendlyName())
		return false
	}
}

// describe names a value's type, with the value itself for primitives.
func describe(v cty.Value) string {
	switch v.Type() {
	case cty.String:
		return fmt.Sprintf("string %q", v.AsString())
	case cty.Number:
		return "number " + v.AsBigFloat().Text('g', -1)
	case cty.Bool:
		return fmt.Sprintf("bool %t", v.True())
	default:
		return v.Type().FriendlyName()
	}
}

func oneOf(s string, allowed []string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	return false
}
