package gpumon

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
)

func TestOpenUnavailable(t *testing.T) {
	tests := []struct {
		name       string
		ret        nvml.Return
		wantReason string
	}{
		{"no library", nvml.ERROR_LIBRARY_NOT_FOUND, "NVML: libnvidia-ml.so.1 not found (is the NVIDIA driver installed?)"},
		{"driver not loaded", nvml.ERROR_DRIVER_NOT_LOADED, "NVML: the NVIDIA driver is not loaded"},
		{"no permission", nvml.ERROR_NO_PERMISSION, "NVML: no permission to open the GPUs"},
		{"version mismatch", nvml.ERROR_LIB_RM_VERSION_MISMATCH, "NVML: the driver library and the kernel module versions differ (reboot or reload the driver)"},
		{"other", nvml.ERROR_UNKNOWN, "NVML: Init failed: ERROR_UNKNOWN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := dgxh100.New()
			srv.InitFunc = func() nvml.Return { return tt.ret }
			m, err := Open(srv, nil, WithHost("node-a"))
			if err != nil {
				t.Fatalf("Open: %v, want an unavailable monitor and no error", err)
			}
			assertUnavailable(t, m, tt.wantReason)
			if n := len(srv.DeviceGetCountCalls()); n != 0 {
				t.Errorf("DeviceGetCount called %d times after Init failed", n)
			}
		})
	}
}

// assertUnavailable checks every entry point of an unavailable monitor: none may crash.
func assertUnavailable(t *testing.T, m *Monitor, wantReason string) {
	t.Helper()
	if m.Available() {
		t.Fatal("Available() = true, want false")
	}
	if m.Reason() != wantReason {
		t.Errorf("Reason() = %q, want %q", m.Reason(), wantReason)
	}
	if len(m.Devices()) != 0 {
		t.Errorf("Devices() = %v, want none", m.Devices())
	}
	if _, err := m.Sweep(); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), wantReason) {
		t.Errorf("Sweep error = %v, want ErrUnavailable with the reason", err)
	}
	if err := m.Run(context.Background(), step, func(Sample) { t.Error("Run sampled an unavailable monitor") }); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Run error = %v, want ErrUnavailable", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestOpenNVMLWithoutDriver goes through the real go-nvml library (dlopen), pointed at a file
// that does not exist, so it behaves as on a host without the driver wherever it runs.
func TestOpenNVMLWithoutDriver(t *testing.T) {
	lib := filepath.Join(t.TempDir(), "libnvidia-ml.so.1")
	m, err := OpenNVML(nil, WithHost("cpu-box"), WithLibraryPath(lib))
	if err != nil {
		t.Fatalf("OpenNVML: %v", err)
	}
	assertUnavailable(t, m, "NVML: "+lib+" not found (is the NVIDIA driver installed?)")
}

// TestOpenNVMLDefault opens the system's NVML. Without a driver (CI, this project's build
// machines) it must say so; with one it must find devices that sample.
func TestOpenNVMLDefault(t *testing.T) {
	m, err := OpenNVML(nil, WithHost("this-host"))
	if err != nil {
		t.Fatalf("OpenNVML: %v", err)
	}
	defer m.Close()
	if !m.Available() {
		if !strings.HasPrefix(m.Reason(), "NVML: ") {
			t.Errorf("Reason() = %q, want an NVML reason", m.Reason())
		}
		return
	}
	samples, err := m.Sweep()
	if err != nil {
		t.Fatalf("Sweep with a driver: %v", err)
	}
	if len(samples) == 0 || len(samples) != len(m.Devices()) {
		t.Fatalf("Sweep gave %d samples for %d devices", len(samples), len(m.Devices()))
	}
	for _, s := range samples {
		if !strings.HasPrefix(s.UUID, "GPU-") || s.PowerW == nil {
			t.Errorf("sample of device %d: uuid %q, power %v; want a GPU UUID and a power reading", s.Device, s.UUID, s.PowerW)
		}
	}
}

