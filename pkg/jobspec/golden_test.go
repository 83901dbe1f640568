package jobspec

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the example jobs")

// The example jobs under hcl/ are parsed here so they never rot: each case
// is one file under one environment, compared with testdata/golden/<name>.json.
// After changing an example on purpose: go test ./pkg/jobspec -run Golden -update
func TestGolden(t *testing.T) {
	sharegpt := map[string]string{"SHAREGPT_DIR": "/data/sharegpt"}
	tests := []struct {
		name string
		file string
		cfg  Config
	}{
		{"quickstart", "quickstart.hcl", Config{}},
		{"quickstart-env", "quickstart.hcl", Config{Env: map[string]string{
			"TARGET_MODEL": "/models/t", "DRAFTER_MODEL": "/models/d",
		}}},
		{"benchmark", "benchmark.hcl", Config{Env: sharegpt}},
		{"benchmark-rate", "benchmark.hcl", Config{Env: map[string]string{
			"SHAREGPT_DIR": "/data/sharegpt", "AUTO_RATE": "2.5", "AUTO_DURATION": "600",
			"GPU_STRATEGY": "separate", "TARGET_GPU_RATIO": "4", "GAMMA_VALUE": "6",
			"ENABLE_BATCH": "false", "ENABLE_TARGET": "false", "GPU_MONITOR_INTERVAL": "0.5",
			"CUDA_VISIBLE_DEVICES": "2,3",
		}}},
		{"benchmark-both-modes", "benchmark.hcl", Config{Env: map[string]string{
			"SHAREGPT_DIR": "/data/sharegpt", "NUM_PROMPTS": "50", "AUTO_RATE": "2",
			"TARGET_GPU_RATIO": "4", "DRAFTER_GPU_RATIO": "4", "BATCH_SIZE": "8", "MAX_BATCH_LENGTH": "1024",
			"GENERATION_LENGTH": "200", "ENABLE_SPECULATIVE": "true", "ENABLE_GPU_MONITOR": "false",
			"TARGET_MODEL": "/m/Qwen3-14B", "DRAFTER_MODEL": "/m/Qwen3-0.6B",
		}}},
		{"benchmark-var-mode", "benchmark.hcl", Config{Env: sharegpt, Vars: []string{"mode=rate"}}},
		{"rate", "rate.hcl", Config{Env: sharegpt}},
		{"multi-host", "multi-host.hcl", Config{}},
	}
	examples, err := filepath.Glob("../../hcl/*.hcl")
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, tc := range tests {
		covered[tc.file] = true
	}
	for _, ex := range examples {
		if !covered[filepath.Base(ex)] {
			t.Errorf("example %s has no golden case", ex)
		}
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("../../hcl", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			job, err := Parse("hcl/"+tc.file, src, tc.cfg)
			if err != nil {
				t.Fatalf("parsing the example:\n%v", err)
			}
			// The text is the example itself; the golden file keeps the rest.
			job.Source.HCL = ""
			got, err := json.MarshalIndent(job, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata", "golden", tc.name+".json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from %s (run with -update after checking the change):\n%s", tc.file, golden, got)
			}
		})
	}
}
