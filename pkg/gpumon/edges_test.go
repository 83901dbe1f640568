package gpumon

import (
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh200"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// load is one mock device's power draw: watts[i] from fromMS[i] milliseconds after t0 on.
type load struct {
	fromMS    []int64
	watts     []int64
	noCounter bool // the energy counter is NOT_SUPPORTED
}

func (l load) wattsAt(ms int64) int64 {
	var w int64
	for i, from := range l.fromMS {
		if ms >= from {
			w = l.watts[i]
		}
	}
	return w
}

// counterMJ is the energy counter at ms: the integral of the draw (W × ms = mJ, exactly).
func (l load) counterMJ(ms int64) uint64 {
	var mj int64
	for i, from := range l.fromMS {
		end := ms
		if i+1 < len(l.fromMS) && l.fromMS[i+1] < end {
			end = l.fromMS[i+1]
		}
		if end > from {
			mj += l.watts[i] * (end - from)
		}
	}
	return counterBaseMJ + uint64(mj)
}

func mockUUID(i int) string { return fmt.Sprintf("GPU-00000000-0000-0000-0000-%012d", i) }

// newLoadHost is an 8-GPU dgxh200 mock (the card the short-job bug was seen on) whose power
// and energy counter follow loads at the fake clock's time, to the millisecond; its other
// readings are constant, and a device without a load draws nothing.
func newLoadHost(t *testing.T, loads map[int]load) (*server.Server, *fakeClock) {
	t.Helper()
	srv, clk := dgxh200.New(), newFakeClock(t0)
	ms := func() int64 { return clk.Now().Sub(t0).Milliseconds() }
	for i := range srv.Devices {
		l := loads[i]
		d := srv.Devices[i].(*server.Device)
		d.UUID = mockUUID(i)
		d.GetPowerUsageFunc = func() (uint32, nvml.Return) { return uint32(l.wattsAt(ms()) * 1000), nvml.SUCCESS }
		d.GetTotalEnergyConsumptionFunc = func() (uint64, nvml.Return) {
			if l.noCounter {
				return 0, nvml.ERROR_NOT_SUPPORTED
			}
			return l.counterMJ(ms()), nvml.SUCCESS
		}
		d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{Gpu: 50, Memory: 20}, nvml.SUCCESS }
		d.GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) {
			return nvml.Memory{Total: 141 << 30, Used: 10 << 30, Free: 131 << 30}, nvml.SUCCESS
		}
		d.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 40, nvml.SUCCESS }
		d.GetClockInfoFunc = func(nvml.ClockType) (uint32, nvml.Return) { return 1980, nvml.SUCCESS }
		d.GetCurrentClocksEventReasonsFunc = func() (uint64, nvml.Return) { return 0, nvml.SUCCESS }
	}
	return srv, clk
}

