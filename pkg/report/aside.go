package report

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// outputs are the names a run writes into its output folder.
var outputs = []string{FileResults, FileSpeculative, FileTarget, FileGPU, FileRequests, DirPlots, FileJob}

// SetAside moves the files an earlier run left in dir into a new folder
// dir/earlier-<time of that run>, so a run into the same folder neither
// mixes its requests.jsonl with the earlier one nor loses what was measured;
// other files in dir stay where they are. It returns the folder made, or ""
// when dir held no results (or does not exist).
func SetAside(dir string) (string, error) {
	var found []string
	var stamp os.FileInfo
	for _, name := range outputs {
		st, err := os.Stat(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("looking for earlier results in %s: %w", dir, err)
		}
		found = append(found, name)
		// The time of the run is its latest file's; a folder's changes
		// whenever an entry is added.
		if !st.IsDir() && (stamp == nil || st.ModTime().After(stamp.ModTime())) {
			stamp = st
		}
	}
	if len(found) == 0 {
		return "", nil
	}
	when := time.Now()
	if stamp != nil {
		when = stamp.ModTime()
	}
	base := filepath.Join(dir, "earlier-"+when.UTC().Format("20060102T150405Z"))
	aside := base
	for i := 2; ; i++ {
		err := os.Mkdir(aside, 0o755)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("setting the earlier results in %s aside: %w", dir, err)
		}
		aside = fmt.Sprintf("%s-%d", base, i)
	}
	for _, name := range found {
		if err := os.Rename(filepath.Join(dir, name), filepath.Join(aside, name)); err != nil {
			return "", fmt.Errorf("setting the earlier results in %s aside: %w", dir, err)
		}
	}
	return aside, nil
}
