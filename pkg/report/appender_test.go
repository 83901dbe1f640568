package report

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/draftbench/draftbench/pkg/metrics"
)

func readLog(t *testing.T, path string) ([]metrics.Request, bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	reqs, truncated, err := ReadRequests(f)
	if err != nil {
		t.Fatalf("ReadRequests: %v", err)
	}
	return reqs, truncated
}

func TestAppenderRoundTrip(t *testing.T) {
	fx := loadFixture(t)
	path := filepath.Join(t.TempDir(), FileRequests)
	a, err := OpenAppender(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range fx.reqs {
		if err := a.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	got, truncated := readLog(t, path)
	if truncated || !reflect.DeepEqual(got, fx.reqs) {
		t.Errorf("read back %d records (truncated=%v), want the %d appended", len(got), truncated, len(fx.reqs))
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}
}

// TestAppenderKeepsEarlierLines covers a run that stops early: records appended before a
// Close, or before a crash cut a write short, stay readable.
func TestAppenderKeepsEarlierLines(t *testing.T) {
	fx := loadFixture(t)
	tests := []struct {
		name          string
		after         func(t *testing.T, a *Appender, path string)
		wantTruncated bool
	}{
		{
			name: "closed early, then appended to",
			after: func(t *testing.T, a *Appender, path string) {
				if err := a.Close(); err != nil {
					t.Fatal(err)
				}
				if err := a.Append(fx.reqs[2]); !errors.Is(err, ErrClosed) {
					t.Errorf("Append after Close = %v, want ErrClosed", err)
				}
			},
		},
		{
			name: "process died mid-write",
			after: func(t *testing.T, a *Appender, path string) {
				// what a write cut short by a crash leaves: part of a line, no newline
				f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.WriteString(`{"id":"cut-","index":9,"mo`); err != nil {
					t.Fatal(err)
				}
				f.Close()
			},
			wantTruncated: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileRequests)
			a, err := OpenAppender(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range fx.reqs[:2] {
				if err := a.Append(r); err != nil {
					t.Fatal(err)
				}
			}
			tt.after(t, a, path)
			got, truncated := readLog(t, path)
			if !reflect.DeepEqual(got, fx.reqs[:2]) {
				t.Errorf("read back %d records, want the 2 appended before the stop", len(got))
			}
			if truncated != tt.wantTruncated {
				t.Errorf("truncated = %v, want %v", truncated, tt.wantTruncated)
			}
		})
	}
}

func TestAppenderConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileRequests)
	a, err := OpenAppender(path)
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 5
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				r := metrics.Request{ID: fmt.Sprintf("w%d-%d", w, i), Index: w*each + i, Mode: metrics.ModeTarget}
				if err := a.Append(r); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	got, truncated := readLog(t, path)
	seen := map[int]bool{}
	for _, r := range got {
		seen[r.Index] = true
	}
	if truncated || len(got) != workers*each || len(seen) != workers*each {
		t.Errorf("%d records, %d distinct (truncated=%v), want %d whole records", len(got), len(seen), truncated, workers*each)
	}
}

func TestOpenAppenderTruncates(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileRequests)
	if err := os.WriteFile(path, []byte("{\"id\":\"from an earlier run\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := OpenAppender(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := readLog(t, path); len(got) != 0 {
		t.Errorf("log holds %d records after a fresh open, want 0", len(got))
	}
}

func TestAppenderErrors(t *testing.T) {
	t.Run("missing folder", func(t *testing.T) {
		_, err := OpenAppender(filepath.Join(t.TempDir(), "missing", FileRequests))
		if err == nil || !strings.Contains(err.Error(), "opening request log") {
			t.Fatalf("OpenAppender() error = %v, want one about opening the request log", err)
		}
	})
	t.Run("bad line", func(t *testing.T) {
		in := "{\"id\":\"a\",\"index\":0}\nnot json\n"
		_, _, err := ReadRequests(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), "decoding requests line 2") {
			t.Fatalf("ReadRequests() error = %v, want one naming line 2", err)
		}
	})
}
