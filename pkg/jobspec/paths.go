package jobspec

import (
	"errors"
	"io/fs"
	"path"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Stater is the one file-system call CheckPaths needs. fstest.MapFS and
// os.DirFS satisfy it; StatFunc(os.Stat) adapts the host's file system with
// absolute paths.
type Stater interface {
	Stat(name string) (fs.FileInfo, error)
}

// Noter is a Stater that says where it looked: CheckPaths adds its note
// for a path to each problem with that path. `controller serve` checks a
// submitted job's paths on its own host, relative to its own working
// folder, which the user reading the error may not have in mind.
type Noter interface {
	Stater
	Note(path string) string
}

// StatFunc adapts a function such as os.Stat to Stater.
type StatFunc func(name string) (fs.FileInfo, error)

// Stat calls f.
func (f StatFunc) Stat(name string) (fs.FileInfo, error) { return f(name) }

// CheckPaths checks what validation cannot without a file system: each
// model folder that will be loaded exists and holds config.json, and a
// ShareGPT folder holds at least one of its files (a folder may hold only
// some of the seed's three; the dataset loader reads those present). The
// error is an *Error with every problem, located in the job file.
func (j *Job) CheckPaths(fsys Stater) error {
	var diags hcl.Diagnostics
	noter, _ := fsys.(Noter)
	add := func(field, p, format string, args ...any) {
		d := errorf(j.rangeOf(field), format, args...)
		if noter != nil {
			if note := noter.Note(p); note != "" {
				d.Summary += " (" + note + ")"
			}
		}
		diags = append(diags, d)
	}
	for _, x := range j.roleModels() {
		if x.role == RoleDrafter && !j.Modes.Speculative {
			continue // not loaded
		}
		key := "model." + x.role + ".path"
		dir := path.Clean(x.m.Path)
		info, err := fsys.Stat(dir)
		switch {
		case err != nil:
			add(key, x.m.Path, "%s %q: %s", key, x.m.Path, reason(err))
			continue
		case !info.IsDir():
			add(key, x.m.Path, "%s %q is a file; it must be a Hugging Face model folder", key, x.m.Path)
			continue
		}
		cfg := path.Join(dir, "config.json")
		if _, err := fsys.Stat(cfg); err != nil {
			add(key, x.m.Path, "%s %q has no config.json (%s); is it a Hugging Face model folder?", key, x.m.Path, reason(err))
		}
	}

	if ds := j.Dataset; ds.Kind == DatasetShareGPT {
		key := "dataset.sharegpt.dir"
		info, err := fsys.Stat(path.Clean(ds.Dir))
		switch {
		case err != nil:
			add(key, ds.Dir, "%s %q: %s", key, ds.Dir, reason(err))
		case !info.IsDir():
			add(key, ds.Dir, "%s %q is a file; it must be the folder holding %s", key, ds.Dir, strings.Join(ds.Files, ", "))
		default:
			found := false
			for _, f := range ds.Files {
				if _, err := fsys.Stat(path.Join(ds.Dir, f)); err == nil {
					found = true
					break
				}
			}
			if !found {
				add(key, ds.Dir, "%s %q holds none of %s; name the files it holds with files = [...] (JSON arrays or JSONL, such as vLLM's ShareGPT_V3_unfiltered_cleaned_split.json)",
					key, ds.Dir, strings.Join(ds.Files, ", "))
			}
		}
	}
	return newError(diags)
}

func reason(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "it does not exist"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	default:
		return err.Error()
	}
}
