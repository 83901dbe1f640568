package agent

import (
	"context"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/protocol"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestNewChecksConfig(t *testing.T) {
	nc := connect(t, startServer(t, natsrv.Options{}).ClientURL(), "test", "")
	devs := CPUDevices(1, 1<<30)
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"no connection", Config{Devices: devs}, "no NATS connection"},
		{"no devices", Config{Conn: nc}, "no devices"},
		{"bad worker id", Config{Conn: nc, Devices: devs, WorkerID: "w1"}, `worker_id "w1" is not a UUID`},
		{"repeated device", Config{Conn: nc, Devices: append(devs, devs...)}, "device index 0 is listed twice"},
		{"token and creds", Config{Conn: nc, Devices: devs, Token: "t", CredsFile: "c"}, "not both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New() error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestRegistration(t *testing.T) {
	srv := startServer(t, natsrv.Options{})
	subj, err := protocol.NewSubjects("acme.bench")
	if err != nil {
		t.Fatal(err)
	}
	ctl := newController(t, connect(t, srv.ClientURL(), "controller", ""), subj, 1000).listen()
	log, _ := testLogger(t)
	devs := CPUDevices(2, 8<<30)
	a, err := New(Config{
		Conn:     connect(t, srv.ClientURL(), "agent", ""),
		Subjects: subj,
		Name:     "host-a",
		Devices:  devs,
		Version:  "v1.2.3",
		Logger:   log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := uuid.Parse(a.ID()); err != nil {
		t.Fatalf("worker id %q: %v", a.ID(), err)
	}
	runAgent(t, a)

	got := ctl.registration()
	want := &protocol.Registration{V: protocol.Version, WorkerID: a.ID(), Host: "host-a", Devices: devs, BuildVersion: "v1.2.3", StepVersion: protocol.StepVersion}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("registration\n%+v\nwant\n%+v", got, want)
	}
	for _, d := range got.Devices {
		if d.Kind != protocol.DeviceCPU || d.MemoryBytes != 4<<30 {
			t.Errorf("device %+v: want a CPU device with half of the 8 GiB", d)
		}
	}
	hb := recv(t, ctl.beats, "heartbeat")
	if hb.WorkerID != a.ID() || hb.Host != "host-a" || len(hb.Stages) != 0 {
		t.Errorf("heartbeat %+v: want worker %s on host-a with no stages", hb, a.ID())
	}
}

// TestHeartbeatsOnTime drives the agent's clock by hand: the heartbeats
// carry exactly the times the intervals end at, and the interval is the
// shorter of the agent's and the controller's.
func TestHeartbeatsOnTime(t *testing.T) {
	tests := []struct {
		name         string
		agent        time.Duration
		controllerMS int64
		want         time.Duration
	}{
		{"agent's interval", time.Second, 5000, time.Second},
		{"controller asks for less", time.Second, 250, 250 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, natsrv.Options{})
			ctl := newController(t, connect(t, srv.ClientURL(), "controller", ""), protocol.Subjects{}, tt.controllerMS).listen()
			clock := newFakeClock(t0)
			log, _ := testLogger(t)
			a, err := New(Config{Conn: connect(t, srv.ClientURL(), "agent", ""), Name: "h", Devices: CPUDevices(1, 1<<30),
				Heartbeat: tt.agent, Clock: clock, Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			runAgent(t, a)
			ctl.registration()
			// The first heartbeat follows the registration at once.
			if hb := recv(t, ctl.beats, "heartbeat"); !hb.Sent.Equal(t0) {
				t.Fatalf("first heartbeat sent at %s, want %s", hb.Sent, t0)
			}
			for i := 1; i <= 3; i++ {
				if d := clock.next(t); d != tt.want {
					t.Fatalf("heartbeat %d: the agent waits %s, want %s", i, d, tt.want)
				}
				hb := recv(t, ctl.beats, "heartbeat")
				if want := t0.Add(time.Duration(i) * tt.want); !hb.Sent.Equal(want) {
					t.Errorf("heartbeat %d sent at %s, want %s", i, hb.Sent, want)
				}
			}
		})
	}
}

// TestRegistrationBackoff starts the agent before its controller: it retries
// with waits doubling from 250ms up to 10s, and registers once the
// controller answers.
func TestRegistrationBackoff(t *testing.T) {
	srv := startServer(t, natsrv.Options{})
	ctl := newController(t, connect(t, srv.ClientURL(), "controller", ""), protocol.Subjects{}, 1000)
	clock := newFakeClock(t0)
	log, _ := testLogger(t)
	a, err := New(Config{Conn: connect(t, srv.ClientURL(), "agent", ""), Name: "h", Devices: CPUDevices(1, 1<<30), Clock: clock, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	runAgent(t, a)
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second,
		4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for i, w := range want {
		tm := clock.waiting(t) // the agent has failed once more and waits
		if i == len(want)-1 {
			ctl.listen() // the controller comes up during the last wait
		}
		if d := clock.fire(tm); d != w {
			t.Fatalf("wait %d before registering again is %s, want %s", i+1, d, w)
		}
	}
	if reg := ctl.registration(); reg.WorkerID != a.ID() {
		t.Errorf("registered worker %s, want %s", reg.WorkerID, a.ID())
	}
}

func TestRegistersAgain(t *testing.T) {
	tests := []struct {
		name string
		// provoke makes the agent register again; the controller answers
		// heartbeats with answer.
		answer  func(*protocol.Heartbeat) *protocol.Ack
		provoke func(t *testing.T, srv *natsrv.Server) *natsrv.Server
	}{
		{
			name: "controller does not know the worker",
			answer: func() func(*protocol.Heartbeat) *protocol.Ack {
				n := 0
				return func(hb *protocol.Heartbeat) *protocol.Ack {
					if n++; n == 1 {
						return &protocol.Ack{Error: UnknownWorker + " " + hb.WorkerID}
					}
					return &protocol.Ack{}
				}
			}(),
		},
		{
			name: "NATS reconnect",
			provoke: func(t *testing.T, srv *natsrv.Server) *natsrv.Server {
				u, err := url.Parse(srv.ClientURL())
				if err != nil {
					t.Fatal(err)
				}
				port, err := strconv.Atoi(u.Port())
				if err != nil {
					t.Fatal(err)
				}
				srv.Shutdown()
				return startServer(t, natsrv.Options{Port: port})
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, natsrv.Options{})
			ctl := newController(t, connect(t, srv.ClientURL(), "controller", ""), protocol.Subjects{}, 20)
			ctl.answer = tt.answer
			ctl.listen()
			log, _ := testLogger(t)
			a, err := New(Config{Conn: connect(t, srv.ClientURL(), "agent", ""), Name: "h", Devices: CPUDevices(1, 1<<30), Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			runAgent(t, a)
			first := ctl.registration()
			recv(t, ctl.beats, "heartbeat")
			if tt.provoke != nil {
				tt.provoke(t, srv)
			}
			again := ctl.registration()
			if again.WorkerID != first.WorkerID {
				t.Errorf("registered again as %s, want the same worker id %s", again.WorkerID, first.WorkerID)
			}
			ctl.beat("after registering again", func(hb *protocol.Heartbeat) bool { return hb.WorkerID == a.ID() })
		})
	}
}

// TestRunEndsWhenConnectionCloses: an agent whose connection is gone for
// good stops, with an error, instead of retrying forever.
func TestRunEndsWhenConnectionCloses(t *testing.T) {
	srv := startServer(t, natsrv.Options{})
	ctl := newController(t, connect(t, srv.ClientURL(), "controller", ""), protocol.Subjects{}, 20).listen()
	nc, err := natsrv.Connect(srv.ClientURL(), natsrv.ConnectOptions{Name: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	log, _ := testLogger(t)
	a, err := New(Config{Conn: nc, Name: "h", Devices: CPUDevices(1, 1<<30), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(context.Background()) }()
	ctl.registration()
	nc.Close()
	if err := recv(t, done, "end of Run"); err == nil || !strings.Contains(err.Error(), "NATS connection closed") {
		t.Errorf("Run() = %v, want an error saying the connection closed", err)
	}
}

// TestGPUOptionsReachGPUStages: the CUDA modes an agent is started with go
// into its registration (so results list them) and on the command lines of
// its GPU stages, and not on its CPU stages'.
func TestGPUOptionsReachGPUStages(t *testing.T) {
	nc := connect(t, startServer(t, natsrv.Options{}).ClientURL(), "test", "")
	for _, tt := range []struct {
		gpu  GPUOptions
		want []string
	}{
		{GPUOptions{}, nil},
		{GPUOptions{Graphs: true}, []string{"--cuda-graphs"}},
		{GPUOptions{Graphs: true, TuneGEMM: true, BatchInvariant: true}, []string{"--cuda-graphs", "--tune-gemm", "--batch-invariant"}},
	} {
		gpus := []protocol.Device{{Index: 0, Kind: protocol.DeviceGPU, Name: "a GPU", MemoryBytes: 1 << 30}}
		a, err := New(Config{Conn: nc, Devices: gpus, GPU: tt.gpu, StageCommand: []string{"worker", "stage"}})
		if err != nil {
			t.Fatal(err)
		}
		var reg protocol.Registration
		if err := protocol.Decode(a.registration, &reg); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(reg.CUDAModes, tt.gpu.Modes()) || len(reg.CUDAModes) != len(tt.want) {
			t.Errorf("%+v: registration lists CUDA modes %v", tt.gpu, reg.CUDAModes)
		}
		// A worker without a GPU registers none: they would describe nothing it runs.
		cpuOnly, err := New(Config{Conn: nc, Devices: CPUDevices(1, 1<<30), GPU: tt.gpu})
		if err != nil {
			t.Fatal(err)
		}
		var creg protocol.Registration
		if err := protocol.Decode(cpuOnly.registration, &creg); err != nil || creg.CUDAModes != nil {
			t.Errorf("%+v: a CPU-only worker registers CUDA modes %v (%v)", tt.gpu, creg.CUDAModes, err)
		}
		as := &protocol.Assignment{Instance: "m", Devices: []int{0}}
		gpu := strings.Join(a.stageArgs(as, "f.json", protocol.DeviceGPU), " ")
		cpu := strings.Join(a.stageArgs(as, "f.json", protocol.DeviceCPU), " ")
		for _, flag := range []string{"--cuda-graphs", "--tune-gemm", "--batch-invariant"} {
			if want := slices.Contains(tt.want, flag); strings.Contains(gpu, flag) != want {
				t.Errorf("%+v: GPU stage args %q: %s present %v, want %v", tt.gpu, gpu, flag, !want, want)
			}
			if strings.Contains(cpu, flag) {
				t.Errorf("%+v: CPU stage args %q carry %s", tt.gpu, cpu, flag)
			}
		}
	}
}

// TestLeavesOnShutdown: an agent stopped through its context sends a last
// heartbeat marked Leaving, so the controller need not wait for silence.
func TestLeavesOnShutdown(t *testing.T) {
	srv := startServer(t, natsrv.Options{})
	ctl := newController(t, connect(t, srv.ClientURL(), "controller", ""), protocol.Subjects{}, 1000).listen()
	log, _ := testLogger(t)
	a, err := New(Config{Conn: connect(t, srv.ClientURL(), "agent", ""), Name: "host-a", Devices: CPUDevices(1, 1<<30), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	ctl.registration()
	if hb := recv(t, ctl.beats, "heartbeat"); hb.Leaving {
		t.Errorf("a running agent's heartbeat is marked leaving: %+v", hb)
	}
	cancel()
	if err := recv(t, done, "Run's end"); err != nil {
		t.Errorf("Run() = %v", err)
	}
	ctl.beat("marked leaving", func(hb *protocol.Heartbeat) bool { return hb.Leaving && hb.WorkerID == a.ID() })
}
