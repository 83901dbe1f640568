package jobspec

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// EnvVarPrefix is the environment prefix that sets a variable, as Nomad's
// NOMAD_VAR_: DRAFTBENCH_VAR_num_prompts=50.
const EnvVarPrefix = "DRAFTBENCH_VAR_"

// Config is everything a job file may read besides its own text. Nothing in
// this package reads the process environment; callers pass it in.
type Config struct {
	// Env is the environment seen by env() and DRAFTBENCH_VAR_<name>.
	// Nil is an empty environment.
	Env map[string]string
	// Vars are -var flags, "name=value", applied in order (later wins).
	Vars []string
	// VarFiles are -var-file paths, HCL files of "name = value" lines,
	// applied in order before Vars.
	VarFiles []string
	// ReadFile reads var files and, in ParseFile, the job file; nil means
	// os.ReadFile.
	ReadFile func(name string) ([]byte, error)
}

func (c Config) readFile(name string) ([]byte, error) {
	if c.ReadFile != nil {
		return c.ReadFile(name)
	}
	return os.ReadFile(name)
}

// Source is what a job was parsed from: the text, the variable inputs and
// the environment entries the file read. Source.Parse yields the same Job on
// another machine, which is how a submitted job travels to a controller.
type Source struct {
	Filename string    `json:"filename"`
	HCL      string    `json:"hcl"`
	Vars     []string  `json:"vars,omitempty"`
	VarFiles []VarFile `json:"var_files,omitempty"`
	// Env holds only the entries that were read and set: names passed to
	// env() and DRAFTBENCH_VAR_<name> of declared variables.
	Env map[string]string `json:"env,omitempty"`
	// Values are the final variable values, as cty JSON, for the record.
	Values map[string]json.RawMessage `json:"values,omitempty"`
}

// VarFile is one -var-file with its content.
type VarFile struct {
	Name string `json:"name"`
	HCL  string `json:"hcl"`
}

// Parse parses the job again from the recorded inputs alone.
func (s *Source) Parse() (*Job, error) {
	files := make(map[string][]byte, len(s.VarFiles))
	names := make([]string, 0, len(s.VarFiles))
	for _, f := range s.VarFiles {
		files[f.Name] = []byte(f.HCL)
		names = append(names, f.Name)
	}
	cfg := Config{
		Env:      s.Env,
		Vars:     s.Vars,
		VarFiles: names,
		ReadFile: func(name string) ([]byte, error) {
			b, ok := files[name]
			if !ok {
				return nil, fmt.Errorf("var file %s is not part of the job source", name)
			}
			return b, nil
		},
	}
	return Parse(s.Filename, []byte(s.HCL), cfg)
}

// ParseFile reads the job file at path and parses it.
func ParseFile(path string, cfg Config) (*Job, error) {
	src, err := cfg.readFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading job file: %w", err)
	}
	return Parse(path, src, cfg)
}

// Parse parses and validates the job file src; filename is used in error
// positions. On failure the error is an *Error listing every problem found.
func Parse(filename string, src []byte, cfg Config) (*Job, error) {
	p := &parser{cfg: cfg, envRead: map[string]string{}}
	job, diags := p.parse(filename, src)
	explainReferences(diags, p.varNames, p.localNames)
	if err := newError(diags); err != nil {
		return nil, err
	}
	// Never nil, so that JSON shows "warnings": [] rather than null.
	job.Warnings = []string{}
	for _, d := range diags {
		if d.Severity == hcl.DiagWarning {
			job.Warnings = append(job.Warnings, FormatDiagnostic(d))
		}
	}
	return job, nil
}

// parser carries one Parse call's inputs and what it read.
type parser struct {
	cfg      Config
	envRead  map[string]string
	varFiles []VarFile
	// sources says where each variable's value came from ("its default",
	// "-var x=1", "DRAFTBENCH_VAR_x=1", "-var-file f.hcl"), for messages.
	sources map[string]string
	// varNames and localNames are the declared variables and locals, for
	// messages about references to undeclared ones.
	varNames, localNames []string
}

var rootSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "locals"},
		{Type: "job", LabelNames: []string{"name"}},
	},
}

