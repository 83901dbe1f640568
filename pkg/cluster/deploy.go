package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/driver"
	"github.com/draftbench/draftbench/pkg/placement"
	"github.com/draftbench/draftbench/pkg/protocol"
)

// ModelSpec is what a deployment needs to know of one model.
type ModelSpec struct {
	Role  string // target | drafter
	Dir   string
	DType string // the job's model dtype: how the stages store the weights ("" or "auto": as the backend chooses)
	Plan  *placement.ModelPlan
}

// stageRef is one assigned stage.
type stageRef struct {
	worker   Worker
	instance string
	stage    int
}

// Deployment is a job's models running as stage processes on workers.
type Deployment struct {
	Target  driver.Pipeline
	Drafter *driver.Pipeline

	nc       *nats.Conn
	subj     protocol.Subjects
	log      hclog.Logger
	stages   []stageRef
	sub      *nats.Subscription
	stopLost func()    // ends Watch's interest in lost workers
	owner    *Registry // told of the instances held (DeployOptions.Registry)

	mu   sync.Mutex
	lost map[string]bool // workers Watch saw go silent
}

// DeployOptions tune Deploy.
type DeployOptions struct {
	LoadTimeout    time.Duration // per stage, loading weights included (default 10 minutes)
	MaxBatchTokens int
	// GPUInterval is the job's GPU sampling interval, asked of the workers
	// that run its stages (0: each worker's own).
	GPUInterval time.Duration
	// Registry, when set, is told which stage instances the deployment holds
	// (Own, Disown), so stages left by an earlier controller are told apart.
	Registry *Registry
	Log      hclog.Logger
}

// Deploy assigns every stage of the models' plans to the alive worker on
// the stage's host and waits until all of them serve. On any failure the
// stages already started are released and the error names the stage.
func Deploy(ctx context.Context, nc *nats.Conn, subj protocol.Subjects, workers []Worker, models []ModelSpec, opt DeployOptions) (*Deployment, error) {
	if opt.LoadTimeout <= 0 {
		opt.LoadTimeout = 10 * time.Minute
	}
	if opt.Log == nil {
		opt.Log = hclog.NewNullLogger()
	}
	d := &Deployment{nc: nc, subj: subj, log: opt.Log.Named("deploy"), lost: map[string]bool{}}
	type job struct {
		ref stageRef
		a   *protocol.Assignment
	}
	var jobs []job
	var owned []string
	if opt.Registry != nil {
		d.owner = opt.Registry
	}
	// A failed deployment owns nothing: a stage that starts after all (its
	// answer came too late) is then an orphan the registry has released.
	disown := func() {
		for _, inst := range owned {
			opt.Registry.Disown(inst)
		}
	}
	for _, m := range models {
		instance := protocol.Sanitize(m.Role + "-" + uuid.NewString()[:8])
		if opt.Registry != nil {
			opt.Registry.Own(instance)
			owned = append(owned, instance)
		}
		n := len(m.Plan.Stages)
		for k, st := range m.Plan.Stages {
			w, err := workerFor(workers, st)
			if err != nil {
				disown()
				return nil, fmt.Errorf("%s stage %d: %w", m.Role, k, err)
			}
			a := &protocol.Assignment{Instance: instance, Role: m.Role, ModelDir: m.Dir, Layers: st.Layers,
				Devices: st.Devices, Stage: k, Stages: n, MaxBatchTokens: opt.MaxBatchTokens,
				GPUIntervalMS: (opt.GPUInterval + time.Millisecond - 1).Milliseconds()} // under 1 ms: 1, not the worker's own
			if m.DType != "auto" {
				a.DType = m.DType
			}
			if k < n-1 {
				a.Next = subj.Stage(instance, k+1)
			}
			jobs = append(jobs, job{stageRef{w, instance, k}, a})
		}
		p := driver.Pipeline{Subject: subj.Stage(instance, 0), Stages: n}
		if m.Role == placement.RoleDrafter {
			d.Drafter = &p
		} else {
			d.Target = p
		}
	}
	// Stages load in parallel; each reply says ready or failed.
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = d.assign(ctx, j.ref, j.a, opt.LoadTimeout)
		}()
	}
	wg.Wait()
	// Every stage belongs to the deployment, so a failed one releases them
	// all: the ready ones, those that failed to start (their worker reports
	// them until told to forget them) and those whose answer never came (a
	// cancel or a timeout during a long load: they may start yet).
	for _, j := range jobs {
		d.stages = append(d.stages, j.ref)
	}
	if err := errors.Join(errs...); err != nil {
		d.Release("deployment failed")
		disown()
		return nil, err
	}
	return d, nil
}

func (d *Deployment) assign(ctx context.Context, ref stageRef, a *protocol.Assignment, timeout time.Duration) error {
	where := fmt.Sprintf("%s stage %d/%d (layers [%d,%d)) on worker %s (%s)", a.Role, a.Stage, a.Stages, a.Layers[0], a.Layers[1], ref.worker.Host, ref.worker.ID[:8])
	data, err := protocol.Encode(a)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	d.log.Info("assigning", "stage", where)
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := d.nc.RequestWithContext(actx, d.subj.WorkerAssign(ref.worker.ID), data)
	if err != nil {
		return fmt.Errorf("%s: no answer: %w", where, err)
	}
	var st protocol.StageStatus
	if err := protocol.Decode(msg.Data, &st); err != nil {
		var ack protocol.Ack
		if protocol.Decode(msg.Data, &ack) == nil && ack.Error != "" {
			return fmt.Errorf("%s: %s", where, ack.Error)
		}
		return fmt.Errorf("%s: bad answer: %w", where, err)
	}
	if st.State != protocol.StageReady {
		return fmt.Errorf("%s: %s: %s", where, st.State, st.Error)
	}
	d.log.Info("stage ready", "stage", where, "pid", st.PID)
	return nil
}

