package jobspec

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// variable is one variable block.
type variable struct {
	name        string
	description string
	typ         cty.Type  // cty.DynamicPseudoType when neither type nor a primitive default says
	def         cty.Value // cty.NilVal without a default
	rng         hcl.Range
	broken      bool // its declaration failed; "has no value" would repeat that
}

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "default"}, {Name: "description"}, {Name: "type"}},
}

func decodeVariables(blocks hcl.Blocks) ([]*variable, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	var vars []*variable
	seen := map[string]*variable{}
	for _, b := range blocks {
		v := &variable{name: b.Labels[0], typ: cty.DynamicPseudoType, rng: b.DefRange}
		if !hclsyntax.ValidIdentifier(v.name) {
			diags = append(diags, errorf(b.DefRange.Ptr(),
				"variable %q: a name must start with a letter and hold only letters, digits, _ and -", v.name))
			continue
		}
		if prev, ok := seen[v.name]; ok {
			diags = append(diags, errorf(b.DefRange.Ptr(), "variable %q is declared twice; the first is at %s", v.name, where(prev.rng)))
			continue
		}
		content, d := b.Body.Content(variableSchema)
		diags = append(diags, d...)

		typed := false
		if a, ok := content.Attributes["type"]; ok {
			ty, d := typeexpr.TypeConstraint(a.Expr)
			diags = append(diags, d...)
			if d.HasErrors() {
				v.broken = true
			} else {
				v.typ, typed = ty, true
			}
		}
		if a, ok := content.Attributes["description"]; ok {
			// Descriptions are plain text: no variables, no functions.
			dv, d := a.Expr.Value(nil)
			diags = append(diags, d...)
			if !d.HasErrors() {
				if s, err := convert.Convert(dv, cty.String); err == nil && !s.IsNull() {
					v.description = s.AsString()
				} else {
					diags = append(diags, errorf(a.NameRange.Ptr(), "variable %q: description must be a string", v.name))
				}
			}
		}
		if a, ok := content.Attributes["default"]; ok {
			// Defaults are literals, as in Nomad: a default that called
			// env() would hide where a value came from.
			dv, d := a.Expr.Value(nil)
			diags = append(diags, d...)
			switch {
			case d.HasErrors():
				v.broken = true
			case dv.IsNull():
				// default = null: the variable must be given a value.
			case typed:
				cv, err := convert.Convert(dv, v.typ)
				if err != nil {
					v.broken = true
					diags = append(diags, errorf(a.NameRange.Ptr(), "variable %q: default is not a valid %s: %s",
						v.name, typeexpr.TypeString(v.typ), err))
				} else {
					v.def = cv
				}
			default:
				v.def = dv
				if dv.Type().IsPrimitiveType() {
					// A typeless variable takes its default's type, so that
					// -var gamma=8 arrives as the number 8.
					v.typ = dv.Type()
				}
			}
		}
		seen[v.name] = v
		vars = append(vars, v)
	}
	return vars, diags
}

// resolveVariables gives every variable its value; later sources win:
// default < DRAFTBENCH_VAR_<name> < -var-file files < -var flags.
func (p *parser) resolveVariables(filename string, vars []*variable) (map[string]cty.Value, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	byName := make(map[string]*variable, len(vars))
	values := make(map[string]cty.Value, len(vars))
	for _, v := range vars {
		byName[v.name] = v
		if v.def != cty.NilVal {
			values[v.name] = v.def
		}
	}

	for _, v := range vars {
		key := EnvVarPrefix + v.name
		s, ok := p.cfg.Env[key]
		if !ok {
			continue
		}
		p.envRead[key] = s
		val, err := fromString(s, v.typ)
		if err != nil {
			diags = append(diags, errorf(v.rng.Ptr(), "%s=%s: %s", key, s, err))
			continue
		}
		values[v.name] = val
	}

	for _, path := range p.cfg.VarFiles {
		diags = append(diags, p.readVarFile(path, byName, values, filename)...)
	}

	for _, flag := range p.cfg.Vars {
		name, s, err := splitVar(flag)
		if err != nil {
			diags = append(diags, errorf(nil, "%s", err))
			continue
		}
		v, ok := byName[name]
		if !ok {
			diags = append(diags, errorf(nil, "-var %s: %s declares no variable %q%s", flag, filename, name, declared(byName)))
			continue
		}
		val, err := fromString(s, v.typ)
		if err != nil {
			diags = append(diags, errorf(v.rng.Ptr(), "-var %s: %s", flag, err))
			continue
		}
		values[name] = val
	}

	for _, v := range vars {
		if _, ok := values[v.name]; !ok && !v.broken {
			diags = append(diags, errorf(v.rng.Ptr(),
				"variable %q has no value; give it a default, -var %s=..., a -var-file or %s%s",
				v.name, v.name, EnvVarPrefix, v.name))
		}
	}
	return values, diags
}

