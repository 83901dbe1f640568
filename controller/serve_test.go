package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/draftbench/draftbench/pkg/cli"
	"github.com/draftbench/draftbench/pkg/gpumon"
	"github.com/draftbench/draftbench/pkg/jobstore"
	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/natsrv/testcerts"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/report"
	"github.com/draftbench/draftbench/pkg/tinymodel"
)

// waitLimit bounds every wait: reaching it means a hang, never what a test
// measures.
const waitLimit = 60 * time.Second

// requestLineRE matches a tail line of a completed request, anyLineRE the
// line of any request (a failed one too).
var (
	requestLineRE = regexp.MustCompile(`^(speculative|target)\s+#(\d+)\s+ttft \d+\.\d\d ms  tpot \d+\.\d\d ms  e2el \d+\.\d\d ms  tokens \d+ in 8 out`)
	anyLineRE     = regexp.MustCompile(`^(speculative|target)\s+#\d+\s`)
)

// The whole client/server path with a real worker agent and real stage
// processes: a job refused with file:line; a job submitted before any
// worker joined, tailed live and replayed; its records on a raw NATS
// subscription equal to requests.jsonl; the status tables; a running job
// cancelled with its finished requests kept; and a controller restarted on
// the same store that still lists the jobs and replays them.
func TestServeEndToEnd(t *testing.T) {
	workerBin := filepath.Join(binDir, "worker") // built by TestMain (e2e_test.go)
	target, drafter := tinyModels(t)
	store, out := t.TempDir(), t.TempDir()
	jobVars := func(name string, extra ...string) []string {
		return append([]string{"-var", "target=" + target, "-var", "drafter=" + drafter, "-var", "out=" + filepath.Join(out, name)}, extra...)
	}
	first := startServe(t, store)
	url := first.url
	raw := subscribeResults(t, url)

	t.Run("a job the controller cannot run is refused with file:line", func(t *testing.T) {
		res := invoke("submit", "testdata/serve-job.hcl", "--nats", url, "-var", "target=/no/such/model",
			"-var", "drafter="+drafter, "-var", "out="+filepath.Join(out, "refused"))
		host, _ := os.Hostname()
		want := `controller submit: error: testdata/serve-job.hcl:15,5: model.target.path "/no/such/model": it does not exist (checked on the controller host ` + host + `)`
		if res.code != 1 || strings.TrimSpace(res.stderr) != want || res.stdout != "" {
			t.Errorf("exit %d, stdout %q, stderr %q; want 1 and %q", res.code, res.stdout, res.stderr, want)
		}
	})

	t.Run("a drafter with another tokenizer is refused at submit", func(t *testing.T) {
		stranger := strangerDrafter(t)
		res := invoke("submit", "testdata/serve-job.hcl", "--nats", url, "-var", "target="+target,
			"-var", "drafter="+stranger, "-var", "out="+filepath.Join(out, "refused"))
		if res.code != 1 || !strings.HasPrefix(res.stderr, "controller submit: error: testdata/serve-job.hcl:") ||
			!strings.Contains(res.stderr, "tokenizers differ") || !strings.Contains(res.stderr, stranger) || res.stdout != "" {
			t.Errorf("exit %d, stdout %q, stderr %q; want 1 and the drafter's tokenizer named", res.code, res.stdout, res.stderr)
		}
	})

	// Submitted before any worker: the job waits, so a tail started now
	// sees every request live.
	sub := invoke(append([]string{"submit", "testdata/serve-job.hcl", "--nats", url}, jobVars("first")...)...)
	if sub.code != 0 {
		t.Fatalf("submit: exit %d: %s", sub.code, sub.stderr)
	}
	id := strings.TrimSpace(sub.stdout)
	live := make(chan result, 1)
	go func() { live <- invoke("tail", id, "--nats", url) }()
	waitForConsumer(t, url)
	stopWorker := startAgent(t, workerBin, url)
	var liveTail result
	select {
	case liveTail = <-live:
	case <-time.After(waitLimit):
		t.Fatalf("tail did not end; serve log:\n%s", first.log)
	}

	t.Run("live tail prints every request, then the summary", func(t *testing.T) {
		checkTail(t, liveTail, 4)
	})
	t.Run("tail --from-start replays the same", func(t *testing.T) {
		replay := invoke("tail", id[:8], "--from-start", "--nats", url)
		checkTail(t, replay, 4)
		if replay.stdout != liveTail.stdout {
			t.Errorf("replay differs from the live tail:\n%s\nlive:\n%s", replay.stdout, liveTail.stdout)
		}
	})
	t.Run("a raw subscription to results.> sees the requests.jsonl records", func(t *testing.T) {
		got := raw.records(id)
		want := fileLines(t, filepath.Join(out, "first", report.FileRequests))
		slices.Sort(got)
		slices.Sort(want)
		if len(want) != 8 || !slices.Equal(got, want) {
			t.Errorf("raw records (%d) differ from requests.jsonl (%d lines)", len(got), len(want))
		}
	})
	t.Run("status", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want []string
		}{
			{[]string{"status"}, []string{"ID ", id + "  serve-test  succeeded", "speculative 4/4, target 4/4"}},
			{[]string{"status", id[:8]}, []string{"Job:       " + id, "State:     succeeded", "Output:    " + filepath.Join(out, "first"),
				// the headline numbers, from the summary in the results stream
				"Requests:  speculative 4 completed, 0 failed; target 4 completed, 0 failed\n", "Speedup:   TPOT ", "Accepted:  ", "Lossless:  4 checked, 0 mismatched"}},
			{[]string{"status", "workers"}, []string{"HOST ", "e2e-worker", "1 cpu"}},
		} {
			res := invoke(append(tc.args, "--nats", url)...)
			for _, w := range tc.want {
				if res.code != 0 || !strings.Contains(res.stdout, w) {
					t.Errorf("%v: exit %d, output:\n%s\nwant it to contain %q", tc.args, res.code, res.stdout, w)
				}
			}
		}
	})

	var cancelled string
	t.Run("cancel of a running job keeps its finished requests", func(t *testing.T) {
		first := raw.waiter(t)
		sub := invoke(append([]string{"submit", "testdata/serve-job.hcl", "--nats", url}, jobVars("cancelled", "-var", "prompts=400")...)...)
		if sub.code != 0 {
			t.Fatalf("submit: exit %d: %s", sub.code, sub.stderr)
		}
		cancelled = strings.TrimSpace(sub.stdout)
		first(cancelled) // one request has finished
		if res := invoke("cancel", cancelled, "--reason", "test over", "--nats", url); res.code != 0 {
			t.Fatalf("cancel: exit %d: %s", res.code, res.stderr)
		}
		res := invoke("tail", cancelled, "--from-start", "--nats", url)
		want := "controller tail: error: job " + cancelled + " was cancelled: test over; the results of the finished requests are in " + filepath.Join(out, "cancelled")
		if res.code != 1 || strings.TrimSpace(res.stderr) != want {
			t.Errorf("tail of the cancelled job: exit %d, stderr %q; want 1 and %q", res.code, res.stderr, want)
		}
		lines := matching(res.stdout, anyLineRE)
		kept := fileLines(t, filepath.Join(out, "cancelled", report.FileRequests))
		if len(lines) == 0 || len(lines) >= 800 || len(lines) != len(kept) {
			t.Errorf("tail printed %d requests, requests.jsonl holds %d; want the same number, between 1 and 799", len(lines), len(kept))
		}
		if !strings.Contains(res.stdout, "Serving Benchmark Result (speculative)") {
			t.Errorf("no summary for the cancelled job:\n%s", res.stdout)
		}
	})

	t.Run("submit --wait", func(t *testing.T) {
		broken := filepath.Join(t.TempDir(), "broken")
		if err := os.MkdirAll(broken, 0o755); err != nil {
			t.Fatal(err)
		}
		// A folder that passes the checks at submit (path, tokenizer) but
		// holds no model.
		if err := os.WriteFile(filepath.Join(broken, "config.json"), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
		tok, err := os.ReadFile(filepath.Join(target, "tokenizer.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(broken, "tokenizer.json"), tok, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name   string
			vars   []string
			code   int
			stderr *regexp.Regexp
		}{
			{"succeeds", jobVars("waited", "-var", "prompts=1"), 0,
				regexp.MustCompile(`^job [0-9a-f]{8} running\njob [0-9a-f]{8} succeeded: results in ` + regexp.QuoteMeta(filepath.Join(out, "waited")) + `\n$`)},
			{"fails", []string{"-var", "target=" + broken, "-var", "drafter=" + drafter, "-var", "out=" + filepath.Join(out, "broken")}, 1,
				regexp.MustCompile(`controller submit: error: job [0-9a-f-]{36} failed: testdata/serve-job.hcl:15,5: target model: .*/broken/config.json: `)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				res := invoke(append([]string{"submit", "testdata/serve-job.hcl", "--wait", "--nats", url}, tc.vars...)...)
				if res.code != tc.code || !tc.stderr.MatchString(res.stderr) || len(strings.TrimSpace(res.stdout)) != 36 {
					t.Errorf("exit %d, stdout %q, stderr %q; want %d, the job id, and %s", res.code, res.stdout, res.stderr, tc.code, tc.stderr)
				}
			})
		}
	})

	t.Run("a restarted controller lists its jobs and replays them", func(t *testing.T) {
		stopWorker()
		first.stop()
		again := startServe(t, store)
		res := invoke("status", "--nats", again.url)
		for _, w := range []string{id + "  serve-test  succeeded", cancelled + "  serve-test  cancelled"} {
			if res.code != 0 || !strings.Contains(res.stdout, w) {
				t.Errorf("status after the restart: exit %d:\n%s\nwant a line with %q", res.code, res.stdout, w)
			}
		}
		replay := invoke("tail", id, "--from-start", "--nats", again.url)
		if replay.code != 0 || replay.stdout != liveTail.stdout {
			t.Errorf("replay after the restart: exit %d, stderr %q, stdout:\n%s", replay.code, replay.stderr, replay.stdout)
		}
	})
}

