package jobspec

import (
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
)

func TestCheckPaths(t *testing.T) {
	fsys := fstest.MapFS{
		"models/target/config.json":           {Data: []byte("{}")},
		"models/target/model.safetensors":     {Data: []byte("x")},
		"models/drafter/config.json":          {Data: []byte("{}")},
		"models/empty/README.md":              {Data: []byte("no config")},
		"models/file":                         {Data: []byte("not a folder")},
		"data/sharegpt/sharegpt_gpt4.jsonl":   {Data: []byte("[]")},
		"data/other/sharegpt_unrelated.jsonl": {Data: []byte("[]")},
	}
	tests := []struct {
		name string
		vars []string
		want []string // nil: no error
	}{
		{"all present", nil, nil},
		{"trailing slash", []string{"target=models/target/"}, nil},
		{"missing folder", []string{"target=models/absent"}, []string{
			`paths.hcl:16,5: model.target.path "models/absent": it does not exist`,
		}},
		{"no config.json", []string{"drafter=models/empty"}, []string{
			`paths.hcl:19,5: model.drafter.path "models/empty" has no config.json (it does not exist); is it a Hugging Face model folder?`,
		}},
		{"a file, not a folder", []string{"target=models/file"}, []string{
			`paths.hcl:16,5: model.target.path "models/file" is a file; it must be a Hugging Face model folder`,
		}},
		{"drafter unused", []string{"drafter=models/absent", "speculative=false"}, nil},
		{"sharegpt without its files", []string{"sharegpt=data/other"}, []string{
			`paths.hcl:22,5: dataset.sharegpt.dir "data/other" holds none of sharegpt_gpt4.jsonl, sharegpt_V3_format.jsonl, sharegpt_zh_38K_format.jsonl; name the files it holds with files = [...] (JSON arrays or JSONL, such as vLLM's ShareGPT_V3_unfiltered_cleaned_split.json)`,
		}},
		{"everything wrong", []string{"target=models/absent", "drafter=models/file", "sharegpt=nowhere"}, []string{
			`paths.hcl:16,5: model.target.path "models/absent": it does not exist`,
			`paths.hcl:19,5: model.drafter.path "models/file" is a file; it must be a Hugging Face model folder`,
			`paths.hcl:22,5: dataset.sharegpt.dir "nowhere": it does not exist`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			job, err := parseFixture(t, "valid/paths.hcl", Config{Vars: tc.vars})
			if err != nil {
				t.Fatal(err)
			}
			err = job.CheckPaths(fsys)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("CheckPaths: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("CheckPaths found nothing wrong")
			}
			if got := errorLines(t, err); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors\n got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// notingFS says where it looked, as serve's does.
type notingFS struct{ fstest.MapFS }

func (notingFS) Note(p string) string { return "looked for " + p + " on host-1" }

// TestCheckPathsNotes: a Stater that says where it looked has its note
// added to every problem with a path.
func TestCheckPathsNotes(t *testing.T) {
	fsys := notingFS{fstest.MapFS{"models/drafter/config.json": {Data: []byte("{}")}}}
	job, err := parseFixture(t, "valid/paths.hcl", Config{Vars: []string{"target=models/absent", "sharegpt=nowhere"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`paths.hcl:16,5: model.target.path "models/absent": it does not exist (looked for models/absent on host-1)`,
		`paths.hcl:22,5: dataset.sharegpt.dir "nowhere": it does not exist (looked for nowhere on host-1)`,
	}
	if got := errorLines(t, job.CheckPaths(fsys)); !reflect.DeepEqual(got, want) {
		t.Errorf("errors\n got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
