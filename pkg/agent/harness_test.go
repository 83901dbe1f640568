package agent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/protocol"
)

// wait bounds every wait for something that must happen; it only ends a
// test that is already broken.
const wait = 30 * time.Second

// workerBin is the worker binary built once by TestMain.
var workerBin string

// TestMain builds the worker binary the stage tests run, honouring the
// environment (CGO_LDFLAGS from the Makefile). Started as a fake stage
// (testStageEnv set), the test binary plays that part instead.
func TestMain(m *testing.M) {
	if mode := os.Getenv(testStageEnv); mode != "" {
		os.Exit(fakeStage(mode, os.Args[1:]))
	}
	dir, err := os.MkdirTemp("", "agent-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workerBin = filepath.Join(dir, "worker")
	build := exec.Command("go", "build", "-o", workerBin, "../../worker")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building the worker binary: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer is a log sink the agent's goroutines and the test share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testLogger logs into a buffer that is printed when the test fails.
func testLogger(t *testing.T) (hclog.Logger, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", buf.String())
		}
	})
	return hclog.New(&hclog.LoggerOptions{Name: "worker", Output: buf, Level: hclog.Debug}), buf
}

func startServer(t *testing.T, opts natsrv.Options) *natsrv.Server {
	t.Helper()
	srv, err := natsrv.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

func connect(t *testing.T, url, name, token string) *nats.Conn {
	t.Helper()
	nc, err := natsrv.Connect(url, natsrv.ConnectOptions{Name: name, Token: token, MaxReconnects: -1, ReconnectWait: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// controller is a fake controller: it answers registrations, collects
// heartbeats and stage events, and sends assignments and releases.
type controller struct {
	t      *testing.T
	nc     *nats.Conn
	subj   protocol.Subjects
	regs   chan *protocol.Registration
	beats  chan *protocol.Heartbeat
	events chan *StageEvent
	// heartbeatMS is the interval asked for at registration.
	heartbeatMS int64
	// answer, when set, answers a heartbeat (on its reply subject).
	answer func(*protocol.Heartbeat) *protocol.Ack

	mu      sync.Mutex
	regSub  *nats.Subscription
	allSubs []*nats.Subscription
}

func newController(t *testing.T, nc *nats.Conn, subj protocol.Subjects, heartbeatMS int64) *controller {
	return &controller{
		t: t, nc: nc, subj: subj, heartbeatMS: heartbeatMS,
		regs:   make(chan *protocol.Registration, 100),
		beats:  make(chan *protocol.Heartbeat, 1000),
		events: make(chan *StageEvent, 100),
	}
}

// listen subscribes to registrations, heartbeats and stage events.
func (c *controller) listen() *controller {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	reg, err := c.nc.Subscribe(c.subj.WorkersRegister(), func(m *nats.Msg) {
		r := &protocol.Registration{}
		if err := protocol.Decode(m.Data, r); err != nil {
			c.t.Errorf("controller: %v", err)
			return
		}
		// The reply goes out before the test can see the registration: a
		// test that ends on it closes the connection a reply would need.
		c.respond(m, &protocol.RegisterReply{HeartbeatMS: c.heartbeatMS})
		c.regs <- r
	})
	if err != nil {
		c.t.Fatal(err)
	}
	beats, err := c.nc.Subscribe(c.subj.WorkerHeartbeats(), func(m *nats.Msg) {
		hb := &protocol.Heartbeat{}
		if err := protocol.Decode(m.Data, hb); err != nil {
			c.t.Errorf("controller: %v", err)
			return
		}
		if c.answer != nil && m.Reply != "" {
			if ack := c.answer(hb); ack != nil {
				c.respond(m, ack)
			}
		}
		c.beats <- hb
	})
	if err != nil {
		c.t.Fatal(err)
	}
	// Subjects.WorkerStages sanitizes its argument; the wildcard is spelt out.
	events, err := c.nc.Subscribe(c.subj.Prefix()+".workers.*.stages", func(m *nats.Msg) {
		ev := &StageEvent{StageStatus: &protocol.StageStatus{}}
		if err := protocol.Decode(m.Data, ev); err != nil {
			c.t.Errorf("controller: stage event %s: %v", m.Data, err)
			return
		}
		c.events <- ev
	})
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.nc.Flush(); err != nil {
		c.t.Fatal(err)
	}
	c.regSub = reg
	c.allSubs = []*nats.Subscription{reg, beats, events}
	return c
}

func (c *controller) respond(m *nats.Msg, msg protocol.Message) {
	data, err := protocol.Encode(msg)
	if err != nil {
		c.t.Errorf("controller: %v", err)
		return
	}
	if err := m.Respond(data); err != nil {
		c.t.Errorf("controller: %v", err)
	}
}

func (c *controller) registration() *protocol.Registration {
	c.t.Helper()
	return recv(c.t, c.regs, "a registration")
}

// assign sends raw assignment bytes and returns the answer.
func (c *controller) assignRaw(worker string, data []byte) *protocol.StageStatus {
	c.t.Helper()
	msg, err := c.nc.Request(c.subj.WorkerAssign(worker), data, wait)
	if err != nil {
		c.t.Fatalf("assigning: %v", err)
	}
	st := &protocol.StageStatus{}
	if err := protocol.Decode(msg.Data, st); err != nil {
		c.t.Fatalf("answer to an assignment: %v", err)
	}
	return st
}

func (c *controller) assign(worker string, as *protocol.Assignment) *protocol.StageStatus {
	c.t.Helper()
	data, err := protocol.Encode(as)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.assignRaw(worker, data)
}

func (c *controller) release(worker string, rel *protocol.Release) *protocol.Ack {
	c.t.Helper()
	data, err := protocol.Encode(rel)
	if err != nil {
		c.t.Fatal(err)
	}
	msg, err := c.nc.Request(c.subj.WorkerRelease(worker), data, wait)
	if err != nil {
		c.t.Fatalf("releasing: %v", err)
	}
	ack := &protocol.Ack{}
	if err := protocol.Decode(msg.Data, ack); err != nil {
		c.t.Fatalf("answer to a release: %v", err)
	}
	return ack
}

// event waits for the stage event that match accepts, skipping others.
func (c *controller) event(what string, match func(*StageEvent) bool) *StageEvent {
	c.t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case ev := <-c.events:
			if match(ev) {
				return ev
			}
		case <-deadline:
			c.t.Fatalf("no stage event %s after %s", what, wait)
		}
	}
}

// beat waits for a heartbeat that match accepts, skipping others.
func (c *controller) beat(what string, match func(*protocol.Heartbeat) bool) *protocol.Heartbeat {
	c.t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case hb := <-c.beats:
			if match(hb) {
				return hb
			}
		case <-deadline:
			c.t.Fatalf("no heartbeat %s after %s", what, wait)
		}
	}
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("no %s after %s", what, wait)
	}
	panic("unreachable")
}

