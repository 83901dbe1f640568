package jobspec

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// What testdata/valid/vars.hcl turns into, for the fields variables reach.
type varsResult struct {
	NumPrompts  int
	Gamma       int
	Speculative bool
	Prompts     []string
	Target      string
	Drafter     string
	Devices     string
}

func varsOf(j *Job) varsResult {
	return varsResult{
		NumPrompts:  j.Load.NumPrompts,
		Gamma:       j.Generation.Gamma,
		Speculative: j.Modes.Speculative,
		Prompts:     j.Dataset.Prompts,
		Target:      j.Models.Target.Path,
		Drafter:     j.Models.Drafter.Path,
		Devices:     j.Placement.Devices,
	}
}

func TestVariables(t *testing.T) {
	base := varsResult{NumPrompts: 10, Gamma: 4, Speculative: true, Prompts: []string{"hello"},
		Target: "/m/target", Drafter: "/m/drafter", Devices: "0"}
	with := func(f func(*varsResult)) varsResult {
		r := base
		f(&r)
		return r
	}
	tests := []struct {
		name string
		cfg  Config
		want varsResult
	}{
		{"defaults", Config{Vars: []string{"model_dir=/M"}}, base},
		{"environment", Config{Env: map[string]string{
			"DRAFTBENCH_VAR_model_dir":   "/M",
			"DRAFTBENCH_VAR_num_prompts": "20",
			"DRAFTBENCH_VAR_speculative": "false",
		}}, with(func(r *varsResult) { r.NumPrompts, r.Speculative = 20, false })},
		{"var file beats environment", Config{
			Env:      map[string]string{"DRAFTBENCH_VAR_model_dir": "/M", "DRAFTBENCH_VAR_num_prompts": "20"},
			VarFiles: []string{"testdata/vars/override.hcl"},
		}, with(func(r *varsResult) { r.NumPrompts, r.Gamma = 30, 6 })},
		{"flag beats var file, later flag wins", Config{
			VarFiles: []string{"testdata/vars/override.hcl"},
			Vars:     []string{"model_dir=/M", "num_prompts=40", "num_prompts=41"},
		}, with(func(r *varsResult) { r.NumPrompts, r.Gamma = 41, 6 })},
		{"list as comma list", Config{Vars: []string{"model_dir=/M", "prompts=a, b"}},
			with(func(r *varsResult) { r.Prompts = []string{"a", "b"} })},
		{"list as HCL", Config{Vars: []string{"model_dir=/M", `prompts=["x, y", "z"]`}},
			with(func(r *varsResult) { r.Prompts = []string{"x, y", "z"} })},
		{"value holding =", Config{Vars: []string{"model_dir=/a=b"}},
			with(func(r *varsResult) { r.Target, r.Drafter = "/a=b/target", "/a=b/drafter" })},
		{"env() reads the injected environment", Config{
			Vars: []string{"model_dir=/M"}, Env: map[string]string{"CUDA_VISIBLE_DEVICES": "2,3"},
		}, with(func(r *varsResult) { r.Devices = "2,3" })},
		{"env() treats empty as unset", Config{
			Vars: []string{"model_dir=/M"}, Env: map[string]string{"CUDA_VISIBLE_DEVICES": ""},
		}, base},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			job, err := parseFixture(t, "valid/vars.hcl", tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := varsOf(job); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestVariableErrors(t *testing.T) {
	declared := "declared: gamma, model_dir, num_prompts, prompts, speculative"
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"no value", Config{}, []string{
			`vars.hcl:20,10: variable "model_dir" has no value; give it a default, -var model_dir=..., a -var-file or DRAFTBENCH_VAR_model_dir`,
		}},
		{"unknown -var", Config{Vars: []string{"model_dir=/m", "gama=6"}}, []string{
			`-var gama=6: variable "gama" is not declared; ` + declared + `. Did you mean "gamma"?`,
		}},
		{"-var without =", Config{Vars: []string{"model_dir"}}, []string{
			// Problems with a place in a file come first, then the others.
			`vars.hcl:20,10: variable "model_dir" has no value; give it a default, -var model_dir=..., a -var-file or DRAFTBENCH_VAR_model_dir`,
			`-var "model_dir": want name=value`,
		}},
		{"number from a word", Config{Vars: []string{"model_dir=/m", "gamma=six"}}, []string{
			`vars.hcl:6,10: variable "gamma" from -var gamma=six: "six" is not a number`,
		}},
		{"bool from the environment", Config{Env: map[string]string{
			"DRAFTBENCH_VAR_model_dir": "/m", "DRAFTBENCH_VAR_speculative": "maybe",
		}}, []string{
			`vars.hcl:11,10: variable "speculative" from DRAFTBENCH_VAR_speculative=maybe: "maybe" is not a bool; use true or false (any case), 1 or 0`,
		}},
		{"broken HCL list", Config{Vars: []string{"model_dir=/m", "prompts=[1,"}}, []string{
			`vars.hcl:15,10: variable "prompts" from -var prompts=[1,: "[1," is not a valid HCL value: Missing expression`,
		}},
		{"unknown name in a var file", Config{Vars: []string{"model_dir=/m"}, VarFiles: []string{"testdata/vars/unknown.hcl"}}, []string{
			`testdata/vars/unknown.hcl:2,1: variable "gama" is not declared; ` + declared + `. Did you mean "gamma"?`,
		}},
		{"wrong type in a var file", Config{Vars: []string{"model_dir=/m"}, VarFiles: []string{"testdata/vars/badtype.hcl"}}, []string{
			`testdata/vars/badtype.hcl:1,1: variable "gamma" from -var-file testdata/vars/badtype.hcl: "six" is not a number`,
		}},
		{"unreadable var file", Config{
			Vars: []string{"model_dir=/m"}, VarFiles: []string{"site.hcl"},
			ReadFile: func(string) ([]byte, error) { return nil, errors.New("permission denied") },
		}, []string{
			`-var-file site.hcl: permission denied`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFixture(t, "valid/vars.hcl", tc.cfg)
			if err == nil {
				t.Fatal("parsed without error")
			}
			if got := errorLines(t, err); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors\n got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestFunctions(t *testing.T) {
	p := &parser{
		cfg:     Config{Env: map[string]string{"SET": "value", "EMPTY": "", "N": "7"}},
		envRead: map[string]string{},
	}
	ctx := &hcl.EvalContext{Functions: p.functions()}
	tests := []struct {
		expr string
		want cty.Value
	}{
		{`env("SET", "fallback")`, cty.StringVal("value")},
		{`env("EMPTY", "fallback")`, cty.StringVal("fallback")},
		{`env("UNSET", "fallback")`, cty.StringVal("fallback")},
		{`env("UNSET")`, cty.StringVal("")},
		{`env("UNSET", 100)`, cty.StringVal("100")},
		{`tonumber(env("N", 1)) + 1`, cty.NumberIntVal(8)},
		{`upper("qwen")`, cty.StringVal("QWEN")},
		{`lower("QWEN")`, cty.StringVal("qwen")},
		{`join(",", concat(["0"], split(",", "1,2")))`, cty.StringVal("0,1,2")},
		{`tostring(3)`, cty.StringVal("3")},
		{`tobool("true")`, cty.True},
		{`min(3, 1, 2) + max(3, 1, 2)`, cty.NumberIntVal(4)},
		{`coalesce(null, "x")`, cty.StringVal("x")},
		{`format("%s-%d", "a", 1)`, cty.StringVal("a-1")},
		{`length(["a", "b"])`, cty.NumberIntVal(2)},
		{`trimspace("  a ")`, cty.StringVal("a")},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			expr, diags := hclsyntax.ParseExpression([]byte(tc.expr), "test", hcl.InitialPos)
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			got, diags := expr.Value(ctx)
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			if !got.RawEquals(tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
		})
	}
	// Only set entries that were read are recorded for Source.Env.
	wantRead := map[string]string{"SET": "value", "EMPTY": "", "N": "7"}
	if !reflect.DeepEqual(p.envRead, wantRead) {
		t.Errorf("recorded environment %v, want %v", p.envRead, wantRead)
	}

	expr, _ := hclsyntax.ParseExpression([]byte(`env("A", "b", "c")`), "test", hcl.InitialPos)
	if _, diags := expr.Value(ctx); !diags.HasErrors() {
		t.Error("env with three arguments did not fail")
	}
}

// A job travels as JSON (NATS, benchmark_results.json) and its Source parses
// to the same job on the other side, without the original files or
// environment.
func TestSourceRoundTrip(t *testing.T) {
	cfg := Config{
		Env: map[string]string{
			"DRAFTBENCH_VAR_model_dir": "/M",
			"CUDA_VISIBLE_DEVICES":     "1",
			"UNRELATED":                "not recorded",
		},
		VarFiles: []string{"testdata/vars/override.hcl"},
		Vars:     []string{"num_prompts=12"},
	}
	job, err := parseFixture(t, "valid/vars.hcl", cfg)
	if err != nil {
		t.Fatal(err)
	}
	wantEnv := map[string]string{"DRAFTBENCH_VAR_model_dir": "/M", "CUDA_VISIBLE_DEVICES": "1"}
	if !reflect.DeepEqual(job.Source.Env, wantEnv) {
		t.Errorf("Source.Env = %v, want %v", job.Source.Env, wantEnv)
	}
	if got := string(job.Source.Values["num_prompts"]); got != "12" {
		t.Errorf("Source.Values[num_prompts] = %s, want 12", got)
	}

	b, err := json.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	var sent Job
	if err := json.Unmarshal(b, &sent); err != nil {
		t.Fatal(err)
	}
	again, err := sent.Source.Parse()
	if err != nil {
		t.Fatal(err)
	}
	job.Pos, again.Pos, sent.Pos = nil, nil, nil
	if !reflect.DeepEqual(again, job) {
		t.Errorf("reparsed job differs\n got %+v\nwant %+v", again, job)
	}
	// What only serves the parse's own errors does not travel.
	job.envFrom = nil
	if !reflect.DeepEqual(&sent, job) {
		t.Errorf("JSON round trip differs\n got %+v\nwant %+v", &sent, job)
	}
}

func TestParseFile(t *testing.T) {
	job, err := ParseFile("testdata/valid/minimal.hcl", Config{})
	if err != nil {
		t.Fatal(err)
	}
	if got := job.Where("model.target.path"); got != "testdata/valid/minimal.hcl:4,5" {
		t.Errorf("position %q names the wrong file", got)
	}
	_, err = ParseFile("testdata/valid/absent.hcl", Config{})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ParseFile of a missing file: %v, want a wrapped not-exist error", err)
	}
}
