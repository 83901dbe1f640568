package protocol

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/gpumon"
	"github.com/draftbench/draftbench/pkg/jobspec"
)

// DeviceKind says what a worker's device is.
type DeviceKind string

const (
	DeviceGPU DeviceKind = "gpu"
	DeviceCPU DeviceKind = "cpu"
)

// Device is one device a worker offers.
type Device struct {
	Index       int        `json:"index"` // the worker's own index (CUDA ordinal, or CPU slot)
	UUID        string     `json:"uuid,omitempty"`
	Name        string     `json:"name"`
	MemoryBytes int64      `json:"memory_bytes"`
	Kind        DeviceKind `json:"kind"`
}

func (d Device) validate() error {
	switch {
	case d.Index < 0:
		return fmt.Errorf("device index %d is negative", d.Index)
	case d.Kind != DeviceGPU && d.Kind != DeviceCPU:
		return fmt.Errorf("device %d: kind %q is not one of gpu, cpu", d.Index, d.Kind)
	case d.MemoryBytes < 0:
		return fmt.Errorf("device %d: memory_bytes %d is negative", d.Index, d.MemoryBytes)
	}
	return nil
}

// Registration is a worker's request on WorkersRegister.
type Registration struct {
	V            int      `json:"v"`
	WorkerID     string   `json:"worker_id"` // a UUID
	Host         string   `json:"host"`
	Devices      []Device `json:"devices"`
	BuildVersion string   `json:"version"` // the worker binary's version
	// GPUMonitor is empty when the worker publishes NVML samples of its GPUs
	// on Subjects.GPU, and otherwise says why it does not (no driver, CPU
	// devices), so the results can say why GPU metrics are missing.
	GPUMonitor string `json:"gpu_monitor,omitempty"`
	// CUDAModes are the opt-in modes the worker's GPU stages run the CUDA
	// backend in ("graphs", "tune_gemm", "batch_invariant"; docs/cuda.md),
	// so results say how their numbers were made.
	CUDAModes []string `json:"cuda_modes,omitempty"`
	// StepVersion is the StepVersion the worker's stages speak (absent,
	// 0, from builds before it was sent: 1). A controller refuses a worker
	// whose steps it cannot read: they would fail only at the first step.
	StepVersion int `json:"step_version,omitempty"`
}

// StepVersionOf is the step protocol version a registration says it
// speaks.
func (m *Registration) StepVersionOf() int {
	if m.StepVersion == 0 {
		return 1
	}
	return m.StepVersion
}

func (m *Registration) version() *int { return &m.V }
func (*Registration) kind() string    { return "worker registration" }

// Validate implements Message.
func (m *Registration) Validate() error {
	if err := validUUID("worker_id", m.WorkerID); err != nil {
		return err
	}
	if m.Host == "" {
		return errors.New("host is empty")
	}
	seen := map[int]bool{}
	for _, d := range m.Devices {
		if err := d.validate(); err != nil {
			return err
		}
		if seen[d.Index] {
			return fmt.Errorf("device index %d is listed twice", d.Index)
		}
		seen[d.Index] = true
	}
	return nil
}

// RegisterReply answers a Registration.
type RegisterReply struct {
	V int `json:"v"`
	// HeartbeatMS is how often the worker must publish a Heartbeat; a worker
	// silent for three intervals is lost (DESIGN §5).
	HeartbeatMS int64  `json:"heartbeat_interval_ms"`
	Error       string `json:"error,omitempty"`
}

func (m *RegisterReply) version() *int { return &m.V }
func (*RegisterReply) kind() string    { return "registration reply" }

// Validate implements Message.
func (m *RegisterReply) Validate() error {
	if m.Error == "" && m.HeartbeatMS <= 0 {
		return fmt.Errorf("heartbeat_interval_ms %d must be positive", m.HeartbeatMS)
	}
	return nil
}

// HeartbeatInterval is HeartbeatMS as a duration.
func (m *RegisterReply) HeartbeatInterval() time.Duration {
	return time.Duration(m.HeartbeatMS) * time.Millisecond
}

