// Package gpucheck tests scripts/gpu-check.sh where no GPU is: its summary
// table on result files with some missing, verify against a pack of another
// commit or other sources, and run with a fake pack whose worker hangs or
// fails (every step bounded, the outcome of each said, $OUT filled as it
// goes). The script's GPU steps themselves run only on a GPU machine
// (docs/cuda.md).
package gpucheck

import (
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// need skips the test when a tool the script uses is missing.
func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// script runs scripts/gpu-check.sh inside dir (a copy of it there) with env.
func script(t *testing.T, dir string, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{filepath.Join(dir, "scripts/gpu-check.sh")}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), code
}

func write(t *testing.T, path, text string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
}

func writeGz(t *testing.T, path, text string) {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write([]byte(text)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	write(t, path, b.String(), 0o644)
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// tree makes a checkout with the script and one Go source, committed.
func tree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "scripts/gpu-check.sh"))
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "scripts/gpu-check.sh"), string(src), 0o755)
	write(t, filepath.Join(dir, "main.go"), "package main\n\nfunc main() {}\n", 0o644)
	write(t, filepath.Join(dir, ".gitignore"), "/build/\n", 0o644)
	git(t, dir, "init", "-q")
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "one")
	return dir
}

// fakePack writes build/gpu-check as pack would, its worker a shell script
// that says version `worker VERSION` and runs body for any other command
// (the controller fails at once); its sources were HEAD's unless VERSION
// ends in -dirty.
func fakePack(t *testing.T, dir, version, body string) {
	sources := "clean"
	if strings.HasSuffix(version, "-dirty") {
		sources = "uncommitted: main.go"
	}
	fakePackSources(t, dir, version, sources, body)
}

func fakePackSources(t *testing.T, dir, version, sources, body string) {
	t.Helper()
	pack := filepath.Join(dir, "build/gpu-check")
	if err := os.RemoveAll(pack); err != nil {
		t.Fatal(err)
	}
	writeGz(t, filepath.Join(pack, "worker.gz"), "#!/bin/sh\nif [ \"$1\" = version ]; then echo \"worker "+version+"\"; exit 0; fi\n"+body+"\n")
	writeGz(t, filepath.Join(pack, "controller.gz"), "#!/bin/sh\necho no controller here >&2\nexit 2\n")
	writeGz(t, filepath.Join(pack, "lib/libfake.so.0.gz"), "not a library")
	commit := ""
	if out, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output(); err == nil {
		commit = strings.TrimSpace(string(out))
	}
	write(t, filepath.Join(pack, "VERSION"), "describe "+version+"\ncommit "+commit+"\nsources "+sources+"\nworker worker "+version+"\npacked now in "+dir+"\n", 0o644)
	cmd := exec.Command("sha256sum", "main.go")
	cmd.Dir = dir
	sums, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(pack, "SOURCES.sha256"), string(sums), 0o644)
}

