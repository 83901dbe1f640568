package gpumon

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/draftbench/draftbench/pkg/report"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func jsonOf(v any) (string, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	return string(b), err
}

func assertGolden(t *testing.T, name string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the golden file (go test -update writes it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output:\n%s", path, got)
	}
}

// dgxRun samples the scripted 8-GPU host through Monitor.Run and aggregates it as the
// controller would: roles 6:2, speculative from tick 2, target AR from tick 5, idle from 8.
func dgxRun(t *testing.T) (*Aggregator, *scriptedHost) {
	t.Helper()
	h := newScriptedHost(t, dgxScripts())
	m, err := Open(h.srv, nil, WithHost("node-a"), WithClock(h.clk))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	agg := NewAggregator(step, WithClock(h.clk))
	for d := range 8 {
		role := RoleTarget
		if d >= 6 {
			role = RoleDrafter
		}
		agg.SetRole("node-a", d, role)
	}
	agg.Mark(PhaseTarget, at(5)) // out of order on purpose
	agg.Mark(PhaseSpeculative, at(2))
	agg.Mark(PhaseIdle, at(8))
	for _, s := range runTicks(t, h, m, 8) {
		agg.Add(s)
	}
	return agg, h
}

var dgxTokens = map[Phase]int{PhaseSpeculative: 300, PhaseTarget: 300}

func TestAggregateDGXH100(t *testing.T) {
	agg, h := dgxRun(t)
	res := agg.Result(dgxTokens)

	target := func(d int, idle, spec, ar float64) DeviceResult {
		fd := float64(d)
		return DeviceResult{
			Index: d, UUID: h.device(d).UUID, Name: "NVIDIA H100 80GB HBM3", Host: "node-a", Role: RoleTarget,
			PowerW:         &Stat{Avg: 450 + fd, Peak: 520 + fd},
			EnergyJ:        map[string]float64{"idle": idle, "speculative": spec, "target": ar, "total": idle + spec + ar},
			EnergyMethod:   EnergyCounter,
			UtilizationPct: &Stat{Avg: 90, Peak: 100},
			MemoryUsedPct:  &Stat{Avg: 50.833, Peak: 55}, // (5×50% + 55%)/6
			TemperatureC:   &Peak{Peak: 75},
			IdleBaselineW:  ptr(70.5 + fd),
			Samples:        9,
		}
	}
	drafter := func(d int, energy map[string]float64, method EnergyMethod) DeviceResult {
		return DeviceResult{
			Index: d, UUID: h.device(d).UUID, Name: "NVIDIA H100 80GB HBM3", Host: "node-a", Role: RoleDrafter,
			PowerW:         &Stat{Avg: 155.333, Peak: 270}, // (250+270+230+64+60+58)/6
			EnergyJ:        energy,
			EnergyMethod:   method,
			UtilizationPct: &Stat{Avg: 32.5, Peak: 70},
			MemoryUsedPct:  &Stat{Avg: 10, Peak: 10},
			TemperatureC:   &Peak{Peak: 55},
			IdleBaselineW:  ptr(61.0),
			Samples:        9,
		}
	}
	noTemp := target(3, 140, 1290, 1590)
	noTemp.TemperatureC = nil

	tests := []struct {
		name string
		want DeviceResult
	}{
		// The counter rises 70 J per idle interval, 400+10d per speculative one and 500+10d per
		// AR one, while the power readings say otherwise: energy must follow the counter.
		{"target 0, counter", target(0, 140, 1200, 1500)},
		{"target 3, no temperature: absent", noTemp},
		{"target 5, counter", target(5, 140, 1350, 1650)},
		{"drafter 6, counter", drafter(6, map[string]float64{"idle": 120, "speculative": 750, "target": 180, "total": 1050}, EnergyCounter)},
		// Trapezoids over the power readings 60 62 | 250 270 230 | 64 60 58 | 61:
		// idle (60+62)/2 + (62+250)/2 = 217; speculative 260 + 250 + 147 = 657;
		// target 62 + 59 + 59.5 = 180.5.
		{"drafter 7, no counter: power integral", drafter(7, map[string]float64{"idle": 217, "speculative": 657, "target": 180.5, "total": 1054.5}, EnergyPowerIntegral)},
	}
	if len(res.Devices) != 8 {
		t.Fatalf("%d devices in the result, want 8", len(res.Devices))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := res.Devices[tt.want.Index]
			if !reflect.DeepEqual(got, tt.want) {
				g, _ := jsonOf(got)
				w, _ := jsonOf(tt.want)
				t.Errorf("device %d =\n%s\nwant\n%s", tt.want.Index, g, w)
			}
		})
	}

	t.Run("totals", func(t *testing.T) {
		// speculative: Σ 3(400+10d) over d<6 = 7650, + 750 + 657 = 9057 J over 300 tokens;
		// target AR: Σ 3(500+10d) = 9450, + 180 + 180.5 = 9810.5 J over 300 tokens.
		wantJPT := map[Phase]float64{PhaseSpeculative: 30.19, PhaseTarget: 32.702}
		if !reflect.DeepEqual(res.JoulesPerOutputToken, wantJPT) {
			t.Errorf("joules per output token = %v, want %v", res.JoulesPerOutputToken, wantJPT)
		}
		wantRoles := map[Role]map[string]float64{
			RoleTarget:  {"idle": 840, "speculative": 7650, "target": 9450, "total": 17940},
			RoleDrafter: {"idle": 337, "speculative": 1407, "target": 360.5, "total": 2104.5},
		}
		if !reflect.DeepEqual(res.EnergyByRoleJ, wantRoles) {
			t.Errorf("energy by role = %v, want %v", res.EnergyByRoleJ, wantRoles)
		}
		// Σ (70.5+d) over the target devices + 2 × 61.
		if res.IdleBaselineW == nil || *res.IdleBaselineW != 560 {
			t.Errorf("idle baseline = %v, want 560 W", res.IdleBaselineW)
		}
		if !res.Available || res.Samples != 72 || res.IntervalS != 1 {
			t.Errorf("available %v, samples %d, interval %v s; want true, 72, 1", res.Available, res.Samples, res.IntervalS)
		}
	})

	t.Run("golden", func(t *testing.T) { assertGolden(t, "dgxh100_6to2.golden.json", res) })

	t.Run("read back", func(t *testing.T) {
		data, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		var back Result
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, res) {
			t.Errorf("Result did not survive a JSON round trip:\n%+v\n%+v", back, res)
		}
	})
}

