package multihost

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/jobspec"
	"github.com/draftbench/draftbench/pkg/jobstore"
	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/tinymodel"
)

// Shared by every test: the binaries under test, the models on a read-only
// mount, and the topology script.
var (
	binDir   string
	modelsRO string
	netnsSh  string
	// prefixBase names this run's namespaces; `make test-multihost` sets
	// it so that its trap can clean up after a run that crashed.
	prefixBase string
)

// prefixEnv is how scripts/multihost/test.sh hands the run its prefix.
const prefixEnv = "DRAFTBENCH_MULTIHOST_PREFIX"

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintf(os.Stderr, "test/multihost: FAIL: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	if os.Geteuid() != 0 {
		return 1, fmt.Errorf("these tests need root (network namespaces, veth pairs, a read-only bind mount); run `sudo make test-multihost`")
	}
	for _, tool := range []string{"ip", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return 1, fmt.Errorf("%s is missing (apt-get install iproute2 mount): %w", tool, err)
		}
	}
	var err error
	if netnsSh, err = filepath.Abs("../../scripts/multihost/netns.sh"); err != nil {
		return 1, err
	}
	prefixBase = os.Getenv(prefixEnv)
	if prefixBase == "" {
		prefixBase = "mh" + randomHex(3)
	}
	if len(prefixBase) > 8 {
		return 1, fmt.Errorf("$%s=%q: at most 8 characters (a lab adds one, veth names have 15)", prefixEnv, prefixBase)
	}
	dir, err := os.MkdirTemp("", "draftbench-multihost-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(dir)
	binDir = filepath.Join(dir, "bin")
	for _, pkg := range []string{"../../controller", "../../worker"} {
		cmd := exec.Command("go", "build", "-o", binDir+"/", pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return 1, fmt.Errorf("building %s: %w", pkg, err)
		}
	}
	models := filepath.Join(dir, "models")
	s := tinymodel.Default()
	s.Hidden, s.Intermediate, s.Layers, s.Heads, s.KVHeads, s.HeadDim, s.TokVocab = 128, 256, 4, 4, 2, 32, 400
	if err := tinymodel.Write(filepath.Join(models, "target"), s); err != nil {
		return 1, err
	}
	if err := tinymodel.WriteDrafter(filepath.Join(models, "target"), filepath.Join(models, "drafter"), 1); err != nil {
		return 1, err
	}
	// Workers and stages read the models through a read-only mount: a
	// model folder opened for writing anywhere fails the job (EROFS).
	modelsRO = filepath.Join(dir, "models-ro")
	if err := os.Mkdir(modelsRO, 0o755); err != nil {
		return 1, err
	}
	for _, args := range [][]string{{"--bind", models, modelsRO}, {"-o", "remount,bind,ro", modelsRO}} {
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			exec.Command("umount", modelsRO).Run()
			return 1, fmt.Errorf("mount %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	defer exec.Command("umount", modelsRO).Run()
	return m.Run(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)[:n]
}

// lab is one test's pretend hosts and the processes running on them.
type lab struct {
	t      *testing.T
	prefix string // namespaces <prefix>-h1...
	net    string // the hosts' /30s are in <net>.0/24
	dir    string // process logs
	token  string

	mu    sync.Mutex
	procs []*proc
}

var labCount int

// newLab creates hosts namespaces and removes them, with everything
// running in them, when the test ends.
func newLab(t *testing.T, hosts int) *lab {
	t.Helper()
	labCount++
	n, err := rand.Int(rand.Reader, big.NewInt(250))
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, prefix: fmt.Sprintf("%s%d", prefixBase, labCount%10), net: fmt.Sprintf("10.213.%d", n.Int64()),
		dir: t.TempDir(), token: randomHex(24)}
	// A lab left by a run that crashed before its cleanup is removed first.
	exec.Command(netnsSh, "down", l.prefix).Run()
	if out, err := exec.Command(netnsSh, "up", l.prefix, fmt.Sprint(hosts), l.net).CombinedOutput(); err != nil {
		t.Fatalf("netns.sh up: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		l.stopAll()
		if out, err := exec.Command(netnsSh, "down", l.prefix).CombinedOutput(); err != nil {
			t.Errorf("netns.sh down: %v\n%s", err, out)
		}
		if t.Failed() {
			l.dumpLogs()
		}
	})
	return l
}

// natsAddr is the address host i reaches the root namespace on.
func (l *lab) natsAddr(i int) string { return fmt.Sprintf("%s.%d", l.net, 4*i-3) }

func (l *lab) ns(i int) string { return fmt.Sprintf("%s-h%d", l.prefix, i) }

// cut takes host i's link down; restore brings it back.
func (l *lab) cut(i int)     { l.link("cut", i) }
func (l *lab) restore(i int) { l.link("restore", i) }

func (l *lab) link(op string, i int) {
	l.t.Helper()
	if out, err := exec.Command(netnsSh, op, l.prefix, fmt.Sprint(i)).CombinedOutput(); err != nil {
		l.t.Fatalf("netns.sh %s %d: %v\n%s", op, i, err, out)
	}
}

// proc is a process of the lab, its output in a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// start runs bin with args on host i (0: the root namespace), with the
// lab's NATS token in the environment.
func (l *lab) start(name string, host int, bin string, args ...string) *proc {
	l.t.Helper()
	path := filepath.Join(binDir, bin)
	if host > 0 {
		// ip netns exec execs the command, so the pid is the worker's own.
		args = append([]string{"netns", "exec", l.ns(host), path}, args...)
		path = "ip"
	}
	logPath := filepath.Join(l.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		l.t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), "DRAFTBENCH_NATS_TOKEN="+l.token)
	// If the test binary dies, so do its processes (ip netns exec keeps it
	// across the exec).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("starting %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p
}

