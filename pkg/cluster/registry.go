// Package cluster is the controller's view of its workers: who registered,
// who is still alive (heartbeats; a worker silent for three intervals is
// lost, DESIGN §5), and the deployment of a job's placement plan onto them
// as stage processes, watched so that a lost worker or a dead stage ends the
// job within seconds instead of hanging it.
package cluster

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/placement"
	"github.com/draftbench/draftbench/pkg/protocol"
)

// Worker is a registered worker as the controller sees it.
type Worker struct {
	ID       string            `json:"id"`
	Host     string            `json:"host"`
	Devices  []protocol.Device `json:"devices"`
	Version  string            `json:"version"`
	Joined   time.Time         `json:"joined"`
	LastSeen time.Time         `json:"last_seen"`
	Lost     bool              `json:"lost"`
	// Left says the worker shut down and said so (a Leaving heartbeat).
	Left   bool                   `json:"left,omitempty"`
	Stages []protocol.StageStatus `json:"stages,omitempty"`
	// GPUMonitor is "" when the worker publishes GPU samples, else why not.
	GPUMonitor string `json:"gpu_monitor,omitempty"`
	// CUDAModes are the CUDA backend's opt-in modes of its GPU stages.
	CUDAModes []string `json:"cuda_modes,omitempty"`
	// heard is when the worker itself last spoke (registered or sent a
	// heartbeat); LastSeen also moves when the controller reconnects.
	heard time.Time
}

// HostTaken starts the Error of a RegisterReply that refuses a worker for
// good: its host name belongs to a live worker, one that has sent a
// heartbeat since this worker first asked. The worker gives up on it (its
// twin in pkg/agent is agent.HostTaken). While the holder has been silent
// since, it may be the crashed process this worker replaces: the refusal
// then says so without this prefix, and the worker tries again until the
// holder is lost and the name is free.
const HostTaken = protocol.HostTaken

// VersionRefused starts the Error of a RegisterReply that refuses a worker
// of another step protocol version, for good (protocol.VersionRefused).
const VersionRefused = protocol.VersionRefused

// RunningStages counts the worker's stages that are starting or serving.
// Its heartbeats also list the stages that failed or exited until the
// worker forgets them, and a lost worker's last list says nothing of what
// still runs: neither counts.
func (w Worker) RunningStages() int {
	if w.Lost {
		return 0
	}
	n := 0
	for _, st := range w.Stages {
		if st.State == protocol.StageStarting || st.State == protocol.StageReady {
			n++
		}
	}
	return n
}

// Options configure a Registry.
type Options struct {
	Heartbeat time.Duration // interval asked of workers (default 1s)
	Now       func() time.Time
	Log       hclog.Logger
	// Connected says whether the controller's own NATS connection is up
	// (default: the connection's status). While it is down no heartbeat can
	// arrive, so no worker is declared lost; after it comes back every
	// worker gets three fresh intervals.
	Connected func() bool
	// OnOrphans is told of stages a worker runs (starting or ready) that no
	// deployment of this registry's controller owns (Own): stages a stopped
	// or crashed controller left behind, which would hold the devices and
	// skew the next job. It runs on a goroutine of its own, at most once per
	// orphanRetry for one instance.
	OnOrphans func(w Worker, instances []string)
	// Version is the controller's build version, for the refusal of a
	// worker of another one.
	Version string
}

// orphanRetry spaces the reports of one orphaned instance: a release takes
// up to a stage's stop grace to show in the heartbeats.
const orphanRetry = 15 * time.Second

// Registry tracks workers through their registrations and heartbeats.
type Registry struct {
	nc      *nats.Conn
	subj    protocol.Subjects
	opt     Options
	mu      sync.Mutex
	workers map[string]*Worker
	changed chan struct{} // closed and replaced on every change
	lostFns map[int]func(Worker)
	nextFn  int
	subs    []*nats.Subscription
	down    bool // the controller's connection was down at the last Check
	// owned are the stage instances this controller's deployments hold;
	// orphans when each unowned one was last reported.
	owned   map[string]bool
	orphans map[string]time.Time
	// refused holds when each worker's registration was first refused for a
	// host name that another held.
	refused map[string]time.Time
}