func TestOpenDevices(t *testing.T) {
	tests := []struct {
		name    string
		devices []int
		want    []int
		wantErr string
	}{
		{"all by default", nil, []int{0, 1, 2, 3, 4, 5, 6, 7}, ""},
		{"drafter pair", []int{6, 7}, []int{6, 7}, ""},
		{"given order kept", []int{5, 0}, []int{5, 0}, ""},
		{"past the end", []int{0, 8}, nil, "gpumon: device 8 of node-a: NVML reports 8 devices (0-7)"},
		{"negative", []int{-1}, nil, "gpumon: device -1 of node-a: NVML reports 8 devices (0-7)"},
		{"listed twice", []int{6, 7, 6}, nil, "gpumon: device 6 of node-a is listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newScriptedHost(t, dgxScripts())
			m, err := Open(h.srv, tt.devices, WithHost("node-a"), WithClock(h.clk))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Open error = %v, want %q", err, tt.wantErr)
				}
				if n := len(h.srv.ShutdownCalls()); n != 1 {
					t.Errorf("Shutdown called %d times after a failed Open, want 1", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			var got []int
			for _, d := range m.Devices() {
				got = append(got, d.Index)
				if d.UUID != h.device(d.Index).UUID || d.Name != "NVIDIA H100 80GB HBM3" || d.MemTotalBytes != 80<<30 {
					t.Errorf("device %d = %+v, want the mock's UUID, name and 80 GiB", d.Index, d)
				}
				wantMethod := EnergyCounter
				if d.Index == 7 {
					wantMethod = EnergyPowerIntegral
				}
				if d.EnergyMethod != wantMethod {
					t.Errorf("device %d energy method = %q, want %q", d.Index, d.EnergyMethod, wantMethod)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("devices = %v, want %v", got, tt.want)
			}
			if err := m.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if err := m.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if n := len(h.srv.ShutdownCalls()); n != 1 {
				t.Errorf("Shutdown called %d times, want 1", n)
			}
			if _, err := m.Sweep(); err == nil {
				t.Error("Sweep after Close succeeded")
			}
		})
	}
}

func TestOpenDeviceCountFails(t *testing.T) {
	srv := dgxh100.New()
	srv.DeviceGetCountFunc = func() (int, nvml.Return) { return 0, nvml.ERROR_GPU_IS_LOST }
	_, err := Open(srv, nil, WithHost("node-a"))
	if !errors.Is(err, nvml.ERROR_GPU_IS_LOST) || !strings.Contains(err.Error(), "counting the devices of node-a") {
		t.Fatalf("Open error = %v, want the wrapped GPU_IS_LOST naming the host", err)
	}
}

func TestSweepReadings(t *testing.T) {
	tests := []struct {
		name   string
		device int
		tick   int
		want   Sample
	}{
		{
			name: "target device mid speculative phase", device: 0, tick: 3,
			want: Sample{PowerW: ptr(400.0), EnergyMJ: ptr(uint64(counterBaseMJ + 540_000)),
				GPUUtil: ptr(uint32(95)), MemUtil: ptr(uint32(47)), MemUsedBytes: ptr(uint64(40 << 30)),
				MemTotalBytes: ptr(uint64(80 << 30)), TempC: ptr(uint32(65)), SMClockMHz: ptr(uint32(1980)),
				Throttle: ptr(uint64(0x4))},
		},
		{
			name: "no temperature reading: absent, not zero", device: 3, tick: 0,
			want: Sample{PowerW: ptr(73.0), EnergyMJ: ptr(uint64(counterBaseMJ + 3_000_000)),
				GPUUtil: ptr(uint32(0)), MemUtil: ptr(uint32(0)), MemUsedBytes: ptr(uint64(1 << 30)),
				MemTotalBytes: ptr(uint64(80 << 30)), SMClockMHz: ptr(uint32(1980)), Throttle: ptr(uint64(0))},
		},
		{
			name: "no energy counter: absent", device: 7, tick: 2,
			want: Sample{PowerW: ptr(250.0), GPUUtil: ptr(uint32(60)), MemUtil: ptr(uint32(30)),
				MemUsedBytes: ptr(uint64(8 << 30)), MemTotalBytes: ptr(uint64(80 << 30)), TempC: ptr(uint32(50)),
				SMClockMHz: ptr(uint32(1980)), Throttle: ptr(uint64(0))},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newScriptedHost(t, dgxScripts())
			m, err := Open(h.srv, []int{tt.device}, WithHost("node-a"), WithClock(h.clk))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			h.clk.Set(at(tt.tick))
			got, err := m.Sweep()
			if err != nil {
				t.Fatalf("Sweep: %v", err)
			}
			want := tt.want
			want.Host, want.Device, want.UUID, want.Name, want.T = "node-a", tt.device, h.device(tt.device).UUID, "NVIDIA H100 80GB HBM3", at(tt.tick)
			if len(got) != 1 {
				t.Fatalf("Sweep gave %d samples, want 1", len(got))
			}
			assertSample(t, got[0], want)
		})
	}
}