// UnknownWorker starts the Error of the Ack a controller sends in answer to a
// heartbeat from a worker it does not know (it restarted, or lost the worker):
// the worker then registers again.
const UnknownWorker = "unknown worker"

// HostTaken and VersionRefused start the Error of a RegisterReply that
// refuses a worker for good: a live worker holds its host name, or it
// speaks another step protocol version (another draftbench version). The
// worker then stops with the controller's reason instead of retrying.
const (
	HostTaken      = "host name taken"
	VersionRefused = "another draftbench version"
)

// Heartbeat is published by a worker on WorkerHeartbeat.
type Heartbeat struct {
	V        int           `json:"v"`
	WorkerID string        `json:"worker_id"`
	Host     string        `json:"host"`
	Sent     time.Time     `json:"sent"`
	Stages   []StageStatus `json:"stages,omitempty"` // the stages the worker runs
	// Leaving marks a worker's last heartbeat: it is shutting down, so the
	// controller forgets it now instead of three intervals later.
	Leaving bool `json:"leaving,omitempty"`
}

func (m *Heartbeat) version() *int { return &m.V }
func (*Heartbeat) kind() string    { return "heartbeat" }

// Validate implements Message.
func (m *Heartbeat) Validate() error {
	if err := validUUID("worker_id", m.WorkerID); err != nil {
		return err
	}
	for i := range m.Stages {
		if err := m.Stages[i].Validate(); err != nil {
			return fmt.Errorf("stage %d: %w", i, err)
		}
	}
	return nil
}

// Assignment asks a worker (on WorkerAssign) to start one stage: a layer
// range of a model on a group of its devices.
type Assignment struct {
	V        int    `json:"v"`
	Instance string `json:"instance"`       // model instance id: one loaded copy of a model, all its stages
	Role     string `json:"role,omitempty"` // "target" or "drafter", for logs and GPU records
	ModelDir string `json:"model_dir"`
	// Layers is the range [first, last) the stage holds.
	Layers  [2]int `json:"layers"`
	Devices []int  `json:"devices"` // worker device indexes
	Stage   int    `json:"stage"`   // k, 0-based
	Stages  int    `json:"stages"`  // stages of the instance
	DType   string `json:"dtype,omitempty"`
	// Next is the subject of stage k+1, "" on the last stage.
	Next string `json:"next"`
	// MaxBatchTokens bounds the tokens of one batched step (0: the stage's default).
	MaxBatchTokens int `json:"max_batch_tokens,omitempty"`
	// GPUIntervalMS is the sampling interval of the job's gpu_monitor, which
	// the worker's GPU monitor takes while the stage runs (0: the worker's own).
	GPUIntervalMS int64 `json:"gpu_interval_ms,omitempty"`
}

func (m *Assignment) version() *int { return &m.V }
func (*Assignment) kind() string    { return "assignment" }

// Validate implements Message.
func (m *Assignment) Validate() error {
	switch {
	case m.Instance == "":
		return errors.New("instance is empty")
	case m.ModelDir == "":
		return errors.New("model_dir is empty")
	case m.Layers[0] < 0 || m.Layers[0] >= m.Layers[1]:
		return fmt.Errorf("layers [%d,%d) is not a non-empty range", m.Layers[0], m.Layers[1])
	case m.Stages < 1 || m.Stage < 0 || m.Stage >= m.Stages:
		return fmt.Errorf("stage %d of %d is out of range", m.Stage, m.Stages)
	case m.Stage == m.Stages-1 && m.Next != "":
		return fmt.Errorf("the last stage has next subject %q; want none", m.Next)
	case m.Stage < m.Stages-1 && m.Next == "":
		return fmt.Errorf("stage %d of %d has no next subject", m.Stage, m.Stages)
	case m.MaxBatchTokens < 0:
		return fmt.Errorf("max_batch_tokens %d is negative", m.MaxBatchTokens)
	case m.GPUIntervalMS < 0:
		return fmt.Errorf("gpu_interval_ms %d is negative", m.GPUIntervalMS)
	}
	if m.DType != "" {
		if _, err := backend.ParseDType(m.DType); err != nil {
			return err
		}
	}
	seen := map[int]bool{}
	for _, d := range m.Devices {
		if d < 0 || seen[d] {
			return fmt.Errorf("devices %v: index %d is negative or repeated", m.Devices, d)
		}
		seen[d] = true
	}
	return nil
}

