package report

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestSetAside(t *testing.T) {
	dir := t.TempDir()
	if got, err := SetAside(filepath.Join(dir, "none")); got != "" || err != nil {
		t.Fatalf("a missing folder: %q, %v; want nothing moved", got, err)
	}
	if got, err := SetAside(dir); got != "" || err != nil {
		t.Fatalf("an empty folder: %q, %v; want nothing moved", got, err)
	}
	write := func(name, body string, when time.Time) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, when, when); err != nil {
			t.Fatal(err)
		}
	}
	when := time.Date(2026, 11, 27, 15, 4, 5, 0, time.UTC)
	write(FileRequests, "first run\n", when.Add(-time.Minute))
	write(FileResults, "{}", when)
	write(filepath.Join(DirPlots, "tpot.png"), "png", when)
	write("notes.txt", "mine", when)

	aside, err := SetAside(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "earlier-20261127T150405Z"); aside != want {
		t.Errorf("set aside into %s, want %s", aside, want)
	}
	for _, name := range []string{FileRequests, FileResults, filepath.Join(DirPlots, "tpot.png")} {
		if _, err := os.Stat(filepath.Join(aside, name)); err != nil {
			t.Errorf("%s was not moved: %v", name, err)
		}
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("%s is still in the folder", name)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "notes.txt")); err != nil || string(b) != "mine" {
		t.Errorf("a file of the user's moved or changed: %q, %v", b, err)
	}

	// A second earlier run of the same second gets a folder of its own.
	write(FileRequests, "second run\n", when)
	again, err := SetAside(dir)
	if err != nil || again != filepath.Join(dir, "earlier-20261127T150405Z-2") {
		t.Errorf("second set-aside: %q, %v", again, err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"earlier-20261127T150405Z", "earlier-20261127T150405Z-2", "notes.txt"}; !slices.Equal(names, want) {
		t.Errorf("folder holds %v, want %v", names, want)
	}
}
