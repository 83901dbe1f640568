package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/draftbench/draftbench/pkg/cli"
)

// TestSubmitChecksOnTheController: serve refuses a job whose files it
// cannot use, and says where it looked: on its own host, relative to its
// own working folder for a relative path; and a ShareGPT dataset without a
// usable prompt is refused at submit with the line validate prints, not
// accepted to fail when it runs.
func TestSubmitChecksOnTheController(t *testing.T) {
	target, drafter := tinyModels(t)
	s := startServe(t, t.TempDir())
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("a relative model path", func(t *testing.T) {
		res := invoke("submit", "testdata/serve-job.hcl", "--nats", s.url, "-var", "target=no/such/model",
			"-var", "drafter="+drafter, "-var", "out="+t.TempDir())
		want := `controller submit: error: testdata/serve-job.hcl:15,5: model.target.path "no/such/model": it does not exist` +
			fmt.Sprintf(" (checked on the controller host %s, relative to serve's working folder %s)\n", host, cwd)
		if res.code != 1 || res.stderr != want {
			t.Errorf("exit %d, stderr:\n%s\nwant 1 and:\n%s", res.code, res.stderr, want)
		}
	})

	t.Run("a ShareGPT file without a usable prompt", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "bad.jsonl"), []byte("{\"id\": 1}\nnot json\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		job := filepath.Join(t.TempDir(), "sharegpt.hcl")
		src := fmt.Sprintf(`job "sharegpt" {
  output_dir = %q
  model "target" { path = %q }
  model "drafter" { path = %q }
  placement {
    strategy = "same"
    devices  = "0"
  }
  dataset "sharegpt" {
    dir   = %q
    files = ["bad.jsonl"]
  }
}
`, t.TempDir(), target, drafter, dir)
		if err := os.WriteFile(job, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		prog := &cli.Program{Name: "controller", Commands: []*cli.Command{validateCmd()}}
		var vout, verr bytes.Buffer
		if code := prog.Run([]string{"validate", job}, &vout, &verr, func(string) string { return "" }); code != 1 ||
			!strings.Contains(verr.String(), `: dataset "sharegpt": no usable prompts in `) {
			t.Fatalf("validate: exit %d, stderr %q", code, verr.String())
		}
		line := strings.TrimPrefix(strings.TrimSuffix(verr.String(), "\n"), "controller validate: error: ")
		res := invoke("submit", job, "--nats", s.url)
		want := "controller submit: error: " + line + " (checked on the controller host " + host + ")\n"
		if res.code != 1 || res.stderr != want || res.stdout != "" {
			t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant 1 and:\n%s", res.code, res.stdout, res.stderr, want)
		}
	})
}