// readVarFile applies one -var-file: "name = value" attributes evaluated as
// literals (functions allowed, no variables).
func (p *parser) readVarFile(path string, byName map[string]*variable, values map[string]cty.Value, jobFile string) hcl.Diagnostics {
	src, err := p.cfg.readFile(path)
	if err != nil {
		return hcl.Diagnostics{errorf(nil, "-var-file %s: %s", path, err)}
	}
	p.varFiles = append(p.varFiles, VarFile{Name: path, HCL: string(src)})
	file, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		return diags
	}
	attrs, d := file.Body.JustAttributes()
	diags = append(diags, d...)
	names := make([]string, 0, len(attrs))
	for name := range attrs {
		names = append(names, name)
	}
	sort.Strings(names)
	ctx := &hcl.EvalContext{Functions: p.functions()}
	for _, name := range names {
		a := attrs[name]
		v, ok := byName[name]
		if !ok {
			diags = append(diags, errorf(a.NameRange.Ptr(), "%s declares no variable %q%s", jobFile, name, declared(byName)))
			continue
		}
		val, d := a.Expr.Value(ctx)
		diags = append(diags, d...)
		if d.HasErrors() {
			continue
		}
		if val.Type() == cty.String && !val.IsNull() && v.typ != cty.String {
			val, err = fromString(val.AsString(), v.typ)
		} else {
			val, err = convert.Convert(val, v.typ)
		}
		if err != nil {
			diags = append(diags, errorf(a.NameRange.Ptr(), "variable %q: %s", name, err))
			continue
		}
		values[name] = val
	}
	return diags
}

// declared lists the declared variable names for "no such variable" errors.
func declared(byName map[string]*variable) string {
	if len(byName) == 0 {
		return " (it declares none)"
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return "; declared: " + strings.Join(names, ", ")
}

// fromString converts a value given as text (environment, -var) to the
// variable's type. Collections are written in HCL ("[1, 2]", "{a = 1}");
// a list of primitives may also be written "a,b,c".
func fromString(s string, ty cty.Type) (cty.Value, error) {
	raw := cty.StringVal(s)
	trimmed := strings.TrimSpace(s)
	switch {
	case ty == cty.String:
		return raw, nil
	case ty.IsPrimitiveType():
		v, err := convert.Convert(cty.StringVal(trimmed), ty)
		if err != nil {
			return cty.NilVal, fmt.Errorf("%q is not a %s", s, typeexpr.TypeString(ty))
		}
		return v, nil
	case strings.HasPrefix(trimmed, "[") || strings.HasPrefix(trimmed, "{"):
		expr, diags := hclsyntax.ParseExpression([]byte(trimmed), "value", hcl.InitialPos)
		if diags.HasErrors() {
			return cty.NilVal, fmt.Errorf("%q is not a valid HCL value: %s", s, diags[0].Summary)
		}
		v, diags := expr.Value(nil)
		if diags.HasErrors() {
			return cty.NilVal, fmt.Errorf("%q is not a literal value: %s", s, diags[0].Detail)
		}
		out, err := convert.Convert(v, ty)
		if err != nil {
			return cty.NilVal, fmt.Errorf("%q is not a %s: %s", s, typeexpr.TypeString(ty), err)
		}
		return out, nil
	case (ty.IsListType() || ty.IsSetType()) && ty.ElementType().IsPrimitiveType():
		var elems []cty.Value
		for _, part := range strings.Split(s, ",") {
			elems = append(elems, cty.StringVal(strings.TrimSpace(part)))
		}
		out, err := convert.Convert(cty.TupleVal(elems), ty)
		if err != nil {
			return cty.NilVal, fmt.Errorf("%q is not a %s: %s", s, typeexpr.TypeString(ty), err)
		}
		return out, nil
	case ty == cty.DynamicPseudoType:
		return raw, nil
	default:
		return cty.NilVal, fmt.Errorf("%q is not a %s; write it in HCL syntax", s, typeexpr.TypeString(ty))
	}
}

// functions are the functions a job file may call: env() over the injected
// environment and a few from go-cty's stdlib.
func (p *parser) functions() map[string]function.Function {
	return map[string]function.Function{
		"env":       p.envFunc(),
		"upper":     stdlib.UpperFunc,
		"lower":     stdlib.LowerFunc,
		"concat":    stdlib.ConcatFunc,
		"join":      stdlib.JoinFunc,
		"split":     stdlib.SplitFunc,
		"format":    stdlib.FormatFunc,
		"length":    stdlib.LengthFunc,
		"trimspace": stdlib.TrimSpaceFunc,
		"tonumber":  stdlib.MakeToFunc(cty.Number),
		"tostring":  stdlib.MakeToFunc(cty.String),
		"tobool":    stdlib.MakeToFunc(cty.Bool),
		"min":       stdlib.MinFunc,
		"max":       stdlib.MaxFunc,
		"coalesce":  stdlib.CoalesceFunc,
	}
}

// envFunc is env(NAME, default): the injected environment's NAME, or
// default (converted to a string, "" when omitted) when NAME is unset or
// empty, so that `X= draftbench ...` means the same as leaving X out, as in
// the seed's run_benchmark.sh.
func (p *parser) envFunc() function.Function {
	return function.New(&function.Spec{
		Description: "Returns the environment variable NAME, or default when it is unset or empty.",
		Params:      []function.Parameter{{Name: "name", Type: cty.String}},
		VarParam:    &function.Parameter{Name: "default", Type: cty.String},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if len(args) > 2 {
				return cty.NilVal, function.NewArgErrorf(2, "env takes a name and at most one default, got %d arguments", len(args))
			}
			name := args[0].AsString()
			if s, ok := p.cfg.Env[name]; ok {
				p.envRead[name] = s
				if s != "" {
					return cty.StringVal(s), nil
				}
			}
			if len(args) == 2 {
				return args[1], nil
			}
			return cty.StringVal(""), nil
		},
	})
}
