package jobspec

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds mutated job files to Parse: it must return a job or an
// *Error, never panic, and a job it returns must pass Validate.
// Run in short bursts: go test ./pkg/jobspec -fuzz FuzzParse -fuzztime 10s
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob("testdata/*/*.hcl")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range seeds {
		src, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	cfg := Config{Vars: nil, Env: map[string]string{"SHAREGPT_DIR": "/data"}}
	f.Fuzz(func(t *testing.T, src []byte) {
		job, err := Parse("fuzz.hcl", src, cfg)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if err := job.Validate(); err != nil {
			t.Fatalf("Parse accepted a job that Validate rejects: %v", err)
		}
	})
}
