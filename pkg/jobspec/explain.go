package jobspec

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// HCL's own messages for names a schema does not know say what is wrong but
// not what is allowed (DESIGN §4 wants both). bodyContent decodes a body and
// adds to those messages the names the block takes, and a suggestion where
// HCL found none.

var (
	unsupportedArg   = regexp.MustCompile(`^An argument named "([^"]*)" is not expected here\.`)
	unsupportedBlock = regexp.MustCompile(`^Blocks of type "([^"]*)" are not expected here\.`)
)

// bodyContent decodes body with schema; in names the block for messages
// ("load", `model "target"`, "the top level").
func bodyContent(body hcl.Body, schema *hcl.BodySchema, in string) (*hcl.BodyContent, hcl.Diagnostics) {
	c, diags := body.Content(schema)
	for _, d := range diags {
		explainUnsupported(d, schema, c, in)
	}
	return c, diags
}

// explainUnsupported rewrites an "Unsupported argument" or "Unsupported
// block type" diagnostic in place, keeping HCL's text and its suggestion.
func explainUnsupported(d *hcl.Diagnostic, schema *hcl.BodySchema, c *hcl.BodyContent, in string) {
	var re *regexp.Regexp
	var names []string // suggestions: as HCL, not the attributes already set
	switch d.Summary {
	case "Unsupported argument":
		re = unsupportedArg
		for _, a := range schema.Attributes {
			if _, set := c.Attributes[a.Name]; c == nil || !set {
				names = append(names, a.Name)
			}
		}
	case "Unsupported block type":
		re = unsupportedBlock
		for _, b := range schema.Blocks {
			names = append(names, b.Type)
		}
	default:
		return
	}
	m := re.FindStringSubmatchIndex(d.Detail)
	if m == nil {
		return
	}
	given := d.Detail[m[2]:m[3]]
	head, rest := d.Detail[:m[1]], d.Detail[m[1]:]
	if strings.TrimSpace(rest) == "" {
		if s := suggest(given, names); s != "" {
			rest = fmt.Sprintf(" Did you mean %q?", s)
		}
	}
	d.Detail = head + rest + " " + allowedIn(schema, in)
}

// allowedIn says which attributes and blocks a block takes, as a sentence.
func allowedIn(schema *hcl.BodySchema, in string) string {
	var attrs, blocks []string
	for _, a := range schema.Attributes {
		attrs = append(attrs, a.Name)
	}
	for _, b := range schema.Blocks {
		blocks = append(blocks, b.Type)
	}
	switch {
	case len(attrs) > 0 && len(blocks) > 0:
		return fmt.Sprintf("%s takes attributes %s and blocks %s.", capitalize(in), strings.Join(attrs, ", "), strings.Join(blocks, ", "))
	case len(blocks) > 0:
		return fmt.Sprintf("%s takes blocks %s and no attributes.", capitalize(in), strings.Join(blocks, ", "))
	case len(attrs) > 0:
		return fmt.Sprintf("%s takes attributes %s and no blocks.", capitalize(in), strings.Join(attrs, ", "))
	default:
		return fmt.Sprintf("%s takes nothing.", capitalize(in))
	}
}

// capitalize upper-cases "the top level" at the start of a sentence; block
// names stay as written.
func capitalize(s string) string {
	if strings.HasPrefix(s, "the ") {
		return "The " + s[len("the "):]
	}
	return s
}

// aliases are names from neighbouring tools (vLLM, transformers, other
// benchmarks) that are too far from ours for an edit-distance suggestion.
var aliases = map[string]string{
	"sampling":               "generation",
	"sampling_params":        "generation",
	"decoding":               "generation",
	"monitor":                "gpu_monitor",
	"max_tokens":             "max_new_tokens",
	"num_speculative_tokens": "gamma",
	"torch_dtype":            "dtype",
	"request_rate":           "rate",
	"num_requests":           "num_prompts",
	"input_len":              "input_tokens",
}

// suggest returns the allowed name closest to given, or "" when none is
// close: a known alias, an edit distance under 3 (HCL's threshold) and
// under the length of given (so "g" does not suggest "a"), or a name that shares a prefix of 4 or more characters with given or contains
// it ("batching" → "batch", "concurrency" → "max_concurrency").
func suggest(given string, allowed []string) string {
	if a, ok := aliases[strings.ToLower(given)]; ok && oneOf(a, allowed) {
		return a
	}
	best, bestScore := "", 0
	for _, name := range allowed {
		score := 0
		switch {
		case editDistance(strings.ToLower(given), name) < min(3, len(given)):
			score = 100 - editDistance(strings.ToLower(given), name)
		case len(given) >= 3 && (strings.Contains(name, strings.ToLower(given)) || strings.Contains(strings.ToLower(given), name)):
			score = 50
		default:
			if p := commonPrefix(strings.ToLower(given), name); p >= 4 {
				score = p
			}
		}
		if score > bestScore {
			best, bestScore = name, score
		}
	}
	return best
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// editDistance is the Levenshtein distance of a and b in bytes (names are
// ASCII identifiers).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// explainReferences rewrites HCL's "This object does not have an attribute
// named "g"" for var.g and local.g, which does not say that the variable or
// local is missing nor which ones exist.
func explainReferences(diags hcl.Diagnostics, vars, locals []string) {
	for _, d := range diags {
		if d.Severity != hcl.DiagError || d.Summary != "Unsupported attribute" || d.Subject == nil {
			continue
		}
		expr, ok := d.Expression.(*hclsyntax.ScopeTraversalExpr)
		if !ok || len(expr.Traversal) < 2 {
			continue
		}
		step, ok := expr.Traversal[1].(hcl.TraverseAttr)
		if !ok || step.SrcRange.Start.Byte != d.Subject.Start.Byte {
			continue
		}
		switch expr.Traversal.RootName() {
		case "var":
			if oneOf(step.Name, vars) {
				continue
			}
			d.Summary = undeclaredVariable(step.Name, vars)
		case "local":
			if oneOf(step.Name, locals) {
				continue
			}
			d.Summary = fmt.Sprintf("local.%s is not defined; %s", step.Name, listOrNone(locals, "defined locals: ", "the file defines no locals"))
			if s := suggest(step.Name, locals); s != "" {
				d.Summary += fmt.Sprintf(". Did you mean local.%s?", s)
			}
		default:
			continue
		}
		// Point at the reference (var.g), not at its ".g".
		d.Detail = ""
		d.Subject = expr.SrcRange.Ptr()
	}
}

// undeclaredVariable is the message for a value or reference given to a
// variable the job file does not declare.
func undeclaredVariable(name string, declared []string) string {
	msg := fmt.Sprintf("variable %q is not declared; %s", name, listOrNone(declared, "declared: ", "the job file declares no variables"))
	if s := suggest(name, declared); s != "" {
		msg += fmt.Sprintf(". Did you mean %q?", s)
	}
	return msg
}

func listOrNone(names []string, prefix, none string) string {
	if len(names) == 0 {
		return none
	}
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	return prefix + strings.Join(sorted, ", ")
}
