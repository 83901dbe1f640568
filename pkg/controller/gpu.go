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
	"github.com/draftbench/draftbench/pkg/jobrun"
	"github.com/draftbench/draftbench/pkg/jobspec"
	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/placement"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/report"
)

// gpuDisabled is the GPU section's reason when the job turns the monitor off.
const gpuDisabled = "gpu_monitor is disabled in the job"

// edgeReadTimeout bounds a remote worker's answer to a read at a phase change. A
// phase change waits for it, so it is short; a worker that misses it leaves that
// phase edge to its periodic samples.
const edgeReadTimeout = 300 * time.Millisecond

// gpuMonitor collects the workers' GPU samples during a job and attributes
// them to roles (from the placement) and phases (from the mode timeline).
type gpuMonitor struct {
	agg     *gpumon.Aggregator
	setup   gpuSetup // what agg was built from, kept with the job for a rebuild
	sub     *nats.Subscription
	edges   *gpumon.EdgeSampler // nil: no worker GPU is readable from this process
	remote  *remoteEdges        // nil: every monitored worker GPU is read here
	stopped sync.Once
	enabled bool
	reason  string
	spec    *jobspec.Job
	log     hclog.Logger
}

// gpuInterval is the job's GPU sampling interval: what the workers running
// its stages sample at (0 when the monitor is off: the workers' own).
func gpuInterval(spec *jobspec.Job) time.Duration {
	if !spec.GPUMonitor.Enabled {
		return 0
	}
	if d := spec.GPUMonitor.Interval.Std(); d > 0 {
		return d
	}
	return time.Second
}

// gpuSetup is what a job's aggregator is built from besides the samples and the phase marks.
// The live monitor keeps it with the job (jobrun.Options.KeepGPU), so that a controller
// restarted after a crash builds the same aggregator again (RebuildGPU).
type gpuSetup struct {
	Interval time.Duration `json:"interval_ns"`
	// Since is when the controller began to take the workers' samples: the aggregator has
	// every sample that arrived from then on.
	Since time.Time `json:"since"`
	Roles []gpuRole `json:"roles,omitempty"`
	// Unavailable holds, per host, why its worker's monitor did not start.
	Unavailable map[string]string `json:"unavailable,omitempty"`
	// EdgeReads is set when some GPU's energy counter was read at every phase mark.
	EdgeReads bool `json:"edge_reads,omitempty"`
}

// gpuRole is the role of one device in a job.
type gpuRole struct {
	Host   string      `json:"host"`
	Device int         `json:"device"`
	Role   gpumon.Role `json:"role"`
}

// newGPUSetup gives each device of the placement its role and notes the workers of the
// job's hosts whose monitor did not start.
func newGPUSetup(spec *jobspec.Job, plan *placement.Plan, workers []cluster.Worker) gpuSetup {
	setup := gpuSetup{Interval: gpuInterval(spec)}
	type key struct {
		host   string
		device int
	}
	roles := map[key]gpumon.Role{}
	var order []key
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
				k := key{host, d}
				role := r // per device: one shared device does not make the stage's others shared
				if old, ok := roles[k]; ok && old != r {
					role = gpumon.RoleShared
				}
				if _, ok := roles[k]; !ok {
					order = append(order, k)
				}
				roles[k] = role
			}
		}
	}
	set(&plan.Target, gpumon.RoleTarget)
	set(plan.Drafter, gpumon.RoleDrafter)
	for _, k := range order {
		setup.Roles = append(setup.Roles, gpuRole{Host: k.host, Device: k.device, Role: roles[k]})
	}
	// Only the hosts the job runs on: a worker it does not use has nothing to say about it.
	used := map[string]bool{}
	for _, k := range order {
		used[k.host] = true
	}
	for _, w := range workers {
		if w.GPUMonitor != "" && (used[w.Host] || used[""]) {
			if setup.Unavailable == nil {
				setup.Unavailable = map[string]string{}
			}
			setup.Unavailable[w.Host] = w.GPUMonitor
		}
	}
	return setup
}

// aggregator is an empty aggregator with the setup's roles and unavailable hosts.
func (s gpuSetup) aggregator() *gpumon.Aggregator {
	agg := gpumon.NewAggregator(s.Interval)
	for _, r := range s.Roles {
		agg.SetRole(r.Host, r.Device, r.Role)
	}
	for host, why := range s.Unavailable {
		agg.NoteUnavailable(host, why)
	}
	return agg
}

