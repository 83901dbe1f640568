package agent

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/gpumon"
	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/protocol"
)

// gpuClock is a clock for the GPU monitor that the test sets by hand; GPU reads take no ticks.
type gpuClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *gpuClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *gpuClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func (c *gpuClock) NewTicker(time.Duration) gpumon.Ticker {
	panic("a GPU read must not start a ticker")
}

// TestServeGPUReads: a GPU read on the worker's gpu_read subject is answered with the energy
// counter and power of every monitored GPU, read when the request arrives (a later read sees
// the counter risen), named as the periodic samples are; a closed monitor and a bad request
// get a reply that says why, and after Unsubscribe nobody answers.
func TestServeGPUReads(t *testing.T) {
	srv := startServer(t, natsrv.Options{})
	ctl := connect(t, srv.ClientURL(), "controller", "")
	wrk := connect(t, srv.ClientURL(), "worker", "")
	subj, err := protocol.NewSubjects("acme.bench")
	if err != nil {
		t.Fatal(err)
	}
	const worker = "0b6f2d8e-5a57-4f3a-9d7e-1c2b3a4d5e6f"

	// Devices 1 and 4 of a DGX H100 are monitored; device 4 has no energy counter. The
	// counter of device 1 rises by 250 J per request answered.
	lib := dgxh100.New()
	var mu sync.Mutex
	counterMJ := uint64(7_000_000_000)
	for i, d := range lib.Devices {
		d := d.(*server.Device)
		watts := uint32(100_000 + 1000*i)
		d.GetPowerUsageFunc = func() (uint32, nvml.Return) { return watts, nvml.SUCCESS }
		d.GetTotalEnergyConsumptionFunc = func() (uint64, nvml.Return) {
			if i == 4 {
				return 0, nvml.ERROR_NOT_SUPPORTED
			}
			mu.Lock()
			defer mu.Unlock()
			return counterMJ, nvml.SUCCESS
		}
		d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{Gpu: 90}, nvml.SUCCESS }
		d.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 55, nvml.SUCCESS }
		d.GetClockInfoFunc = func(nvml.ClockType) (uint32, nvml.Return) { return 1980, nvml.SUCCESS }
		d.GetCurrentClocksEventReasonsFunc = func() (uint64, nvml.Return) { return 0, nvml.SUCCESS }
	}
	clk := &gpuClock{now: t0}
	mon, err := gpumon.Open(lib, []int{1, 4}, gpumon.WithHost("gpu-node-2"), gpumon.WithClock(clk))
	if err != nil || !mon.Available() {
		t.Fatalf("gpumon.Open: %v (%s)", err, mon.Reason())
	}
	log, _ := testLogger(t)
	sub, err := ServeGPUReads(wrk, subj, worker, mon, log)
	if err != nil {
		t.Fatal(err)
	}
	// The controller asks on another connection: the server must know the subscription first.
	if err := wrk.Flush(); err != nil {
		t.Fatal(err)
	}

	ask := func(data []byte) *protocol.GPUReadReply {
		t.Helper()
		m, err := ctl.Request(subj.WorkerGPURead(worker), data, 5*time.Second)
		if err != nil {
			t.Fatalf("GPU read request: %v", err)
		}
		var r protocol.GPUReadReply
		if err := protocol.Decode(m.Data, &r); err != nil {
			t.Fatalf("GPU read reply %s: %v", m.Data, err)
		}
		return &r
	}
	read, err := protocol.Encode(&protocol.GPURead{})
	if err != nil {
		t.Fatal(err)
	}
	uuid := func(i int) string { u, _ := lib.Devices[i].GetUUID(); return u }
	name := func(i int) string { n, _ := lib.Devices[i].GetName(); return n }
	ptr := func(v float64) *float64 { return &v }
	for k, at := range []time.Time{t0.Add(200 * time.Millisecond), t0.Add(450 * time.Millisecond)} {
		clk.set(at)
		mj := 7_000_000_000 + uint64(k)*250_000
		mu.Lock()
		counterMJ = mj
		mu.Unlock()
		want := []gpumon.Sample{
			{Host: "gpu-node-2", Device: 1, UUID: uuid(1), Name: name(1), T: at, PowerW: ptr(101), EnergyMJ: &mj},
			// Only the counter and the power are read: no utilisation, temperature, clocks.
			{Host: "gpu-node-2", Device: 4, UUID: uuid(4), Name: name(4), T: at, PowerW: ptr(104)},
		}
		got := ask(read)
		if got.Error != "" || !reflect.DeepEqual(got.Samples, want) {
			g, _ := json.Marshal(got.Samples)
			w, _ := json.Marshal(want)
			t.Errorf("read %d: samples %s, error %q; want %s", k, g, got.Error, w)
		}
	}

	t.Run("bad request", func(t *testing.T) {
		got := ask([]byte(`{"v":2}`))
		if len(got.Samples) != 0 || !strings.Contains(got.Error, "version 2") {
			t.Errorf("reply to a version 2 request: %+v; want an error naming the version", got)
		}
	})
	t.Run("closed monitor", func(t *testing.T) {
		if err := mon.Close(); err != nil {
			t.Fatal(err)
		}
		got := ask(read)
		if len(got.Samples) != 0 || !strings.Contains(got.Error, "gpu-node-2: the monitor is closed") {
			t.Errorf("reply of a closed monitor: %+v; want the reason", got)
		}
	})
	t.Run("unsubscribed", func(t *testing.T) {
		if err := sub.Unsubscribe(); err != nil {
			t.Fatal(err)
		}
		wrk.Flush()
		if _, err := ctl.Request(subj.WorkerGPURead(worker), read, 5*time.Second); !errors.Is(err, nats.ErrNoResponders) {
			t.Errorf("request after Unsubscribe: %v; want no responders", err)
		}
	})
}