// waitLog waits until p's log holds s; it fails the test when p exits first
// or limit passes.
func (l *lab) waitLog(p *proc, s string, limit time.Duration) {
	l.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		data, _ := os.ReadFile(p.log)
		if bytes.Contains(data, []byte(s)) {
			return
		}
		select {
		case <-p.done:
			l.t.Fatalf("%s exited (%v) before logging %q", p.name, p.err, s)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("%s did not log %q within %s", p.name, s, limit)
		}
	}
}

// alive reports whether p still runs.
func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM, then SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	if !p.alive() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (l *lab) stopAll() {
	l.mu.Lock()
	procs := l.procs
	l.procs = nil
	l.mu.Unlock()
	var wg sync.WaitGroup
	for i := len(procs) - 1; i >= 0; i-- {
		wg.Add(1)
		go func() {
			defer wg.Done()
			procs[i].stop(20 * time.Second)
		}()
	}
	wg.Wait()
}

// dumpLogs prints the end of every process log of a failed test.
func (l *lab) dumpLogs() {
	entries, _ := os.ReadDir(l.dir)
	for _, e := range entries {
		data, _ := os.ReadFile(filepath.Join(l.dir, e.Name()))
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		l.t.Logf("--- last lines of %s:\n%s", e.Name(), strings.Join(lines, "\n"))
	}
}

// freePort asks the kernel for a free TCP port on every address.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// client connects to the controller through url as `controller submit`
// does.
func (l *lab) client(url string) *jobstore.Client {
	l.t.Helper()
	return jobstore.NewClient(clientConn(l.t, l, url), protocol.Subjects{}, 0)
}

// clientConn connects to url (one URL or several, comma-separated) with the
// lab's token, reconnecting for ever.
func clientConn(t *testing.T, l *lab, url string) *nats.Conn {
	t.Helper()
	nc, err := natsrv.Connect(url, natsrv.ConnectOptions{Name: "test client", Token: l.token, MaxReconnects: -1,
		ReconnectWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// waitWorkers waits until the controller lists the hosts as alive.
func waitWorkers(t *testing.T, c *jobstore.Client, limit time.Duration, hosts ...string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ws, err := c.Workers(ctx)
		cancel()
		alive := map[string]bool{}
		for _, w := range ws {
			if !w.Lost {
				alive[w.Host] = true
			}
		}
		all := true
		for _, h := range hosts {
			all = all && alive[h]
		}
		if err == nil && all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("hosts %v not all alive after %s: workers %+v, %v", hosts, limit, ws, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitNoStages waits until no worker reports a stage: every deployment
// was released.
func waitNoStages(t *testing.T, c *jobstore.Client, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ws, err := c.Workers(ctx)
		cancel()
		var left []string
		for _, w := range ws {
			for _, st := range w.Stages {
				left = append(left, fmt.Sprintf("%s: %s/%d %s", w.Host, st.Instance, st.Stage, st.State))
			}
		}
		if err == nil && len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stages still reported after %s: %v (%v)", limit, left, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// submit sends testdata/two-hosts.hcl with vars and returns the job id.
func submit(t *testing.T, c *jobstore.Client, vars ...string) string {
	t.Helper()
	src, err := os.ReadFile("testdata/two-hosts.hcl")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := c.Submit(ctx, &jobspec.Source{Filename: "testdata/two-hosts.hcl", HCL: string(src), Vars: vars})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Errors) > 0 {
		t.Fatalf("job refused: %s", strings.Join(rep.Errors, "\n"))
	}
	return rep.JobID
}

// follow waits for the job's end and returns its final status.
func follow(t *testing.T, c *jobstore.Client, id string, limit time.Duration) *protocol.JobStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	st, err := c.Follow(ctx, id, jobstore.FollowOptions{}, func(jobstore.Event) error { return nil })
	if err != nil {
		t.Fatalf("following job %s: %v", id, err)
	}
	return st
}

// twoHosts starts `controller serve` in the root namespace and a worker with
// two CPU devices on each of two hosts, and waits until both registered. It
// returns the lab, the controller's NATS URL, a client and the host names.
func twoHosts(t *testing.T) (*lab, string, *jobstore.Client, []string) {
	t.Helper()
	l := newLab(t, 2)
	port := freePort(t)
	ctl := l.start("controller", 0, "controller", "serve", "--listen", fmt.Sprintf("0.0.0.0:%d", port),
		"--store", t.TempDir(), "--log-level", "debug")
	l.waitLog(ctl, "controller serving on", time.Minute)
	hosts := []string{"host-a", "host-b"}
	for i, h := range hosts {
		l.start("worker-"+h, i+1, "worker", "--nats", fmt.Sprintf("nats://%s:%d", l.natsAddr(i+1), port),
			"--cpu-devices", "2", "--name", h, "--threads", "1", "--log-level", "debug")
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	c := l.client(url)
	waitWorkers(t, c, time.Minute, hosts...)
	return l, url, c, hosts
}
