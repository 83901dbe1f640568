package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/draftbench/draftbench/pkg/cli"
)

// TestValidateNamesHosts: a plan over devices of several hosts shows each
// device as host:index, and --json gives the hosts beside the devices
// (which keep their shape: indices only).
func TestValidateNamesHosts(t *testing.T) {
	target, drafter := tinyModels(t)
	validate := func(devices string, args ...string) string {
		t.Helper()
		src := fmt.Sprintf(`job "hosts" {
  model "target" {
    path   = %q
    gpus   = 2
    stages = 2
  }
  model "drafter" {
    path = %q
    gpus = 1
  }
  placement {
    strategy = "multi_gpu_ratio"
    devices  = %q
  }
  dataset "prompts" { prompts = ["hi"] }
}
`, target, drafter, devices)
		return runValidate(t, src, args...)
	}
	text := validate("hostA:0,hostB:0,hostB:1")
	for _, want := range []string{
		"target: " + target + " (Qwen3ForCausalLM, 4 layers, dtype auto) on devices [hostA:0 hostB:0]\n",
		"drafter: " + drafter + " (Qwen3ForCausalLM, 2 layers, dtype auto) on devices [hostB:1]\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("validate output lacks %q:\n%s", want, text)
		}
	}
	type model struct {
		Devices []int    `json:"devices"`
		Hosts   []string `json:"hosts"`
		Stages  []struct {
			Host    string `json:"host"`
			Devices []int  `json:"devices"`
		} `json:"stages"`
	}
	var plan struct{ Models map[string]model }
	if err := json.Unmarshal([]byte(validate("hostA:0,hostB:0,hostB:1", "--json")), &plan); err != nil {
		t.Fatal(err)
	}
	if got := plan.Models["target"]; !reflect.DeepEqual(got.Devices, []int{0, 0}) || !reflect.DeepEqual(got.Hosts, []string{"hostA", "hostB"}) || len(got.Stages) != 2 {
		t.Errorf("target %+v: want devices [0 0], hosts [hostA hostB] and two stages", got)
	}
	if got := plan.Models["drafter"]; !reflect.DeepEqual(got.Devices, []int{1}) || !reflect.DeepEqual(got.Hosts, []string{"hostB"}) {
		t.Errorf("drafter %+v: want devices [1] on hostB", got)
	}
	// Without host names the plan is as before: no "hosts".
	var raw struct {
		Models map[string]map[string]json.RawMessage
	}
	if err := json.Unmarshal([]byte(validate("0,1,2", "--json")), &raw); err != nil {
		t.Fatal(err)
	}
	var devs []int
	if _, ok := raw.Models["target"]["hosts"]; ok || json.Unmarshal(raw.Models["target"]["devices"], &devs) != nil || !reflect.DeepEqual(devs, []int{0, 1}) {
		t.Errorf("target without hosts: hosts %s, devices %s", raw.Models["target"]["hosts"], raw.Models["target"]["devices"])
	}
	if text := validate("0,1,2"); !strings.Contains(text, " on devices [0 1]\n") {
		t.Errorf("validate output without hosts:\n%s", text)
	}
}

// TestValidateSaysRateModeIsNotBatched: in rate mode validate does not
// describe count mode's batches (requests go at their arrival times).
func TestValidateSaysRateModeIsNotBatched(t *testing.T) {
	target, drafter := tinyModels(t)
	for _, tc := range []struct{ load, want string }{
		{`load { num_prompts = 4 }`, "batch: 4 prompts a batch, at most 512 tokens a sequence\n"},
		{`load {
    rate     = 2
    duration = "5s"
  }`, "batch: rate mode sends each request at its arrival time; at most 512 tokens a sequence\n"},
	} {
		src := fmt.Sprintf(`job "rate" {
  model "target" { path = %q }
  model "drafter" { path = %q }
  placement {
    strategy = "same"
    devices  = "0"
  }
  dataset "prompts" { prompts = ["hi"] }
  %s
}
`, target, drafter, tc.load)
		if out := runValidate(t, src); !strings.Contains(out, tc.want) {
			t.Errorf("validate output lacks %q:\n%s", tc.want, out)
		}
	}
}

// runValidate writes src as a job file and returns what `controller
// validate FILE args...` prints; any exit but 0 fails the test.
func runValidate(t *testing.T, src string, args ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "job.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	prog := &cli.Program{Name: "controller", Commands: []*cli.Command{validateCmd()}}
	var out, errb bytes.Buffer
	if code := prog.Run(append([]string{"validate", path}, args...), &out, &errb, func(string) string { return "" }); code != 0 {
		t.Fatalf("validate: exit %d: %s", code, errb.String())
	}
	return out.String()
}