// Release asks a worker (on WorkerRelease) to stop stages and free their
// memory; the answer is an Ack.
type Release struct {
	V        int    `json:"v"`
	Instance string `json:"instance,omitempty"` // "" releases every stage of the worker
	Reason   string `json:"reason,omitempty"`
}

func (m *Release) version() *int { return &m.V }
func (*Release) kind() string    { return "release" }

// Validate implements Message.
func (m *Release) Validate() error { return nil }

// Ack answers a request that returns nothing but success or an error.
type Ack struct {
	V     int    `json:"v"`
	Error string `json:"error,omitempty"`
}

func (m *Ack) version() *int { return &m.V }
func (*Ack) kind() string    { return "ack" }

// Validate implements Message.
func (m *Ack) Validate() error { return nil }

// GPURead asks a worker's GPU monitor (on WorkerGPURead) for a reading of
// its GPUs taken now. The controller sends it at each phase change, so that a
// phase shorter than the sampling interval still starts and ends on an energy
// counter reading of GPUs it cannot read itself.
type GPURead struct {
	V int `json:"v"`
}

func (m *GPURead) version() *int { return &m.V }
func (*GPURead) kind() string    { return "GPU read" }

// Validate implements Message.
func (m *GPURead) Validate() error { return nil }

// GPUReadReply answers a GPURead with the energy counter and power of every
// GPU the worker monitors (gpumon.Monitor.SweepEnergy), named and timed as
// its periodic samples are (host, NVML index, the host's own clock), or with
// why it has none.
type GPUReadReply struct {
	V       int             `json:"v"`
	Samples []gpumon.Sample `json:"samples,omitempty"`
	Error   string          `json:"error,omitempty"`
}

func (m *GPUReadReply) version() *int { return &m.V }
func (*GPUReadReply) kind() string    { return "GPU read reply" }

// Validate implements Message. A reading without a host or a time could not
// be placed on its device's timeline.
func (m *GPUReadReply) Validate() error {
	if m.Error != "" && len(m.Samples) > 0 {
		return fmt.Errorf("a failed read (%q) carries %d samples; want none", m.Error, len(m.Samples))
	}
	for i, s := range m.Samples {
		switch {
		case s.Host == "":
			return fmt.Errorf("sample %d (device %d) has no host", i, s.Device)
		case s.Device < 0:
			return fmt.Errorf("sample %d of %s: device index %d is negative", i, s.Host, s.Device)
		case s.T.IsZero():
			return fmt.Errorf("sample %d (%s device %d) has no time", i, s.Host, s.Device)
		}
	}
	return nil
}

// StageState is where a stage is in its life.
type StageState string

const (
	StageStarting StageState = "starting" // process started, loading weights
	StageReady    StageState = "ready"    // subscribed to its subject, serving steps
	StageFailed   StageState = "failed"   // could not start (Error says why)
	StageExited   StageState = "exited"   // stopped, after release or a crash (Error says why)
)

// StageStatus reports one stage: the reply to an Assignment (ready or
// failed), the events a stage process publishes on WorkerStages, and the
// entries of a Heartbeat.
type StageStatus struct {
	V        int        `json:"v"`
	WorkerID string     `json:"worker_id,omitempty"`
	Instance string     `json:"instance"`
	Stage    int        `json:"stage"`
	Stages   int        `json:"stages"`
	Subject  string     `json:"subject,omitempty"` // where the stage serves steps
	State    StageState `json:"state"`
	PID      int        `json:"pid,omitempty"`
	Error    string     `json:"error,omitempty"`
}

func (m *StageStatus) version() *int { return &m.V }
func (*StageStatus) kind() string    { return "stage status" }

// Validate implements Message.
func (m *StageStatus) Validate() error {
	switch m.State {
	case StageStarting, StageReady, StageFailed, StageExited:
	default:
		return fmt.Errorf("state %q is not one of starting, ready, failed, exited", m.State)
	}
	switch {
	case m.Instance == "":
		return errors.New("instance is empty")
	case m.Stages < 1 || m.Stage < 0 || m.Stage >= m.Stages:
		return fmt.Errorf("stage %d of %d is out of range", m.Stage, m.Stages)
	case m.State == StageFailed && m.Error == "":
		return errors.New("a failed stage must say why (error is empty)")
	}
	return nil
}

