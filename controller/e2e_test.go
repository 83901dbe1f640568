package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/draftbench/draftbench/pkg/report"
	"github.com/draftbench/draftbench/pkg/tinymodel"
)

// These tests run the real binaries as a user does: `controller run` with
// its embedded NATS server, a worker agent subprocess and stage processes.

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "controller-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	for _, pkg := range []string{"../controller", "../worker"} {
		cmd := exec.Command("go", "build", "-o", dir+"/", pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n", pkg, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// models writes a small target and a drafter of its first layer.
func models(t *testing.T, layers int) (string, string) {
	t.Helper()
	dir := t.TempDir()
	s := tinymodel.Default()
	s.Hidden, s.Intermediate, s.Layers, s.Heads, s.KVHeads, s.HeadDim, s.TokVocab = 128, 256, layers, 4, 2, 32, 400
	if err := tinymodel.Write(dir+"/target", s); err != nil {
		t.Fatal(err)
	}
	if err := tinymodel.WriteDrafter(dir+"/target", dir+"/drafter", 1); err != nil {
		t.Fatal(err)
	}
	return dir + "/target", dir + "/drafter"
}

// strangerDrafter writes a tiny model whose tokenizer has another
// vocabulary than the ones models and tinyModels write.
func strangerDrafter(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "stranger")
	s := tinymodel.Default()
	s.Hidden, s.Intermediate, s.Layers, s.Heads, s.KVHeads, s.HeadDim, s.TokVocab = 64, 128, 1, 4, 2, 16, 280
	if err := tinymodel.Write(dir, s); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeJob(t *testing.T, target, drafter string, prompts, tokens int, extra string) string {
	t.Helper()
	var ps []string
	for i := 0; i < prompts; i++ {
		ps = append(ps, fmt.Sprintf("%q", fmt.Sprintf("Prompt number %d: tell me about the sea.", i)))
	}
	src := fmt.Sprintf(`job "e2e" {
  seed = 3
  model "target" { path = %q }
  model "drafter" { path = %q }
  placement {
    strategy = "same"
  }
  dataset "prompts" {
    prompts = [%s]
  }
  load { num_prompts = %d }
  batch {
    enabled = true
    size    = 2
  }
  generation {
    max_new_tokens = %d
    gamma          = 3
    temperature    = 0
  }
  %s
}
`, target, drafter, strings.Join(ps, ", "), prompts, tokens, extra)
	path := filepath.Join(t.TempDir(), "job.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunWritesEverything(t *testing.T) {
	target, drafter := models(t, 3)
	job := writeJob(t, target, drafter, 4, 12, "")
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "controller"), "run", job, "--out", out)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("controller run: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	for _, f := range []string{report.FileResults, report.FileSpeculative, report.FileTarget, report.FileGPU, report.FileRequests} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	var res struct {
		Speculative struct {
			Completed      int     `json:"completed"`
			AcceptanceRate float64 `json:"acceptance_rate"`
		} `json:"speculative"`
		Target     struct{ Completed int } `json:"target"`
		Comparison struct {
			Lossless struct{ Checked, Mismatched int } `json:"lossless"`
		} `json:"comparison"`
		GPU struct {
			Available bool   `json:"available"`
			Reason    string `json:"reason"`
		} `json:"gpu"`
	}
	data, err := os.ReadFile(filepath.Join(out, report.FileResults))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	if res.Speculative.Completed != 4 || res.Target.Completed != 4 {
		t.Errorf("completed %d speculative, %d target; want 4 each", res.Speculative.Completed, res.Target.Completed)
	}
	if res.Comparison.Lossless.Checked != 4 || res.Comparison.Lossless.Mismatched != 0 {
		t.Errorf("lossless %+v", res.Comparison.Lossless)
	}
	if !(res.Speculative.AcceptanceRate > 0 && res.Speculative.AcceptanceRate < 1) {
		t.Errorf("acceptance rate %v not in (0,1)", res.Speculative.AcceptanceRate)
	}
	if res.GPU.Available || res.GPU.Reason == "" {
		t.Errorf("a CPU run must say the GPU monitor is unavailable, with a reason: %+v", res.GPU)
	}
	if !strings.Contains(stdout.String(), "Speculative vs Target") {
		t.Errorf("no comparison in the console summary:\n%s", stdout.String())
	}
	// Greedy requests carry the margin of every output token (the lossless
	// check's near-tie diagnosis needs it).
	lines, err := os.ReadFile(filepath.Join(out, report.FileRequests))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range bytes.Split(bytes.TrimSpace(lines), []byte("\n")) {
		var r struct {
			OutputTokens  int       `json:"output_tokens"`
			OutputMargins []float32 `json:"output_margins"`
		}
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatal(err)
		}
		if r.OutputTokens == 0 || len(r.OutputMargins) != r.OutputTokens {
			t.Errorf("request with %d output tokens has %d margins", r.OutputTokens, len(r.OutputMargins))
		}
		n++
	}
	if n != 8 {
		t.Errorf("%d requests in %s, want 8", n, report.FileRequests)
	}
}

