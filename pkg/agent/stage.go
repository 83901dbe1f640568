package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/backend/cpu"
	"github.com/draftbench/draftbench/pkg/model"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/stage"
)

// ErrNoCUDA is returned when a stage is asked to run on GPUs by a worker
// built without the CUDA backend.
var ErrNoCUDA = errors.New("this worker was built without CUDA; rebuild with make build-cuda")

// StageEvent is what a stage process publishes on Subjects.WorkerStages: a
// protocol.StageStatus plus what only the stage knows about its load. The
// extra fields are optional JSON, so a reader of plain StageStatus (the
// controller) decodes the same message unchanged.
type StageEvent struct {
	*protocol.StageStatus
	// LoadMS is how long loading the weights took (ready only).
	LoadMS int64 `json:"load_ms,omitempty"`
	// WeightBytes is the size of the weights the stage holds, as stored on disk (ready only).
	WeightBytes int64 `json:"weight_bytes,omitempty"`
}

// StageConfig describes one stage process (`worker stage`).
type StageConfig struct {
	// Conn is the stage's own connection: RunStage ends when it closes.
	Conn       *nats.Conn
	Subjects   protocol.Subjects
	Assignment *protocol.Assignment
	// WorkerID is the agent that started the process; the stage publishes
	// its status on Subjects.WorkerStages(WorkerID). Empty (a stage run by
	// hand): nothing is published.
	WorkerID string
	// Kind is the kind of the assigned devices ("": cpu).
	Kind protocol.DeviceKind
	// Threads bounds the CPU backend's threads (0: every core).
	Threads int
	// GPU are the CUDA backend's opt-in modes for a GPU stage.
	GPU GPUOptions
	// NewBackend, when set, replaces the choice of backend by Kind.
	NewBackend func(kind protocol.DeviceKind, devices, threads int) (backend.Backend, error)
	Logger     hclog.Logger     // nil: discarded
	Now        func() time.Time // nil: time.Now
}

// GPUOptions are the CUDA backend's opt-in modes for the GPU stages of a
// worker (docs/cuda.md); all off by default.
type GPUOptions struct {
	Graphs         bool // capture each decode step into a CUDA graph and replay it (cuda.Options.Graphs)
	TuneGEMM       bool // the fastest cuBLASLt algorithm per product shape of up to 64 rows (cuda.Options.TuneGEMM)
	BatchInvariant bool // results independent of batching (cuda.Options.BatchInvariant)
}

// gpuModes are the modes of GPUOptions: each one's name in registrations
// and results, and its worker flag.
var gpuModes = []struct {
	name, flag string
	on         func(GPUOptions) bool
}{
	{"graphs", "--cuda-graphs", func(o GPUOptions) bool { return o.Graphs }},
	{"tune_gemm", "--tune-gemm", func(o GPUOptions) bool { return o.TuneGEMM }},
	{"batch_invariant", "--batch-invariant", func(o GPUOptions) bool { return o.BatchInvariant }},
}

// Modes names the modes o turns on, as registrations and results list them.
func (o GPUOptions) Modes() []string {
	var m []string
	for _, g := range gpuModes {
		if g.on(o) {
			m = append(m, g.name)
		}
	}
	return m
}

// Args are the worker flags that ask for o (the agent passes them on to its
// GPU stage processes).
func (o GPUOptions) Args() []string {
	var args []string
	for _, g := range gpuModes {
		if g.on(o) {
			args = append(args, g.flag)
		}
	}
	return args
}

// ReadAssignment reads an assignment file as the agent writes it: the JSON
// of a protocol.Assignment, exactly as it travels on Subjects.WorkerAssign.
func ReadAssignment(path string) (*protocol.Assignment, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the assignment: %w", err)
	}
	a := &protocol.Assignment{}
	if err := protocol.Decode(data, a); err != nil {
		return nil, fmt.Errorf("reading the assignment %s: %w", path, err)
	}
	return a, nil
}

