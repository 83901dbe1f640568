package natsrv

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestStoreLock: a second server on a store in use is refused with the
// holder's pid; after a shutdown the store can be used again.
func TestStoreLock(t *testing.T) {
	dir := t.TempDir()
	first, err := Start(Options{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Start(Options{StoreDir: dir})
	want := "the store " + dir + " is in use by process " + strconv.Itoa(os.Getpid())
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a second server on the store: %v; want an error containing %q", err, want)
	}
	first.Shutdown()
	again, err := Start(Options{StoreDir: dir})
	if err != nil {
		t.Fatalf("the store after a shutdown: %v", err)
	}
	again.Shutdown()
}

// TestStaleTempStoresRemoved: a temporary store whose server is gone (its
// lock free) is removed when the next temporary server starts; a store in
// use is not.
func TestStaleTempStoresRemoved(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	live, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Shutdown()
	stale, err := os.MkdirTemp("", tempPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, lockFile), []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := markTemporary(stale); err != nil {
		t.Fatal(err)
	}
	// A user's store of a similar name, its server stopped: never removed.
	users := filepath.Join(os.TempDir(), tempPrefix+"keep")
	if s, err := Start(Options{StoreDir: users}); err != nil {
		t.Fatal(err)
	} else {
		s.Shutdown()
	}
	// A temporary store being set up (locked, not yet marked) is not stale.
	setup, err := os.MkdirTemp("", tempPrefix)
	if err != nil {
		t.Fatal(err)
	}
	held, err := lockStore(setup)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	next, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer next.Shutdown()
	if _, err := os.Stat(stale); err == nil {
		t.Errorf("stale store %s is still there", stale)
	}
	for _, dir := range []string{live.StoreDir(), users, setup} {
		if _, err := os.Stat(filepath.Join(dir, lockFile)); err != nil {
			t.Errorf("%s was removed: %v", dir, err)
		}
	}
}