// checkTail checks a tail's output: n requests of each mode with indexes
// 0..n-1, then both summaries, exit 0.
func checkTail(t *testing.T, res result, n int) {
	t.Helper()
	if res.code != 0 {
		t.Fatalf("tail: exit %d: %s", res.code, res.stderr)
	}
	lines := matching(res.stdout, requestLineRE)
	if len(lines) != 2*n {
		t.Errorf("tail printed %d request lines, want %d:\n%s", len(lines), 2*n, res.stdout)
	}
	seen := map[string]int{}
	for _, l := range lines {
		m := requestLineRE.FindStringSubmatch(l)
		seen[m[1]+"#"+m[2]]++
	}
	for _, mode := range []string{"speculative", "target"} {
		for i := range n {
			if k := mode + "#" + strconv.Itoa(i); seen[k] != 1 {
				t.Errorf("request %s printed %d times", k, seen[k])
			}
		}
	}
	summary := strings.Index(res.stdout, "===== Serving Benchmark Result (speculative) =====")
	if summary < 0 || summary < strings.LastIndex(res.stdout, "ttft") || !strings.Contains(res.stdout, "Lossless check, outputs differing:       0") {
		t.Errorf("no summary after the request lines:\n%s", res.stdout)
	}
	if !strings.Contains(res.stderr, "succeeded: results in ") {
		t.Errorf("tail stderr %q, want the job's success", res.stderr)
	}
}