// TestReportReadsResult prints the result through pkg/report's console summary, which reads
// the GPU value by its JSON keys.
func TestReportReadsResult(t *testing.T) {
	agg, _ := dgxRun(t)
	tests := []struct {
		name string
		gpu  Result
		want []string
	}{
		{"available", agg.Result(dgxTokens), []string{
			"GPU 7: NVIDIA H100 80GB HBM3 (node-a, drafter)",
			"Power avg / peak (W):",
			"155.33 / 270.00",
			"Energy, speculative (J):",
			"Energy, total (J):",
			"Energy per token, speculative (J):",
			"30.19",
			"Energy per token, target (J):",
		}},
		{"unavailable", Unavailable("NVML: libnvidia-ml.so.1 not found (is the NVIDIA driver installed?)"), []string{
			"not available (NVML: libnvidia-ml.so.1 not found (is the NVIDIA driver installed?))",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := report.PrintSummary(&buf, report.Results{GPU: tt.gpu}); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(buf.String(), w) {
					t.Errorf("summary lacks %q:\n%s", w, buf.String())
				}
			}
		})
	}
}

func TestPowerSeries(t *testing.T) {
	agg, _ := dgxRun(t)
	series := agg.PowerSeries()
	if len(series) != 8 {
		t.Fatalf("%d series, want 8", len(series))
	}
	got := report.PowerSeries(series[7]) // the plots take it as it is
	want := report.PowerSeries{
		Device: "node-a/GPU 7",
		T:      []float64{0, 1, 2, 3, 4, 5, 6, 7, 8},
		Watts:  []float64{60, 62, 250, 270, 230, 64, 60, 58, 61},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("series 7 = %+v, want %+v", got, want)
	}
}

// samples builds one device's samples at the given seconds after t0.
func samples(secs []float64, energyMJ []uint64, powerW []float64) []Sample {
	out := make([]Sample, len(secs))
	for i, s := range secs {
		out[i] = Sample{Host: "h", Device: 0, UUID: "GPU-x", T: t0.Add(time.Duration(s * float64(time.Second)))}
		if energyMJ != nil {
			out[i].EnergyMJ = ptr(energyMJ[i])
		}
		if powerW != nil {
			out[i].PowerW = ptr(powerW[i])
		}
	}
	return out
}