// TestTableRowsWithoutMainBench: with bench_draftbench.json missing (its
// greedy path failed), the rows come from the next bench file and every
// other file's cells are matched by batch; what is missing prints n/a.
func TestTableRowsWithoutMainBench(t *testing.T) {
	need(t, "bash", "python3")
	root := repoRoot(t)
	dir := t.TempDir()
	for _, f := range []string{"bench_graphs.json", "bench_logits.json", "bench_hf.json"} {
		b, err := os.ReadFile(filepath.Join(root, "testdata/gpu-check", f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "bench_hf.json" { // HF ran batch 32 only
			b = []byte(`{"engine": "transformers", "device": "x", "rows": [{"batch": 32, "prefill_tok_per_s": 2224, "decode_tok_per_s": 365.3, "decode_step_ms": 87.6}]}`)
		}
		write(t, filepath.Join(dir, f), string(b), 0o644)
	}
	out, code := script(t, root, nil, "table", dir)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, want := range []string{
		"bench_draftbench.json missing",
		"    1 |           n/a       n/a    n/a |          n/a      n/a    n/a |      n/a     n/a      n/a    n/a     n/a     5.90     n/a      6.90",
		"   32 |           n/a      2224    n/a |          n/a    365.3    n/a |      n/a   87.60",
		"missing: bench_draftbench.json, copy_torch.json",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "no bench file loaded") {
		t.Errorf("no rows:\n%s", out)
	}
}

// TestVerify: verify passes a pack of HEAD and says "repack" for one of
// another commit, or of uncommitted changes that are not this tree's.
func TestVerify(t *testing.T) {
	need(t, "bash", "git", "gzip", "sha256sum", "timeout")
	dir := tree(t)
	short := git(t, dir, "rev-parse", "--short", "HEAD")

	fakePack(t, dir, short, "exit 0")
	if out, code := script(t, dir, nil, "verify"); code != 0 || !strings.Contains(out, "verified: build/gpu-check is HEAD "+short) {
		t.Errorf("pack of HEAD: exit %d:\n%s", code, out)
	}

	// Uncommitted changes here, a clean pack: it passes and names them.
	write(t, filepath.Join(dir, "main.go"), "package main\n\nfunc main() { println() }\n", 0o644)
	if out, code := script(t, dir, nil, "verify"); code != 0 || !strings.Contains(out, "main.go (changed)") {
		t.Errorf("clean pack, changed tree: exit %d:\n%s", code, out)
	}
	// A pack of those changes (-dirty) passes while they are this tree's.
	fakePack(t, dir, short+"-dirty", "exit 0")
	if out, code := script(t, dir, nil, "verify"); code != 0 || !strings.Contains(out, "holds uncommitted changes") {
		t.Errorf("dirty pack of this tree: exit %d:\n%s", code, out)
	}
	// describe says -dirty for any tracked file (a script, the docs): with
	// the build's sources HEAD's, such a pack is one of HEAD.
	fakePackSources(t, dir, short+"-dirty", "clean", "exit 0")
	if out, code := script(t, dir, nil, "verify"); code != 0 || !strings.Contains(out, "verified") || strings.Contains(out, "warning") {
		t.Errorf("pack of HEAD's sources with other files changed: exit %d:\n%s", code, out)
	}
	fakePack(t, dir, short+"-dirty", "exit 0")
	// ... and is stale once they change again.
	write(t, filepath.Join(dir, "main.go"), "package main\n\nfunc main() { println(1) }\n", 0o644)
	if out, code := script(t, dir, nil, "verify"); code == 0 || !strings.Contains(out, "STALE PACK") || !strings.Contains(out, "repack") {
		t.Errorf("dirty pack of other changes: exit %d:\n%s", code, out)
	}

	// A new commit: the pack of the old one is stale.
	fakePack(t, dir, short, "exit 0")
	git(t, dir, "commit", "-q", "-am", "two")
	if out, code := script(t, dir, nil, "verify"); code == 0 || !strings.Contains(out, "STALE PACK: the packed worker is "+short) ||
		!strings.Contains(out, "repack") {
		t.Errorf("pack of the last commit: exit %d:\n%s", code, out)
	}

	// A pack from before VERSION existed.
	if err := os.Remove(filepath.Join(dir, "build/gpu-check/VERSION")); err != nil {
		t.Fatal(err)
	}
	if out, code := script(t, dir, nil, "verify"); code == 0 || !strings.Contains(out, "repack") {
		t.Errorf("pack without VERSION: exit %d:\n%s", code, out)
	}
}

// TestRunBounded: run with a worker that hangs stops the step at the run's
// budget, skips the rest, says so in the table, and leaves steps.tsv,
// table.txt and gpu-check.tgz in $OUT; in a tree without git whose sources
// differ from the pack's it warns first and goes on.
func TestRunBounded(t *testing.T) {
	need(t, "bash", "python3", "gzip", "sha256sum", "timeout", "tar")
	dir := tree(t)
	fakePack(t, dir, "abc1234", "sleep 300")
	if err := os.RemoveAll(filepath.Join(dir, ".git")); err != nil { // as the device tool's copy may be
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "main.go"), "package main\n\nfunc main() { println() }\n", 0o644)
	outDir := t.TempDir()
	env := []string{"OUT=" + outDir, "GPU_CHECK_WORK=" + t.TempDir(), "RUN_BUDGET=3", "MIN_STEP_S=1", "SKIP_HF=1", "ONLY="}
	start := time.Now()
	out, code := script(t, dir, env, "run")
	took := time.Since(start)
	if code == 0 {
		t.Errorf("exit 0 with a hanging worker:\n%s", out)
	}
	if took > 20*time.Second {
		t.Errorf("run took %v with a 3 s budget", took)
	}
	lines := strings.SplitN(out, "\n", 3)
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "== pack: abc1234") || !strings.HasPrefix(lines[1], "== packed worker: worker abc1234") {
		t.Errorf("run does not begin with the pack's version:\n%s", out)
	}
	for _, want := range []string{
		"# WARNING: STALE PACK: 1 build sources in this tree differ from those packed",
		"#   main.go (changed)",
		"   TIMED OUT (",
		"timed out: selftest; failed: none; skipped (budget spent): selftest_invariant",
		"bench_hf             ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, f := range []string{"steps.tsv", "table.txt", "gpu-check.tgz"} {
		if _, err := os.Stat(filepath.Join(outDir, f)); err != nil {
			t.Errorf("$OUT lacks %s: %v", f, err)
		}
	}
	steps, _ := os.ReadFile(filepath.Join(outDir, "steps.tsv"))
	if !strings.HasPrefix(string(steps), "selftest\tTIMED OUT (") || !strings.Contains(string(steps), "quickstart_fast\tSKIPPED") {
		t.Errorf("steps.tsv:\n%s", steps)
	}

	// A worker that fails at once: every step says FAILED, the run goes on
	// to the end; ONLY leaves the others out.
	fakePack(t, dir, "abc1234", "echo broken >&2; exit 3")
	env = []string{"OUT=" + outDir, "GPU_CHECK_WORK=" + t.TempDir(), "SKIP_HF=1", "ONLY=bench_draftbench,selftest_split"}
	out, code = script(t, dir, env, "run")
	if code == 0 {
		t.Errorf("exit 0 with a failing worker:\n%s", out)
	}
	for _, want := range []string{"   FAILED (exit 3)", "   | broken", "timed out: none; failed: selftest_split, bench_draftbench",
		"bench_graphs            0 / 45   skipped (not in ONLY)", "(no bench file loaded: no rows)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestRunGitLags: where the tree's git HEAD is not the packed commit but its
// build sources are the packed ones (the device tool's copy keeps an older
// .git), run says so in a note and raises no warning.
func TestRunGitLags(t *testing.T) {
	need(t, "bash", "python3", "gzip", "sha256sum", "timeout", "tar")
	dir := tree(t)
	fakePack(t, dir, "abc1234", "echo broken >&2; exit 3")
	write(t, filepath.Join(dir, "NOTES.md"), "not a build source\n", 0o644)
	git(t, dir, "add", "NOTES.md")
	git(t, dir, "commit", "-q", "-m", "two")
	env := []string{"OUT=" + t.TempDir(), "GPU_CHECK_WORK=" + t.TempDir(), "SKIP_HF=1", "ONLY=bench_draftbench"}
	out, _ := script(t, dir, env, "run")
	if !strings.Contains(out, "the build sources match the pack's, so the copy's .git lags") || strings.Contains(out, "WARNING") {
		t.Errorf("a lagging .git with the packed sources:\n%s", out)
	}
}