func startGPUMonitor(nc *nats.Conn, subj protocol.Subjects, spec *jobspec.Job, plan *placement.Plan, workers []cluster.Worker) (*gpuMonitor, error) {
	if !spec.GPUMonitor.Enabled {
		return &gpuMonitor{reason: gpuDisabled}, nil
	}
	setup := newGPUSetup(spec, plan, workers)
	g := &gpuMonitor{agg: setup.aggregator(), enabled: true, spec: spec, log: hclog.NewNullLogger()}
	owners := map[string]gpumon.DeviceRef{}
	for _, w := range workers {
		if w.GPUMonitor != "" {
			continue
		}
		for _, d := range w.Devices {
			if d.Kind == protocol.DeviceGPU && d.UUID != "" {
				owners[d.UUID] = gpumon.DeviceRef{Host: w.Host, Index: d.Index}
			}
		}
	}
	// The workers sample every interval, which leaves a mode shorter than that with one
	// sample or none, so every mode mark also reads the GPUs' energy counters: the workers'
	// GPUs that are on this machine too (controller run) here, through NVML, and the others
	// through their workers' monitors (WorkerGPURead). A GPU whose reading fails keeps its
	// periodic samples only.
	if edges, err := gpumon.OpenEdgeSamplerNVML(owners); err == nil && edges != nil {
		g.edges = edges
	}
	g.remote = newRemoteEdges(nc, subj, workers, g.edges)
	if g.edges != nil || g.remote != nil {
		g.agg.SampleAtMarks(g.sampleEdges)
		setup.EdgeReads = true
	}
	setup.Since = time.Now()
	g.setup = setup
	sub, err := nc.Subscribe(subj.AllGPU(), func(m *nats.Msg) {
		var s gpumon.Sample
		if protocol.CheckRecordVersion(m.Header) == nil && json.Unmarshal(m.Data, &s) == nil {
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

// sampleEdges reads, at a mode mark, the GPUs read here and, in parallel, those of the
// remote workers. A remote reading carries its host's clock, not this one: that is right,
// because the aggregator moves each mark, for each device read at it, to the time of that
// device's reading (Aggregator.Mark, timeline.forDevice), and the device's periodic samples
// carry the same host's clock; so each phase is cut on the device's own timeline. A device
// not read at a mark (no answer in time) keeps the mark at this machine's time, as every
// mark did before these reads, which assumes the clocks agree to well within a phase.
func (g *gpuMonitor) sampleEdges() []gpumon.Sample {
	var remote []gpumon.Sample
	var wg sync.WaitGroup
	if g.remote != nil {
		wg.Go(func() { remote = g.remote.read(g.log) })
	}
	var out []gpumon.Sample
	if g.edges != nil {
		out = g.edges.Sample()
	}
	wg.Wait()
	return append(out, remote...)
}

// remoteEdges reads, at each mode mark, the GPUs of the workers whose monitors run and whose
// GPUs this machine cannot read itself, by asking each worker's monitor (WorkerGPURead).
type remoteEdges struct {
	nc      *nats.Conn
	subj    protocol.Subjects
	workers []string                  // ids of the workers asked
	local   map[gpumon.DeviceRef]bool // read here; a worker's own reading of them is dropped
	timeout time.Duration
}

// newRemoteEdges returns nil when no worker is to be asked: a worker without a running
// monitor has nobody to answer (its registration says why), and one whose GPUs local all
// reads needs no asking.
func newRemoteEdges(nc *nats.Conn, subj protocol.Subjects, workers []cluster.Worker, local *gpumon.EdgeSampler) *remoteEdges {
	r := &remoteEdges{nc: nc, subj: subj, local: map[gpumon.DeviceRef]bool{}, timeout: edgeReadTimeout}
	if local != nil {
		for _, d := range local.Devices() {
			r.local[d] = true
		}
	}
	for _, w := range workers {
		if w.GPUMonitor != "" {
			continue
		}
		for _, d := range w.Devices {
			if d.Kind == protocol.DeviceGPU && !r.local[gpumon.DeviceRef{Host: w.Host, Index: d.Index}] {
				r.workers = append(r.workers, w.ID)
				break
			}
		}
	}
	if len(r.workers) == 0 {
		return nil
	}
	return r
}

// read asks every worker at once and returns what arrived within the timeout. A worker that
// does not answer, or answers with an error, is logged at debug level and left out: a slow or
// lost worker must neither hold the phase change up nor fail the job (the registry ends a job
// whose worker is lost).
func (r *remoteEdges) read(log hclog.Logger) []gpumon.Sample {
	req, err := protocol.Encode(&protocol.GPURead{})
	if err != nil {
		log.Debug("no phase-edge GPU reads", "error", err)
		return nil
	}
	replies := make([][]gpumon.Sample, len(r.workers))
	var wg sync.WaitGroup
	for i, id := range r.workers {
		wg.Go(func() {
			subject := r.subj.WorkerGPURead(id)
			m, err := r.nc.Request(subject, req, r.timeout)
			if err != nil {
				log.Debug("no phase-edge GPU reading from a worker", "worker", id, "subject", subject, "error", err)
				return
			}
			var reply protocol.GPUReadReply
			if err := protocol.Decode(m.Data, &reply); err != nil {
				log.Debug("bad phase-edge GPU reading from a worker", "worker", id, "error", err)
				return
			}
			if reply.Error != "" {
				log.Debug("no phase-edge GPU reading from a worker", "worker", id, "error", reply.Error)
				return
			}
			replies[i] = reply.Samples
		})
	}
	wg.Wait()
	var out []gpumon.Sample
	for _, ss := range replies {
		for _, s := range ss {
			// Samples of devices without a role in the job are harmless: the worker's periodic
			// samples already bring them to the aggregator, which reports every device it has.
			if !r.local[gpumon.DeviceRef{Host: s.Host, Index: s.Device}] {
				out = append(out, s)
			}
		}
	}
	return out
}

// coolDown waits, before a mode, until every GPU is below the job's
// cooldown_below_c (at most cooldown_timeout); the wait is idle time, marked
// through phases (which passes the mark on to g), and is recorded in the
// results.
func (g *gpuMonitor) coolDown(ctx context.Context, mode metrics.Mode, phases jobrun.Phases) {
	if !g.enabled || g.spec.GPUMonitor.CooldownBelowC <= 0 {
		return
	}
	phases.Mark(string(gpumon.PhaseIdle), time.Now())
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

// keep is what the job keeps for a rebuild of its GPU section after a crash
// (jobrun.Options.KeepGPU): the monitor's setup; nil when it is off.
func (g *gpuMonitor) keep() any {
	if !g.enabled {
		return nil
	}
	return g.setup
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
	return powerSeries(g.agg)
}

// powerSeries is agg's power over time for the plots.
func powerSeries(agg *gpumon.Aggregator) []report.PowerSeries {
	var out []report.PowerSeries
	for _, s := range agg.PowerSeries() {
		out = append(out, report.PowerSeries(s))
	}
	return out
}