func msAt(ms int64) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// TestPhaseEnergyAtEdges runs a job as the controller and its worker do on one host: the
// worker's monitor samples every second, the controller marks the modes and reads the same
// GPUs at each mark. Every phase must get exactly the counter's rise over its span (or, with
// no counter, power × duration), whether it is shorter or longer than the interval.
func TestPhaseEnergyAtEdges(t *testing.T) {
	tests := []struct {
		name string
		// spec, target and end are the marks (ms); ticks are the worker's periodic samples.
		spec, target, end int64
		ticks             []int64
	}{
		// The report: modes of a few hundred ms with a 1 s interval; the job gets one
		// periodic sample and, before edge readings, no energy at all.
		{name: "modes shorter than the interval", spec: 200, target: 500, end: 800, ticks: []int64{0}},
		{name: "whole job between two ticks", spec: 1100, target: 1350, end: 1600, ticks: []int64{1000, 2000}},
		{name: "modes longer than the interval", spec: 200, target: 2700, end: 3100, ticks: []int64{0, 1000, 2000, 3000}},
	}
	const tokSpec, tokTarget = 60, 30
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loads := map[int]load{
				0: {fromMS: []int64{0, tt.spec, tt.target, tt.end}, watts: []int64{70, 400, 500, 72}},
				6: {fromMS: []int64{0, tt.spec, tt.target, tt.end}, watts: []int64{60, 250, 61, 60}},
				// No counter: power integral; a steady draw makes it exactly power × duration.
				7: {fromMS: []int64{0}, watts: []int64{150}, noCounter: true},
			}
			srv, clk := newLoadHost(t, loads)
			worker, err := Open(srv, []int{0, 6, 7}, WithHost("node-a"), WithClock(clk))
			if err != nil {
				t.Fatalf("worker Open: %v", err)
			}
			owners := map[string]DeviceRef{}
			for _, d := range []int{0, 6, 7} {
				owners[mockUUID(d)] = DeviceRef{Host: "node-a", Index: d}
			}
			edges, err := OpenEdgeSampler(srv, owners, WithHost("controller"), WithClock(clk))
			if err != nil || edges == nil {
				t.Fatalf("OpenEdgeSampler = %v, %v; want a sampler", edges, err)
			}
			defer edges.Close()
			agg := NewAggregator(step, WithClock(clk))
			agg.SampleAtMarks(edges.Sample)

			type event struct {
				ms    int64
				phase Phase // "" for a periodic tick
			}
			events := []event{{tt.spec, PhaseSpeculative}, {tt.target, PhaseTarget}, {tt.end, PhaseIdle}}
			for _, tk := range tt.ticks {
				events = append(events, event{ms: tk})
			}
			// In time order; a tick at the instant of a mark goes first.
			for i := 1; i < len(events); i++ {
				for j := i; j > 0 && (events[j].ms < events[j-1].ms || events[j].ms == events[j-1].ms && events[j].phase == ""); j-- {
					events[j], events[j-1] = events[j-1], events[j]
				}
			}
			for _, ev := range events {
				clk.Set(msAt(ev.ms))
				if ev.phase != "" {
					agg.Mark(ev.phase, clk.Now())
					continue
				}
				ss, err := worker.Sweep()
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range ss {
					agg.Add(s)
				}
			}
			res := agg.Result(map[Phase]int{PhaseSpeculative: tokSpec, PhaseTarget: tokTarget})

			first, last := tt.ticks[0], tt.end // the first and the last reading of any kind
			if tk := tt.ticks[len(tt.ticks)-1]; tk > last {
				last = tk
			}
			spans := map[string][][2]int64{
				"idle":        {{first, tt.spec}, {tt.end, last}},
				"speculative": {{tt.spec, tt.target}},
				"target":      {{tt.target, tt.end}},
			}
			wantEnergy := func(l load) map[string]float64 {
				out := map[string]float64{}
				var total float64
				for phase, ss := range spans {
					var j float64
					for _, s := range ss {
						if l.noCounter {
							j += float64(l.wattsAt(s[0])*(s[1]-s[0])) / 1000
						} else {
							j += float64(l.counterMJ(s[1])-l.counterMJ(s[0])) / 1000
						}
					}
					out[phase] = round3(j)
					total += j
				}
				out["total"] = round3(total)
				return out
			}
			if len(res.Devices) != 3 {
				t.Fatalf("%d devices in the result, want 3", len(res.Devices))
			}
			sum := map[string]float64{}
			for _, d := range res.Devices {
				l := loads[d.Index]
				want, method := wantEnergy(l), EnergyCounter
				if l.noCounter {
					method = EnergyPowerIntegral
				}
				if !reflect.DeepEqual(d.EnergyJ, want) || d.EnergyMethod != method {
					t.Errorf("device %d: energy %v by %q, want %v by %q", d.Index, d.EnergyJ, d.EnergyMethod, want, method)
				}
				if n := len(tt.ticks) + 3; d.Samples != n {
					t.Errorf("device %d: %d samples, want %d (the ticks and one reading per mark)", d.Index, d.Samples, n)
				}
				for k, j := range want {
					sum[k] += j
				}
			}
			wantJPT := map[Phase]float64{
				PhaseSpeculative: round3(sum["speculative"] / tokSpec),
				PhaseTarget:      round3(sum["target"] / tokTarget),
			}
			if !reflect.DeepEqual(res.JoulesPerOutputToken, wantJPT) {
				t.Errorf("joules per output token = %v, want %v", res.JoulesPerOutputToken, wantJPT)
			}
		})
	}
}

// TestMarkEdgesMoveThePhaseChange: a reading taken a little after its mark is where the phase
// changes for that device, so the phase gets the counter's rise between its readings exactly,
// none of the interval before or after.
func TestMarkEdgesMoveThePhaseChange(t *testing.T) {
	sec := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	edge := func(at float64, mj uint64) []Sample {
		return []Sample{{Host: "h", Device: 0, UUID: "GPU-x", T: sec(at), EnergyMJ: ptr(mj), PowerW: ptr(100.0)}}
	}
	tests := []struct {
		name       string
		edges      [][]Sample // what the sampler gives at each mark, in order
		marks      []mark
		periodic   []Sample
		wantEnergy map[string]float64
	}{
		{
			name:       "readings 1 ms after the marks",
			periodic:   samples([]float64{0, 1}, []uint64{0, 10_000}, nil),
			marks:      []mark{{phase: PhaseSpeculative, t: sec(0.2)}, {phase: PhaseIdle, t: sec(0.5)}},
			edges:      [][]Sample{edge(0.201, 1_000), edge(0.501, 8_000)},
			wantEnergy: map[string]float64{"idle": 3, "speculative": 7, "total": 10},
		},
		{
			// Without the reading at the second mark the device keeps the mark's own time;
			// the later call must still win over the earlier one read 1 ms after it.
			name:       "two marks at one instant, only the first read",
			periodic:   samples([]float64{0, 1}, []uint64{0, 10_000}, nil),
			marks:      []mark{{phase: PhaseSpeculative, t: sec(0.5)}, {phase: PhaseTarget, t: sec(0.5)}},
			edges:      [][]Sample{edge(0.501, 5_000), nil},
			wantEnergy: map[string]float64{"idle": 5, "target": 5, "total": 10},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agg := NewAggregator(step)
			calls := 0
			agg.SampleAtMarks(func() []Sample {
				agg.PowerSeries() // the sampler runs without the aggregator's lock
				calls++
				return tt.edges[calls-1]
			})
			for _, s := range tt.periodic {
				agg.Add(s)
			}
			for _, m := range tt.marks {
				agg.Mark(m.phase, m.t)
			}
			if calls != len(tt.marks) {
				t.Errorf("sampler called %d times for %d marks", calls, len(tt.marks))
			}
			res := agg.Result(nil)
			if len(res.Devices) != 1 {
				t.Fatalf("%d devices, want 1", len(res.Devices))
			}
			if d := res.Devices[0]; !reflect.DeepEqual(d.EnergyJ, tt.wantEnergy) || d.EnergyMethod != EnergyCounter {
				t.Errorf("energy %v by %q, want %v by counter", d.EnergyJ, d.EnergyMethod, tt.wantEnergy)
			}
		})
	}
}

