package report

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/draftbench/draftbench/pkg/metrics"
)

func TestPrintSummaryGolden(t *testing.T) {
	for _, tc := range resultsCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := PrintSummary(&buf, tc.res); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join("console", tc.name+".txt"), buf.Bytes())
		})
	}
}

// TestPrintSummaryLayout checks vLLM's layout on every case: 50-wide banners and values in the
// column after a 40-wide label.
func TestPrintSummaryLayout(t *testing.T) {
	for _, tc := range resultsCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := PrintSummary(&buf, tc.res); err != nil {
				t.Fatal(err)
			}
			for i, line := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
				switch {
				case strings.HasPrefix(line, "==") || strings.HasPrefix(line, "--"):
					if len(line) != lineWidth {
						t.Errorf("line %d: banner %q is %d wide, want %d", i+1, line, len(line), lineWidth)
					}
				case len(line) > 41 && strings.HasSuffix(strings.TrimRight(line[:41], " "), ":"):
					if line[40] != ' ' || line[41] == ' ' {
						t.Errorf("line %d: value of %q does not start at column 42", i+1, line)
					}
				}
			}
		})
	}
}

func TestPrintSummaryBanner(t *testing.T) {
	var c console
	c.banner(" Serving Benchmark Result ", '=')
	c.banner("Time to First Token", '-')
	c.banner("Inter-token Latency", '-')
	// Python's "{s:{c}^{n}}".format(s=title, c=fill, n=50), as vLLM prints them.
	want := "============ Serving Benchmark Result ============\n" +
		"---------------Time to First Token----------------\n" +
		"---------------Inter-token Latency----------------\n"
	if c.String() != want {
		t.Errorf("banners:\n%s\nwant:\n%s", c.String(), want)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("pipe closed") }

func TestPrintSummaryWriteError(t *testing.T) {
	err := PrintSummary(failingWriter{}, Results{Target: &metrics.Summary{}})
	if err == nil || !strings.Contains(err.Error(), "pipe closed") {
		t.Fatalf("PrintSummary() error = %v, want the writer's error", err)
	}
}

// TestMismatchMargins: a mismatch with both runs' margins says whether it is
// a near-tie.
func TestMismatchMargins(t *testing.T) {
	var both Results
	for _, tc := range resultsCases(t) {
		if tc.name == "both_modes" {
			both = tc.res
		}
	}
	cmp := *both.Comparison
	a, b := float32(0.004), float32(0.3)
	cmp.Lossless.Mismatches = []metrics.Mismatch{
		{Index: 1, Position: 5, SpeculativeMargin: &a, TargetMargin: &a, NearTie: true},
		{Index: 2, Position: 7, SpeculativeMargin: &b, TargetMargin: &a},
	}
	both.Comparison = &cmp
	var buf bytes.Buffer
	if err := PrintSummary(&buf, both); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"5 (near-tie: margins 0.004, 0.004)", "7 (not a near-tie: margins 0.3, 0.004)"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, buf.String())
		}
	}
}
