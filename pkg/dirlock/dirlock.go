// Package dirlock keeps a folder for one process at a time: an flock on a
// file inside it, holding the pid of the process that has it, so the next
// one can say who.
package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrHeld is returned (wrapped, with the holder) when another process holds
// the folder.
var ErrHeld = errors.New("in use")

// Lock is a held folder lock.
type Lock struct{ f *os.File }

// Take locks dir (created if missing) through the file name inside it, without waiting.
func Take(dir, name string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := "another process"
			if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) != "" {
				holder = "process " + strings.TrimSpace(string(b))
			}
			return nil, fmt.Errorf("%w by %s", ErrHeld, holder)
		}
		return nil, err
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Release lets the folder go. A nil Lock is released already.
func (l *Lock) Release() {
	if l != nil && l.f != nil {
		l.f.Close() // releases the flock
		l.f = nil
	}
}