// hostTaken reports whether a live worker other than w holds w's host name.
// The caller holds r.mu.
func (r *Registry) hostTaken(w *Worker) bool {
	for _, o := range r.workers {
		if o.Host == w.Host && o.ID != w.ID && !o.Lost {
			return true
		}
	}
	return false
}

// Own records that a deployment of this controller holds instance, before
// its stages are assigned: heartbeats showing it are then not orphans.
func (r *Registry) Own(instance string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.owned[instance] = true
}

// Disown forgets instance once its deployment released it.
func (r *Registry) Disown(instance string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.owned, instance)
}

// orphansOf lists the live stages of hb no deployment owns and not reported
// within orphanRetry. The caller holds r.mu.
func (r *Registry) orphansOf(stages []protocol.StageStatus, now time.Time) []string {
	// An orphan not reported again within a few retries has gone: forget it.
	for inst, last := range r.orphans {
		if now.Sub(last) > 4*orphanRetry {
			delete(r.orphans, inst)
		}
	}
	var out []string
	for _, st := range stages {
		live := st.State == protocol.StageStarting || st.State == protocol.StageReady
		if !live || r.owned[st.Instance] || slices.Contains(out, st.Instance) {
			continue
		}
		if last, ok := r.orphans[st.Instance]; ok && now.Sub(last) < orphanRetry {
			continue
		}
		r.orphans[st.Instance] = now
		out = append(out, st.Instance)
	}
	return out
}

// forgetRefusals drops the first refusals of workers that stopped asking
// long ago. The caller holds r.mu.
func (r *Registry) forgetRefusals(now time.Time) {
	for id, first := range r.refused {
		if now.Sub(first) > time.Hour {
			delete(r.refused, id)
		}
	}
}

