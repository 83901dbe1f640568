package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

const (
	// tailLines is how many of a stage's last stderr lines its exit report quotes.
	tailLines = 5
	// tailWidth bounds one quoted line.
	tailWidth = 500
	// maxLine bounds a line held while waiting for its newline.
	maxLine = 64 << 10
)

// lineWriter takes a stage process's output and re-logs it line by line
// into the agent's log. Lines in hclog's JSON form keep their level, message
// and fields; any other line (a panic, the command's final error line) is
// logged whole at the writer's default level. It keeps the last lines for
// the stage's exit report.
type lineWriter struct {
	log   hclog.Logger
	level hclog.Level // for lines that are not hclog JSON
	keep  int

	mu   sync.Mutex
	buf  []byte
	tail []string
}

func newLineWriter(log hclog.Logger, level hclog.Level, keep int) *lineWriter {
	return &lineWriter{log: log, level: level, keep: keep}
}

// Write implements io.Writer; it never fails, so the process never blocks
// on a full pipe.
func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxLine {
		w.line(string(w.buf))
		w.buf = nil
	}
	return len(b), nil
}

// Close logs a last line that had no newline.
func (w *lineWriter) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.line(string(w.buf))
		w.buf = nil
	}
}

// Tail is the last lines kept, oldest first, joined by " | ".
func (w *lineWriter) Tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.tail, " | ")
}

func (w *lineWriter) line(s string) {
	s = strings.TrimRight(s, "\r")
	if strings.TrimSpace(s) == "" {
		return
	}
	level, msg, args := parseLine(s, w.level)
	w.log.Log(level, msg, args...)
	if w.keep == 0 {
		return
	}
	text := msg
	for i := 0; i+1 < len(args); i += 2 {
		text += fmt.Sprintf(" %v=%v", args[i], args[i+1])
	}
	if len(text) > tailWidth {
		text = text[:tailWidth] + "..."
	}
	w.tail = append(w.tail, text)
	if len(w.tail) > w.keep {
		w.tail = w.tail[len(w.tail)-w.keep:]
	}
}

// forwardedKeys are fields the forwarding logger already carries.
var forwardedKeys = []string{"instance", "stage"}

// parseLine reads one line of hclog JSON output ({"@level":"info",
// "@message":"...", "@timestamp":..., "@module":..., "key":value...}) into a
// level, a message and key/value pairs in key order. Any other line is the
// message itself at level def.
func parseLine(s string, def hclog.Level) (hclog.Level, string, []any) {
	if !strings.HasPrefix(s, "{") {
		return def, s, nil
	}
	var fields map[string]any
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber() // 77672448 stays 77672448, not 7.7672448e+07
	if err := dec.Decode(&fields); err != nil {
		return def, s, nil
	}
	msg, ok := fields["@message"].(string)
	if !ok {
		return def, s, nil
	}
	level := hclog.Info
	if name, ok := fields["@level"].(string); ok {
		if l := hclog.LevelFromString(name); l != hclog.NoLevel {
			level = l
		}
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		if !strings.HasPrefix(k, "@") && !slices.Contains(forwardedKeys, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	args := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		v := fields[k]
		if n, ok := v.(json.Number); ok {
			if i, err := n.Int64(); err == nil {
				v = i
			} else if f, err := n.Float64(); err == nil {
				v = f
			}
		}
		args = append(args, k, v)
	}
	return level, msg, args
}