func matching(out string, re *regexp.Regexp) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if re.MatchString(l) {
			lines = append(lines, l)
		}
	}
	return lines
}

func fileLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

type result struct {
	stdout, stderr string
	code           int
}

// invoke runs a controller command as the binary would, without a process.
func invoke(args ...string) result {
	prog := &cli.Program{Name: "controller", Commands: []*cli.Command{serveCmd(), submitCmd(), tailCmd(), statusCmd(), cancelCmd()}}
	var stdout, stderr bytes.Buffer
	code := prog.Run(args, &stdout, &stderr, func(string) string { return "" })
	return result{stdout.String(), stderr.String(), code}
}

// lockedBuffer collects the output of goroutines that write at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type serving struct {
	url  string
	log  *lockedBuffer
	stop func()
}

// startServe runs `controller serve` in this process, its embedded server
// on a free port.
func startServe(t *testing.T, store string) *serving {
	t.Helper()
	return startServeWith(t, serveOptions{listen: "127.0.0.1:0", store: store})
}

func startServeWith(t *testing.T, o serveOptions) *serving {
	t.Helper()
	log := &lockedBuffer{}
	env := &cli.Env{Stdout: log, Stderr: log, Getenv: func(string) string { return "" },
		Logger: hclog.New(&hclog.LoggerOptions{Output: log, Level: hclog.Info})}
	ctx, cancel := context.WithCancel(context.Background())
	urls := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		o.workerWait, o.ready = waitLimit, func(url string) { urls <- url }
		done <- serve(ctx, env, o)
	}()
	s := &serving{log: log}
	select {
	case s.url = <-urls:
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v\n%s", err, log)
	case <-time.After(waitLimit):
		cancel()
		t.Fatalf("serve not ready:\n%s", log)
	}
	s.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("serve log:\n%s", log)
		}
	})
	return s
}

