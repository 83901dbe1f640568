package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/protocol"
)

// testStageEnv makes the test binary a fake stage process (see fakeStage).
const testStageEnv = "DRAFTBENCH_AGENT_TEST_STAGE"

// fakeStage plays a stage process that misbehaves, given the flags the
// agent passes to a stage:
//   - "stubborn" reports ready, then ignores SIGTERM;
//   - "mute" never reports anything.
func fakeStage(mode string, args []string) int {
	flags := map[string]string{}
	for i := 0; i+1 < len(args); i++ {
		if strings.HasPrefix(args[i], "--") {
			flags[args[i]] = args[i+1]
		}
	}
	signal.Ignore(syscall.SIGTERM)
	if mode == "stubborn" {
		as, err := ReadAssignment(flags["--assignment"])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		subj, err := protocol.NewSubjects(flags["--prefix"])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		nc, err := natsrv.Connect(flags["--nats"], natsrv.ConnectOptions{Name: "fake stage"})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		ev := &StageEvent{StageStatus: &protocol.StageStatus{WorkerID: flags["--worker"], Instance: as.Instance, Stage: as.Stage,
			Stages: as.Stages, State: protocol.StageReady, PID: os.Getpid()}}
		if err := publishEvent(StageConfig{Conn: nc, Subjects: subj, WorkerID: flags["--worker"]}, ev); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	fmt.Fprintln(os.Stderr, "fake stage waiting")
	select {}
}

// goldenQwen3 is the first prompt of the qwen3 golden file and its first
// greedy token, with the model's folder.
func goldenQwen3(t *testing.T) (dir string, prompt []int, first int) {
	t.Helper()
	data, err := os.ReadFile("../../testdata/golden/qwen3.json")
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Prompts []struct {
			Tokens []int `json:"tokens"`
			Greedy []int `json:"greedy"`
		} `json:"prompts"`
	}
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Prompts) == 0 || len(g.Prompts[0].Greedy) == 0 {
		t.Fatal("qwen3.json has no greedy tokens for prompt 0")
	}
	dir, err = filepath.Abs("../../testdata/golden/models/qwen3")
	if err != nil {
		t.Fatal(err)
	}
	return dir, g.Prompts[0].Tokens, g.Prompts[0].Greedy[0]
}

// cluster is a NATS server, a fake controller and a running agent whose
// stages are real processes.
type cluster struct {
	ctl   *controller
	agent *Agent
}

func newCluster(t *testing.T, token string, tweak func(*Config)) *cluster {
	t.Helper()
	srv := startServer(t, natsrv.Options{Token: token})
	ctl := newController(t, connect(t, srv.ClientURL(), "controller", token), protocol.Subjects{}, 50).listen()
	log, _ := testLogger(t)
	cfg := Config{
		Conn:         connect(t, srv.ClientURL(), "agent", token),
		Name:         "test-host",
		Devices:      CPUDevices(2, 1<<30),
		StageCommand: []string{workerBin, "stage"},
		StageURL:     srv.ClientURL(),
		Token:        token,
		TempDir:      t.TempDir(),
		CPUThreads:   2,
		StopGrace:    wait,
		Logger:       log,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runAgent(t, a)
	ctl.registration()
	return &cluster{ctl: ctl, agent: a}
}

func qwen3Assignment(t *testing.T) *protocol.Assignment {
	dir, _, _ := goldenQwen3(t)
	return &protocol.Assignment{Instance: "target-" + uuid.NewString()[:8], Role: "target", ModelDir: dir,
		Layers: [2]int{0, 3}, Devices: []int{0}, Stage: 0, Stages: 1}
}

// procFile reads /proc/<pid>/<name> split at NUL bytes.
func procFile(t *testing.T, pid int, name string) []string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
}

func gone(pid int) bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }

