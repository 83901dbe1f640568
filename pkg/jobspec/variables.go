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
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// variable is one variable block.
type variable struct {
	name        string
	description string
	typ         cty.Type  // cty.DynamicPseudoType when neither type nor a primitive default says
	def         cty.Value // cty.NilVal without a default
	nullDefault bool      // default = null: a value must be given
	rng         hcl.Range // the block header
	label       hcl.Range // the name in the header, where value errors point
	validations []*validation
	broken      bool // its declaration failed; "has no value" would repeat that
}

// validation is one validation block of a variable, as in Nomad and
// Terraform: the value is refused when condition is false.
type validation struct {
	condition *hcl.Attribute
	message   *hcl.Attribute
}

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "default"}, {Name: "description"}, {Name: "type"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "validation"}},
}

var validationSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "condition"}, {Name: "error_message"}},
}

func decodeVariables(blocks hcl.Blocks) ([]*variable, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	var vars []*variable
	seen := map[string]*variable{}
	for _, b := range blocks {
		v := &variable{name: b.Labels[0], typ: cty.DynamicPseudoType, rng: b.DefRange, label: b.LabelRanges[0]}
		if !hclsyntax.ValidIdentifier(v.name) {
			diags = append(diags, errorf(b.DefRange.Ptr(),
				"variable %q: a name must start with a letter and hold only letters, digits, _ and -", v.name))
			continue
		}
		if prev, ok := seen[v.name]; ok {
			diags = append(diags, errorf(b.DefRange.Ptr(), "variable %q is declared twice; the first is at %s", v.name, where(prev.rng)))
			continue
		}
		content, d := bodyContent(b.Body, variableSchema, fmt.Sprintf("variable %q", v.name))
		diags = append(diags, d...)
		if d.HasErrors() {
			// A misspelt default would otherwise also say "has no value".
			v.broken = true
		}
		for _, vb := range content.Blocks {
			val, d := decodeValidation(v, vb)
			diags = append(diags, d...)
			if val != nil {
				v.validations = append(v.validations, val)
			}
		}

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
				v.nullDefault = true
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

// decodeValidation reads one validation block of v.
func decodeValidation(v *variable, b *hcl.Block) (*validation, hcl.Diagnostics) {
	c, diags := bodyContent(b.Body, validationSchema, "validation")
	val := &validation{condition: c.Attributes["condition"], message: c.Attributes["error_message"]}
	if val.condition == nil {
		diags = append(diags, errorf(b.DefRange.Ptr(),
			"variable %q: a validation block needs condition = <an expression of var.%s that is true for a good value>", v.name, v.name))
	}
	if val.message == nil {
		diags = append(diags, errorf(b.DefRange.Ptr(),
			"variable %q: a validation block needs error_message = \"...\", said when the condition is false", v.name))
	}
	if val.condition != nil && !refersTo(val.condition.Expr, v.name) {
		diags = append(diags, errorf(val.condition.Range.Ptr(),
			"variable %q: a validation condition must refer to var.%s, the value it checks", v.name, v.name))
		val.condition = nil
	}
	if val.condition == nil || val.message == nil {
		v.broken = true
		return nil, diags
	}
	return val, diags
}

// refersTo reports whether expr reads var.name.
func refersTo(expr hcl.Expression, name string) bool {
	for _, t := range expr.Variables() {
		if t.RootName() != "var" || len(t) < 2 {
			continue
		}
		if a, ok := t[1].(hcl.TraverseAttr); ok && a.Name == name {
			return true
		}
	}
	return false
}

// resolveVariables gives every variable its value; later sources win:
// default < DRAFTBENCH_VAR_<name> < -var-file files < -var flags. Each
// value's source is kept in p.sources for messages.
func (p *parser) resolveVariables(vars []*variable) (map[string]cty.Value, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	byName := make(map[string]*variable, len(vars))
	values := make(map[string]cty.Value, len(vars))
	p.sources = map[string]string{}
	for _, v := range vars {
		byName[v.name] = v
		p.varNames = append(p.varNames, v.name)
		if v.def != cty.NilVal {
			values[v.name] = v.def
			p.sources[v.name] = "its default"
		}
	}

	for _, v := range vars {
		key := EnvVarPrefix + v.name
		s, ok := p.cfg.Env[key]
		if !ok {
			continue
		}
		p.envRead[key] = s
		source := fmt.Sprintf("%s=%s", key, s)
		val, err := fromString(s, v.typ)
		if err != nil {
			diags = append(diags, errorf(v.label.Ptr(), "variable %q from %s: %s", v.name, source, err))
			continue
		}
		values[v.name] = val
		p.sources[v.name] = source
	}

	for _, path := range p.cfg.VarFiles {
		diags = append(diags, p.readVarFile(path, byName, values)...)
	}

	for _, flag := range p.cfg.Vars {
		name, s, err := splitVar(flag)
		if err != nil {
			diags = append(diags, errorf(nil, "%s", err))
			continue
		}
		v, ok := byName[name]
		if !ok {
			diags = append(diags, errorf(nil, "-var %s: %s", flag, undeclaredVariable(name, p.varNames)))
			continue
		}
		source := "-var " + flag
		val, err := fromString(s, v.typ)
		if err != nil {
			diags = append(diags, errorf(v.label.Ptr(), "variable %q from %s: %s", name, source, err))
			continue
		}
		values[name] = val
		p.sources[name] = source
	}

	for _, v := range vars {
		if _, ok := values[v.name]; ok || v.broken {
			continue
		}
		if v.nullDefault {
			diags = append(diags, errorf(v.label.Ptr(),
				"variable %q needs a value (its default is null); give it with -var %s=..., a -var-file or %s%s",
				v.name, v.name, EnvVarPrefix, v.name))
			continue
		}
		diags = append(diags, errorf(v.label.Ptr(),
			"variable %q has no value; give it a default, -var %s=..., a -var-file or %s%s",
			v.name, v.name, EnvVarPrefix, v.name))
	}
	return values, diags
}

// checkValidations evaluates every validation block against the final
// values. A false condition refuses the value with the block's
// error_message, located at the condition.
func (p *parser) checkValidations(vars []*variable, values map[string]cty.Value) hcl.Diagnostics {
	var diags hcl.Diagnostics
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": objectOf(values)},
		Functions: p.functions(),
	}
	for _, v := range vars {
		value, ok := values[v.name]
		if !ok {
			continue
		}
		for _, val := range v.validations {
			at := val.condition.Range.Ptr()
			cond, d := val.condition.Expr.Value(ctx)
			diags = append(diags, d...)
			if d.HasErrors() {
				continue
			}
			b, err := convert.Convert(cond, cty.Bool)
			if err != nil || !b.IsKnown() || b.IsNull() {
				diags = append(diags, errorf(at, "variable %q: a validation condition must be true or false, got %s", v.name, describe(cond)))
				continue
			}
			if b.True() {
				continue
			}
			msg, d := val.message.Expr.Value(ctx)
			diags = append(diags, d...)
			if d.HasErrors() {
				continue
			}
			text, err := convert.Convert(msg, cty.String)
			if err != nil || !text.IsKnown() || text.IsNull() || strings.TrimSpace(text.AsString()) == "" {
				diags = append(diags, errorf(val.message.Range.Ptr(), "variable %q: error_message must be a non-empty string", v.name))
				continue
			}
			diags = append(diags, errorf(at, "invalid value %s for variable %q (from %s): %s",
				showValue(value), v.name, p.sources[v.name], text.AsString()))
		}
	}
	return diags
}

// showValue renders a variable value for a message: strings quoted,
// numbers and bools plain, collections as JSON, long ones cut.
func showValue(v cty.Value) string {
	var s string
	switch {
	case v.IsNull():
		s = "null"
	case v.Type() == cty.String:
		s = fmt.Sprintf("%q", v.AsString())
	default:
		b, err := ctyjson.Marshal(v, v.Type())
		if err != nil {
			s = v.Type().FriendlyName()
		} else {
			s = string(b)
		}
	}
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

// readVarFile applies one -var-file: "name = value" attributes evaluated as
// literals (functions allowed, no variables).
func (p *parser) readVarFile(path string, byName map[string]*variable, values map[string]cty.Value) hcl.Diagnostics {
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
	source := "-var-file " + path
	for _, name := range names {
		a := attrs[name]
		v, ok := byName[name]
		if !ok {
			diags = append(diags, errorf(a.NameRange.Ptr(), "%s", undeclaredVariable(name, p.varNames)))
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
			diags = append(diags, errorf(a.NameRange.Ptr(), "variable %q from %s: %s", name, source, err))
			continue
		}
		values[name] = val
		p.sources[name] = source
	}
	return diags
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
	case ty == cty.Bool:
		b, ok := parseBool(s)
		if !ok {
			return cty.NilVal, fmt.Errorf("%q is not a bool; use true or false (any case), 1 or 0", s)
		}
		return cty.BoolVal(b), nil
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

// parseBool reads a boolean written as text: true or false in any case
// (ENABLE_BATCH=False, as Python users write it), or 1 or 0, which go-cty
// already accepts. Surrounding spaces are ignored.
func parseBool(s string) (value, ok bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1":
		return true, true
	case "false", "0":
		return false, true
	}
	return false, false
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
		"contains":  stdlib.ContainsFunc,
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
