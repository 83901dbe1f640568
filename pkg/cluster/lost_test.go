package cluster

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/natsrv/natstest"
	"github.com/draftbench/draftbench/pkg/protocol"
)

// TestOnLostStops: a job that has ended stops hearing of lost workers (a
// long-running controller registers one watcher per job).
func TestOnLostStops(t *testing.T) {
	nc, subj, clock, reg := registryOnFakeClock(t)
	calls := map[string]int{}
	stopOld := reg.OnLost(func(Worker) { calls["ended job"]++ })
	reg.OnLost(func(Worker) { calls["running job"]++ })
	stopOld()
	stopOld() // twice is harmless

	register(t, nc, subj, uuid.NewString(), "gpu-a")
	clock.Add(4 * time.Second)
	reg.Check()
	if calls["ended job"] != 0 || calls["running job"] != 1 {
		t.Errorf("calls %v: want the running job's watcher only", calls)
	}
}

// TestLeavingWorker: a worker's Leaving heartbeat removes it at once and
// tells the jobs' watchers, without waiting three intervals.
func TestLeavingWorker(t *testing.T) {
	nc, subj, clock, reg := registryOnFakeClock(t)
	told := make(chan Worker, 1)
	reg.OnLost(func(w Worker) { told <- w })
	id := uuid.NewString()
	register(t, nc, subj, id, "gpu-a")
	hb, err := protocol.Encode(&protocol.Heartbeat{WorkerID: id, Host: "gpu-a", Sent: clock.Now(), Leaving: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(subj.WorkerHeartbeat(id), hb); err != nil {
		t.Fatal(err)
	}
	select {
	case w := <-told:
		if w.ID != id || !w.Left || !w.Lost {
			t.Errorf("told of %+v; want worker %s, left and lost", w, id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watchers were not told of the leaving worker")
	}
	if ws := reg.Workers(); len(ws) != 0 {
		t.Errorf("workers after the leave: %+v, want none", ws)
	}
}

// TestOrphanedStages: stages a worker runs that no deployment of this
// controller owns (left by a controller that crashed) are reported, each at
// most once per orphanRetry; owned, ended and released ones are not.
func TestOrphanedStages(t *testing.T) {
	reported := make(chan []string, 4)
	nc, subj, clock, reg := registryOnFakeClock(t, func(o *Options) {
		o.OnOrphans = func(_ Worker, instances []string) { reported <- instances }
	})
	id := uuid.NewString()
	register(t, nc, subj, id, "gpu-a")
	reg.Own("target-mine")
	beat := func() {
		t.Helper()
		hb, err := protocol.Encode(&protocol.Heartbeat{WorkerID: id, Host: "gpu-a", Sent: clock.Now(), Stages: []protocol.StageStatus{
			{WorkerID: id, Instance: "target-mine", Stage: 0, Stages: 1, State: protocol.StageReady},
			{WorkerID: id, Instance: "target-left", Stage: 0, Stages: 2, State: protocol.StageReady},
			{WorkerID: id, Instance: "target-left", Stage: 1, Stages: 2, State: protocol.StageStarting},
			{WorkerID: id, Instance: "drafter-ended", Stage: 0, Stages: 1, State: protocol.StageExited},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Request(subj.WorkerHeartbeat(id), hb, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(want []string) {
		t.Helper()
		select {
		case got := <-reported:
			if !slices.Equal(got, want) {
				t.Errorf("orphans %v, want %v", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no orphans reported, want %v", want)
		}
	}
	beat()
	expect([]string{"target-left"})
	beat() // within orphanRetry: not again
	clock.Add(orphanRetry + time.Second)
	beat()
	expect([]string{"target-left"})
	reg.Disown("target-mine")
	clock.Add(orphanRetry + time.Second)
	beat()
	expect([]string{"target-mine", "target-left"})
	select {
	case got := <-reported:
		t.Errorf("reported %v more than once per interval", got)
	default:
	}
}

// registryOnFakeClock is a registry on an embedded server, its clock moved by
// the test, with a heartbeat interval of one second.
func registryOnFakeClock(t *testing.T, tweak ...func(*Options)) (*nats.Conn, protocol.Subjects, *fakeClock, *Registry) {
	t.Helper()
	_, nc := natstest.Start(t, natsrv.Options{})
	var subj protocol.Subjects
	clock := &fakeClock{t: time.Unix(1000, 0)}
	opt := Options{Heartbeat: time.Second, Now: clock.Now}
	for _, f := range tweak {
		f(&opt)
	}
	reg, err := NewRegistry(nc, subj, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	return nc, subj, clock, reg
}

// register registers a worker with one CPU device, as an agent would.
func register(t *testing.T, nc *nats.Conn, subj protocol.Subjects, id, host string) {
	t.Helper()
	data, err := protocol.Encode(&protocol.Registration{WorkerID: id, Host: host, BuildVersion: "test", StepVersion: protocol.StepVersion,
		Devices: []protocol.Device{{Index: 0, Name: "cpu", MemoryBytes: 1 << 30, Kind: protocol.DeviceCPU}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Request(subj.WorkersRegister(), data, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestHostNameTaken: a second live worker may not register under a host
// name in use (devices are addressed as host:index); once the first is lost,
// it may.
func TestHostNameTaken(t *testing.T) {
	nc, subj, clock, reg := registryOnFakeClock(t)
	first := uuid.NewString()
	register(t, nc, subj, first, "gpu-a")
	second := uuid.NewString()
	try := func() string {
		t.Helper()
		data, err := protocol.Encode(&protocol.Registration{WorkerID: second, Host: "gpu-a", BuildVersion: "test", StepVersion: protocol.StepVersion,
			Devices: []protocol.Device{{Index: 0, Name: "cpu", MemoryBytes: 1 << 30, Kind: protocol.DeviceCPU}}})
		if err != nil {
			t.Fatal(err)
		}
		msg, err := nc.Request(subj.WorkersRegister(), data, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var rep protocol.RegisterReply
		if err := protocol.Decode(msg.Data, &rep); err != nil {
			t.Fatal(err)
		}
		return rep.Error
	}
	// The first may be a crashed process the second replaces: until it
	// has been heard from again, the refusal is not final.
	clock.Add(500 * time.Millisecond)
	if got, want := try(), `the host name "gpu-a" is held by worker `+first+`, last heard from 500ms ago: waiting to see whether it is gone (a worker silent for 3s is lost)`; got != want {
		t.Errorf("second worker on gpu-a: %q, want %q", got, want)
	}
	if got := try(); strings.HasPrefix(got, HostTaken) {
		t.Errorf("refused for good while the holder is silent: %q", got)
	}
	// A heartbeat of the first after the second's first try: it is alive.
	beat := func(id string) *protocol.Ack {
		t.Helper()
		hb, err := protocol.Encode(&protocol.Heartbeat{WorkerID: id, Host: "gpu-a", Sent: clock.Now()})
		if err != nil {
			t.Fatal(err)
		}
		msg, err := nc.Request(subj.WorkerHeartbeat(id), hb, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var ack protocol.Ack
		if err := protocol.Decode(msg.Data, &ack); err != nil {
			t.Fatal(err)
		}
		return &ack
	}
	clock.Add(500 * time.Millisecond)
	beat(first)
	if got, want := try(), `host name taken: "gpu-a" belongs to worker `+first+`, which is alive (it sent a heartbeat after this worker first asked): give each worker its own --name`; got != want {
		t.Errorf("second worker on gpu-a once the first beat: %q, want %q", got, want)
	}
	clock.Add(4 * time.Second)
	reg.Check() // the first is lost
	if got := try(); got != "" {
		t.Errorf("after the first was lost: %q, want success", got)
	}
	// The lost worker is replaced, not listed beside its successor.
	if ws := reg.Workers(); len(ws) != 1 || ws[0].ID != second || ws[0].Lost {
		t.Errorf("workers after the replacement: %+v, want only %s, alive", ws, second)
	}
	// The first comes back: it is told to register again (and would be refused).
	if ack := beat(first); !strings.HasPrefix(ack.Error, protocol.UnknownWorker) {
		t.Errorf("the first worker back: %+v; want %s", ack, protocol.UnknownWorker)
	}
	hosts := 0
	for _, w := range reg.Alive() {
		if w.Host == "gpu-a" {
			hosts++
		}
	}
	if hosts != 1 {
		t.Errorf("%d live workers on gpu-a, want 1", hosts)
	}
}
