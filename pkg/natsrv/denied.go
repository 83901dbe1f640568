package natsrv

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
)

// PermissionError is the server's refusal to let a connection publish to,
// or subscribe to, a subject its user has no right to. The server reports
// it asynchronously (nats.go v1.55 hands it to the error handler and lets a
// request on that subject wait for its timeout), so a client that watches
// for it (Denials) can fail at once instead.
type PermissionError struct {
	// Op is "publish" or "subscribe".
	Op      string
	Subject string
	// Err is nats.go's error, which wraps nats.ErrPermissionViolation.
	Err error
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("the NATS server does not let these credentials %s to %s (permissions violation)", e.Op, e.Subject)
}

func (e *PermissionError) Unwrap() error { return e.Err }

// permissionRE reads the subject out of the server's
// `Permissions Violation for Publish to "draftbench.jobs.submit"`.
var permissionRE = regexp.MustCompile(`(?i)permissions violation for (publish|subscription) to "([^"]+)"`)

// ParsePermissionError turns an asynchronous error of nats.go into a
// *PermissionError, or returns nil when err is not a permissions violation
// that names its subject.
func ParsePermissionError(err error) *PermissionError {
	if err == nil || !errors.Is(err, nats.ErrPermissionViolation) {
		return nil
	}
	m := permissionRE.FindStringSubmatch(err.Error())
	if m == nil {
		return nil
	}
	op := "publish"
	if !strings.EqualFold(m[1], "publish") {
		op = "subscribe"
	}
	return &PermissionError{Op: op, Subject: m[2], Err: err}
}

// Denials passes the permission violations a server reports on a
// connection (ConnectOptions.Denials) to whoever waits on the subject. The
// zero value is ready to use.
type Denials struct {
	mu       sync.Mutex
	watchers map[*denialWatch]struct{}
}

type denialWatch struct {
	subject string
	ch      chan *PermissionError
}

// Watch returns a channel that receives the server's refusal of subject,
// and a function that stops the watch. Only violations reported after
// Watch is called are delivered.
func (d *Denials) Watch(subject string) (<-chan *PermissionError, func()) {
	w := &denialWatch{subject: subject, ch: make(chan *PermissionError, 1)}
	d.mu.Lock()
	if d.watchers == nil {
		d.watchers = map[*denialWatch]struct{}{}
	}
	d.watchers[w] = struct{}{}
	d.mu.Unlock()
	return w.ch, func() {
		d.mu.Lock()
		delete(d.watchers, w)
		d.mu.Unlock()
	}
}

// deliver hands a violation to the watchers of its subject and reports
// whether any was watching.
func (d *Denials) deliver(pe *PermissionError) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	delivered := false
	for w := range d.watchers {
		if w.subject != pe.Subject {
			continue
		}
		select {
		case w.ch <- pe:
		default: // one is enough
		}
		delivered = true
	}
	return delivered
}
