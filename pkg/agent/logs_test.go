package agent

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestParseLine(t *testing.T) {
	tests := []struct {
		name      string
		line      string
		wantLevel hclog.Level
		wantMsg   string
		wantArgs  []any
	}{
		{
			name:      "hclog JSON",
			line:      `{"@level":"warn","@message":"dropping a bad step request","@module":"worker.stage","@timestamp":"2026-01-02T03:04:05.000000Z","error":"bad","reply":"_INBOX.x","instance":"t","stage":0}`,
			wantLevel: hclog.Warn,
			wantMsg:   "dropping a bad step request",
			wantArgs:  []any{"error", "bad", "reply", "_INBOX.x"},
		},
		{
			name:      "numbers stay numbers",
			line:      `{"@level":"debug","@message":"loaded","weight_bytes":77672448,"ratio":0.5}`,
			wantLevel: hclog.Debug,
			wantMsg:   "loaded",
			wantArgs:  []any{"ratio", 0.5, "weight_bytes", int64(77672448)},
		},
		{
			name:      "unknown level",
			line:      `{"@level":"loud","@message":"hello"}`,
			wantLevel: hclog.Info,
			wantMsg:   "hello",
			wantArgs:  []any{},
		},
		{
			name:      "plain text",
			line:      "worker stage: error: stage t/0: loading layers [0,3) of /m: no such file or directory",
			wantLevel: hclog.Error,
			wantMsg:   "worker stage: error: stage t/0: loading layers [0,3) of /m: no such file or directory",
		},
		{
			name:      "JSON that is not a log line",
			line:      `{"tokens":[1,2]}`,
			wantLevel: hclog.Error,
			wantMsg:   `{"tokens":[1,2]}`,
		},
		{
			name:      "broken JSON",
			line:      `{"@message":`,
			wantLevel: hclog.Error,
			wantMsg:   `{"@message":`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			level, msg, args := parseLine(tt.line, hclog.Error)
			if level != tt.wantLevel || msg != tt.wantMsg || !reflect.DeepEqual(args, tt.wantArgs) {
				t.Errorf("parseLine() = %v, %q, %#v; want %v, %q, %#v", level, msg, args, tt.wantLevel, tt.wantMsg, tt.wantArgs)
			}
		})
	}
}

func TestLineWriter(t *testing.T) {
	var out bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Trace, DisableTime: true})
	w := newLineWriter(log, hclog.Warn, 3)
	// Writes split lines anywhere; the writer joins them back.
	for _, chunk := range []string{
		`{"@level":"info","@message":"one"}` + "\n" + `{"@level":"error","@mess`,
		`age":"two","error":"boom"}` + "\n\n",
		"three\nfour\r\n",
		"five without a newline",
	} {
		if n, err := w.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write() = %d, %v", n, err)
		}
	}
	w.Close()

	wantLog := []string{
		"[INFO]  one",
		"[ERROR] two: error=boom",
		"[WARN]  three",
		"[WARN]  four",
		"[WARN]  five without a newline",
	}
	if got := strings.Split(strings.TrimSpace(out.String()), "\n"); !reflect.DeepEqual(got, wantLog) {
		t.Errorf("logged\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantLog, "\n"))
	}
	if got, want := w.Tail(), "three | four | five without a newline"; got != want {
		t.Errorf("Tail() = %q, want %q", got, want)
	}
}

func TestLineWriterBoundsLines(t *testing.T) {
	var out bytes.Buffer
	w := newLineWriter(hclog.New(&hclog.LoggerOptions{Output: &out}), hclog.Info, 1)
	long := strings.Repeat("x", maxLine+1)
	w.Write([]byte(long))
	if got := strings.Count(out.String(), "\n"); got != 1 {
		t.Errorf("a line of %d bytes without a newline was logged as %d lines, want 1 at once", len(long), got)
	}
	if got := w.Tail(); len(got) != tailWidth+len("...") {
		t.Errorf("tail line of %d bytes, want it cut to %d", len(got), tailWidth)
	}
}