// runAgent starts a.Run and stops it when the test ends, checking that it
// returns in time and without an error.
func runAgent(t *testing.T, a *Agent) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run() = %v", err)
			}
		case <-time.After(wait):
			t.Errorf("Run did not return %s after its context ended", wait)
		}
	})
}

// fakeClock moves only when the test fires one of the waits it handed out.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers chan fakeTimer
}

type fakeTimer struct {
	d  time.Duration
	ch chan time.Time
}

func newFakeClock(t0 time.Time) *fakeClock {
	return &fakeClock{now: t0, timers: make(chan fakeTimer, 100)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	tm := fakeTimer{d: d, ch: make(chan time.Time, 1)}
	c.timers <- tm
	return tm.ch
}

// next waits for the agent's next wait, moves the clock to its end and ends it.
func (c *fakeClock) next(t *testing.T) time.Duration {
	t.Helper()
	return c.fire(c.waiting(t))
}

// waiting returns the agent's pending wait without ending it.
func (c *fakeClock) waiting(t *testing.T) fakeTimer {
	t.Helper()
	return recv(t, c.timers, "wait on the clock")
}

// fire ends the wait tm: the clock moves on by its duration.
func (c *fakeClock) fire(tm fakeTimer) time.Duration {
	c.mu.Lock()
	c.now = c.now.Add(tm.d)
	now := c.now
	c.mu.Unlock()
	tm.ch <- now
	return tm.d
}