func TestEnergySplit(t *testing.T) {
	sec := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	tests := []struct {
		name       string
		samples    []Sample
		marks      []mark
		wantEnergy map[string]float64
		wantMethod EnergyMethod
		wantCount  int
	}{
		{
			name:       "counter shared by time at a mark inside an interval",
			samples:    samples([]float64{0, 1}, []uint64{5000, 6000}, nil),
			marks:      []mark{{phase: PhaseSpeculative, t: sec(0.25)}},
			wantEnergy: map[string]float64{"idle": 0.25, "speculative": 0.75, "total": 1},
			wantMethod: EnergyCounter, wantCount: 2,
		},
		{
			// Power 100 → 200 W; at 0.5 s it is 150 W: (100+150)/2·0.5 and (150+200)/2·0.5.
			name:       "power integral cut at a mark inside an interval",
			samples:    samples([]float64{0, 1}, nil, []float64{100, 200}),
			marks:      []mark{{phase: PhaseSpeculative, t: sec(0.5)}},
			wantEnergy: map[string]float64{"idle": 62.5, "speculative": 87.5, "total": 150},
			wantMethod: EnergyPowerIntegral, wantCount: 2,
		},
		{
			name:       "interval with the counter going backwards is left out",
			samples:    samples([]float64{0, 1, 2, 3}, []uint64{5000, 9000, 1000, 3000}, nil),
			wantEnergy: map[string]float64{"idle": 6, "total": 6},
			wantMethod: EnergyCounter, wantCount: 4,
		},
		{
			name:       "one sample without the counter: the whole device integrates power",
			samples:    withoutEnergy(samples([]float64{0, 1, 2}, []uint64{0, 1000, 2000}, []float64{10, 20, 30}), 1),
			wantEnergy: map[string]float64{"idle": 40, "total": 40},
			wantMethod: EnergyPowerIntegral, wantCount: 3,
		},
		{
			name: "late, shuffled and redelivered samples",
			samples: func() []Sample {
				ss := samples([]float64{0, 1, 2}, []uint64{0, 1000, 3000}, nil)
				return []Sample{ss[2], ss[0], ss[1], ss[2]}
			}(),
			marks:      []mark{{phase: PhaseTarget, t: sec(1)}},
			wantEnergy: map[string]float64{"idle": 1, "target": 2, "total": 3},
			wantMethod: EnergyCounter, wantCount: 3,
		},
		{
			name:       "two marks at one instant: the later call wins",
			samples:    samples([]float64{0, 2}, []uint64{0, 2000}, nil),
			marks:      []mark{{phase: PhaseSpeculative, t: sec(1)}, {phase: PhaseTarget, t: sec(1)}},
			wantEnergy: map[string]float64{"idle": 1, "target": 1, "total": 2},
			wantMethod: EnergyCounter, wantCount: 2,
		},
		{
			name:      "a single sample measures nothing",
			samples:   samples([]float64{0}, []uint64{5000}, []float64{100}),
			wantCount: 1,
		},
		{
			name:      "neither counter nor power: energy absent",
			samples:   samples([]float64{0, 1}, nil, nil),
			wantCount: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agg := NewAggregator(step)
			for _, m := range tt.marks {
				agg.Mark(m.phase, m.t)
			}
			for _, s := range tt.samples {
				agg.Add(s)
			}
			res := agg.Result(nil)
			if len(res.Devices) != 1 {
				t.Fatalf("%d devices, want 1", len(res.Devices))
			}
			d := res.Devices[0]
			if !reflect.DeepEqual(d.EnergyJ, tt.wantEnergy) || d.EnergyMethod != tt.wantMethod || d.Samples != tt.wantCount {
				t.Errorf("energy %v by %q over %d samples, want %v by %q over %d",
					d.EnergyJ, d.EnergyMethod, d.Samples, tt.wantEnergy, tt.wantMethod, tt.wantCount)
			}
		})
	}
}

func withoutEnergy(ss []Sample, i int) []Sample {
	ss[i].EnergyMJ = nil
	return ss
}

func TestResultWithoutSamples(t *testing.T) {
	tests := []struct {
		name        string
		unavailable map[string]string
		want        string
	}{
		{"nothing heard", nil, `{"available":false,"reason":"no GPU samples were received"}`},
		{"one host without a driver", map[string]string{"cpu-a": "NVML: libnvidia-ml.so.1 not found (is the NVIDIA driver installed?)"},
			`{"available":false,"reason":"NVML: libnvidia-ml.so.1 not found (is the NVIDIA driver installed?)"}`},
		{"two hosts", map[string]string{"b": "NVML: the NVIDIA driver is not loaded", "a": "NVML: no permission to open the GPUs"},
			`{"available":false,"reason":"a: NVML: no permission to open the GPUs; b: NVML: the NVIDIA driver is not loaded"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agg := NewAggregator(step)
			for h, r := range tt.unavailable {
				agg.NoteUnavailable(h, r)
			}
			got, err := json.Marshal(agg.Result(dgxTokens))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("result = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestUnavailableHostNextToGPUs(t *testing.T) {
	agg := NewAggregator(step)
	agg.NoteUnavailable("cpu-a", "NVML: the NVIDIA driver is not loaded")
	for _, s := range samples([]float64{0, 1}, []uint64{0, 1000}, nil) {
		agg.Add(s)
	}
	res := agg.Result(map[Phase]int{PhaseSpeculative: 10})
	if !res.Available || res.UnavailableHosts["cpu-a"] != "NVML: the NVIDIA driver is not loaded" {
		t.Errorf("available %v, unavailable hosts %v; want true and cpu-a's reason", res.Available, res.UnavailableHosts)
	}
	if len(res.JoulesPerOutputToken) != 0 {
		t.Errorf("joules per output token = %v, want none: no speculative phase was marked", res.JoulesPerOutputToken)
	}
}

func TestSampleJSON(t *testing.T) {
	h := newScriptedHost(t, dgxScripts())
	m, err := Open(h.srv, []int{3, 7}, WithHost("node-a"), WithClock(h.clk))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	h.clk.Set(at(3))
	ss, err := m.Sweep()
	if err != nil {
		t.Fatal(err)
	}
	assertGolden(t, "samples.golden.json", ss)

	data, err := json.Marshal(ss)
	if err != nil {
		t.Fatal(err)
	}
	var back []Sample
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, ss) {
		t.Errorf("samples did not survive a JSON round trip:\n%+v\n%+v", back, ss)
	}
}