// JobSubmit carries a job to the controller on JobsSubmit: the HCL text and
// every input it reads, as jobspec.Source records them, so the controller
// parses exactly what the submitter parsed.
type JobSubmit struct {
	V   int            `json:"v"`
	Job jobspec.Source `json:"job"`
}

func (m *JobSubmit) version() *int { return &m.V }
func (*JobSubmit) kind() string    { return "job submission" }

// Validate implements Message.
func (m *JobSubmit) Validate() error {
	if m.Job.HCL == "" {
		return errors.New("job HCL is empty")
	}
	return nil
}

// JobSubmitReply answers a JobSubmit with the new job's id or the
// validation errors ("file:line,col: message", as jobspec formats them).
type JobSubmitReply struct {
	V        int      `json:"v"`
	JobID    string   `json:"job_id,omitempty"`
	Name     string   `json:"name,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	Errors   []string `json:"errors,omitempty"`
}

func (m *JobSubmitReply) version() *int { return &m.V }
func (*JobSubmitReply) kind() string    { return "job submission reply" }

// Validate implements Message.
func (m *JobSubmitReply) Validate() error {
	if len(m.Errors) > 0 {
		if m.JobID != "" {
			return errors.New("a reply with errors must not name a job id")
		}
		return nil
	}
	return validUUID("job_id", m.JobID)
}

// JobState is where a job is in its life.
type JobState string

const (
	JobQueued    JobState = "queued"
	JobRunning   JobState = "running"
	JobSucceeded JobState = "succeeded"
	JobFailed    JobState = "failed"
	JobCancelled JobState = "cancelled"
)

// JobProgress counts one mode's requests.
type JobProgress struct {
	Mode      string `json:"mode"` // "speculative" or "target"
	Completed int    `json:"completed"`
	Failed    int    `json:"failed"`
	// Cancelled counts the requests a cancel cut short; they are not failures.
	Cancelled int `json:"cancelled,omitempty"`
	Total     int `json:"total"` // 0 when the load is time-bound (rate mode)
}

// JobStatus answers a request on JobStatus (whose body is ignored).
type JobStatus struct {
	V         int           `json:"v"`
	JobID     string        `json:"job_id"`
	Name      string        `json:"name"`
	State     JobState      `json:"state"`
	Error     string        `json:"error,omitempty"`
	OutputDir string        `json:"output_dir,omitempty"`
	Submitted time.Time     `json:"submitted"`
	Started   *time.Time    `json:"started,omitempty"`
	Finished  *time.Time    `json:"finished,omitempty"`
	Progress  []JobProgress `json:"progress,omitempty"`
	// Waiting says what a running job waits for before its first request
	// ("a worker to join …"); empty once it runs.
	Waiting string `json:"waiting,omitempty"`
}

func (m *JobStatus) version() *int { return &m.V }
func (*JobStatus) kind() string    { return "job status" }

// Validate implements Message.
func (m *JobStatus) Validate() error {
	if err := validUUID("job_id", m.JobID); err != nil {
		return err
	}
	switch m.State {
	case JobQueued, JobRunning, JobSucceeded, JobFailed, JobCancelled:
		return nil
	}
	return fmt.Errorf("state %q is not one of queued, running, succeeded, failed, cancelled", m.State)
}

// JobCancel asks the controller to cancel a job on JobCancel; the answer is an Ack.
type JobCancel struct {
	V      int    `json:"v"`
	Reason string `json:"reason,omitempty"`
}

func (m *JobCancel) version() *int { return &m.V }
func (*JobCancel) kind() string    { return "job cancel" }

// Validate implements Message.
func (m *JobCancel) Validate() error { return nil }

func validUUID(field, s string) error {
	if _, err := uuid.Parse(s); err != nil {
		return fmt.Errorf("%s %q is not a UUID: %w", field, s, err)
	}
	return nil
}