// workerFor picks the alive worker on the stage's host (the only one when the
// plan names no host).
func workerFor(workers []Worker, st placement.Stage) (Worker, error) {
	var hosts []string
	for _, w := range workers {
		if w.Lost {
			continue
		}
		if st.Host == "" || w.Host == st.Host {
			return w, nil
		}
		hosts = append(hosts, w.Host)
	}
	if len(workers) == 0 {
		return Worker{}, errors.New("no worker is registered")
	}
	return Worker{}, fmt.Errorf("no alive worker on host %q (workers on: %s)", st.Host, strings.Join(hosts, ", "))
}

// Watch calls fail (once) when a worker of the deployment is lost or one of
// its stage processes exits, so the job ends instead of waiting for replies
// that never come.
func (d *Deployment) Watch(reg *Registry, fail func(error)) error {
	var once sync.Once
	mine := map[string]bool{}
	instances := map[string]bool{}
	for _, s := range d.stages {
		mine[s.worker.ID] = true
		instances[s.instance] = true
	}
	d.stopLost = reg.OnLost(func(w Worker) {
		if mine[w.ID] {
			d.mu.Lock()
			d.lost[w.ID] = true
			d.mu.Unlock()
			once.Do(func() {
				if w.Left {
					fail(fmt.Errorf("worker %s on host %s shut down", w.ID[:8], w.Host))
				} else {
					fail(fmt.Errorf("worker %s on host %s stopped sending heartbeats", w.ID[:8], w.Host))
				}
			})
		}
	})
	sub, err := d.nc.Subscribe(d.subj.AllWorkerStages(), func(m *nats.Msg) {
		var st protocol.StageStatus
		if protocol.Decode(m.Data, &st) != nil || !instances[st.Instance] {
			return
		}
		if st.State == protocol.StageExited || st.State == protocol.StageFailed {
			once.Do(func() {
				fail(fmt.Errorf("stage %d of %s %s: %s", st.Stage, st.Instance, st.State, st.Error))
			})
		}
	})
	if err != nil {
		d.stopLost()
		return err
	}
	d.sub = sub
	return nil
}

// releaseTimeout bounds the wait for a worker to stop a deployment's stages
// (the agent's grace period before SIGKILL is 10s).
const releaseTimeout = 15 * time.Second

// ReleaseInstance asks worker w to stop the stages of instance and waits
// for its answer.
func ReleaseInstance(nc *nats.Conn, subj protocol.Subjects, w Worker, instance, reason string) error {
	rel, err := protocol.Encode(&protocol.Release{Instance: instance, Reason: reason})
	if err != nil {
		return err
	}
	msg, err := nc.Request(subj.WorkerRelease(w.ID), rel, releaseTimeout)
	if err != nil {
		return err
	}
	var ack protocol.Ack
	if err := protocol.Decode(msg.Data, &ack); err != nil {
		return err
	}
	if ack.Error != "" {
		return errors.New(ack.Error)
	}
	return nil
}

// Release stops every stage of the deployment. Workers are asked in
// parallel. A worker Watch saw go silent is told without waiting for an
// answer that cannot come: the server delivers the release if the worker's
// connection survives its outage, and the job ends now rather than after a
// timeout per lost stage.
func (d *Deployment) Release(reason string) {
	if d.sub != nil {
		_ = d.sub.Unsubscribe()
		d.sub = nil
	}
	if d.stopLost != nil {
		d.stopLost()
		d.stopLost = nil
	}
	d.mu.Lock()
	lost := maps.Clone(d.lost)
	d.mu.Unlock()
	var wg sync.WaitGroup
	done := map[string]bool{}
	for _, s := range d.stages {
		key := s.worker.ID + "/" + s.instance
		if done[key] {
			continue
		}
		done[key] = true
		rel, err := protocol.Encode(&protocol.Release{Instance: s.instance, Reason: reason})
		if err != nil {
			d.log.Error("release", "instance", s.instance, "error", err)
			continue
		}
		subject := d.subj.WorkerRelease(s.worker.ID)
		if lost[s.worker.ID] {
			// An inbox nobody reads: the agent answers into the void.
			if err := d.nc.PublishRequest(subject, d.nc.NewInbox(), rel); err != nil {
				d.log.Warn("release", "worker", s.worker.Host, "instance", s.instance, "error", err)
			}
			d.log.Info("release sent to a lost worker without waiting", "worker", s.worker.Host, "instance", s.instance)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := d.nc.Request(subject, rel, releaseTimeout); err != nil {
				d.log.Warn("release", "worker", s.worker.Host, "instance", s.instance, "error", err)
			}
		}()
	}
	wg.Wait()
	if d.owner != nil {
		for _, s := range d.stages {
			d.owner.Disown(s.instance)
		}
	}
	d.stages = nil
}