// TestRunSaysWhatItSkipsAndKeepsEarlierResults: a malformed dataset line is
// skipped and said on the console and in the results; a second run into the
// same folder sets the first one's results aside instead of mixing or
// replacing them.
func TestRunSaysWhatItSkipsAndKeepsEarlierResults(t *testing.T) {
	target, drafter := models(t, 2)
	data := t.TempDir()
	lines := `{"conversations": [{"from": "human", "value": "Tell me about the sea."}, {"from": "gpt", "value": "It is wide."}]}
{"conversations": [{"from": "human", "value": "broken
{"conversations": [{"from": "human", "value": "Tell me about lighthouses."}]}
`
	if err := os.WriteFile(filepath.Join(data, "sharegpt_gpt4.jsonl"), []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`job "skips" {
  model "target" { path = %q }
  model "drafter" { path = %q }
  placement { strategy = "same" }
  dataset "sharegpt" { dir = %q }
  load { num_prompts = 2 }
  generation { max_new_tokens = 4 }
}
`, target, drafter, data)
	job := filepath.Join(t.TempDir(), "job.hcl")
	if err := os.WriteFile(job, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	run := func() string {
		t.Helper()
		cmd := exec.Command(filepath.Join(binDir, "controller"), "run", job, "--out", out, "--log-level", "warn")
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("controller run: %v\n%s", err, b)
		}
		return string(b)
	}
	want := `dataset "sharegpt": skipped 1 of 3 records: invalid_json=1 (first at sharegpt_gpt4.jsonl:2)`
	// validate reads the dataset too.
	v, err := exec.Command(filepath.Join(binDir, "controller"), "validate", job).CombinedOutput()
	if err != nil || !strings.Contains(string(v), "warning: "+want) || !strings.Contains(string(v), "dataset: 2 usable records of 3 read") {
		t.Errorf("validate: %v\n%s\nwant the skipped record and the counts", err, v)
	}
	first := run()
	if !strings.Contains(first, want) {
		t.Errorf("the console does not say %q:\n%s", want, first)
	}
	var res struct{ Warnings []string }
	data2, err := os.ReadFile(filepath.Join(out, report.FileResults))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data2, &res); err != nil || !slices.Contains(res.Warnings, want) {
		t.Errorf("results warnings %q (%v), want %q among them", res.Warnings, err, want)
	}
	firstRequests, err := os.ReadFile(filepath.Join(out, report.FileRequests))
	if err != nil {
		t.Fatal(err)
	}

	second := run()
	if !strings.Contains(second, "held the results of an earlier run: moved them to "+filepath.Join(out, "earlier-")) {
		t.Errorf("the second run does not say where the first one's results went:\n%s", second)
	}
	aside, _ := filepath.Glob(filepath.Join(out, "earlier-*", report.FileRequests))
	if len(aside) != 1 {
		t.Fatalf("earlier requests.jsonl set aside: %v, want one", aside)
	}
	if b, _ := os.ReadFile(aside[0]); !bytes.Equal(b, firstRequests) {
		t.Errorf("the first run's requests.jsonl changed when set aside")
	}
	if b, _ := os.ReadFile(filepath.Join(out, report.FileRequests)); bytes.Count(b, []byte("\n")) != 4 {
		t.Errorf("the second run's requests.jsonl has %d lines, want 4 (its own only)", bytes.Count(b, []byte("\n")))
	}
}

