package controller

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/cluster"
	"github.com/draftbench/draftbench/pkg/gpumon"
	"github.com/draftbench/draftbench/pkg/jobrun"
	"github.com/draftbench/draftbench/pkg/jobspec"
	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/natsrv/natstest"
	"github.com/draftbench/draftbench/pkg/placement"
	"github.com/draftbench/draftbench/pkg/protocol"
)

// TestGPUMonitorOverNATS: samples published by workers on gpu.<host>.<dev>
// reach the controller's aggregator, are given the role of the placement
// (multi_gpu_ratio 2:1 → target, target, drafter) and the phase of the
// mode timeline, and a worker without NVML that holds a stage (cpu-b) is
// reported with its reason.
func TestGPUMonitorOverNATS(t *testing.T) {
	_, nc := natstest.Start(t, natsrv.Options{})
	var subj protocol.Subjects
	spec := &jobspec.Job{GPUMonitor: jobspec.GPUMonitor{Enabled: true, Interval: jobspec.Duration(time.Second)}}
	plan := &placement.Plan{
		Target: placement.ModelPlan{Devices: []int{0, 1, 0}, Stages: []placement.Stage{{Host: "gpu-a", Devices: []int{0, 1}, Layers: [2]int{0, 4}},
			{Host: "cpu-b", Devices: []int{0}, Layers: [2]int{4, 6}}}},
		Drafter: &placement.ModelPlan{Devices: []int{2}, Stages: []placement.Stage{{Host: "gpu-a", Devices: []int{2}, Layers: [2]int{0, 2}}}},
	}
	workers := []cluster.Worker{{ID: "a", Host: "gpu-a"}, {ID: "b", Host: "cpu-b", GPUMonitor: "worker cpu-b offers CPU devices only"}}
	g, err := startGPUMonitor(nc, subj, spec, plan, workers)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(5000, 0)
	pub := func(dev int, at time.Time, watts float64, mj uint64) {
		s := gpumon.Sample{Host: "gpu-a", Device: dev, UUID: "GPU-" + string(rune('a'+dev)), T: at, PowerW: &watts, EnergyMJ: &mj}
		data, _ := json.Marshal(s)
		if err := nc.Publish(subj.GPU("gpu-a", dev), data); err != nil {
			t.Fatal(err)
		}
	}
	g.Mark(string(metrics.ModeSpeculative), t0)
	for i := 0; i <= 4; i++ {
		for dev := 0; dev < 3; dev++ {
			pub(dev, t0.Add(time.Duration(i)*time.Second), 100+float64(dev), uint64(i)*100_000) // 100 J per second
		}
	}
	g.Mark(string(metrics.ModeTarget), t0.Add(4*time.Second))
	for i := 5; i <= 6; i++ {
		for dev := 0; dev < 3; dev++ {
			pub(dev, t0.Add(time.Duration(i)*time.Second), 200, uint64(i)*100_000)
		}
	}
	g.Mark("idle", t0.Add(6*time.Second))
	nc.Flush()
	time.Sleep(100 * time.Millisecond) // let the subscription deliver
	res, ok := g.Result(map[metrics.Mode]int{metrics.ModeSpeculative: 40, metrics.ModeTarget: 20}).(gpumon.Result)
	if !ok || !res.Available {
		t.Fatalf("result %+v", res)
	}
	roles := map[int]gpumon.Role{}
	for _, d := range res.Devices {
		roles[d.Index] = d.Role
		if d.EnergyJ["speculative"] != 400 || d.EnergyJ["target"] != 200 {
			t.Errorf("device %d energy %v, want 400 J speculative and 200 J target", d.Index, d.EnergyJ)
		}
	}
	if roles[0] != gpumon.RoleTarget || roles[1] != gpumon.RoleTarget || roles[2] != gpumon.RoleDrafter {
		t.Errorf("roles %v", roles)
	}
	if j := res.JoulesPerOutputToken[gpumon.PhaseSpeculative]; j != 1200.0/40 {
		t.Errorf("J/token speculative = %v, want 30", j)
	}
	if res.UnavailableHosts["cpu-b"] == "" {
		t.Errorf("the CPU worker's reason is lost: %+v", res.UnavailableHosts)
	}
	if len(g.Power()) != 3 {
		t.Errorf("%d power series, want 3", len(g.Power()))
	}

	off, _ := startGPUMonitor(nc, subj, &jobspec.Job{}, plan, workers)
	if r := off.Result(nil).(gpumon.Result); r.Available || r.Reason == "" {
		t.Errorf("a disabled monitor must say so: %+v", r)
	}
}

