package controller

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/draftbench/draftbench/pkg/cluster"
	"github.com/draftbench/draftbench/pkg/gpumon"
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
// mode timeline, and a worker without NVML is reported with its reason.
func TestGPUMonitorOverNATS(t *testing.T) {
	_, nc := natstest.Start(t, natsrv.Options{})
	var subj protocol.Subjects
	spec := &jobspec.Job{GPUMonitor: jobspec.GPUMonitor{Enabled: true, Interval: jobspec.Duration(time.Second)}}
	plan := &placement.Plan{
		Target:  placement.ModelPlan{Devices: []int{0, 1}, Stages: []placement.Stage{{Host: "gpu-a", Devices: []int{0, 1}, Layers: [2]int{0, 4}}}},
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
	g.coolDown(context.Background(), metrics.ModeTarget)
	waited := time.Since(start)
	if waited < 250*time.Millisecond || waited > 4*time.Second {
		t.Errorf("waited %v: want about 300 ms, until the GPU reported 55 °C", waited)
	}
	res := g.Result(nil).(gpumon.Result)
	if len(res.CoolDowns) != 1 || !res.CoolDowns[0].Reached {
		t.Errorf("cool-downs recorded: %+v", res.CoolDowns)
	}
}