// TestKilledStageEndsTheJob: kill -9 a stage process mid-job; the job must
// end within seconds, keep the finished requests and record why the others
// failed.
func TestKilledStageEndsTheJob(t *testing.T) {
	target, drafter := models(t, 6)
	job := writeJob(t, target, drafter, 40, 200, "modes {\n    speculative = false\n  }")
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "controller"), "run", job, "--out", out, "--log-level", "debug")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	// Wait for the first finished requests, then kill the target's stage.
	requests := filepath.Join(out, report.FileRequests)
	deadline := time.Now().Add(60 * time.Second)
	for {
		data, _ := os.ReadFile(requests)
		if bytes.Count(data, []byte("\n")) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no request finished in 60s\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	pids, err := exec.Command("pgrep", "-f", binDir+"/worker stage").Output()
	if err != nil {
		t.Fatalf("finding the stage process: %v", err)
	}
	var pid int
	fmt.Sscanf(strings.Fields(string(pids))[0], "%d", &pid)
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the job succeeded although its stage was killed")
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the job did not end within 20s of the kill\n%s", stderr.String())
	}
	if took := time.Since(killed); took > 10*time.Second {
		t.Errorf("the job took %v to end after the kill", took)
	}
	if !strings.Contains(stderr.String(), "job ended early") {
		t.Errorf("the error does not say the job ended early:\n%s", lastLines(stderr.String(), 5))
	}
	f, err := os.Open(requests)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, _, err := report.ReadRequests(f)
	if err != nil {
		t.Fatal(err)
	}
	var ok, failed int
	for _, r := range recs {
		if r.Failed() {
			failed++
			if r.Error == "" {
				t.Error("a failed request without a reason")
			}
		} else {
			ok++
		}
	}
	if ok < 2 || failed == 0 {
		t.Errorf("%d finished and %d failed requests recorded; want the finished ones kept and the lost ones failed", ok, failed)
	}
	if _, err := os.Stat(filepath.Join(out, report.FileResults)); err != nil {
		t.Errorf("no %s after the job ended early", report.FileResults)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestBrokenJobsAreRefused: each broken job gets one clear error naming
// file:line, and never a panic.
func TestBrokenJobsAreRefused(t *testing.T) {
	target, drafter := models(t, 2)
	cases := []struct{ name, body, want string }{
		{"wrong enum", `placement { strategy = "ratio" }`, `placement.strategy "ratio" is not one of`},
		{"negative count", `load { num_prompts = -1 }`, "num_prompts"},
		{"both load modes", "load {\n num_prompts = 3\n rate = 2\n }", "both set"},
		{"unknown attribute", `bogus = 1`, `An argument named "bogus" is not expected here`},
		{"ratio does not fit", "placement {\n strategy = \"multi_gpu_ratio\"\n devices = \"0\"\n }", "needs 8 devices"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := fmt.Sprintf("job \"bad\" {\n  model \"target\" { path = %q }\n  model \"drafter\" { path = %q }\n  dataset \"prompts\" { prompts = [\"hi\"] }\n  %s\n}\n", target, drafter, c.body)
			path := filepath.Join(t.TempDir(), "bad.hcl")
			os.WriteFile(path, []byte(src), 0o644)
			out, err := exec.Command(filepath.Join(binDir, "controller"), "validate", path).CombinedOutput()
			if err == nil {
				t.Fatalf("accepted:\n%s", out)
			}
			if !strings.Contains(string(out), path+":") || !strings.Contains(string(out), c.want) {
				t.Errorf("error does not name file:line and %q:\n%s", c.want, out)
			}
			if strings.Contains(string(out), "panic") {
				t.Errorf("panic:\n%s", out)
			}
		})
	}
	t.Run("drafter with another tokenizer", func(t *testing.T) {
		stranger := strangerDrafter(t)
		src := fmt.Sprintf("job \"bad\" {\n  model \"target\" { path = %q }\n  model \"drafter\" { path = %q }\n  dataset \"prompts\" { prompts = [\"hi\"] }\n  placement { strategy = \"same\" }\n}\n", target, stranger)
		path := filepath.Join(t.TempDir(), "bad.hcl")
		os.WriteFile(path, []byte(src), 0o644)
		out, err := exec.Command(filepath.Join(binDir, "controller"), "validate", path).CombinedOutput()
		want := path + ":3,"
		if err == nil || !strings.Contains(string(out), want) || !strings.Contains(string(out), "tokenizers differ") {
			t.Errorf("want an error naming %q and the tokenizers, got %v:\n%s", want, err, out)
		}
	})
	for name, src := range map[string]string{
		"syntax error":  "job \"x\" {\n  model \"target\" {\n",
		"missing model": "job \"x\" {\n  model \"target\" { path = \"/nonexistent\" }\n  model \"drafter\" { path = \"/nonexistent2\" }\n  dataset \"prompts\" { prompts = [\"hi\"] }\n}\n",
	} {
		path := filepath.Join(t.TempDir(), "bad.hcl")
		os.WriteFile(path, []byte(src), 0o644)
		out, err := exec.Command(filepath.Join(binDir, "controller"), "validate", path).CombinedOutput()
		if err == nil || !strings.Contains(string(out), path+":") {
			t.Errorf("%s: want an error naming %s:line, got %v:\n%s", name, path, err, out)
		}
	}
}