// TestCoolDownWaitsForCoolGPUs: with cooldown_below_c set, the controller
// waits before a mode until the GPUs' latest temperature is below it, and
// records the wait.
func TestCoolDownWaitsForCoolGPUs(t *testing.T) {
	_, nc := natstest.Start(t, natsrv.Options{})
	var subj protocol.Subjects
	spec := &jobspec.Job{GPUMonitor: jobspec.GPUMonitor{Enabled: true, Interval: jobspec.Duration(50 * time.Millisecond),
		CooldownBelowC: 60, CooldownTimeout: jobspec.Duration(5 * time.Second)}}
	plan := &placement.Plan{Target: placement.ModelPlan{Devices: []int{0}, Stages: []placement.Stage{{Host: "gpu-a", Devices: []int{0}, Layers: [2]int{0, 1}}}}}
	g, err := startGPUMonitor(nc, subj, spec, plan, []cluster.Worker{{ID: "a", Host: "gpu-a"}})
	if err != nil {
		t.Fatal(err)
	}
	temp := func(c uint32) {
		w := 300.0
		data, _ := json.Marshal(gpumon.Sample{Host: "gpu-a", Device: 0, T: time.Now(), TempC: &c, PowerW: &w})
		nc.Publish(subj.GPU("gpu-a", 0), data)
		nc.Flush()
	}
	temp(75)
	time.Sleep(50 * time.Millisecond)
	go func() {
		time.Sleep(300 * time.Millisecond)
		temp(55)
	}()
	start := time.Now()
	g.coolDown(context.Background(), metrics.ModeTarget, g)
	waited := time.Since(start)
	if waited < 250*time.Millisecond || waited > 4*time.Second {
		t.Errorf("waited %v: want about 300 ms, until the GPU reported 55 °C", waited)
	}
	res := g.Result(nil).(gpumon.Result)
	if len(res.CoolDowns) != 1 || !res.CoolDowns[0].Reached {
		t.Errorf("cool-downs recorded: %+v", res.CoolDowns)
	}
}