func assertSample(t *testing.T, got, want Sample) {
	t.Helper()
	g, err1 := jsonOf(got)
	w, err2 := jsonOf(want)
	if err1 != nil || err2 != nil {
		t.Fatalf("marshal: %v %v", err1, err2)
	}
	if g != w {
		t.Errorf("sample =\n%s\nwant\n%s", g, w)
	}
}

// TestUnsupportedAskedOnce checks that a NOT_SUPPORTED reading is not asked for at every tick,
// while a transient failure is retried and only that sample loses the reading.
func TestUnsupportedAskedOnce(t *testing.T) {
	h := newScriptedHost(t, dgxScripts())
	failures := 1
	h.device(0).GetPowerUsageFunc = func() (uint32, nvml.Return) {
		if h.clk.Now().Equal(at(1)) && failures > 0 {
			failures--
			return 0, nvml.ERROR_UNKNOWN
		}
		return 123_456, nvml.SUCCESS
	}
	m, err := Open(h.srv, []int{0, 3}, WithHost("node-a"), WithClock(h.clk))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	var power []*float64
	for tick := range 3 {
		h.clk.Set(at(tick))
		ss, err := m.Sweep()
		if err != nil {
			t.Fatalf("Sweep: %v", err)
		}
		power = append(power, ss[0].PowerW)
		if ss[1].TempC != nil {
			t.Errorf("tick %d: device 3 temperature = %d, want absent", tick, *ss[1].TempC)
		}
	}
	if n := len(h.device(3).GetTemperatureCalls()); n != 1 {
		t.Errorf("device 3 temperature asked %d times, want once (at Open)", n)
	}
	if power[0] == nil || *power[0] != 123.456 || power[1] != nil || power[2] == nil {
		t.Errorf("device 0 power over 3 ticks = %v, want 123.456 W, absent, present", power)
	}
}

// TestDriverSymbols: calls the installed driver lacks are never made (through go-nvml they
// would crash the process); the mock panics if a nil function is called.
func TestDriverSymbols(t *testing.T) {
	tests := []struct {
		name         string
		missing      string
		wantThrottle *uint64
		wantTemp     *uint32
	}{
		{"current driver", "", ptr(uint64(0x4)), ptr(uint32(65))},
		{"before 535: throttle reasons", eventReasonsSymbol, ptr(uint64(0x20)), ptr(uint32(65))},
		{"without GetTemperature: absent", temperatureSymbol, ptr(uint64(0x4)), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newScriptedHost(t, dgxScripts())
			h.srv.LookupSymbolFunc = func(symbol string) error {
				if symbol == tt.missing {
					return errors.New("undefined symbol: " + symbol)
				}
				return nil
			}
			d := h.device(2)
			d.GetCurrentClocksThrottleReasonsFunc = func() (uint64, nvml.Return) { return 0x20, nvml.SUCCESS }
			switch tt.missing {
			case eventReasonsSymbol:
				d.GetCurrentClocksEventReasonsFunc = nil
			case temperatureSymbol:
				d.GetTemperatureFunc = nil
			}
			m, err := Open(h.srv, []int{2}, WithHost("node-a"), WithClock(h.clk))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			h.clk.Set(at(3))
			ss, err := m.Sweep()
			if err != nil {
				t.Fatalf("Sweep: %v", err)
			}
			if !reflect.DeepEqual(ss[0].Throttle, tt.wantThrottle) || !reflect.DeepEqual(ss[0].TempC, tt.wantTemp) {
				t.Errorf("throttle %v, temperature %v; want %v, %v", ss[0].Throttle, ss[0].TempC, tt.wantThrottle, tt.wantTemp)
			}
		})
	}
}

