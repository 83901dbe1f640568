package report

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/draftbench/draftbench/pkg/metrics"
)

// Appender writes requests.jsonl one record per line as requests finish, so that a run that
// dies keeps everything measured so far. Each record goes to the file in a single write call,
// unbuffered: a crash of the process loses no finished record and never leaves half a line
// from a completed Append; Close also syncs the file to disk. Safe for concurrent use by the
// session drivers.
type Appender struct {
	mu     sync.Mutex
	f      *os.File
	path   string
	closed bool
}

// OpenAppender creates (or truncates: a run owns its output folder) the requests log at path.
func OpenAppender(path string) (*Appender, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening request log: %w", err)
	}
	return &Appender{f: f, path: path}, nil
}

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("request log is closed")

// Append writes one record as one line.
func (a *Appender) Append(r metrics.Request) error {
	line, err := encodeJSON(r, false) // one line, newline included
	if err != nil {
		return fmt.Errorf("encoding request %d (%s) for %s: %w", r.Index, r.ID, a.path, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return fmt.Errorf("appending request %d (%s) to %s: %w", r.Index, r.ID, a.path, ErrClosed)
	}
	if _, err := a.f.Write(line); err != nil {
		return fmt.Errorf("appending request %d (%s): %w", r.Index, r.ID, err)
	}
	return nil
}

// Sync flushes what was appended to disk; callers may use it at checkpoints (end of a mode).
func (a *Appender) Sync() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return fmt.Errorf("syncing %s: %w", a.path, ErrClosed)
	}
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("syncing request log: %w", err)
	}
	return nil
}

// Close syncs and closes the log. Closing twice is a no-op.
func (a *Appender) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	syncErr := a.f.Sync()
	closeErr := a.f.Close()
	if err := errors.Join(syncErr, closeErr); err != nil {
		return fmt.Errorf("closing request log: %w", err)
	}
	return nil
}

// ReadRequests reads a requests.jsonl stream back. A last line without its newline is what a
// crash in the middle of a write leaves: it is dropped and reported as truncated=true, not an
// error, so the complete records before it are still usable.
func ReadRequests(r io.Reader) (reqs []metrics.Request, truncated bool, err error) {
	br := bufio.NewReader(r)
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return reqs, len(line) > 0, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("reading requests line %d: %w", lineNo, err)
		}
		var req metrics.Request
		if err := json.Unmarshal(line, &req); err != nil {
			return nil, false, fmt.Errorf("decoding requests line %d: %w", lineNo, err)
		}
		reqs = append(reqs, req)
	}
}