func (p *parser) parse(filename string, src []byte) (*Job, hcl.Diagnostics) {
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	content, d := bodyContent(file.Body, rootSchema, "the top level")
	diags = append(diags, d...)

	var varBlocks, localBlocks, jobBlocks hcl.Blocks
	for _, b := range content.Blocks {
		switch b.Type {
		case "variable":
			varBlocks = append(varBlocks, b)
		case "locals":
			localBlocks = append(localBlocks, b)
		case "job":
			jobBlocks = append(jobBlocks, b)
		}
	}

	vars, varDiags := decodeVariables(varBlocks)
	values, d := p.resolveVariables(vars)
	varDiags = append(varDiags, d...)
	if !varDiags.HasErrors() {
		varDiags = append(varDiags, p.checkValidations(vars, values)...)
	}
	diags = append(diags, varDiags...)
	if varDiags.HasErrors() {
		// Without variable values every reference to var.x would add a
		// second, misleading error.
		return nil, diags
	}

	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": objectOf(values), "local": cty.EmptyObjectVal},
		Functions: p.functions(),
	}
	locals, d := evalLocals(localBlocks, ctx)
	diags = append(diags, d...)
	for name := range locals {
		p.localNames = append(p.localNames, name)
	}
	sort.Strings(p.localNames)
	ctx.Variables["local"] = objectOf(locals)

	switch {
	case len(jobBlocks) == 0:
		return nil, append(diags, errorf(&hcl.Range{Filename: filename, Start: hcl.InitialPos, End: hcl.InitialPos},
			`%s has no job block; add job "name" { ... }`, filename))
	case len(jobBlocks) > 1:
		for _, b := range jobBlocks[1:] {
			diags = append(diags, errorf(b.DefRange.Ptr(), "a file holds one job block; the first is at %s", where(jobBlocks[0].DefRange)))
		}
	}

	dec := &decoder{ctx: ctx, pos: map[string]hcl.Range{}, failed: map[string]bool{},
		envSet: func(name string) bool { return p.envRead[name] != "" }}
	job := dec.job(jobBlocks[0])
	job.envFrom = dec.envSources()
	for _, v := range vars {
		job.Pos["variable."+v.name] = v.rng
	}
	diags = append(diags, dec.diags...)
	diags = append(diags, job.validate(dec.failed)...)

	job.Source = &Source{
		Filename: filename,
		HCL:      string(src),
		Vars:     append([]string(nil), p.cfg.Vars...),
		VarFiles: p.varFiles,
		Values:   jsonValues(values),
	}
	if len(p.envRead) > 0 {
		job.Source.Env = p.envRead
	}
	return job, diags
}

// evalLocals evaluates locals blocks. A local may use other locals in any
// order, as in Nomad and Terraform: each pass evaluates the locals whose
// references are all known, until none is left or a pass makes no progress
// (a cycle or a reference to a missing local).
func evalLocals(blocks hcl.Blocks, ctx *hcl.EvalContext) (map[string]cty.Value, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	pending := map[string]*hcl.Attribute{}
	var order []string
	for _, b := range blocks {
		attrs, d := b.Body.JustAttributes()
		diags = append(diags, d...)
		for name, a := range attrs {
			if prev, ok := pending[name]; ok {
				diags = append(diags, errorf(a.NameRange.Ptr(), "local.%s is defined twice; the first is at %s", name, where(prev.NameRange)))
				continue
			}
			pending[name] = a
			order = append(order, name)
		}
	}
	// Source order keeps error messages stable.
	sort.Slice(order, func(i, j int) bool {
		a, b := pending[order[i]].NameRange, pending[order[j]].NameRange
		return a.Start.Byte < b.Start.Byte
	})

	values := map[string]cty.Value{}
	for len(order) > 0 {
		var next []string
		for _, name := range order {
			a := pending[name]
			if !localsReady(a.Expr, values, pending) {
				next = append(next, name)
				continue
			}
			ctx.Variables["local"] = objectOf(values)
			v, d := a.Expr.Value(ctx)
			diags = append(diags, d...)
			if d.HasErrors() {
				v = cty.DynamicVal
			}
			values[name] = v
		}
		if len(next) == len(order) {
			for _, name := range next {
				diags = append(diags, errorf(pending[name].NameRange.Ptr(),
					"local.%s refers to itself, directly or through other locals", name))
				// Unknown, so that uses of it fail quietly rather than
				// repeating the error.
				values[name] = cty.DynamicVal
			}
			break
		}
		order = next
	}
	return values, diags
}

// localsReady reports whether every local that expr uses is evaluated.
// References to undeclared locals count as ready so that evaluation reports
// them (see explainReferences).
func localsReady(expr hcl.Expression, done map[string]cty.Value, declared map[string]*hcl.Attribute) bool {
	for _, t := range expr.Variables() {
		if t.RootName() != "local" || len(t) < 2 {
			continue
		}
		attr, ok := t[1].(hcl.TraverseAttr)
		if !ok {
			continue
		}
		if _, isDeclared := declared[attr.Name]; !isDeclared {
			continue
		}
		if _, ok := done[attr.Name]; !ok {
			return false
		}
	}
	return true
}

func objectOf(m map[string]cty.Value) cty.Value {
	if len(m) == 0 {
		return cty.EmptyObjectVal
	}
	return cty.ObjectVal(m)
}

func jsonValues(values map[string]cty.Value) map[string]json.RawMessage {
	if len(values) == 0 {
		return nil
	}
	out := make(map[string]json.RawMessage, len(values))
	for name, v := range values {
		b, err := ctyjson.Marshal(v, v.Type())
		if err != nil {
			continue // only unknown values fail, and resolved variables are known
		}
		out[name] = b
	}
	return out
}

// splitVar splits a -var flag "name=value" at the first '='.
func splitVar(s string) (name, value string, err error) {
	name, value, ok := strings.Cut(s, "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return "", "", fmt.Errorf("-var %q: want name=value", s)
	}
	return name, value, nil
}