// RunStage loads the assignment's layer range and serves it until ctx ends
// or the connection closes. It publishes ready (with the load time and the
// weight bytes) once steps sent to the stage's subject are no longer lost,
// or failed with the reason, and returns that reason as its error.
func RunStage(ctx context.Context, cfg StageConfig) error {
	a := cfg.Assignment
	if a == nil || cfg.Conn == nil {
		return errors.New("stage: an assignment and a NATS connection are required")
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	newBackend := cfg.NewBackend
	if newBackend == nil {
		newBackend = defaultBackend
	}
	name := fmt.Sprintf("stage %s/%d", a.Instance, a.Stage)
	status := &protocol.StageStatus{
		WorkerID: cfg.WorkerID,
		Instance: a.Instance,
		Stage:    a.Stage,
		Stages:   a.Stages,
		Subject:  cfg.Subjects.Stage(a.Instance, a.Stage),
		PID:      os.Getpid(),
	}
	fail := func(err error) error {
		err = fmt.Errorf("%s: %w", name, err)
		status.State, status.Error = protocol.StageFailed, err.Error()
		if perr := publishEvent(cfg, &StageEvent{StageStatus: status}); perr != nil {
			log.Error("reporting the failure", "error", perr)
		}
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopOnClose(cfg.Conn, cancel)

	var be backend.Backend
	var err error
	switch {
	case cfg.NewBackend != nil:
		be, err = newBackend(cfg.Kind, len(a.Devices), cfg.Threads)
	case cfg.Kind == protocol.DeviceGPU:
		be, err = gpuBackend(len(a.Devices), shardBytes(a), a.DType, cfg.GPU)
	default:
		be, err = cpu.ForDType(a.DType, cfg.Threads)
	}
	if err != nil {
		return fail(err)
	}
	// Loading cannot be interrupted; a stage released while it loads (a
	// large model, minutes) leaves the load behind and exits at once.
	type loaded struct {
		m   *model.Model
		err error
	}
	done := make(chan loaded, 1)
	start := now()
	go func() {
		m, err := model.Load(a.ModelDir, be, model.Options{First: a.Layers[0], Last: a.Layers[1]})
		if err == nil {
			// Tuned products (--tune-gemm) are tuned now, for every batch
			// size, not inside the first mode's timed steps.
			t0 := now()
			var prepared bool
			if prepared, err = m.PrepareProducts(); prepared {
				log.Info("products prepared", "ms", now().Sub(t0).Milliseconds())
			}
		}
		done <- loaded{m, err}
	}()
	var m *model.Model
	select {
	case <-ctx.Done():
		return fail(fmt.Errorf("stopped while loading layers [%d,%d) of %s", a.Layers[0], a.Layers[1], a.ModelDir))
	case l := <-done:
		if l.err != nil {
			return fail(fmt.Errorf("loading layers [%d,%d) of %s: %w", a.Layers[0], a.Layers[1], a.ModelDir, l.err))
		}
		m = l.m
	}
	load := now().Sub(start)
	s, err := stage.New(stage.Config{
		Model:          m,
		Conn:           cfg.Conn,
		Subjects:       cfg.Subjects,
		Instance:       a.Instance,
		Index:          a.Stage,
		Count:          a.Stages,
		Next:           a.Next,
		Logger:         log,
		MaxBatchTokens: a.MaxBatchTokens,
	})
	if err != nil {
		return fail(err)
	}

	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()
	select {
	case <-s.Ready():
	case err := <-served:
		if err == nil {
			err = errors.New("stopped before it was ready")
		}
		return fail(err)
	}
	status.State = protocol.StageReady
	ev := &StageEvent{StageStatus: status, LoadMS: load.Milliseconds(), WeightBytes: m.WeightBytes()}
	if err := publishEvent(cfg, ev); err != nil {
		// The agent cannot learn that the stage is ready; better to stop
		// than to serve a stage nobody will be told about.
		cancel()
		<-served
		return fmt.Errorf("%s: reporting ready: %w", name, err)
	}
	log.Info("stage ready", "subject", status.Subject, "layers", fmt.Sprintf("[%d,%d)", a.Layers[0], a.Layers[1]),
		"load_ms", load.Milliseconds(), "weight_bytes", m.WeightBytes())
	return <-served
}

// shardBytes estimates the bytes of the assigned layer range, as stored in
// the job's dtype, from the folder's safetensors headers (0 when they cannot
// be read): its layers, and the embeddings and head shared out to the first
// and last stages.
func shardBytes(a *protocol.Assignment) int64 {
	info, err := model.Inspect(a.ModelDir)
	if err != nil {
		return 0
	}
	n := info.LayerBytes * int64(a.Layers[1]-a.Layers[0])
	outer := max(0, info.Bytes-info.LayerBytes*int64(info.Layers))
	if a.Layers[0] == 0 {
		n += outer / 2
	}
	if a.Layers[1] == info.Layers {
		n += outer - outer/2
	}
	return int64(float64(n) * info.StorageScale(a.DType))
}

// defaultBackend picks the backend for the assigned devices.
func defaultBackend(kind protocol.DeviceKind, devices, threads int) (backend.Backend, error) {
	switch kind {
	case protocol.DeviceCPU, "":
		return cpu.New(threads), nil
	case protocol.DeviceGPU:
		return gpuBackend(devices, 0, "", GPUOptions{})
	}
	return nil, fmt.Errorf("device kind %q is not one of cpu, gpu", kind)
}

// publishEvent sends ev to the worker's stage subject and waits until the
// server has it, so a stage that exits right after still gets its word out.
func publishEvent(cfg StageConfig, ev *StageEvent) error {
	if cfg.WorkerID == "" {
		return nil
	}
	data, err := protocol.Encode(ev)
	if err != nil {
		return err
	}
	subject := cfg.Subjects.WorkerStages(cfg.WorkerID)
	if err := cfg.Conn.Publish(subject, data); err != nil {
		return fmt.Errorf("publishing on %s: %w", subject, err)
	}
	if err := cfg.Conn.Flush(); err != nil {
		return fmt.Errorf("publishing on %s: %w", subject, err)
	}
	return nil
}

// stopOnClose calls stop once nc is closed for good (reconnects gave up),
// keeping the closed handler the connection already had.
func stopOnClose(nc *nats.Conn, stop func()) {
	var once sync.Once
	prev := nc.Opts.ClosedCB
	nc.SetClosedHandler(func(c *nats.Conn) {
		if prev != nil {
			prev(c)
		}
		once.Do(stop)
	})
	if nc.IsClosed() {
		once.Do(stop)
	}
}