// TestValidatePlansAsRunDoes: without placement.devices, validate plans on
// the devices `controller run` would offer here (CPU devices with their
// share of memory, so auto can place by memory).
func TestValidatePlansAsRunDoes(t *testing.T) {
	target, drafter := models(t, 2)
	src := fmt.Sprintf("job \"auto\" {\n  model \"target\" { path = %q }\n  model \"drafter\" { path = %q }\n  dataset \"prompts\" { prompts = [\"hi\"] }\n  placement { strategy = \"auto\" }\n}\n", target, drafter)
	path := filepath.Join(t.TempDir(), "auto.hcl")
	os.WriteFile(path, []byte(src), 0o644)
	cmd := exec.Command(filepath.Join(binDir, "controller"), "validate", path)
	cmd.Env = append(os.Environ(), "CUDA_VISIBLE_DEVICES=")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "target: "+target+" (Qwen3ForCausalLM, 2 layers, dtype auto) on devices [0]") {
		t.Errorf("validate with strategy auto: %v\n%s", err, out)
	}
}

// TestTwoStageTargetMatchesGenerate: the target split into two stage
// processes (hidden states crossing processes over NATS) and a one-stage
// drafter give exactly the greedy tokens of `worker generate` in one process,
// in both modes.
func TestTwoStageTargetMatchesGenerate(t *testing.T) {
	target, drafter := models(t, 4)
	const prompt = "The lighthouse keeper wrote a letter to the sea."
	src := fmt.Sprintf(`job "two-stage" {
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
    devices  = "0,1,2"
  }
  dataset "prompts" { prompts = [%q] }
  load { num_prompts = 2 }
  generation {
    max_new_tokens = 24
    gamma          = 3
    temperature    = 0
  }
}
`, target, drafter, prompt)
	job := filepath.Join(t.TempDir(), "job.hcl")
	os.WriteFile(job, []byte(src), 0o644)
	plan, err := exec.Command(filepath.Join(binDir, "controller"), "validate", job, "--json").CombinedOutput()
	if err != nil {
		t.Fatalf("validate: %v\n%s", err, plan)
	}
	var p struct {
		Models map[string]struct {
			Stages []struct{ Layers [2]int } `json:"stages"`
		} `json:"models"`
	}
	if err := json.Unmarshal(plan, &p); err != nil {
		t.Fatal(err)
	}
	if got := p.Models["target"].Stages; len(got) != 2 || got[0].Layers[1] != got[1].Layers[0] {
		t.Fatalf("the plan does not split the target into two stages: %s", plan)
	}
	out := t.TempDir()
	if res, err := exec.Command(filepath.Join(binDir, "controller"), "run", job, "--out", out).CombinedOutput(); err != nil {
		t.Fatalf("controller run: %v\n%s", err, lastLines(string(res), 20))
	}
	gen, err := exec.Command(filepath.Join(binDir, "worker"), "generate", "--model", target, "--prompt", prompt,
		"--max-new-tokens", "24", "--ignore-eos", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var want struct{ Tokens []int32 }
	if err := json.Unmarshal(gen, &want); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(out, report.FileRequests))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, _, err := report.ReadRequests(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 {
		t.Fatalf("%d request records, want 2 per mode", len(recs))
	}
	for _, r := range recs {
		if fmt.Sprint(r.OutputIDs) != fmt.Sprint(want.Tokens) {
			t.Errorf("%s request %d: %v\nworker generate: %v", r.Mode, r.Index, r.OutputIDs, want.Tokens)
		}
	}
}

// TestSweepScript runs scripts/sweep.sh as the docs show it: one run per
// value of a job variable into its own folder, a failed value named while
// the others still count, and `controller compare`'s table last, in the
// variable's order.
// sweep runs scripts/sweep.sh with args and returns its exit code, stdout
// and stderr.
func sweep(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{"../scripts/sweep.sh"}, args...)...)
	cmd.Env = append(os.Environ(), "CONTROLLER="+filepath.Join(binDir, "controller"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if cmd.ProcessState == nil {
		t.Fatalf("sweep.sh: %v", err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// comparison is the table sweep.sh prints after the runs into out.
func comparison(t *testing.T, stdout, out string) []string {
	t.Helper()
	i := strings.Index(stdout, "== "+out+"\n")
	if i < 0 {
		t.Fatalf("no comparison section:\n%s", stdout)
	}
	return strings.Split(strings.TrimSpace(stdout[i:]), "\n")[1:]
}

func TestSweepScript(t *testing.T) {
	target, drafter := models(t, 2)
	job := writeJob(t, target, drafter, 2, 6, "")
	src, err := os.ReadFile(job)
	if err != nil {
		t.Fatal(err)
	}
	swept := strings.Replace(string(src), "gamma          = 3", "gamma          = var.gamma", 1)
	if swept == string(src) {
		t.Fatal("the test job has no gamma line to sweep")
	}
	// A knob greedy runs ignore, as jobs copied from sampled ones carry:
	// validate warns of it, and it must not stop a sweep of another knob.
	swept = strings.Replace(swept, "gamma          = var.gamma", "gamma          = var.gamma\n    top_p          = 0.95", 1)
	swept = "variable \"gamma\" { default = 3 }\n" + swept
	if err := os.WriteFile(job, []byte(swept), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "sweep")

	// A value validate refuses refuses the whole sweep, before any run.
	code, stdout, stderr := sweep(t, "--out", out, job, "gamma", "3", "0", "1", "--", "--log-level", "warn")
	if code != 2 {
		t.Fatalf("sweep.sh with a refused value exited %d, want 2\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "gamma=0: ") || !strings.Contains(stderr, "generation.gamma must be between 1 and 32") ||
		!strings.Contains(stderr, "nothing was run") {
		t.Errorf("the refused value is not named with validate's reason:\n%s", stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused sweep left %s (%v)", out, err)
	}

	// Every value refused for one reason (a misspelled -var): said once.
	code, stdout, stderr = sweep(t, "--out", out, job, "gamma", "3", "1", "--", "-var", "gama=2")
	if code != 2 || !strings.Contains(stderr, "refuses every value for one reason") || strings.Count(stderr, `"gama"`) != 1 {
		t.Errorf("a misspelled -var: exit %d\n%s\n%s", code, stdout, stderr)
	}

	// A sampling knob at temperature 0 changes nothing: refused too.
	greedyJob := filepath.Join(t.TempDir(), "greedy.hcl")
	withK := strings.Replace(swept, "gamma          = var.gamma", "gamma          = var.gamma\n    draft_top_k    = var.k", 1)
	if err := os.WriteFile(greedyJob, []byte("variable \"k\" { default = 64 }\n"+withK), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = sweep(t, "--out", out, greedyJob, "k", "8", "-1")
	if code != 2 || !strings.Contains(stderr, "the values change only generation.draft_top_k, which has no effect at temperature 0") {
		t.Errorf("sweeping draft_top_k of a greedy job: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused sweep left %s (%v)", out, err)
	}

	// --repeat 2: each value twice, one row per value with n = 2.
	code, stdout, stderr = sweep(t, "--out", out, "--repeat", "2", job, "gamma", "3", "1", "--", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("sweep.sh --repeat 2 exited %d\n%s\n%s", code, stdout, stderr)
	}
	for _, v := range []string{"1", "3"} {
		for _, r := range []string{"run-1", "run-2"} {
			if _, err := os.Stat(filepath.Join(out, "gamma-"+v, r, report.FileResults)); err != nil {
				t.Errorf("gamma=%s %s: %v", v, r, err)
			}
		}
	}
	// The table: header, then gamma 1 before gamma 3 (the order of the
	// values, not of the command line).
	lines := comparison(t, stdout, out)
	if len(lines) != 4 || !strings.Contains(lines[0], "speedup TPOT") || !slices.Contains(strings.Fields(lines[0]), "n") ||
		!strings.HasPrefix(strings.TrimSpace(lines[1]), "gamma-1 ") || !strings.HasPrefix(strings.TrimSpace(lines[2]), "gamma-3 ") {
		t.Errorf("comparison table:\n%s", strings.Join(lines, "\n"))
	}
	if len(lines) > 1 && !strings.Contains(lines[1], "4/4") {
		t.Errorf("gamma 1's row does not say 4/4 lossless (two runs of two prompts): %s", lines[1])
	}

	// Another sweep into the same folder compares its own runs only.
	code, stdout, stderr = sweep(t, "--out", out, job, "gamma", "2", "--", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("sweep.sh exited %d\n%s\n%s", code, stdout, stderr)
	}
	if lines := comparison(t, stdout, out); len(lines) != 2 || !strings.HasPrefix(strings.TrimSpace(lines[1]), "gamma-2 ") {
		t.Errorf("comparison table of the second sweep:\n%s", strings.Join(lines, "\n"))
	}

	// The same sweep again, every run failing before it writes results:
	// the first sweep's files, still in the folder, are not shown as this
	// one's figures.
	code, stdout, stderr = sweep(t, "--out", out, job, "gamma", "2", "--", "--log-level", "warn", "--worker-bin", "/nonexistent")
	if code != 1 || strings.Contains(stdout, "speedup TPOT") || !strings.Contains(stderr, "no run wrote results") {
		t.Errorf("a sweep whose runs all failed: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

// Sweeping model folders names each run's folder after the model's, and an
// environment variable the job does not read is refused.
func TestSweepScriptModelsAndKnobs(t *testing.T) {
	target, drafter := models(t, 2)
	// A second folder named drafter, and one with a space in its name.
	other := filepath.Join(t.TempDir(), "drafter")
	spaced := filepath.Join(t.TempDir(), "drafter L1")
	for _, d := range []string{other, spaced} {
		if err := tinymodel.WriteDrafter(target, d, 1); err != nil {
			t.Fatal(err)
		}
	}
	job := writeJob(t, target, drafter, 2, 6, "")
	src, err := os.ReadFile(job)
	if err != nil {
		t.Fatal(err)
	}
	swept := strings.Replace(string(src), fmt.Sprintf("path = %q", drafter), fmt.Sprintf("path = env(\"DRAFTER_MODEL\", %q)", drafter), 1)
	if swept == string(src) {
		t.Fatal("the test job has no drafter path to sweep")
	}
	if err := os.WriteFile(job, []byte(swept), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "drafters")

	// TEMPERATURE is not read by the job: every run would be the same.
	code, stdout, stderr := sweep(t, "--out", out, job, "TEMPERATURE", "0", "0.5")
	if code != 2 || !strings.Contains(stderr, "does not read the environment variable TEMPERATURE") ||
		!strings.Contains(stderr, "It reads with env(): DRAFTER_MODEL") {
		t.Errorf("sweeping an unread knob: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused sweep left %s (%v)", out, err)
	}

	code, stdout, stderr = sweep(t, "--out", out, job, "DRAFTER_MODEL", drafter, other+"/", spaced, "--", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("sweep.sh exited %d\n%s\n%s", code, stdout, stderr)
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		if _, err := os.Stat(filepath.Join(out, e.Name(), report.FileResults)); err != nil {
			t.Errorf("%s: %v", e.Name(), err)
		}
	}
	// Two folders named drafter: by their whole paths, / as _.
	flat := func(p string) string { return "DRAFTER_MODEL-" + strings.ReplaceAll(strings.Trim(p, "/"), "/", "_") }
	want := []string{flat(drafter), flat(other), "DRAFTER_MODEL-drafter_L1"}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("run folders %q, want %q", names, want)
	}
	lines := comparison(t, stdout, out)
	if len(lines) != 4 || strings.Fields(lines[0])[1] != "drafter" {
		t.Fatalf("comparison table:\n%s", strings.Join(lines, "\n"))
	}
	text := strings.Join(lines, "\n")
	// The two folders named drafter by as much of their paths as tells
	// them apart.
	for _, want := range []string{" drafter L1 (1 layer, ", " " + filepath.Base(filepath.Dir(drafter)) + "/drafter (1 layer, ",
		" " + filepath.Base(filepath.Dir(other)) + "/drafter (1 layer, "} {
		if !strings.Contains(text, want) {
			t.Errorf("the drafter column lacks %q:\n%s", want, text)
		}
	}
}

func TestDraftTopKReachesTheStages(t *testing.T) {
	target, drafter := models(t, 2)
	accept := map[int]float64{}
	for _, k := range []int{1, -1} {
		job := writeJob(t, target, drafter, 2, 16, "")
		src, err := os.ReadFile(job)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.Replace(string(src), "temperature    = 0", fmt.Sprintf("temperature    = 1\n    draft_top_k    = %d", k), 1)
		if err := os.WriteFile(job, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		out := t.TempDir()
		cmd := exec.Command(filepath.Join(binDir, "controller"), "run", job, "--out", out, "--log-level", "warn")
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("draft_top_k %d: %v\n%s", k, err, msg)
		}
		var res struct {
			Config struct {
				Generation struct {
					DraftTopK int `json:"draft_top_k"`
				} `json:"generation"`
			} `json:"config"`
			Speculative struct {
				AcceptanceRate float64 `json:"acceptance_rate"`
			} `json:"speculative"`
		}
		data, err := os.ReadFile(filepath.Join(out, report.FileResults))
		if err != nil || json.Unmarshal(data, &res) != nil {
			t.Fatalf("results: %v", err)
		}
		if res.Config.Generation.DraftTopK != k {
			t.Errorf("config says draft_top_k %d, want %d", res.Config.Generation.DraftTopK, k)
		}
		accept[k] = res.Speculative.AcceptanceRate
	}
	if accept[1] == accept[-1] {
		t.Errorf("acceptance %v with q cut to one id and with the whole q: draft_top_k did not reach the stages", accept[1])
	}
}
