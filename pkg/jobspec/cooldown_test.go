package jobspec

import (
	"strings"
	"testing"
	"time"
)

func TestCooldown(t *testing.T) {
	const head = `job "c" {
  model "target" { path = "/m/t" }
  model "drafter" { path = "/m/d" }
  dataset "prompts" { prompts = ["hi"] }
`
	j, err := Parse("c.hcl", []byte(head+"  gpu_monitor {\n    cooldown_below_c = 55\n    cooldown_timeout = \"90s\"\n  }\n}\n"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if j.GPUMonitor.CooldownBelowC != 55 || j.GPUMonitor.CooldownTimeout.Std() != 90*time.Second {
		t.Errorf("gpu_monitor %+v", j.GPUMonitor)
	}
	j, err = Parse("c.hcl", []byte(head+"}\n"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if j.GPUMonitor.CooldownBelowC != 0 || j.GPUMonitor.CooldownTimeout.Std() != 5*time.Minute {
		t.Errorf("defaults %+v: cool-down off, 5m timeout", j.GPUMonitor)
	}
	_, err = Parse("c.hcl", []byte(head+"  gpu_monitor {\n    cooldown_below_c = 300\n  }\n}\n"), Config{})
	if err == nil || !strings.Contains(err.Error(), "c.hcl:6,5: gpu_monitor.cooldown_below_c must be between 0 (off) and 120") {
		t.Errorf("err = %v", err)
	}
}
