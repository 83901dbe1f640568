package protocol

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// DefaultPrefix starts every subject unless a deployment chooses another.
const DefaultPrefix = "draftbench"

// StageQueue is the queue group every stage subscribes in, so that a stage
// started twice for the same subject (a restart racing its predecessor) gets
// each step once instead of twice.
const StageQueue = "draftbench-stage"

// MaxTokenLen bounds a sanitized subject token.
const MaxTokenLen = 64

// Subjects builds the subjects of DESIGN §5 under one prefix. The zero value
// uses DefaultPrefix. Every variable part (job, worker, host, model instance)
// goes through Sanitize, so any string a user or a machine supplies yields a
// valid subject, and the publisher and the subscriber build the same one.
type Subjects struct {
	prefix string
}

// NewSubjects returns builders under prefix ("" means DefaultPrefix). The
// prefix may hold several dot-separated tokens ("acme.draftbench"); each must
// already be a safe token, as a prefix is configuration, not user data.
func NewSubjects(prefix string) (Subjects, error) {
	if prefix == "" {
		return Subjects{}, nil
	}
	for _, tok := range strings.Split(prefix, ".") {
		if tok == "" || Sanitize(tok) != tok {
			return Subjects{}, fmt.Errorf("subject prefix %q: token %q must be non-empty and use only letters, digits, '-' and '_'", prefix, tok)
		}
	}
	return Subjects{prefix: prefix}, nil
}

// Prefix is the prefix in use.
func (s Subjects) Prefix() string {
	if s.prefix == "" {
		return DefaultPrefix
	}
	return s.prefix
}

// join builds prefix.fixed... with each variable token sanitized by the caller.
func (s Subjects) join(tokens ...string) string {
	return s.Prefix() + "." + strings.Join(tokens, ".")
}

// JobsSubmit is the request subject for submitting a job (JobSubmit → JobSubmitReply).
func (s Subjects) JobsSubmit() string { return s.join("jobs", "submit") }

// JobStatus is the request subject for a job's state (→ JobStatus).
func (s Subjects) JobStatus(job string) string { return s.join("jobs", Sanitize(job), "status") }

// JobCancel is the request subject for cancelling a job (JobCancel → Ack).
func (s Subjects) JobCancel(job string) string { return s.join("jobs", Sanitize(job), "cancel") }

// WorkersRegister is the request subject a worker registers on (Registration → RegisterReply).
func (s Subjects) WorkersRegister() string { return s.join("workers", "register") }

// WorkerHeartbeat is where a worker publishes its Heartbeat.
func (s Subjects) WorkerHeartbeat(worker string) string {
	return s.join("workers", Sanitize(worker), "heartbeat")
}

// WorkerHeartbeats matches every worker's heartbeat (for the controller's subscription).
func (s Subjects) WorkerHeartbeats() string { return s.join("workers", "*", "heartbeat") }

// WorkerAssign is the request subject that asks a worker to start a stage (Assignment → StageStatus).
func (s Subjects) WorkerAssign(worker string) string {
	return s.join("workers", Sanitize(worker), "assign")
}

// WorkerRelease is the request subject that asks a worker to stop stages (Release → Ack).
func (s Subjects) WorkerRelease(worker string) string {
	return s.join("workers", Sanitize(worker), "release")
}

// WorkerStages is where a worker's stage processes publish their StageStatus
// (starting, ready, failed, exited). DESIGN §5's table does not list it; it
// lives under the worker's own subjects so a host agent subscribes to one
// subject for all its children.
func (s Subjects) WorkerStages(worker string) string {
	return s.join("workers", Sanitize(worker), "stages")
}

// WorkerGPURead is the request subject on which a worker's GPU monitor reads
// its GPUs' energy counters at once (GPURead → GPUReadReply): the controller
// asks at every phase change, since only the worker's host can read them.
// DESIGN §5's table does not list it.
func (s Subjects) WorkerGPURead(worker string) string {
	return s.join("workers", Sanitize(worker), "gpu_read")
}

// Stage is the step subject of stage k of a model instance (StepRequest frames).
func (s Subjects) Stage(instance string, k int) string {
	return s.join("stage", Sanitize(instance), strconv.Itoa(k))
}

// ResultsRequests is the JetStream subject of a job's per-request records.
func (s Subjects) ResultsRequests(job string) string {
	return s.join("results", Sanitize(job), "requests")
}

// ResultsProgress is the JetStream subject of a job's progress updates.
func (s Subjects) ResultsProgress(job string) string {
	return s.join("results", Sanitize(job), "progress")
}

// ResultsSummary is the JetStream subject of a job's final summary.
func (s Subjects) ResultsSummary(job string) string {
	return s.join("results", Sanitize(job), "summary")
}

// JobResults matches every results subject of one job (tail).
func (s Subjects) JobResults(job string) string { return s.join("results", Sanitize(job), ">") }

// AllResults matches every job's results (the results stream).
func (s Subjects) AllResults() string { return s.join("results", ">") }

// GPU is the JetStream subject of one device's monitor samples.
func (s Subjects) GPU(host string, device int) string {
	return s.join("gpu", Sanitize(host), strconv.Itoa(device))
}

// AllGPU matches every host's monitor samples (the GPU stream).
func (s Subjects) AllGPU() string { return s.join("gpu", ">") }

// AllWorkerStages matches every worker's stage events (WorkerStages).
func (s Subjects) AllWorkerStages() string { return s.join("workers", "*", "stages") }

// AllWorkerAssigns and AllWorkerReleases match every worker's assign and
// release subjects (for permissions).
func (s Subjects) AllWorkerAssigns() string { return s.join("workers", "*", "assign") }

// AllWorkerReleases matches every worker's release subject.
func (s Subjects) AllWorkerReleases() string { return s.join("workers", "*", "release") }

// AllWorkerGPUReads matches every worker's gpu_read subject (for permissions).
func (s Subjects) AllWorkerGPUReads() string { return s.join("workers", "*", "gpu_read") }

// AllStages matches every stage subject of every model instance.
func (s Subjects) AllStages() string { return s.join("stage", ">") }

// JobsList is the request subject that lists the jobs a controller knows.
func (s Subjects) JobsList() string { return s.join("jobs", "list") }

// WorkersList is the request subject that lists a controller's workers.
func (s Subjects) WorkersList() string { return s.join("workers", "list") }

// Sanitize makes any string one safe subject token: ASCII letters, digits,
// '-' and '_' are kept, every other character (including '.', '*', '>',
// spaces and control characters) becomes '_', an empty string becomes "_",
// and a token longer than MaxTokenLen is cut and ends in a hash of the whole
// input, so long names that share a beginning stay apart. Sanitize is
// idempotent and leaves UUIDs and simple names unchanged.
func Sanitize(token string) string {
	if token == "" {
		return "_"
	}
	var b strings.Builder
	b.Grow(len(token))
	for _, r := range token {
		if safeRune(r) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	out := b.String()
	if len(out) <= MaxTokenLen {
		return out
	}
	h := fnv.New32a()
	h.Write([]byte(token))
	return fmt.Sprintf("%s-%08x", out[:MaxTokenLen-9], h.Sum32())
}

func safeRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}