func TestRun(t *testing.T) {
	h := newScriptedHost(t, dgxScripts())
	m, err := Open(h.srv, nil, WithHost("node-a"), WithClock(h.clk))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	samples := runTicks(t, h, m, 2)
	if len(samples) != 3*8 {
		t.Fatalf("got %d samples, want 24 (at start and at 2 ticks, 8 devices)", len(samples))
	}
	for i, s := range samples {
		tick, dev := i/8, i%8
		if s.T != at(tick) || s.Device != dev || s.Host != "node-a" {
			t.Errorf("sample %d: device %d at %v, want device %d at tick %d", i, s.Device, s.T, dev, tick)
		}
	}

	if err := m.Run(context.Background(), 0, func(Sample) {}); err == nil || !strings.Contains(err.Error(), "must be positive") {
		t.Errorf("Run with interval 0: error %v, want one about the interval", err)
	}
}

// runTicks runs m's sampling loop for ticks ticks of the fake clock and returns every sample.
func runTicks(t *testing.T, h *scriptedHost, m *Monitor, ticks int) []Sample {
	t.Helper()
	n := len(m.Devices())
	got := make(chan Sample, n)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, step, func(s Sample) { got <- s }) }()
	var out []Sample
	collect := func() {
		for range n {
			out = append(out, <-got)
		}
	}
	collect()
	tk := (<-h.clk.tickers)
	if tk.period != step {
		t.Errorf("ticker period = %v, want %v", tk.period, step)
	}
	for k := 1; k <= ticks; k++ {
		<-tk.ready
		h.clk.Set(at(k))
		tk.ch <- at(k)
		collect()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	return out
}

// TestSetInterval: a running Run moves to the interval a job asks for, and back to its own
// interval when asked for 0.
func TestSetInterval(t *testing.T) {
	h := newScriptedHost(t, dgxScripts())
	m, err := Open(h.srv, nil, WithHost("node-a"), WithClock(h.clk))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	n := len(m.Devices())
	got := make(chan Sample, n)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, step, func(s Sample) { got <- s }) }()
	collect := func(when time.Time) {
		t.Helper()
		for range n {
			if s := <-got; !s.T.Equal(when) {
				t.Errorf("sample of device %d at %v, want %v", s.Device, s.T, when)
			}
		}
	}
	collect(at(0))
	if tk := <-h.clk.tickers; tk.period != step {
		t.Fatalf("first ticker period %v, want %v", tk.period, step)
	}
	for _, tc := range []struct {
		set, want time.Duration
		tick      int
	}{{250 * time.Millisecond, 250 * time.Millisecond, 1}, {0, step, 2}, {2 * step, 2 * step, 3}} {
		m.SetInterval(tc.set)
		tk := <-h.clk.tickers
		if tk.period != tc.want {
			t.Errorf("SetInterval(%v): ticker period %v, want %v", tc.set, tk.period, tc.want)
		}
		<-tk.ready
		h.clk.Set(at(tc.tick))
		tk.ch <- at(tc.tick)
		collect(at(tc.tick))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
