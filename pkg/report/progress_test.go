package report

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// fakeClock is moved by the test; Progress reads it for elapsed time and ETA.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

func TestProgressPlain(t *testing.T) {
	tests := []struct {
		name   string
		total  int
		opts   ProgressOptions
		failed []bool // one entry per finished request, in order
		want   string
	}{
		{
			// 40% of 5 is every 2 requests; each request takes 2 s on the fake clock
			name:   "every 40 percent",
			total:  5,
			opts:   ProgressOptions{Label: "target", EveryPercent: 40},
			failed: []bool{false, false, true, false, false},
			want: "target: 2/5 requests (40%), 0 failed, elapsed 4s, eta 6s\n" +
				"target: 4/5 requests (80%), 1 failed, elapsed 8s, eta 2s\n" +
				"target: 5/5 requests (100%), 1 failed, elapsed 10s\n",
		},
		{
			name:   "closed early prints where it stopped",
			total:  10,
			opts:   ProgressOptions{Label: "speculative", EveryPercent: 50},
			failed: []bool{false, false, false},
			want:   "speculative: 3/10 requests (30%), 0 failed, elapsed 6s, eta 14s\n",
		},
		{
			name:   "default step of 10 percent",
			total:  20,
			opts:   ProgressOptions{Label: "s"},
			failed: []bool{false, false, false, false, true},
			want: "s: 2/20 requests (10%), 0 failed, elapsed 4s, eta 36s\n" +
				"s: 4/20 requests (20%), 0 failed, elapsed 8s, eta 32s\n" +
				"s: 5/20 requests (25%), 1 failed, elapsed 10s, eta 30s\n",
		},
		{
			name:   "unknown total counts instead",
			total:  0,
			opts:   ProgressOptions{Label: "rate", EveryCount: 2},
			failed: []bool{false, true, false},
			want: "rate: 2 requests, 1 failed, elapsed 4s\n" +
				"rate: 3 requests, 1 failed, elapsed 6s\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			clock := &fakeClock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
			opts := tt.opts
			opts.Writer, opts.Now = &buf, clock.Now
			p := NewProgress(tt.total, opts)
			for _, failed := range tt.failed {
				clock.t = clock.t.Add(2 * time.Second)
				p.Done(failed)
			}
			p.Close()
			p.Done(false) // after Close: ignored
			p.Close()
			if buf.String() != tt.want {
				t.Errorf("output:\n%s\nwant:\n%s", buf.String(), tt.want)
			}
		})
	}
}

func TestProgressTerminal(t *testing.T) {
	tests := []struct {
		name         string
		total        int
		failed       []bool
		wantContains []string
	}{
		{"finished bar", 4, []bool{false, true, false, false}, []string{"target (1 failed)", "4/4"}},
		{"stopped early", 4, []bool{false, false}, []string{"target", "2/4"}},
		{"unknown total", 0, []bool{false, false, false}, []string{"target"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			p := NewProgress(tt.total, ProgressOptions{Writer: &buf, IsTerminal: true, Label: "target"})
			for _, failed := range tt.failed {
				p.Done(failed)
			}
			p.Close()
			out := buf.String()
			for _, want := range tt.wantContains {
				if !strings.Contains(out, want) {
					t.Errorf("bar output %q lacks %q", out, want)
				}
			}
			if !strings.HasSuffix(out, "\n") {
				t.Errorf("bar output %q does not end its line after Close", out)
			}
			if strings.Contains(out, "requests (") {
				t.Errorf("terminal output has plain progress lines: %q", out)
			}
		})
	}
}
