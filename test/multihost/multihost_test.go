package multihost

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/report"
)

// jobEndLimit is how soon after a host's link is cut its job must end:
// three missed heartbeats of one second, the registry's check every half
// interval, and the release of the stages on the hosts still reachable.
const jobEndLimit = 12 * time.Second

// TestTwoHosts: a target split over two hosts gives the tokens of one
// process; cutting a host's link mid-job ends the job within seconds with
// the finished requests kept and the lost ones failed; once the link is
// back the worker is too, and the next job runs.
func TestTwoHosts(t *testing.T) {
	l, _, c, hosts := twoHosts(t)
	oracle := oneProcess(t, "models="+modelsRO)

	t.Run("tokens cross hosts unchanged", func(t *testing.T) {
		out := t.TempDir()
		st := follow(t, c, submit(t, c, "models="+modelsRO, "out="+out), 2*time.Minute)
		if st.State != protocol.JobSucceeded {
			t.Fatalf("job %s: %s", st.State, st.Error)
		}
		sameTokens(t, oracle, readRequests(t, out))
		var res struct {
			Environment struct {
				Placement struct {
					Target struct {
						Stages []struct{ Host string } `json:"stages"`
					} `json:"target"`
				} `json:"placement"`
			} `json:"environment"`
			Comparison struct {
				Lossless struct{ Checked, Mismatched int } `json:"lossless"`
			} `json:"comparison"`
		}
		readJSON(t, filepath.Join(out, report.FileResults), &res)
		var stageHosts []string
		for _, s := range res.Environment.Placement.Target.Stages {
			stageHosts = append(stageHosts, s.Host)
		}
		if !slices.Equal(stageHosts, hosts) {
			t.Errorf("target stages on hosts %v, want one on each of %v", stageHosts, hosts)
		}
		if res.Comparison.Lossless.Checked != 6 || res.Comparison.Lossless.Mismatched != 0 {
			t.Errorf("lossless %+v, want 6 checked and none mismatched", res.Comparison.Lossless)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("a cut link ends the job", func(t *testing.T) {
		out := t.TempDir()
		id := submit(t, c, "models="+modelsRO, "out="+out, "prompts=400", "tokens=200")
		waitRequests(t, filepath.Join(out, report.FileRequests), 4, time.Minute)
		cut := time.Now()
		l.cut(2)
		st := follow(t, c, id, time.Minute)
		took := time.Since(cut)
		t.Logf("the job ended %s after the cut", took.Round(10*time.Millisecond))
		if st.State != protocol.JobFailed || !strings.Contains(st.Error, "stopped sending heartbeats") {
			t.Errorf("job %s (%q): want failed because host-b stopped sending heartbeats", st.State, st.Error)
		}
		if took > jobEndLimit {
			t.Errorf("the job took %s to end after the cut, want at most %s", took.Round(time.Millisecond), jobEndLimit)
		}
		recs := readRequests(t, out)
		var ok, failed int
		for _, r := range recs {
			switch {
			case !r.Failed():
				ok++
			case r.Error == "":
				t.Errorf("request %d failed without a reason", r.Index)
			default:
				failed++
			}
		}
		if ok < 4 || failed == 0 || len(recs) >= 800 {
			t.Errorf("%d finished and %d failed of %d records; want the finished ones kept, the lost ones failed, the rest not run",
				ok, failed, len(recs))
		}
		if _, err := os.Stat(filepath.Join(out, report.FileResults)); err != nil {
			t.Errorf("no results after the job ended early: %v", err)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("the host comes back and the next job runs", func(t *testing.T) {
		l.restore(2)
		waitWorkers(t, c, time.Minute, hosts...)
		out := t.TempDir()
		st := follow(t, c, submit(t, c, "models="+modelsRO, "out="+out), 2*time.Minute)
		if st.State != protocol.JobSucceeded {
			t.Fatalf("job after the link came back: %s: %s", st.State, st.Error)
		}
		sameTokens(t, oracle, readRequests(t, out))
		// The stages of the job cut short were released too: host-a's at
		// once, host-b's when the release queued for it got through.
		waitNoStages(t, c, time.Minute)
		for _, p := range l.procs {
			if !p.alive() {
				t.Errorf("%s exited: %v", p.name, p.err)
			}
		}
	})
}

// oneProcess runs the job (with vars) with both models in one process (`controller run
// --in-process`, no NATS) and returns its requests: the tokens a cluster
// must reproduce.
func oneProcess(t *testing.T, vars ...string) []metrics.Request {
	t.Helper()
	out := t.TempDir()
	args := []string{"run", "testdata/two-hosts.hcl", "--in-process", "-var", "out=" + out}
	for _, v := range vars {
		args = append(args, "-var", v)
	}
	cmd := exec.Command(filepath.Join(binDir, "controller"), args...)
	if data, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("controller run --in-process: %v\n%s", err, data)
	}
	return readRequests(t, out)
}

// sameTokens compares the output of every request, paired by mode and
// index, with the one-process run.
func sameTokens(t *testing.T, want, got []metrics.Request) {
	t.Helper()
	type key struct {
		mode  metrics.Mode
		index int
	}
	ids := map[key][]int32{}
	for _, r := range want {
		ids[key{r.Mode, r.Index}] = r.OutputIDs
	}
	if len(got) != len(want) {
		t.Errorf("%d requests, the one-process run has %d", len(got), len(want))
	}
	for _, r := range got {
		w, ok := ids[key{r.Mode, r.Index}]
		switch {
		case r.Failed():
			t.Errorf("%s request %d failed: %s", r.Mode, r.Index, r.Error)
		case !ok:
			t.Errorf("%s request %d is not in the one-process run", r.Mode, r.Index)
		case len(w) == 0 || !slices.Equal(w, r.OutputIDs):
			t.Errorf("%s request %d: tokens %v, one process gave %v", r.Mode, r.Index, r.OutputIDs, w)
		}
	}
}

func readRequests(t *testing.T, dir string) []metrics.Request {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, report.FileRequests))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, _, err := report.ReadRequests(f)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// waitRequests waits until the file holds n records.
func waitRequests(t *testing.T, path string, n int, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		data, _ := os.ReadFile(path)
		if strings.Count(string(data), "\n") >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds fewer than %d records after %s", path, n, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
