package dirlock

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestTake(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	l, err := Take(dir, "x.lock")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Take(dir, "x.lock")
	if !errors.Is(err, ErrHeld) || !strings.Contains(err.Error(), "in use by process "+strconv.Itoa(os.Getpid())) {
		t.Errorf("a second Take: %v, want in use by this process", err)
	}
	l.Release()
	l.Release() // twice is harmless
	again, err := Take(dir, "x.lock")
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	again.Release()
	var none *Lock
	none.Release()
}
