package gpumon

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// fakeClock is a clock the test moves by hand; its tickers tick when the test sends on them.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	tickers chan *fakeTicker // every ticker made, so the test can drive it
}

func newFakeClock(t0 time.Time) *fakeClock {
	return &fakeClock{now: t0, tickers: make(chan *fakeTicker, 8)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func (c *fakeClock) NewTicker(d time.Duration) Ticker {
	tk := &fakeTicker{ch: make(chan time.Time), ready: make(chan struct{}, 1), period: d}
	c.tickers <- tk
	return tk
}

type fakeTicker struct {
	ch chan time.Time
	// ready is signalled each time the consumer asks for the channel, that is when it has
	// finished with the previous tick, so the test changes nothing while a tick is handled.
	ready  chan struct{}
	period time.Duration
}

func (t *fakeTicker) C() <-chan time.Time {
	select {
	case t.ready <- struct{}{}:
	default:
	}
	return t.ch
}

func (t *fakeTicker) Stop() {}

// t0 is the start of every scripted run; the 2025 date keeps the golden files readable.
var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

const step = time.Second

func at(tick int) time.Time { return t0.Add(time.Duration(tick) * step) }

// devScript is what one mock device reports, per tick (per interval for energy).
type devScript struct {
	powerW     []float64 // reading at each tick
	energyJ    []float64 // counter increase over each interval; nil: counter NOT_SUPPORTED
	util       []uint32
	memUsedGiB []uint64
	tempC      []uint32 // nil: temperature NOT_SUPPORTED
	throttle   []uint64
}

// scriptedHost is an 8-GPU dgxh100 mock whose readings follow scripts, indexed by the tick
// the fake clock is at.
type scriptedHost struct {
	srv *server.Server
	clk *fakeClock
}

const counterBaseMJ = 1_000_000_000 // a counter that has been running for a while

func newScriptedHost(t *testing.T, scripts []devScript) *scriptedHost {
	t.Helper()
	h := &scriptedHost{srv: dgxh100.New(), clk: newFakeClock(t0)}
	if len(h.srv.Devices) != len(scripts) {
		t.Fatalf("dgxh100 mock has %d devices, scripts for %d", len(h.srv.Devices), len(scripts))
	}
	tick := func() int { return int(h.clk.Now().Sub(t0) / step) }
	for i, sc := range scripts {
		d := h.srv.Devices[i].(*server.Device)
		d.UUID = fmt.Sprintf("GPU-00000000-0000-0000-0000-%012d", i) // the mock's are random
		d.GetPowerUsageFunc = func() (uint32, nvml.Return) {
			return uint32(sc.powerW[tick()] * 1000), nvml.SUCCESS
		}
		d.GetTotalEnergyConsumptionFunc = func() (uint64, nvml.Return) {
			if sc.energyJ == nil {
				return 0, nvml.ERROR_NOT_SUPPORTED
			}
			mj := uint64(counterBaseMJ + i*1_000_000)
			for k := range tick() {
				mj += uint64(sc.energyJ[k] * 1000)
			}
			return mj, nvml.SUCCESS
		}
		d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: sc.util[tick()], Memory: sc.util[tick()] / 2}, nvml.SUCCESS
		}
		d.GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) {
			used := sc.memUsedGiB[tick()] << 30
			return nvml.Memory{Total: 80 << 30, Used: used, Free: 80<<30 - used}, nvml.SUCCESS
		}
		d.GetTemperatureFunc = func(s nvml.TemperatureSensors) (uint32, nvml.Return) {
			if sc.tempC == nil || s != nvml.TEMPERATURE_GPU {
				return 0, nvml.ERROR_NOT_SUPPORTED
			}
			return sc.tempC[tick()], nvml.SUCCESS
		}
		d.GetClockInfoFunc = func(c nvml.ClockType) (uint32, nvml.Return) {
			if c != nvml.CLOCK_SM {
				return 0, nvml.ERROR_INVALID_ARGUMENT
			}
			return 1980, nvml.SUCCESS
		}
		d.GetCurrentClocksEventReasonsFunc = func() (uint64, nvml.Return) {
			return sc.throttle[tick()], nvml.SUCCESS
		}
	}
	return h
}

// device returns the mock device at index i, to inspect its calls.
func (h *scriptedHost) device(i int) *server.Device { return h.srv.Devices[i].(*server.Device) }

// plus adds d to every element.
func plus[T uint32 | uint64 | float64](xs []T, d T) []T {
	out := make([]T, len(xs))
	for i, x := range xs {
		out[i] = x + d
	}
	return out
}

func repeat[T any](v T, n int) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// dgxScripts is the 6:2 multi_gpu_ratio run: devices 0-5 hold the target, 6-7 the drafter.
// Ticks 0-1 are the idle baseline, 2-4 the speculative phase, 5-7 target AR, 8 idle again.
// Device 3 has no temperature sensor reading; device 7 has no energy counter.
func dgxScripts() []devScript {
	targetW := []float64{70, 71, 390, 400, 410, 480, 500, 520, 72}
	drafterW := []float64{60, 62, 250, 270, 230, 64, 60, 58, 61}
	scripts := make([]devScript, 8)
	for d := range 6 {
		spec, ar := 400+10*float64(d), 500+10*float64(d)
		scripts[d] = devScript{
			powerW:     plus(targetW, float64(d)),
			energyJ:    []float64{70, 70, spec, spec, spec, ar, ar, ar},
			util:       []uint32{0, 0, 90, 95, 100, 80, 85, 90, 0},
			memUsedGiB: []uint64{1, 1, 40, 40, 40, 40, 40, 44, 1},
			tempC:      []uint32{35, 36, 60, 65, 70, 68, 72, 75, 50},
			throttle:   []uint64{0, 0, 0, 0x4, 0, 0, 0, 0, 0},
		}
	}
	scripts[3].tempC = nil
	for d := 6; d < 8; d++ {
		scripts[d] = devScript{
			powerW:     drafterW,
			energyJ:    []float64{60, 60, 250, 250, 250, 60, 60, 60},
			util:       []uint32{0, 0, 60, 70, 65, 0, 0, 0, 0},
			memUsedGiB: []uint64{1, 1, 8, 8, 8, 8, 8, 8, 1},
			tempC:      []uint32{34, 35, 50, 55, 52, 45, 44, 43, 40},
			throttle:   repeat[uint64](0, 9),
		}
	}
	scripts[7].energyJ = nil
	return scripts
}

func ptr[T any](v T) *T { return &v }