// NewRegistry starts answering registrations and reading heartbeats.
func NewRegistry(nc *nats.Conn, subj protocol.Subjects, opt Options) (*Registry, error) {
	if opt.Heartbeat <= 0 {
		opt.Heartbeat = time.Second
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Log == nil {
		opt.Log = hclog.NewNullLogger()
	}
	if opt.Connected == nil {
		opt.Connected = nc.IsConnected
	}
	r := &Registry{nc: nc, subj: subj, opt: opt, workers: map[string]*Worker{}, changed: make(chan struct{}),
		lostFns: map[int]func(Worker){}, owned: map[string]bool{}, orphans: map[string]time.Time{},
		refused: map[string]time.Time{}}
	sub, err := nc.Subscribe(subj.WorkersRegister(), r.onRegister)
	if err != nil {
		return nil, err
	}
	r.subs = append(r.subs, sub)
	sub, err = nc.Subscribe(subj.WorkerHeartbeats(), r.onHeartbeat)
	if err != nil {
		return nil, err
	}
	r.subs = append(r.subs, sub)
	return r, nc.Flush()
}

// Close stops listening.
func (r *Registry) Close() {
	for _, s := range r.subs {
		_ = s.Unsubscribe()
	}
}

func (r *Registry) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *Registry) onRegister(m *nats.Msg) {
	var reg protocol.Registration
	reply := &protocol.RegisterReply{HeartbeatMS: r.opt.Heartbeat.Milliseconds()}
	if err := protocol.Decode(m.Data, &reg); err != nil {
		r.opt.Log.Warn("bad registration dropped", "error", err)
		reply = &protocol.RegisterReply{Error: err.Error()}
	} else if v := reg.StepVersionOf(); v != protocol.StepVersion {
		reply = &protocol.RegisterReply{Error: fmt.Sprintf("%s: this worker (draftbench %s) speaks step protocol version %d and this controller (draftbench %s) version %d: run one draftbench version on the controller and every worker",
			VersionRefused, reg.BuildVersion, v, r.opt.Version, protocol.StepVersion)}
		r.opt.Log.Error("registration refused: another draftbench version", "worker", reg.WorkerID, "host", reg.Host,
			"worker_version", reg.BuildVersion, "step_protocol", v, "want", protocol.StepVersion)
	} else {
		now := r.opt.Now()
		r.mu.Lock()
		// Host names address devices (placement.devices "gpu-1:0"): two
		// live workers may not share one. A worker restarted under its old
		// name gets in once the old one has left or is lost; one whose name
		// a worker that still sends heartbeats holds is refused for good.
		var taken *Worker
		for _, o := range r.workers {
			if o.Host == reg.Host && o.ID != reg.WorkerID && !o.Lost {
				taken = o
			}
		}
		if taken != nil {
			first, seen := r.refused[reg.WorkerID]
			if !seen {
				first = now
				r.refused[reg.WorkerID] = now
			}
			r.forgetRefusals(now)
			r.mu.Unlock()
			if seen && taken.heard.After(first) {
				reply.Error = fmt.Sprintf("%s: %q belongs to worker %s, which is alive (it sent a heartbeat after this worker first asked): give each worker its own --name",
					HostTaken, reg.Host, taken.ID)
				r.opt.Log.Warn("registration refused: host name taken", "worker", reg.WorkerID, "host", reg.Host, "taken_by", taken.ID)
			} else {
				reply.Error = fmt.Sprintf("the host name %q is held by worker %s, last heard from %s ago: waiting to see whether it is gone (a worker silent for %s is lost)",
					reg.Host, taken.ID, now.Sub(taken.heard).Round(time.Millisecond), 3*r.opt.Heartbeat)
				r.opt.Log.Info("registration deferred: host name held", "worker", reg.WorkerID, "host", reg.Host, "held_by", taken.ID)
			}
		} else {
			delete(r.refused, reg.WorkerID)
			w := &Worker{ID: reg.WorkerID, Host: reg.Host, Devices: reg.Devices, Version: reg.BuildVersion, Joined: now, LastSeen: now,
				GPUMonitor: reg.GPUMonitor, CUDAModes: reg.CUDAModes, heard: now}
			_, again := r.workers[reg.WorkerID]
			r.workers[reg.WorkerID] = w
			// A lost worker of the same name is replaced: the table shows
			// the host once. Should it come back, it is told it is unknown
			// and its registration says why it cannot get in.
			var replaced []string
			for id, o := range r.workers {
				if o.Host == reg.Host && id != reg.WorkerID && o.Lost {
					delete(r.workers, id)
					replaced = append(replaced, id)
				}
			}
			r.notify()
			r.mu.Unlock()
			r.opt.Log.Info("worker registered", "worker", reg.WorkerID, "host", reg.Host, "devices", len(reg.Devices), "again", again)
			for _, id := range replaced {
				r.opt.Log.Info("lost worker replaced", "worker", id, "host", reg.Host, "by", reg.WorkerID)
			}
		}
	}
	if m.Reply != "" {
		data, err := protocol.Encode(reply)
		if err == nil {
			_ = m.Respond(data)
		}
	}
}

func (r *Registry) onHeartbeat(m *nats.Msg) {
	var hb protocol.Heartbeat
	if err := protocol.Decode(m.Data, &hb); err != nil {
		r.opt.Log.Debug("bad heartbeat dropped", "subject", m.Subject, "error", err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.workers[hb.WorkerID]
	if ok && w.Lost && !hb.Leaving && r.hostTaken(w) {
		// Back after another worker took its host name: it is forgotten
		// and must register again, which says why it cannot.
		delete(r.workers, w.ID)
		r.notify()
		ok = false
	}
	if !ok {
		// A worker this controller does not know (it restarted): tell it to register again.
		if m.Reply != "" {
			if data, err := protocol.Encode(&protocol.Ack{Error: protocol.UnknownWorker + " " + hb.WorkerID}); err == nil {
				_ = m.Respond(data)
			}
		}
		return
	}
	w.LastSeen = r.opt.Now()
	w.heard = w.LastSeen
	w.Stages = hb.Stages
	if r.opt.OnOrphans != nil && !hb.Leaving {
		if orphans := r.orphansOf(hb.Stages, w.LastSeen); len(orphans) > 0 {
			go r.opt.OnOrphans(*w, orphans)
		}
	}
	if hb.Leaving {
		// Forgotten at once, and its jobs told now, as of a lost worker
		// (unless they were told already: once per loss).
		wasLost := w.Lost
		w.Lost, w.Left = true, true
		delete(r.workers, w.ID)
		r.notify()
		left := *w
		fns := slices.Collect(maps.Values(r.lostFns))
		if wasLost {
			fns = nil
		}
		r.opt.Log.Info("worker left", "worker", w.ID, "host", w.Host)
		go func() {
			for _, f := range fns {
				f(left)
			}
		}()
		return
	}
	if m.Reply != "" {
		if data, err := protocol.Encode(&protocol.Ack{}); err == nil {
			_ = m.Respond(data)
		}
	}
	if w.Lost {
		w.Lost = false
		r.opt.Log.Info("worker back", "worker", w.ID, "host", w.Host)
		r.notify()
	}
}

// OnLost registers f to be called (once per loss) when a worker goes silent,
// until the returned function is called: a long-running controller watches
// each job's workers only while the job runs.
func (r *Registry) OnLost(f func(Worker)) (stop func()) {
	r.mu.Lock()
	id := r.nextFn
	r.nextFn++
	r.lostFns[id] = f
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.lostFns, id)
		r.mu.Unlock()
	}
}