// fakeGPUReads plays the GPU monitor of a worker on another host: it answers the nth read
// (from 0) on the worker's gpu_read subject with answer(n), or not at all when that is nil,
// and counts the reads.
func fakeGPUReads(t *testing.T, nc *nats.Conn, subj protocol.Subjects, worker string, answer func(n int) *protocol.GPUReadReply) *atomic.Int32 {
	t.Helper()
	var n atomic.Int32
	_, err := nc.Subscribe(subj.WorkerGPURead(worker), func(m *nats.Msg) {
		k := int(n.Add(1)) - 1
		if err := protocol.Decode(m.Data, &protocol.GPURead{}); err != nil {
			t.Errorf("worker %s got a bad GPU read: %v", worker, err)
		}
		r := answer(k)
		if r == nil {
			return
		}
		data, err := protocol.Encode(r)
		if err != nil {
			t.Errorf("worker %s: %v", worker, err)
			return
		}
		m.Respond(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	return &n
}

// TestPhaseEdgesOfRemoteWorkers: a worker on another host (its GPUs not readable here) is
// asked for a reading at every mode mark, so modes far shorter than the 1 s interval get
// exactly the rise of the GPU's energy counter over their span, on the remote host's own
// clock. A worker that does not answer, or answers with an error, holds no mark up for
// longer than about the timeout and keeps the energy of its periodic samples; workers
// without a running monitor or without GPUs are not asked.
func TestPhaseEdgesOfRemoteWorkers(t *testing.T) {
	_, nc := natstest.Start(t, natsrv.Options{})
	var subj protocol.Subjects
	spec := &jobspec.Job{GPUMonitor: jobspec.GPUMonitor{Enabled: true, Interval: jobspec.Duration(time.Second)}}
	plan := &placement.Plan{
		Target:  placement.ModelPlan{Devices: []int{0}, Stages: []placement.Stage{{Host: "gpu-b", Devices: []int{0}, Layers: [2]int{0, 4}}}},
		Drafter: &placement.ModelPlan{Devices: []int{0}, Stages: []placement.Stage{{Host: "gpu-c", Devices: []int{0}, Layers: [2]int{0, 2}}}},
	}
	gpu := func(host string) []protocol.Device {
		return []protocol.Device{{Index: 0, UUID: "GPU-" + host + "-0", Name: "NVIDIA H200", Kind: protocol.DeviceGPU}}
	}
	const (
		idB = "0b6f2d8e-5a57-4f3a-9d7e-1c2b3a4d5e6f" // answers
		idC = "1c7a3e9f-6b68-4a4b-8e8f-2d3c4b5e6f70" // never answers
		idD = "2d8b4fa0-7c79-4b5c-9f90-3e4d5c6f7081" // answers with an error
		idE = "3e9c5ab1-8d8a-4c6d-a0a1-4f5e6d708192" // no monitor: not asked
		idF = "4fad6bc2-9e9b-4d7e-b1b2-50617e8193a3" // CPU only: not asked
	)
	t0 := time.Unix(5000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	// Worker B's host clock runs 2.5 s ahead of this one. Its counter rises by 10 J over the
	// second between its periodic samples, unevenly: 0.5 J before the speculative mode,
	// 6 J in it, 2.5 J in the target mode and 1 J after.
	const skewB = 2500
	readingB := func(atMS int, mj uint64) gpumon.Sample {
		w := 300.0
		mj += 1_000_000_000
		return gpumon.Sample{Host: "gpu-b", Device: 0, UUID: "GPU-gpu-b-0", T: ms(skewB + atMS), PowerW: &w, EnergyMJ: &mj}
	}
	edgesB := []gpumon.Sample{readingB(201, 500), readingB(501, 6_500), readingB(801, 9_000)}
	periodic := []gpumon.Sample{readingB(0, 0), readingB(1000, 10_000)}
	for _, s := range periodic[:2] {
		s.Host, s.UUID, s.T = "gpu-c", "GPU-gpu-c-0", s.T.Add(-skewB*time.Millisecond)
		periodic = append(periodic, s)
		s.Host, s.UUID = "gpu-d", "GPU-gpu-d-0"
		periodic = append(periodic, s)
	}

	bReads := fakeGPUReads(t, nc, subj, idB, func(n int) *protocol.GPUReadReply {
		return &protocol.GPUReadReply{Samples: []gpumon.Sample{edgesB[n]}}
	})
	cReads := fakeGPUReads(t, nc, subj, idC, func(int) *protocol.GPUReadReply { return nil })
	dReads := fakeGPUReads(t, nc, subj, idD, func(int) *protocol.GPUReadReply {
		return &protocol.GPUReadReply{Error: "gpumon: sampling gpu-d: the monitor is closed"}
	})
	eReads := fakeGPUReads(t, nc, subj, idE, func(int) *protocol.GPUReadReply { t.Error("worker E was asked"); return nil })
	fReads := fakeGPUReads(t, nc, subj, idF, func(int) *protocol.GPUReadReply { t.Error("worker F was asked"); return nil })
	workers := []cluster.Worker{
		{ID: idB, Host: "gpu-b", Devices: gpu("gpu-b")},
		{ID: idC, Host: "gpu-c", Devices: gpu("gpu-c")},
		{ID: idD, Host: "gpu-d", Devices: gpu("gpu-d")},
		{ID: idE, Host: "gpu-e", Devices: gpu("gpu-e"), GPUMonitor: "NVML: the NVIDIA driver is not loaded"},
		{ID: idF, Host: "cpu-f", Devices: []protocol.Device{{Index: 0, Name: "cpu", Kind: protocol.DeviceCPU}}},
	}
	g, err := startGPUMonitor(nc, subj, spec, plan, workers)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range periodic {
		g.agg.Add(s)
	}
	for _, m := range []struct {
		phase string
		at    int
	}{{string(metrics.ModeSpeculative), 200}, {string(metrics.ModeTarget), 500}, {"idle", 800}} {
		start := time.Now()
		g.Mark(m.phase, ms(m.at))
		// Worker C makes every mark wait for the timeout; a generous bound, since this is
		// about a stall (waiting for NATS's default or for ever), not about speed.
		if took := time.Since(start); took > edgeReadTimeout+2*time.Second {
			t.Errorf("mark %s took %v with a silent worker; want about %v", m.phase, took, edgeReadTimeout)
		}
	}
	for _, c := range []struct {
		name string
		n    *atomic.Int32
		want int32
	}{{"B", bReads, 3}, {"C", cReads, 3}, {"D", dReads, 3}, {"E", eReads, 0}, {"F", fReads, 0}} {
		if got := c.n.Load(); got != c.want {
			t.Errorf("worker %s was asked %d times, want %d", c.name, got, c.want)
		}
	}

	res, ok := g.Result(map[metrics.Mode]int{metrics.ModeSpeculative: 60, metrics.ModeTarget: 25}).(gpumon.Result)
	if !ok || !res.Available {
		t.Fatalf("result %+v", res)
	}
	want := map[string]map[string]float64{
		// The counter's rise over each mode, to the millijoule.
		"gpu-b": {"idle": 1.5, "speculative": 6, "target": 2.5, "total": 10},
		// The periodic samples only: the interval's 10 J shared in proportion to time.
		"gpu-c": {"idle": 4, "speculative": 3, "target": 3, "total": 10},
		"gpu-d": {"idle": 4, "speculative": 3, "target": 3, "total": 10},
	}
	if len(res.Devices) != len(want) {
		t.Errorf("%d devices in the result, want %d: %+v", len(res.Devices), len(want), res.Devices)
	}
	for _, d := range res.Devices {
		if !reflect.DeepEqual(d.EnergyJ, want[d.Host]) || d.EnergyMethod != gpumon.EnergyCounter {
			t.Errorf("%s device %d: energy %v by %q, want %v by counter", d.Host, d.Index, d.EnergyJ, d.EnergyMethod, want[d.Host])
		}
	}
	wantSamples := map[string]int{"gpu-b": 5, "gpu-c": 2, "gpu-d": 2}
	for _, d := range res.Devices {
		if d.Samples != wantSamples[d.Host] {
			t.Errorf("%s: %d samples, want %d", d.Host, d.Samples, wantSamples[d.Host])
		}
	}
	if j := res.JoulesPerOutputToken[gpumon.PhaseSpeculative]; j != 12.0/60 {
		t.Errorf("J/token speculative = %v, want %v (6 + 3 + 3 J over 60 tokens)", j, 12.0/60)
	}
}

// TestRebuildGPUMatchesTheLiveMonitor: a controller restarted after a crash rebuilds a job's
// GPU section from the monitor setup and phase marks the job kept and the samples the GPU
// stream kept: with the same samples and marks (and no readings at the marks) it is the
// section the live monitor gives, roles and unavailable hosts included, and the warnings say
// what it covers. Without the setup, samples or stream it says why the readings are missing.
func TestRebuildGPUMatchesTheLiveMonitor(t *testing.T) {
	_, nc := natstest.Start(t, natsrv.Options{})
	var subj protocol.Subjects
	spec := &jobspec.Job{GPUMonitor: jobspec.GPUMonitor{Enabled: true, Interval: jobspec.Duration(time.Second), CooldownBelowC: 70}}
	plan := &placement.Plan{
		Target: placement.ModelPlan{Devices: []int{0, 1, 0}, Stages: []placement.Stage{{Host: "gpu-a", Devices: []int{0, 1}, Layers: [2]int{0, 4}},
			{Host: "cpu-b", Devices: []int{0}, Layers: [2]int{4, 6}}}},
		Drafter: &placement.ModelPlan{Devices: []int{1}, Stages: []placement.Stage{{Host: "gpu-a", Devices: []int{1}, Layers: [2]int{0, 2}}}},
	}
	workers := []cluster.Worker{{ID: "a", Host: "gpu-a"}, {ID: "b", Host: "cpu-b", GPUMonitor: "worker cpu-b offers CPU devices only"},
		{ID: "c", Host: "cpu-c", GPUMonitor: "worker cpu-c offers CPU devices only"}} // cpu-c holds none of the job
	g, err := startGPUMonitor(nc, subj, spec, plan, workers)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(5000, 0)
	var samples []gpumon.Sample
	for i := 0; i <= 8; i++ {
		for dev := 0; dev < 2; dev++ {
			w, mj := 100+float64(10*i), uint64(i*i)*50_000
			samples = append(samples, gpumon.Sample{Host: "gpu-a", Device: dev, UUID: "GPU-" + string(rune('a'+dev)), Name: "NVIDIA H200",
				T: t0.Add(time.Duration(i) * time.Second), PowerW: &w, EnergyMJ: &mj})
		}
	}
	marks := []jobrun.Mark{{Phase: "speculative", T: t0.Add(1500 * time.Millisecond)}, {Phase: "idle", T: t0.Add(4 * time.Second)},
		{Phase: "target", T: t0.Add(5200 * time.Millisecond)}}
	for _, s := range samples {
		g.agg.Add(s)
	}
	for _, m := range marks {
		g.Mark(m.Phase, m.T)
	}
	out := map[metrics.Mode]int{metrics.ModeSpeculative: 40, metrics.ModeTarget: 20}
	live := g.Result(out).(gpumon.Result)

	setup, err := json.Marshal(g.keep())
	if err != nil {
		t.Fatal(err)
	}
	kept := &jobrun.Kept{Spec: spec, GPU: setup, Marks: marks}
	until := t0.Add(8 * time.Second)
	var asked [2]time.Time
	read := func(_ context.Context, since, u time.Time) ([]gpumon.Sample, error) {
		asked = [2]time.Time{since, u}
		return samples, nil
	}
	r := RebuildGPU(context.Background(), read)(kept, until, out)
	got, ok := r.Section.(gpumon.Result)
	if !ok || !reflect.DeepEqual(got, live) {
		t.Errorf("rebuilt section\n%+v\nthe live monitor's\n%+v", r.Section, live)
	}
	if !got.Available || got.Devices[1].Role != gpumon.RoleShared || got.UnavailableHosts["cpu-b"] == "" || got.Devices[0].EnergyJ["target"] == 0 ||
		got.UnavailableHosts["cpu-c"] != "" {
		t.Errorf("rebuilt section lacks what the live one has: %+v", got)
	}
	if !asked[0].Equal(g.setup.Since) || asked[0].IsZero() || !asked[1].Equal(until) {
		t.Errorf("samples asked for from %v to %v; want from the monitor's start %v to %v", asked[0], asked[1], g.setup.Since, until)
	}
	if len(r.Power) != 2 {
		t.Errorf("%d power series, want 2", len(r.Power))
	}
	w := strings.Join(r.Warnings, "\n")
	for _, want := range []string{
		"the GPU figures were rebuilt after the controller stopped from the 18 samples the GPU stream kept from " + stamp(g.setup.Since) +
			" (when the job's monitor started) to 1970-01-01T01:23:28.000Z (the job's last finished request or phase mark)",
		"the phases are cut at the marks the run kept (speculative from 1970-01-01T01:23:21.500Z, idle from 1970-01-01T01:23:24.000Z, target from 1970-01-01T01:23:25.200Z)",
		"is not in them",
		"do not list the cool-down waits",
	} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	if strings.Contains(w, "energy readings the run took at each phase mark") {
		t.Errorf("the warnings speak of readings at the marks the run did not take:\n%s", w)
	}

	for _, c := range []struct {
		name    string
		kept    *jobrun.Kept
		read    GPUSamples
		reason  string // "" : available
		warning bool
	}{
		{"monitor off", &jobrun.Kept{Spec: &jobspec.Job{}}, read, gpuDisabled, false},
		{"no setup kept", &jobrun.Kept{Spec: spec}, read, "the run kept no GPU monitor setup", true},
		{"no stream", kept, nil, "there is no GPU samples stream", true},
		{"stream unreadable", kept, func(context.Context, time.Time, time.Time) ([]gpumon.Sample, error) {
			return nil, errors.New("stream gone")
		}, "the GPU samples could not be read: stream gone", true},
		// the CPU worker's reason, as the live monitor would say it
		{"no samples", kept, func(context.Context, time.Time, time.Time) ([]gpumon.Sample, error) { return nil, nil },
			"worker cpu-b offers CPU devices only", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := RebuildGPU(context.Background(), c.read)(c.kept, until, out)
			res := r.Section.(gpumon.Result)
			if res.Available || !strings.Contains(res.Reason, c.reason) {
				t.Errorf("section %+v, want unavailable: %q", res, c.reason)
			}
			if got := len(r.Warnings) > 0; got != c.warning || c.warning && !strings.Contains(r.Warnings[0], c.reason) {
				t.Errorf("warnings %q", r.Warnings)
			}
		})
	}
	noHosts := newGPUSetup(spec, plan, workers[:1])
	noHosts.Since = t0
	data, _ := json.Marshal(noHosts)
	r = RebuildGPU(context.Background(), func(context.Context, time.Time, time.Time) ([]gpumon.Sample, error) { return nil, nil })(
		&jobrun.Kept{Spec: spec, GPU: data}, until, out)
	if res := r.Section.(gpumon.Result); res.Available || !strings.Contains(res.Reason, "the GPU samples stream holds no sample from 1970-01-01T01:23:20.000Z") || len(r.Warnings) != 1 {
		t.Errorf("no samples of a GPU host: %+v %q", res, r.Warnings)
	}
}

// TestGPURolesPerDevice: a device both models use is shared, and only that
// one: the drafter's other device stays the drafter's; and only the hosts
// the job runs on are listed as unmonitored.
func TestGPURolesPerDevice(t *testing.T) {
	plan := &placement.Plan{
		Target:  placement.ModelPlan{Devices: []int{0, 1}, Stages: []placement.Stage{{Host: "a", Devices: []int{0, 1}, Layers: [2]int{0, 4}}}},
		Drafter: &placement.ModelPlan{Devices: []int{1, 2}, Stages: []placement.Stage{{Host: "a", Devices: []int{1, 2}, Layers: [2]int{0, 2}}}},
	}
	workers := []cluster.Worker{{ID: "1", Host: "a"}, {ID: "2", Host: "idle", GPUMonitor: "no NVML"}}
	setup := newGPUSetup(&jobspec.Job{}, plan, workers)
	want := []gpuRole{{"a", 0, gpumon.RoleTarget}, {"a", 1, gpumon.RoleShared}, {"a", 2, gpumon.RoleDrafter}}
	if !reflect.DeepEqual(setup.Roles, want) {
		t.Errorf("roles %+v, want %+v", setup.Roles, want)
	}
	if len(setup.Unavailable) != 0 {
		t.Errorf("unavailable %v: the host idle runs nothing of the job", setup.Unavailable)
	}
}
