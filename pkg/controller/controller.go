// Package controller runs jobs on a draftbench cluster: it places a job's
// models on the registered workers, deploys them as stage processes, drives
// the benchmark through the NATS session drivers, publishes live results,
// and releases the stages. `controller run` and `controller serve` share it.
package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/cli"
	"github.com/draftbench/draftbench/pkg/cluster"
	"github.com/draftbench/draftbench/pkg/dirlock"
	"github.com/draftbench/draftbench/pkg/driver"
	"github.com/draftbench/draftbench/pkg/jobrun"
	"github.com/draftbench/draftbench/pkg/jobspec"
	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/placement"
	"github.com/draftbench/draftbench/pkg/protocol"
)

// Config is what running a job needs.
type Config struct {
	NC       *nats.Conn
	Subjects protocol.Subjects
	Registry *cluster.Registry
	Log      hclog.Logger
	Console  io.Writer
	Progress io.Writer
	Terminal bool
	// OnRequest sees each finished request (live results on NATS).
	OnRequest func(jobID string, r metrics.Request)
	// GPU and Phases replace the built-in GPU monitor (the workers' NVML
	// samples on NATS) when set: tests and single-process runs.
	GPU         func(outputTokens map[metrics.Mode]int) any
	Phases      jobrun.Phases
	LoadTimeout time.Duration
}

// Job is one run of a job file.
type Job struct {
	ID   string
	Spec *jobspec.Job
	Out  string // output folder
}

// NewJob gives a parsed job its id and output folder (override wins).
func NewJob(spec *jobspec.Job, outOverride string) *Job {
	id := uuid.NewString()
	out := outOverride
	if out == "" {
		out = spec.OutputDir
	}
	if out == "" {
		out = jobrun.DefaultOutputDir(spec.Name, id)
	}
	return &Job{ID: id, Spec: spec, Out: out}
}

// ErrEndedEarly wraps the reason a job stopped before all its requests ran
// (a lost worker, a dead stage, a cancel); its results are still written.
var ErrEndedEarly = errors.New("job ended early")

// Run places, deploys and benchmarks job on the registry's alive workers.
func Run(ctx context.Context, cfg Config, job *Job) (*jobrun.Result, error) {
	log := cfg.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	log = log.Named("job").With("job", job.ID[:8])
	spec := job.Spec
	// A folder another run is writing is refused now, not after the models
	// are deployed (jobrun.Run takes the lock for the run itself).
	// (No folder yet, no other run in it: nothing is created before the run.)
	if _, err := os.Stat(job.Out); err == nil {
		l, err := jobrun.LockOutput(job.Out)
		if errors.Is(err, dirlock.ErrHeld) {
			return nil, err
		}
		l.Release() // nil after another error: the run itself will say it
	}
	alive := cfg.Registry.Alive()
	if len(alive) == 0 {
		return nil, errors.New("no worker is registered: start `worker --nats URL` on the GPU hosts")
	}
	if err := jobrun.CheckOffered(spec, cluster.Devices(alive)); err != nil {
		return nil, err
	}
	devices, err := jobrun.DevicesFromJob(spec, cluster.Devices(alive))
	if err != nil {
		return nil, err
	}
	plan, targetInfo, drafterInfo, err := jobrun.Plan(spec, devices)
	if err != nil {
		return nil, err
	}
	tok, err := jobrun.LoadTokenizer(spec)
	if err != nil {
		return nil, err
	}
	defer tok.Close()
	models := []cluster.ModelSpec{{Role: placement.RoleTarget, Dir: spec.Models.Target.Path, DType: spec.Models.Target.DType, Plan: &plan.Target}}
	if spec.Modes.Speculative && plan.Drafter != nil {
		models = append(models, cluster.ModelSpec{Role: placement.RoleDrafter, Dir: spec.Models.Drafter.Path, DType: spec.Models.Drafter.DType, Plan: plan.Drafter})
	}
	maxBatch := 0
	if spec.Batch.Enabled {
		maxBatch = spec.Batch.Size * spec.Batch.MaxLength
	}
	log.Info("deploying", "target_stages", len(plan.Target.Stages), "strategy", plan.Strategy)
	start := time.Now()
	dep, err := cluster.Deploy(ctx, cfg.NC, cfg.Subjects, alive, models, cluster.DeployOptions{
		LoadTimeout: cfg.LoadTimeout, MaxBatchTokens: maxBatch, GPUInterval: gpuInterval(spec), Registry: cfg.Registry, Log: log})
	if err != nil {
		return nil, fmt.Errorf("deploying the models: %w", err)
	}
	defer dep.Release("job finished")
	log.Info("models deployed", "elapsed", time.Since(start).Round(time.Millisecond))

	jctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if err := dep.Watch(cfg.Registry, func(err error) {
		log.Error("ending the job", "reason", err)
		cancel(err)
	}); err != nil {
		return nil, err
	}
	gpu, err := startGPUMonitor(cfg.NC, cfg.Subjects, spec, plan, alive)
	if err != nil {
		return nil, err
	}
	defer gpu.stop()
	gpu.log = log.Named("gpumon")
	gpuSection, phases, power, before := gpu.Result, jobrun.Phases(gpu), gpu.Power, gpu.coolDown
	if cfg.GPU != nil {
		gpuSection, phases, power, before = cfg.GPU, cfg.Phases, nil, nil
	}
	var keepGPU any
	if cfg.GPU == nil {
		keepGPU = gpu.keep()
	}
	client, err := protocol.NewStepClient(cfg.NC)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	engine := &driver.Engine{Client: client, Target: dep.Target, Drafter: dep.Drafter, DraftTopK: spec.Generation.DraftTopK}

	hostname, _ := os.Hostname()
	var ws []map[string]any
	for _, w := range alive {
		wi := map[string]any{"id": w.ID, "host": w.Host, "devices": w.Devices, "version": w.Version}
		if len(w.CUDAModes) > 0 {
			wi["cuda_modes"] = w.CUDAModes
		}
		ws = append(ws, wi)
	}
	envInfo := map[string]any{
		"controller_host": hostname, "os": runtime.GOOS, "arch": runtime.GOARCH, "go": runtime.Version(),
		"version": cli.Version, "workers": ws, "placement": plan, "target": targetInfo, "drafter": drafterInfo,
	}
	var onReq func(metrics.Request)
	if cfg.OnRequest != nil {
		onReq = func(r metrics.Request) { cfg.OnRequest(job.ID, r) }
	}
	res, err := jobrun.Run(jctx, spec, tok, engine, job.Out, jobrun.Options{
		MaxContext: jobrun.MaxContext(targetInfo, drafterInfo),
		Log:        log, Console: cfg.Console, Progress: cfg.Progress, Terminal: cfg.Terminal, JobID: job.ID,
		Environment: envInfo, OnRequest: onReq, GPU: gpuSection, Phases: phases, Power: power, BeforeMode: before,
		KeepGPU: keepGPU,
	})
	if err != nil {
		return nil, err
	}
	if cause := context.Cause(jctx); cause != nil && !errors.Is(cause, context.Canceled) || ctx.Err() != nil {
		if cause == nil {
			cause = ctx.Err()
		}
		return res, fmt.Errorf("%w: %v (results of the finished requests are in %s)", ErrEndedEarly, cause, res.Dir)
	}
	return res, nil
}
