package jobspec

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Error holds every problem found in a job file, in source order. Its text
// is one line per problem, "file:line,column: message".
type Error struct {
	Diagnostics hcl.Diagnostics
	cause       error
}

func (e *Error) Error() string {
	return strings.Join(e.Lines(), "\n")
}

// Lines returns one formatted line per problem.
func (e *Error) Lines() []string {
	lines := make([]string, 0, len(e.Diagnostics))
	for _, d := range e.Diagnostics {
		lines = append(lines, FormatDiagnostic(d))
	}
	return lines
}

// Unwrap returns the error given to Job.Errorf, if any.
func (e *Error) Unwrap() error { return e.cause }

// FormatDiagnostic renders d as "file:line,column: summary; detail". The
// column is where the offending attribute or block starts; HCL's own
// rendering adds an end column that users do not need.
func FormatDiagnostic(d *hcl.Diagnostic) string {
	msg := d.Summary
	if d.Detail != "" {
		msg += "; " + d.Detail
	}
	if d.Summary == "Invalid single-argument block definition" {
		// DESIGN.md's and many blog posts' `batch { enabled = true  size = 4 }`.
		msg += " HCL allows one attribute on a one-line block: put each attribute on a line of its own."
	}
	if d.Subject == nil {
		return msg
	}
	return fmt.Sprintf("%s: %s", where(*d.Subject), msg)
}

func where(r hcl.Range) string {
	return fmt.Sprintf("%s:%d,%d", r.Filename, r.Start.Line, r.Start.Column)
}

// newError returns nil when diags holds no error, otherwise an *Error with
// the errors sorted by position (HCL's own checks and ours interleave).
func newError(diags hcl.Diagnostics) error {
	var errs hcl.Diagnostics
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			errs = append(errs, d)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	// Files keep the order in which they first appear (var files are read
	// before the job file); within a file, problems follow the source.
	fileOrder := map[string]int{}
	for _, d := range errs {
		if d.Subject != nil {
			if _, ok := fileOrder[d.Subject.Filename]; !ok {
				fileOrder[d.Subject.Filename] = len(fileOrder)
			}
		}
	}
	key := func(d *hcl.Diagnostic) [3]int {
		if d.Subject == nil {
			return [3]int{len(fileOrder), 0, 0}
		}
		return [3]int{fileOrder[d.Subject.Filename], d.Subject.Start.Line, d.Subject.Start.Column}
	}
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := key(errs[i]), key(errs[j])
		for k := range a {
			if a[k] != b[k] {
				return a[k] < b[k]
			}
		}
		return false
	})
	return &Error{Diagnostics: errs}
}

// errorf builds an error diagnostic at r (nil when the position is unknown,
// as for a Job built in Go rather than parsed).
func errorf(r *hcl.Range, format string, args ...any) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: fmt.Sprintf(format, args...), Subject: r}
}

func warnf(r *hcl.Range, format string, args ...any) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: fmt.Sprintf(format, args...), Subject: r}
}

// Where returns "file:line,column" of the field at path (see Job.Pos), or
// the job block's position when that field was not written in the file, or
// "" for a job that was not parsed.
func (j *Job) Where(path string) string {
	if r := j.rangeOf(path); r != nil {
		return where(*r)
	}
	return ""
}

// Errorf returns an *Error with one problem located at the field path, for
// checks made after parsing (a placement that does not fit). A %w verb in
// format is kept for errors.Is and errors.As.
func (j *Job) Errorf(path string, format string, args ...any) error {
	cause := fmt.Errorf(format, args...)
	return &Error{Diagnostics: hcl.Diagnostics{errorf(j.rangeOf(path), "%s", cause.Error())}, cause: cause}
}

// rangeOf finds the position of path, falling back to its enclosing block
// ("load.rate" → "load") and then to the job block.
func (j *Job) rangeOf(path string) *hcl.Range {
	if j.Pos == nil {
		return nil
	}
	for p := path; ; {
		if r, ok := j.Pos[p]; ok {
			return &r
		}
		i := strings.LastIndexByte(p, '.')
		if i < 0 {
			break
		}
		p = p[:i]
	}
	if r, ok := j.Pos["job"]; ok {
		return &r
	}
	return nil
}