// TestStageLifecycle assigns the golden model to a real stage process,
// steps it, and releases it.
func TestStageLifecycle(t *testing.T) {
	const token = "s3cret"
	c := newCluster(t, token, nil)
	_, prompt, first := goldenQwen3(t)
	as := qwen3Assignment(t)
	subject := protocol.Subjects{}.Stage(as.Instance, 0)

	st := c.ctl.assign(c.agent.ID(), as)
	if st.State != protocol.StageReady || st.PID <= 0 || st.Subject != subject || st.WorkerID != c.agent.ID() {
		t.Fatalf("answer to the assignment: %+v; want ready on %s with a pid", st, subject)
	}
	pid := st.PID
	starting := c.ctl.event("starting", func(ev *StageEvent) bool { return ev.State == protocol.StageStarting })
	if starting.PID != pid {
		t.Errorf("starting event for pid %d, want %d", starting.PID, pid)
	}
	ready := c.ctl.event("ready", func(ev *StageEvent) bool { return ev.State == protocol.StageReady })
	if ready.PID != pid || ready.WeightBytes <= 0 || ready.LoadMS < 0 {
		t.Errorf("ready event %+v: want pid %d, weight bytes and a load time", ready, pid)
	}
	c.ctl.beat("listing the ready stage", func(hb *protocol.Heartbeat) bool {
		return len(hb.Stages) == 1 && hb.Stages[0].State == protocol.StageReady && hb.Stages[0].PID == pid
	})

	// The stage sees only its own group and gets the token from the
	// environment, never on its command line.
	env := procFile(t, pid, "environ")
	for _, want := range []string{"CUDA_VISIBLE_DEVICES=", TokenEnv + "=" + token} {
		if !containsString(env, want) {
			t.Errorf("stage environment lacks %q", want)
		}
	}
	cmdline := strings.Join(procFile(t, pid, "cmdline"), " ")
	if strings.Contains(cmdline, token) {
		t.Errorf("the token is on the stage's command line: %s", cmdline)
	}
	if !strings.Contains(cmdline, "--threads 1") {
		t.Errorf("stage command line %q: want --threads 1 (2 threads over 2 CPU devices, 1 device assigned)", cmdline)
	}

	client, err := protocol.NewStepClient(c.ctl.nc)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	rep, err := client.Step(ctx, subject, &protocol.StepRequest{Session: uuid.New(), Op: protocol.OpPrefill, Tokens: prompt})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Tokens) != 1 || rep.Tokens[0] != first {
		t.Errorf("prefill answered %v, want the golden first token %d", rep.Tokens, first)
	}

	// The same assignment again (a retried request) finds the running stage.
	if again := c.ctl.assign(c.agent.ID(), as); again.State != protocol.StageReady || again.PID != pid {
		t.Errorf("assigning again: %+v; want the ready stage with pid %d", again, pid)
	}
	other := *as
	other.Layers = [2]int{0, 2}
	if st := c.ctl.assign(c.agent.ID(), &other); st.State != protocol.StageFailed || !strings.Contains(st.Error, "already runs here") {
		t.Errorf("a different assignment for the same stage: %+v; want failed, already running", st)
	}

	if ack := c.ctl.release(c.agent.ID(), &protocol.Release{Instance: as.Instance, Reason: "test over"}); ack.Error != "" {
		t.Fatalf("release: %s", ack.Error)
	}
	if !gone(pid) {
		t.Errorf("stage process %d still exists after the release was answered", pid)
	}
	exited := c.ctl.event("exited", func(ev *StageEvent) bool { return ev.State == protocol.StageExited })
	if exited.PID != pid || exited.Error != "released: test over" {
		t.Errorf("exit event %+v: want pid %d, released: test over", exited, pid)
	}
	if got := c.agent.Stages(); len(got) != 0 {
		t.Errorf("stages after the release: %+v, want none", got)
	}
	if ack := c.ctl.release(c.agent.ID(), &protocol.Release{Instance: "never-assigned"}); ack.Error != "" {
		t.Errorf("releasing an unknown instance: %s, want success", ack.Error)
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestStageKilled kills a ready stage: the agent reports the signal and
// keeps serving, and the stage can be assigned again.
func TestStageKilled(t *testing.T) {
	c := newCluster(t, "", nil)
	as := qwen3Assignment(t)
	st := c.ctl.assign(c.agent.ID(), as)
	if st.State != protocol.StageReady {
		t.Fatalf("assignment: %+v, want ready", st)
	}
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ev := c.ctl.event("exited", func(ev *StageEvent) bool { return ev.State == protocol.StageExited })
	if ev.PID != st.PID || !strings.Contains(ev.Error, "signal: killed") {
		t.Errorf("exit event %+v: want pid %d ended by signal: killed", ev, st.PID)
	}
	c.ctl.beat("listing the dead stage", func(hb *protocol.Heartbeat) bool {
		return len(hb.Stages) == 1 && hb.Stages[0].State == protocol.StageExited && strings.Contains(hb.Stages[0].Error, "signal: killed")
	})
	again := c.ctl.assign(c.agent.ID(), as)
	if again.State != protocol.StageReady || again.PID == st.PID {
		t.Errorf("assigning the dead stage again: %+v; want a new ready process", again)
	}
}

// TestBrokenAssignments are answered failed with the reason, and the agent
// keeps running.
func TestBrokenAssignments(t *testing.T) {
	c := newCluster(t, "", nil)
	dir, _, _ := goldenQwen3(t)
	tests := []struct {
		name    string
		edit    func(*protocol.Assignment)
		raw     string
		wantErr []string
	}{
		{
			name:    "missing model folder",
			edit:    func(a *protocol.Assignment) { a.ModelDir = "/nonexistent/qwen3" },
			wantErr: []string{"/nonexistent/qwen3", "no such file or directory"},
		},
		{
			name:    "layers past the model",
			edit:    func(a *protocol.Assignment) { a.Layers = [2]int{0, 9} },
			wantErr: []string{"layer range [0,9) is not inside the 3 layers"},
		},
		{
			name:    "shard out of place",
			edit:    func(a *protocol.Assignment) { a.Stage, a.Stages = 1, 2 },
			wantErr: []string{"the first stage must start at layer 0"},
		},
		{
			name:    "device of another worker",
			edit:    func(a *protocol.Assignment) { a.Devices = []int{7} },
			wantErr: []string{"device 7 is not one of this worker's devices [0 1]"},
		},
		{
			name:    "no devices",
			edit:    func(a *protocol.Assignment) { a.Devices = nil },
			wantErr: []string{"names no devices"},
		},
		{
			// The job's dtype reaches the stage's backend, which says what it can store.
			name:    "dtype the CPU cannot store",
			edit:    func(a *protocol.Assignment) { a.DType = "f16" },
			wantErr: []string{`dtype "f16": the CPU backend stores weights in bf16 or f32`},
		},
		{
			name:    "invalid message",
			raw:     `{"v":1,"instance":"x","layers":[0,3],"stages":1}`,
			wantErr: []string{"model_dir is empty"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st *protocol.StageStatus
			if tt.raw != "" {
				st = c.ctl.assignRaw(c.agent.ID(), []byte(tt.raw))
			} else {
				as := &protocol.Assignment{Instance: "broken-" + uuid.NewString()[:8], ModelDir: dir, Layers: [2]int{0, 3}, Devices: []int{0}, Stages: 1}
				tt.edit(as)
				st = c.ctl.assign(c.agent.ID(), as)
			}
			if st.State != protocol.StageFailed {
				t.Fatalf("answer %+v, want failed", st)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(st.Error, want) {
					t.Errorf("error %q does not say %q", st.Error, want)
				}
			}
		})
	}
	// Still running: a good assignment works.
	if st := c.ctl.assign(c.agent.ID(), qwen3Assignment(t)); st.State != protocol.StageReady {
		t.Errorf("a good assignment after the broken ones: %+v, want ready", st)
	}
}

// TestGPUWithoutCUDA: a worker built without CUDA refuses GPU work clearly,
// and shows the stage only its group's GPUs.
func TestGPUWithoutCUDA(t *testing.T) {
	c := newCluster(t, "", func(cfg *Config) {
		cfg.Devices = []protocol.Device{
			{Index: 0, UUID: "GPU-aaaa", Name: "fake", MemoryBytes: 80 << 30, Kind: protocol.DeviceGPU},
			{Index: 1, UUID: "GPU-bbbb", Name: "fake", MemoryBytes: 80 << 30, Kind: protocol.DeviceGPU},
		}
	})
	as := qwen3Assignment(t)
	as.Devices = []int{1}
	st := c.ctl.assign(c.agent.ID(), as)
	if st.State != protocol.StageFailed || !strings.Contains(st.Error, ErrNoCUDA.Error()) {
		t.Errorf("answer %+v, want failed: %s", st, ErrNoCUDA)
	}
}

// TestStopEscalates covers the stages that do not cooperate: one that
// ignores SIGTERM is killed after the grace period, one that never becomes
// ready is killed after the start timeout.
func TestStopEscalates(t *testing.T) {
	tests := []struct {
		name  string
		mode  string
		start time.Duration // the start timeout (0: the default)
		// act does what ends the stage and returns the status that reports it.
		act        func(t *testing.T, c *cluster, as *protocol.Assignment) *protocol.StageStatus
		wantPrefix string
	}{
		{
			name: "release of a stage ignoring SIGTERM",
			mode: "stubborn",
			act: func(t *testing.T, c *cluster, as *protocol.Assignment) *protocol.StageStatus {
				if st := c.ctl.assign(c.agent.ID(), as); st.State != protocol.StageReady {
					t.Fatalf("assignment: %+v, want ready", st)
				}
				if ack := c.ctl.release(c.agent.ID(), &protocol.Release{}); ack.Error != "" {
					t.Fatalf("release: %s", ack.Error)
				}
				return c.ctl.event("exited", func(ev *StageEvent) bool { return ev.State == protocol.StageExited }).StageStatus
			},
			wantPrefix: "released: signal: killed",
		},
		{
			name:  "stage never ready",
			mode:  "mute",
			start: 300 * time.Millisecond,
			act: func(t *testing.T, c *cluster, as *protocol.Assignment) *protocol.StageStatus {
				return c.ctl.assign(c.agent.ID(), as)
			},
			wantPrefix: "not ready after 300ms: signal: killed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exe, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			c := newCluster(t, "", func(cfg *Config) {
				cfg.StageCommand = []string{exe}
				cfg.Environ = append(os.Environ(), testStageEnv+"="+tt.mode)
				cfg.StopGrace = 200 * time.Millisecond
				cfg.StartTimeout = tt.start
			})
			st := tt.act(t, c, qwen3Assignment(t))
			if !strings.HasPrefix(st.Error, tt.wantPrefix) {
				t.Errorf("stage ended with %q, want %q", st.Error, tt.wantPrefix)
			}
			if !gone(st.PID) {
				t.Errorf("stage process %d still exists", st.PID)
			}
		})
	}
}

// TestGPUIntervalFollowsStages: the worker's GPU monitor is told the shortest
// sampling interval the jobs of its stages ask for, and 0 once none asks.
func TestGPUIntervalFollowsStages(t *testing.T) {
	var mu sync.Mutex
	var told []time.Duration
	c := newCluster(t, "", func(cfg *Config) {
		cfg.GPUInterval = func(d time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			told = append(told, d)
		}
	})
	slow, fast := qwen3Assignment(t), qwen3Assignment(t)
	slow.GPUIntervalMS, fast.GPUIntervalMS = 500, 200
	fast.Devices = []int{1}
	for _, as := range []*protocol.Assignment{slow, fast} {
		if st := c.ctl.assign(c.agent.ID(), as); st.State != protocol.StageReady {
			t.Fatalf("assigning %s: %+v", as.Instance, st)
		}
	}
	for _, as := range []*protocol.Assignment{fast, slow} {
		if ack := c.ctl.release(c.agent.ID(), &protocol.Release{Instance: as.Instance}); ack.Error != "" {
			t.Fatalf("release: %s", ack.Error)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := []time.Duration{500 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond, 0}
	if !slices.Equal(told, want) {
		t.Errorf("intervals told %v, want %v", told, want)
	}
}