// startAgent starts a host agent with one CPU device; the returned
// function stops it (also done at cleanup).
func startAgent(t *testing.T, bin, url string) func() {
	t.Helper()
	log := &lockedBuffer{}
	cmd := exec.Command(bin, "--nats", url, "--cpu-devices", "1", "--threads", "1", "--name", "e2e-worker")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop := sync.OnceFunc(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(waitLimit):
			t.Errorf("the worker did not stop on SIGTERM; killing it")
			_ = cmd.Process.Kill()
			<-done
		}
	})
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("worker log:\n%s", log)
		}
	})
	return stop
}

// tinyModels writes a tiny target and a drafter of its first two layers.
func tinyModels(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	s := tinymodel.Default()
	s.Hidden, s.Intermediate, s.Layers, s.Heads, s.KVHeads, s.HeadDim, s.TokVocab = 64, 128, 4, 4, 2, 16, 300
	target, drafter := filepath.Join(dir, "target"), filepath.Join(dir, "drafter")
	if err := tinymodel.Write(target, s); err != nil {
		t.Fatal(err)
	}
	if err := tinymodel.WriteDrafter(target, drafter, 2); err != nil {
		t.Fatal(err)
	}
	return target, drafter
}

func connectTest(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := natsrv.Connect(url, natsrv.ConnectOptions{Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// waitForConsumer returns once the results stream has a consumer: a tail
// has taken its snapshot of what was stored and reads from there on.
func waitForConsumer(t *testing.T, url string) {
	t.Helper()
	js, err := jetstream.New(connectTest(t, url))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	for {
		st, err := js.Stream(ctx, jobstore.StreamName(protocol.Subjects{}))
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Consumers > 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("tail never started reading the results stream")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// rawResults is a plain NATS subscription to results.>, as `nats sub` makes.
type rawResults struct {
	mu   sync.Mutex
	msgs []*nats.Msg
	nc   *nats.Conn
}

func subscribeResults(t *testing.T, url string) *rawResults {
	t.Helper()
	r := &rawResults{nc: connectTest(t, url)}
	if _, err := r.nc.Subscribe("draftbench.results.>", func(m *nats.Msg) {
		r.mu.Lock()
		r.msgs = append(r.msgs, m)
		r.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := r.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return r
}

// records are the request records of job seen so far.
func (r *rawResults) records(job string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, m := range r.msgs {
		if m.Subject == "draftbench.results."+job+".requests" {
			out = append(out, string(m.Data))
		}
	}
	return out
}

// waiter subscribes now to every job's request records and returns a
// function that waits for the first one of a given job.
func (r *rawResults) waiter(t *testing.T) func(job string) {
	t.Helper()
	sub, err := r.nc.SubscribeSync("draftbench.results.*.requests")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return func(job string) {
		t.Helper()
		defer sub.Unsubscribe()
		deadline := time.Now().Add(waitLimit)
		for {
			m, err := sub.NextMsg(time.Until(deadline))
			if err != nil {
				t.Fatalf("waiting for a request of job %s: %v", job, err)
			}
			if m.Subject == "draftbench.results."+job+".requests" {
				return
			}
		}
	}
}

func TestServeArguments(t *testing.T) {
	store := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // the start of stderr
	}{
		{"an argument", []string{"serve", "job.hcl"}, 2, `controller serve: serve takes no arguments, got ["job.hcl"]`},
		{"--users without --nkey", []string{"serve", "--users", "users.json"}, 2, "controller serve: --users needs --nkey: the seed of the controller-role NKey in it"},
		{"--listen with --nats", []string{"serve", "--nats", "nats://h:4222", "--listen", "0.0.0.0:4222"}, 2,
			"controller serve: --listen configures the embedded server; with --nats there is none"},
		{"--store with --nats", []string{"serve", "--nats", "nats://h:4222", "--store", store}, 2,
			"controller serve: --store holds the embedded server's data; with --nats the server keeps it"},
		{"--creds without --nats", []string{"serve", "--creds", "x.creds"}, 2, "controller serve: --creds is for --nats; the embedded server takes --token"},
		{"--worker-wait 0", []string{"serve", "--worker-wait", "0s"}, 2, "controller serve: --worker-wait 0s must be positive"},
		{"--listen without a port", []string{"serve", "--listen", "127.0.0.1", "--store", store}, 2, `controller serve: --listen "127.0.0.1": address 127.0.0.1: missing port in address`},
		{"--listen on the network without a token", []string{"serve", "--listen", "0.0.0.0:0", "--store", store}, 1,
			"controller serve: error: natsrv: refusing to listen on 0.0.0.0 without authentication: set a token, or listen on 127.0.0.1 (--listen 0.0.0.0:0, --token)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := invoke(tc.args...)
			if res.code != tc.code || !strings.HasPrefix(res.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", res.code, res.stderr, tc.code, tc.want)
			}
		})
	}
}

// TestServeTLSOnAllInterfaces: docs/deploy.md's TLS set-up, listening on
// 0.0.0.0 with a certificate for the host's own name and client
// certificates verified, starts (serve reaches its own server in process),
// takes a client that has the CA, a certificate and the token, and says an
// address other hosts can use.
func TestServeTLSOnAllInterfaces(t *testing.T) {
	c := testcerts.Write(t, t.TempDir())
	s := startServeWith(t, serveOptions{listen: "0.0.0.0:0", store: t.TempDir(), token: "t0k",
		serverCert: c.Cert, serverKey: c.Key, clientCA: c.CA})
	port := s.url[strings.LastIndex(s.url, ":")+1:]
	nc, err := natsrv.Connect("tls://127.0.0.1:"+port, natsrv.ConnectOptions{Token: "t0k", CAFile: c.CA,
		CertFile: c.ClientCert, KeyFile: c.ClientKey})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if !nc.TLSRequired() {
		t.Error("a client reached serve without TLS")
	}
	// The controller answers on it (the job list of an empty store).
	res := invoke("status", "--nats", "tls://127.0.0.1:"+port, "--token", "t0k", "--tls-ca", c.CA,
		"--tls-cert", c.ClientCert, "--tls-key", c.ClientKey)
	if res.code != 0 {
		t.Errorf("status over TLS: exit %d: %s", res.code, res.stderr)
	}
	host, _ := os.Hostname()
	if banner := s.log.String(); host != "" && (!strings.Contains(banner, "--nats tls://"+host+":"+port+" --token …") || strings.Contains(banner, "submit JOB.hcl --nats tls://0.0.0.0")) {
		t.Errorf("the banner does not show a reachable address:\n%s", banner)
	}
}

// serve --nats uses a server someone else runs, with its token.
func TestServeOnExternalNATS(t *testing.T) {
	srv, err := natsrv.Start(natsrv.Options{Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	s := startServeWith(t, serveOptions{natsURL: srv.ClientURL(), token: "s3cret"})
	if s.url != srv.ClientURL() {
		t.Errorf("serving on %s, want the external %s", s.url, srv.ClientURL())
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"with the token", []string{"--token", "s3cret"}, 0, "no jobs yet: submit one with `controller submit JOB.hcl`\n"},
		{"without it", nil, 1, "controller status: error: the NATS server at " + s.url + " refused this client: give its --token (or $DRAFTBENCH_NATS_TOKEN), --nkey or --creds (nats: Authorization Violation)\n"},
		{"a wrong one", []string{"--token", "guess"}, 1, "controller status: error: the NATS server at " + s.url + " refused the token given by --token: it is not the token the server was started with (nats: Authorization Violation)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := invoke(append([]string{"status", "--nats", s.url}, tc.args...)...)
			if got := res.stdout + res.stderr; res.code != tc.code || got != tc.want {
				t.Errorf("exit %d, output %q; want %d and %q", res.code, got, tc.code, tc.want)
			}
		})
	}
}

func TestServeWithoutJetStream(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(waitLimit) {
		t.Fatal("server not ready")
	}
	res := invoke("serve", "--nats", ns.ClientURL())
	want := "controller serve: error: jobstore: the NATS server at " + ns.ClientURL() + " has no JetStream (start nats-server with -js)"
	if res.code != 1 || !strings.HasPrefix(res.stderr, want) {
		t.Errorf("exit %d, stderr %q; want 1 and %q", res.code, res.stderr, want)
	}
}

func TestDefaultStore(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"XDG_DATA_HOME", map[string]string{"XDG_DATA_HOME": "/data", "HOME": "/home/u"}, "/data/draftbench"},
		{"HOME", map[string]string{"HOME": "/home/u"}, "/home/u/.local/share/draftbench"},
		{"neither", nil, "draftbench-store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := defaultStore(func(k string) string { return tc.env[k] }); got != tc.want {
				t.Errorf("defaultStore() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSplitListen(t *testing.T) {
	for _, tc := range []struct {
		listen, host string
		port         int
		err          string
	}{
		{"127.0.0.1:4222", "127.0.0.1", 4222, ""},
		{"[::1]:0", "::1", 0, ""},
		{":4222", "", 0, "give a host"},
		{"127.0.0.1:http", "", 0, `port "http" is not a number`},
		{"127.0.0.1:70000", "", 0, `port "70000" is not a number in [0, 65535]`},
	} {
		t.Run(tc.listen, func(t *testing.T) {
			host, port, err := splitListen(tc.listen)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("splitListen() error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || host != tc.host || port != tc.port {
				t.Errorf("splitListen() = %q, %d, %v; want %q, %d", host, port, err, tc.host, tc.port)
			}
		})
	}
}

// TestFollowInterrupted: Ctrl-C on `submit --wait` or `tail` says that the
// job goes on, and how to follow or stop it. Both commands catch the signal
// from before they print their first line on.
func TestFollowInterrupted(t *testing.T) {
	target, drafter := tinyModels(t)
	s := startServe(t, t.TempDir()) // no worker: the job waits
	var id string
	follow := func(name string, firstLine func(stdout, stderr *bufio.Reader) (string, error), args ...string) {
		t.Helper()
		cmd := exec.Command(filepath.Join(binDir, "controller"), args...)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		outR, errR := bufio.NewReader(stdout), bufio.NewReader(stderr)
		line, err := firstLine(outR, errR)
		if err != nil {
			t.Fatalf("%s: no first line: %v", name, err)
		}
		if id == "" {
			id = strings.TrimSpace(line)
		}
		_ = cmd.Process.Signal(syscall.SIGINT)
		rest, _ := io.ReadAll(errR)
		err = cmd.Wait()
		// The commands it suggests take the --nats this one was given.
		want := "controller " + name + ": error: interrupted; job " + id[:8] + " goes on running: follow it with `controller tail " + id[:8] + " --nats " + s.url +
			"`, stop it with `controller cancel " + id[:8] + " --nats " + s.url + "`"
		if err == nil || !strings.Contains(string(rest), want) {
			t.Errorf("%s: exit %v, stderr:\n%s\nwant %q", name, err, rest, want)
		}
	}
	follow("submit", func(out, _ *bufio.Reader) (string, error) { return out.ReadString('\n') }, // the job id
		"submit", "testdata/serve-job.hcl", "--wait", "--nats", s.url,
		"-var", "target="+target, "-var", "drafter="+drafter, "-var", "out="+t.TempDir())
	follow("tail", func(_, errs *bufio.Reader) (string, error) { return errs.ReadString('\n') }, // "following job …"
		"tail", "--nats", s.url)
}

// TestLeftStagesReleasedAfterACrash: a controller killed mid-job leaves its
// stages running on the worker; the controller started again on the same
// store and port releases them once the worker is back, so they hold no
// device through the next job.
func TestLeftStagesReleasedAfterACrash(t *testing.T) {
	target, drafter := tinyModels(t)
	store := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	url := "nats://" + addr
	startServeProcess := func() *exec.Cmd {
		t.Helper()
		cmd := exec.Command(filepath.Join(binDir, "controller"), "serve", "--listen", addr, "--store", store)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var logs lockedBuffer
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || !strings.Contains(line, "controller serving on") {
			t.Fatalf("serve did not start: %q %v\n%s", line, err, logs.String())
		}
		go func() { _, _ = io.Copy(io.Discard, out) }()
		return cmd
	}
	first := startServeProcess()
	startAgent(t, filepath.Join(binDir, "worker"), url)
	raw := subscribeResults(t, url)
	firstRecord := raw.waiter(t)
	// A GPU host's monitor, played here (the test's worker has no GPU): its samples go into
	// the GPU stream while the job runs, its energy counter rising by 5 J every 20 ms.
	gpuHost := connectTest(t, url)
	stopGPU, gpuDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(gpuDone)
		var mj uint64
		for {
			w := 250.0
			mj += 5000
			data, _ := json.Marshal(gpumon.Sample{Host: "gpu-host", Device: 0, UUID: "GPU-e2e", Name: "NVIDIA H200", T: time.Now(), PowerW: &w, EnergyMJ: &mj})
			_ = gpuHost.PublishMsg(protocol.RecordMsg(protocol.Subjects{}.GPU("gpu-host", 0), data))
			select {
			case <-stopGPU:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	out := t.TempDir()
	sub := invoke("submit", "testdata/serve-job.hcl", "--nats", url, "-var", "target="+target, "-var", "drafter="+drafter,
		"-var", "out="+out, "-var", "prompts=400", "-var", "gpu_monitor=true")
	if sub.code != 0 {
		t.Fatalf("submit: %s", sub.stderr)
	}
	firstRecord(strings.TrimSpace(sub.stdout)) // the job's stages run
	time.Sleep(100 * time.Millisecond)         // a few more requests and samples
	close(stopGPU)
	<-gpuDone
	gpuHost.Close()

	_ = first.Process.Kill() // no release, no goodbye
	_ = first.Wait()
	startServeProcess()
	// The restarted controller wrote the cut job's results from its records and what the
	// run kept: the environment and dataset sections as the run would have written them,
	// and the GPU section rebuilt from the samples of the GPU stream, with warnings saying
	// what is missing.
	var res struct {
		Job         struct{ Outcome, Reason string }
		Environment struct {
			ControllerHost string `json:"controller_host"`
			Workers        []struct{ Host string }
			Placement      json.RawMessage
		}
		Dataset struct {
			Source   string
			Selected int
		}
		GPU      gpumon.Result
		Warnings []string
	}
	data, err := os.ReadFile(filepath.Join(out, report.FileResults))
	if err != nil || json.Unmarshal(data, &res) != nil ||
		res.Job.Outcome != "failed" || !strings.Contains(res.Job.Reason, "the controller restarted while the job was running") {
		t.Errorf("results of the job cut by the crash: %v %+v", err, res)
	}
	hostname, _ := os.Hostname()
	if e := res.Environment; e.ControllerHost != hostname || len(e.Workers) != 1 || e.Workers[0].Host != "e2e-worker" || len(e.Placement) < 10 {
		t.Errorf("rebuilt environment %+v, want this host's controller, the worker e2e-worker and the placement", e)
	}
	if d := res.Dataset; d.Source != "prompts" || d.Selected != 400 {
		t.Errorf("rebuilt dataset statistics %+v, want the 400 prompts selected from the inline dataset", d)
	}
	g := res.GPU
	if !g.Available || len(g.Devices) != 1 || g.Devices[0].Host != "gpu-host" || g.Devices[0].EnergyJ["speculative"] <= 0 ||
		g.JoulesPerOutputToken[gpumon.PhaseSpeculative] <= 0 || g.UnavailableHosts["e2e-worker"] == "" {
		t.Errorf("rebuilt GPU section %+v: want gpu-host's energy in the speculative mode, and why e2e-worker had no monitor", g)
	}
	warnings := strings.Join(res.Warnings, "\n")
	for _, want := range []string{
		"written from requests.jsonl after the controller stopped",
		"the job failed (the controller restarted while the job was running) during the speculative mode:",
		"the target mode did not run: the job failed (the controller restarted while the job was running) before it",
		"the GPU figures were rebuilt after the controller stopped from the ",
	} {
		if !strings.Contains(warnings, want) {
			t.Errorf("the rebuilt results' warnings lack %q:\n%s", want, warnings)
		}
	}
	if _, err := os.Stat(filepath.Join(out, report.DirPlots, report.PlotPower)); err != nil {
		t.Errorf("no power plot in the rebuilt results: %v", err)
	}
	// The rebuilt results are the job's summary record: tail replays them.
	replay := invoke("tail", strings.TrimSpace(sub.stdout), "--from-start", "--nats", url)
	if !strings.Contains(replay.stdout, "Serving Benchmark Result (speculative)") {
		t.Errorf("tail --from-start of the job cut by the crash shows no summary (exit %d):\n%s\n%s", replay.code, replay.stdout, replay.stderr)
	}
	// Heartbeats after the restart must come to show no live stage.
	beats := connectTest(t, url)
	hbs, err := beats.SubscribeSync("draftbench.workers.*.heartbeat")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitLimit)
	for {
		m, err := hbs.NextMsg(time.Until(deadline))
		if err != nil {
			t.Fatalf("the left stages are still running %s after the restart: %v", waitLimit, err)
		}
		var hb protocol.Heartbeat
		if protocol.Decode(m.Data, &hb) != nil {
			continue
		}
		live := 0
		for _, st := range hb.Stages {
			if st.State == protocol.StageReady || st.State == protocol.StageStarting {
				live++
			}
		}
		if live == 0 {
			return
		}
	}
}