// Check marks as lost every worker silent for three heartbeat intervals and
// calls the OnLost functions. Watch calls it periodically; tests call it
// with a fake clock.
func (r *Registry) Check() {
	now := r.opt.Now()
	var lost []Worker
	r.mu.Lock()
	if !r.opt.Connected() {
		if !r.down {
			r.opt.Log.Warn("controller disconnected from NATS: worker liveness paused")
		}
		r.down = true
		r.mu.Unlock()
		return
	}
	if r.down {
		r.down = false
		for _, w := range r.workers {
			w.LastSeen = now
		}
		r.opt.Log.Info("controller reconnected to NATS: worker liveness resumed")
	}
	for _, w := range r.workers {
		if !w.Lost && now.Sub(w.LastSeen) > 3*r.opt.Heartbeat {
			w.Lost = true
			lost = append(lost, *w)
		}
	}
	fns := slices.Collect(maps.Values(r.lostFns))
	if len(lost) > 0 {
		r.notify()
	}
	r.mu.Unlock()
	for _, w := range lost {
		r.opt.Log.Warn("worker lost", "worker", w.ID, "host", w.Host, "silent_for", now.Sub(w.LastSeen).Round(time.Millisecond))
		for _, f := range fns {
			f(w)
		}
	}
}

// Watch runs Check every half heartbeat interval until ctx ends.
func (r *Registry) Watch(ctx context.Context) {
	t := time.NewTicker(r.opt.Heartbeat / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Check()
		}
	}
}

// Workers lists the workers, alive ones first, by host.
func (r *Registry) Workers() []Worker {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Worker, 0, len(r.workers))
	for _, w := range r.workers {
		out = append(out, *w)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Lost != out[j].Lost {
			return !out[i].Lost
		}
		return out[i].Host+out[i].ID < out[j].Host+out[j].ID
	})
	return out
}

// Wait returns once at least n workers are alive, or fails when ctx ends.
func (r *Registry) Wait(ctx context.Context, n int) ([]Worker, error) {
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		alive := r.Alive()
		if len(alive) >= n {
			return alive, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %d worker(s), %d registered: %w", n, len(alive), context.Cause(ctx))
		case <-ch:
		}
	}
}

// Alive lists the workers that are not lost.
func (r *Registry) Alive() []Worker {
	var out []Worker
	for _, w := range r.Workers() {
		if !w.Lost {
			out = append(out, w)
		}
	}
	return out
}

// Devices lists the alive workers' devices for placement, each with its host.
func Devices(workers []Worker) []placement.Device {
	var out []placement.Device
	for _, w := range workers {
		for _, d := range w.Devices {
			out = append(out, placement.Device{Index: d.Index, Host: w.Host, Name: d.Name, MemoryBytes: uint64(d.MemoryBytes), FreeBytes: uint64(d.MemoryBytes)})
		}
	}
	return out
}
