package natsrv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/draftbench/draftbench/pkg/dirlock"
)

// lockFile, in a store folder, is held locked (flock) by the server using
// the folder, with its pid inside: two servers writing one JetStream store
// corrupt it.
const lockFile = "draftbench.lock"

// tempPrefix names the temporary stores of servers started without a
// StoreDir (`controller run`); tempMark, written inside one once its
// server holds the lock, is what makes a folder removable when unlocked (a
// user's --store never has it, whatever its name).
const (
	tempPrefix = "draftbench-jetstream-"
	tempMark   = "draftbench.temporary"
)

// markTemporary marks dir, whose lock the caller holds, as a temporary store.
func markTemporary(dir string) error {
	return os.WriteFile(filepath.Join(dir, tempMark), []byte("removed when its server stops\n"), 0o600)
}

// lockStore takes dir's lock, or says which process holds it.
func lockStore(dir string) (*dirlock.Lock, error) {
	// The store holds the jobs and their results: the owner's alone.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the store %s: %w", dir, err)
	}
	l, err := dirlock.Take(dir, lockFile)
	if errors.Is(err, dirlock.ErrHeld) {
		return nil, fmt.Errorf("the store %s is %w: two servers must not share a JetStream store; give this one its own --store", dir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("locking the store %s: %w", dir, err)
	}
	return l, nil
}

// removeStaleTemps removes the temporary stores of servers that are gone
// (a `controller run` killed with SIGKILL cannot remove its own): those
// marked temporary whose lock nobody holds. The mark is written only under
// the lock, so a store being set up (no mark yet) is never taken for stale.
func removeStaleTemps() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*"))
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, tempMark)); err != nil {
			continue // not a temporary store, or one still being set up
		}
		f, err := lockStore(dir)
		if err != nil {
			continue // alive
		}
		os.RemoveAll(dir)
		f.Release()
	}
}