func TestOpenEdgeSampler(t *testing.T) {
	t.Run("the workers' GPUs found here by UUID", func(t *testing.T) {
		srv, clk := newLoadHost(t, map[int]load{
			2: {fromMS: []int64{0}, watts: []int64{300}},
			5: {fromMS: []int64{0}, watts: []int64{120}, noCounter: true},
		})
		owners := map[string]DeviceRef{
			mockUUID(5):        {Host: "worker-1", Index: 5},
			mockUUID(2):        {Host: "worker-1", Index: 2},
			"GPU-on-elsewhere": {Host: "worker-2", Index: 0},
		}
		e, err := OpenEdgeSampler(srv, owners, WithHost("controller"), WithClock(clk))
		if err != nil || e == nil {
			t.Fatalf("OpenEdgeSampler = %v, %v; want a sampler", e, err)
		}
		if got, want := e.Devices(), []DeviceRef{{"worker-1", 2}, {"worker-1", 5}}; !reflect.DeepEqual(got, want) {
			t.Errorf("Devices() = %v, want %v", got, want)
		}
		for _, i := range []int{0, 1, 3, 4, 6, 7} {
			if n := len(srv.Devices[i].(*server.Device).GetPowerUsageCalls()); n != 0 {
				t.Errorf("device %d, not a worker's, was read %d times", i, n)
			}
		}
		clk.Set(msAt(1500))
		got := e.Sample()
		want := []Sample{
			{Host: "worker-1", Device: 2, UUID: mockUUID(2), Name: "NVIDIA H200 141GB HBM3e", T: msAt(1500),
				PowerW: ptr(300.0), EnergyMJ: ptr(uint64(counterBaseMJ + 450_000))},
			// Only the counter and the power are read at an edge.
			{Host: "worker-1", Device: 5, UUID: mockUUID(5), Name: "NVIDIA H200 141GB HBM3e", T: msAt(1500), PowerW: ptr(120.0)},
		}
		if len(got) != len(want) {
			t.Fatalf("Sample gave %d samples, want %d", len(got), len(want))
		}
		for i := range want {
			assertSample(t, got[i], want[i])
		}
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if got := e.Sample(); got != nil {
			t.Errorf("Sample after Close = %v, want none", got)
		}
		if i, s := len(srv.InitCalls()), len(srv.ShutdownCalls()); i != 1 || s != 1 {
			t.Errorf("Init %d, Shutdown %d times; want once each", i, s)
		}
	})
	t.Run("none of them here", func(t *testing.T) {
		srv, _ := newLoadHost(t, nil)
		e, err := OpenEdgeSampler(srv, map[string]DeviceRef{"GPU-on-elsewhere": {Host: "w", Index: 0}}, WithHost("controller"))
		if e != nil || err != nil {
			t.Errorf("OpenEdgeSampler = %v, %v; want nil, nil", e, err)
		}
		if i, s := len(srv.InitCalls()), len(srv.ShutdownCalls()); i != 1 || s != 1 {
			t.Errorf("Init %d, Shutdown %d times; want once each", i, s)
		}
	})
	t.Run("no GPU to read", func(t *testing.T) {
		srv, _ := newLoadHost(t, nil)
		if e, err := OpenEdgeSampler(srv, nil, WithHost("controller")); e != nil || err != nil {
			t.Errorf("OpenEdgeSampler = %v, %v; want nil, nil", e, err)
		}
		if n := len(srv.InitCalls()); n != 0 {
			t.Errorf("NVML initialised %d times for no device", n)
		}
	})
	t.Run("no driver here", func(t *testing.T) {
		srv, _ := newLoadHost(t, nil)
		srv.InitFunc = func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }
		owners := map[string]DeviceRef{mockUUID(0): {Host: "w", Index: 0}}
		if e, err := OpenEdgeSampler(srv, owners, WithHost("controller")); e != nil || err != nil {
			t.Errorf("OpenEdgeSampler = %v, %v; want nil, nil", e, err)
		}
		lib := filepath.Join(t.TempDir(), "libnvidia-ml.so.1")
		if e, err := OpenEdgeSamplerNVML(owners, WithHost("controller"), WithLibraryPath(lib)); e != nil || err != nil {
			t.Errorf("OpenEdgeSamplerNVML without a driver = %v, %v; want nil, nil", e, err)
		}
	})
}
