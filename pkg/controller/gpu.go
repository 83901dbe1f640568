package controller

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/cluster"
	"github.com/draftbench/draftbench/pkg/gpumon"
	"github.com/draftbench/draftbench/pkg/jobspec"
	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/placement"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/report"
)

// gpuMonitor collects the workers' GPU samples during a job and attributes
// them to roles (from the placement) and phases (from the mode timeline).
type gpuMonitor struct {
	agg     *gpumon.Aggregator
	sub     *nats.Subscription
	edges   *gpumon.EdgeSampler // nil: no worker GPU is readable from this process
	stopped sync.Once
	enabled bool
	reason  string
	spec    *jobspec.Job
	log     hclog.Logger
}

func startGPUMonitor(nc *nats.Conn, subj protocol.Subjects, spec *jobspec.Job, plan *placement.Plan, workers []cluster.Worker) (*gpuMonitor, error) {
	if !spec.GPUMonitor.Enabled {
		return &gpuMonitor{reason: "gpu_monitor is disabled in the job"}, nil
	}
	interval := spec.GPUMonitor.Interval.Std()
	if interval <= 0 {
		interval = time.Second
	}
	g := &gpuMonitor{agg: gpumon.NewAggregator(interval), enabled: true, spec: spec, log: hclog.NewNullLogger()}
	roles := map[[2]any]gpumon.Role{}
	set := func(p *placement.ModelPlan, r gpumon.Role) {
		if p == nil {
			return
		}
		for _, st := range p.Stages {
			for _, d := range st.Devices {
				host := st.Host
				if host == "" && len(workers) == 1 {
					host = workers[0].Host
				}
				k := [2]any{host, d}
				if old, ok := roles[k]; ok && old != r {
					r = gpumon.RoleShared
				}
				roles[k] = r
				g.agg.SetRole(host, d, roles[k])
			}
		}
	}
	set(&plan.Target, gpumon.RoleTarget)
	set(plan.Drafter, gpumon.RoleDrafter)
	owners := map[string]gpumon.DeviceRef{}
	for _, w := range workers {
		if w.GPUMonitor != "" {
			g.agg.NoteUnavailable(w.Host, w.GPUMonitor)
			continue
		}
		for _, d := range w.Devices {
			if d.Kind == protocol.DeviceGPU && d.UUID != "" {
				owners[d.UUID] = gpumon.DeviceRef{Host: w.Host, Index: d.Index}
			}
		}
	}
	// The workers sample every interval, which leaves a mode shorter than that with one
	// sample or none. The workers' GPUs that are on this machine too (controller run) are
	// read here at each mode mark, so every mode starts and ends on an energy reading. Without
	// them (no driver here, remote workers) the periodic samples are all there is.
	if edges, err := gpumon.OpenEdgeSamplerNVML(owners); err == nil && edges != nil {
		g.edges = edges
		g.agg.SampleAtMarks(edges.Sample)
	}
	sub, err := nc.Subscribe(subj.AllGPU(), func(m *nats.Msg) {
		var s gpumon.Sample
		if json.Unmarshal(m.Data, &s) == nil {
			g.agg.Add(s)
		}
	})
	if err != nil {
		g.stop()
		return nil, err
	}
	g.sub = sub
	return g, nil
}

// coolDown waits, before a mode, until every GPU is below the job's
// cooldown_below_c (at most cooldown_timeout); the wait is idle time and is
// recorded in the results.
func (g *gpuMonitor) coolDown(ctx context.Context, mode metrics.Mode) {
	if !g.enabled || g.spec.GPUMonitor.CooldownBelowC <= 0 {
		return
	}
	g.agg.Mark(gpumon.PhaseIdle, time.Now())
	waited, reached, err := g.agg.CoolDown(ctx, uint32(g.spec.GPUMonitor.CooldownBelowC), g.spec.GPUMonitor.CooldownTimeout.Std())
	g.log.Info("GPU cool-down before mode", "mode", mode, "below_c", g.spec.GPUMonitor.CooldownBelowC,
		"waited", waited.Round(time.Millisecond), "reached", reached, "error", err)
}

// Mark implements jobrun.Phases.
func (g *gpuMonitor) Mark(phase string, t time.Time) {
	if g.enabled {
		g.agg.Mark(gpumon.Phase(phase), t)
	}
}

// Result is the GPU section of the results.
func (g *gpuMonitor) Result(out map[metrics.Mode]int) any {
	if !g.enabled {
		return gpumon.Unavailable(g.reason)
	}
	g.stop()
	tokens := map[gpumon.Phase]int{}
	for m, n := range out {
		tokens[gpumon.Phase(m)] = n
	}
	return g.agg.Result(tokens)
}

// stop ends the subscription and closes NVML here; the job calls it when it ends, however.
func (g *gpuMonitor) stop() {
	g.stopped.Do(func() {
		if g.sub != nil {
			_ = g.sub.Unsubscribe()
		}
		if g.edges != nil {
			_ = g.edges.Close()
		}
	})
}

// Power is the power-over-time series for the plots.
func (g *gpuMonitor) Power() []report.PowerSeries {
	if !g.enabled {
		return nil
	}
	var out []report.PowerSeries
	for _, s := range g.agg.PowerSeries() {
		out = append(out, report.PowerSeries(s))
	}
	return out
}
