package agent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/protocol"
)

// outputWaitDelay bounds the wait for a stage's output after it exited.
const outputWaitDelay = 5 * time.Second

type stageKey struct {
	instance string
	stage    int
}

// proc is one stage process and what the agent knows of it. The fields
// marked "mu" are guarded by Agent.mu.
type proc struct {
	key        stageKey
	assignment protocol.Assignment
	cmd        *exec.Cmd
	file       string // the assignment file, removed when the process exits
	stdout     *lineWriter
	stderr     *lineWriter

	status     protocol.StageStatus // mu
	stopReason string               // mu: why the agent stopped it, "" if it did not
	settled    chan struct{}        // closed when status leaves starting
	done       chan struct{}        // closed when the process is gone and status is final
}

// setState moves p to a final or ready state (under Agent.mu); leaving
// starting wakes the assignment waiting for the stage.
func (p *proc) setState(state protocol.StageState, reason string) {
	was := p.status.State
	p.status.State, p.status.Error = state, reason
	if was == protocol.StageStarting {
		close(p.settled)
	}
}

// start runs a stage process for as, unless the same stage already runs
// here: the same assignment (a retried request) gets the running process,
// a different one an error.
func (a *Agent) start(as *protocol.Assignment) (*proc, error) {
	kind, err := a.group(as.Devices)
	if err != nil {
		return nil, err
	}
	key := stageKey{as.Instance, as.Stage}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closing {
		return nil, errors.New("the worker is shutting down")
	}
	if old := a.stages[key]; old != nil {
		switch old.status.State {
		case protocol.StageStarting, protocol.StageReady:
			if reflect.DeepEqual(old.assignment, *as) {
				return old, nil
			}
			return nil, fmt.Errorf("stage %s/%d already runs here (pid %d, layers [%d,%d) of %s); release it first",
				as.Instance, as.Stage, old.status.PID, old.assignment.Layers[0], old.assignment.Layers[1], old.assignment.ModelDir)
		}
		delete(a.stages, key) // a stage that ended is replaced
	}
	file, err := a.writeAssignment(as)
	if err != nil {
		return nil, err
	}
	p := &proc{key: key, assignment: *as, file: file, settled: make(chan struct{}), done: make(chan struct{})}
	log := a.log.Named("stage").With("instance", as.Instance, "stage", as.Stage)
	p.stdout = newLineWriter(log, hclog.Info, 0)
	p.stderr = newLineWriter(log, hclog.Warn, tailLines)
	p.cmd = exec.Command(a.cfg.StageCommand[0], a.stageArgs(as, file, kind)...)
	p.cmd.Env = childEnv(a.cfg.Environ, visibleDevices(a.groupDevices(as.Devices)), a.cfg.Token)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	// Should anything the stage started keep its output open, its exit is
	// still reported.
	p.cmd.WaitDelay = outputWaitDelay
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		os.Remove(file)
		return nil, fmt.Errorf("starting %s: %w", a.cfg.StageCommand[0], err)
	}
	p.status = protocol.StageStatus{
		WorkerID: a.id,
		Instance: as.Instance,
		Stage:    as.Stage,
		Stages:   as.Stages,
		Subject:  a.cfg.Subjects.Stage(as.Instance, as.Stage),
		State:    protocol.StageStarting,
		PID:      p.cmd.Process.Pid,
	}
	a.stages[key] = p
	a.tellGPUInterval()
	log.Info("stage starting", "pid", p.status.PID, "model", as.ModelDir,
		"layers", fmt.Sprintf("[%d,%d)", as.Layers[0], as.Layers[1]), "devices", as.Devices, "kind", kind)
	a.publish(p.status)
	go a.supervise(p)
	return p, nil
}

// group checks that the devices belong to this worker and are of one kind.
func (a *Agent) group(indexes []int) (protocol.DeviceKind, error) {
	if len(indexes) == 0 {
		return "", errors.New("the assignment names no devices")
	}
	var kind protocol.DeviceKind
	for _, i := range indexes {
		d, ok := a.devices[i]
		if !ok {
			have := make([]int, 0, len(a.devices))
			for j := range a.devices {
				have = append(have, j)
			}
			slices.Sort(have)
			return "", fmt.Errorf("device %d is not one of this worker's devices %v", i, have)
		}
		if kind != "" && d.Kind != kind {
			return "", fmt.Errorf("devices %v mix %s and %s devices", indexes, kind, d.Kind)
		}
		kind = d.Kind
	}
	return kind, nil
}

func (a *Agent) groupDevices(indexes []int) []protocol.Device {
	out := make([]protocol.Device, len(indexes))
	for i, j := range indexes {
		out[i] = a.devices[j]
	}
	return out
}

// writeAssignment writes the assignment as it came on the wire, for the
// stage process to read; the file is the stage's only input besides its flags.
func (a *Agent) writeAssignment(as *protocol.Assignment) (string, error) {
	data, err := protocol.Encode(as)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(a.cfg.TempDir, "draftbench-assignment-*.json")
	if err != nil {
		return "", fmt.Errorf("writing the assignment file: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("writing the assignment file %s: %w", f.Name(), err)
	}
	return f.Name(), nil
}

// stageArgs are the arguments after StageCommand[0]: the stage process
// logs JSON lines, which the agent re-logs with their levels and fields.
func (a *Agent) stageArgs(as *protocol.Assignment, file string, kind protocol.DeviceKind) []string {
	args := append(slices.Clone(a.cfg.StageCommand[1:]),
		"--nats", a.cfg.StageURL,
		"--assignment", file,
		"--worker", a.id,
		"--prefix", a.cfg.Subjects.Prefix(),
		"--device-kind", string(kind),
		"--log-json", "--log-level", childLevel(a.cfg.Logger.GetLevel().String()),
	)
	if kind == protocol.DeviceCPU {
		args = append(args, "--threads", strconv.Itoa(a.cpuShare*len(as.Devices)))
	}
	if kind == protocol.DeviceGPU {
		args = append(args, a.cfg.GPU.Args()...)
	}
	args = append(args, a.cfg.TLS.Args()...)
	if a.cfg.NKeySeedFile != "" {
		args = append(args, "--nkey", a.cfg.NKeySeedFile)
	}
	if a.cfg.CredsFile != "" {
		args = append(args, "--creds", a.cfg.CredsFile)
	}
	return args
}

// childLevel is the stage's log level: as verbose as the agent, and never
// quieter than info, so the last lines of a failed stage say why.
func childLevel(agent string) string {
	if agent == "trace" || agent == "debug" {
		return agent
	}
	return "info"
}

// childEnv is base with CUDA_VISIBLE_DEVICES set to visible and the token
// (when there is one) in TokenEnv; earlier values of both are dropped.
func childEnv(base []string, visible, token string) []string {
	env := make([]string, 0, len(base)+2)
	for _, kv := range base {
		name, _, _ := strings.Cut(kv, "=")
		if name == "CUDA_VISIBLE_DEVICES" || name == TokenEnv {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "CUDA_VISIBLE_DEVICES="+visible)
	if token != "" {
		env = append(env, TokenEnv+"="+token)
	}
	return env
}

// supervise waits for the process and settles its final state.
func (a *Agent) supervise(p *proc) {
	err := p.cmd.Wait()
	p.stdout.Close()
	p.stderr.Close()
	if rerr := os.Remove(p.file); rerr != nil {
		a.log.Warn("removing the assignment file", "file", p.file, "error", rerr)
	}
	how := "exited"
	if p.cmd.ProcessState != nil {
		how = p.cmd.ProcessState.String() // "exit status 1", "signal: killed"
	} else if err != nil {
		how = err.Error()
	}
	clean := err == nil
	last := p.stderr.Tail()

	a.mu.Lock()
	reportedByStage := p.status.State == protocol.StageFailed
	switch p.status.State {
	case protocol.StageStarting:
		reason := "exited before it was ready: " + how
		if p.stopReason != "" {
			reason = p.stopReason + ": " + how
		}
		if last != "" {
			reason += "; last output: " + last
		}
		p.setState(protocol.StageFailed, reason)
	case protocol.StageReady:
		var reason string
		switch {
		case p.stopReason != "" && clean:
			reason = p.stopReason
		case p.stopReason != "":
			reason = p.stopReason + ": " + how
		default:
			reason = "stage process ended: " + how
			if last != "" {
				reason += "; last output: " + last
			}
		}
		p.setState(protocol.StageExited, reason)
	}
	st := p.status
	close(p.done)
	a.tellGPUInterval() // an ended stage asks for nothing
	a.mu.Unlock()

	a.log.Info("stage ended", "instance", st.Instance, "stage", st.Stage, "pid", st.PID, "state", st.State, "reason", st.Error)
	if !reportedByStage {
		a.publish(st)
	}
}

// onEvent takes a stage process's own report: ready, or failed with the
// reason. Only the process the agent started for that stage counts (same
// pid), and only while it is starting; everything else, the agent's own
// events included, is old news.
func (a *Agent) onEvent(msg *nats.Msg) {
	ev := &StageEvent{StageStatus: &protocol.StageStatus{}}
	if err := protocol.Decode(msg.Data, ev); err != nil {
		a.log.Warn("reading a stage event", "error", err)
		return
	}
	if ev.State != protocol.StageReady && ev.State != protocol.StageFailed {
		return
	}
	a.mu.Lock()
	p := a.stages[stageKey{ev.Instance, ev.Stage}]
	if p == nil || p.status.PID != ev.PID || p.status.State != protocol.StageStarting {
		a.mu.Unlock()
		return
	}
	p.setState(ev.State, ev.Error)
	a.mu.Unlock()
	if ev.State == protocol.StageReady {
		a.log.Info("stage ready", "instance", ev.Instance, "stage", ev.Stage, "pid", ev.PID, "subject", ev.Subject,
			"load_ms", ev.LoadMS, "weight_bytes", ev.WeightBytes)
	} else {
		a.log.Warn("stage failed", "instance", ev.Instance, "stage", ev.Stage, "pid", ev.PID, "error", ev.Error)
	}
}

// publish sends the agent's view of a stage on the worker's stage subject,
// where the controller can follow every transition.
func (a *Agent) publish(st protocol.StageStatus) {
	data, err := protocol.Encode(&st)
	if err == nil {
		err = a.cfg.Conn.Publish(a.cfg.Subjects.WorkerStages(a.id), data)
	}
	if err != nil {
		a.log.Warn("publishing a stage status", "instance", st.Instance, "stage", st.Stage, "error", err)
	}
}

// tellGPUInterval passes the shortest GPU sampling interval the stages'
// jobs ask for to cfg.GPUInterval when it changed. The caller holds a.mu.
func (a *Agent) tellGPUInterval() {
	if a.cfg.GPUInterval == nil {
		return
	}
	var d time.Duration
	for _, p := range a.stages {
		if live := p.status.State == protocol.StageStarting || p.status.State == protocol.StageReady; !live {
			continue
		}
		if ms := p.assignment.GPUIntervalMS; ms > 0 && (d == 0 || time.Duration(ms)*time.Millisecond < d) {
			d = time.Duration(ms) * time.Millisecond
		}
	}
	if d != a.gpuInterval {
		a.gpuInterval = d
		a.cfg.GPUInterval(d)
	}
}

// release stops the stages of an instance (all when Instance is empty) and
// forgets them once they have exited.
func (a *Agent) release(rel *protocol.Release) {
	reason := "released"
	if rel.Reason != "" {
		reason += ": " + rel.Reason
	}
	a.mu.Lock()
	var targets []*proc
	for k, p := range a.stages {
		if rel.Instance == "" || k.instance == rel.Instance {
			targets = append(targets, p)
		}
	}
	a.mu.Unlock()
	a.stopEach(targets, reason)
	a.mu.Lock()
	for _, p := range targets {
		if a.stages[p.key] == p {
			delete(a.stages, p.key)
		}
	}
	a.tellGPUInterval()
	a.mu.Unlock()
	if len(targets) > 0 {
		a.log.Info("released", "instance", rel.Instance, "stages", len(targets), "reason", rel.Reason)
	}
}

// stopAll refuses new stages and stops every running one.
func (a *Agent) stopAll(reason string) {
	a.mu.Lock()
	a.closing = true
	var all []*proc
	for _, p := range a.stages {
		all = append(all, p)
	}
	a.mu.Unlock()
	a.stopEach(all, reason)
}

func (a *Agent) stopEach(procs []*proc, reason string) {
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { a.stop(p, reason) })
	}
	wg.Wait()
}

// stop sends SIGTERM, waits StopGrace, then SIGKILL, and returns once the
// process is gone.
func (a *Agent) stop(p *proc, reason string) {
	if !a.markStopping(p, reason) {
		return
	}
	// An error means the process already exited; done is closed soon.
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-a.cfg.Clock.After(a.cfg.StopGrace):
	}
	a.log.Warn("stage did not stop after SIGTERM; killing it", "instance", p.key.instance, "stage", p.key.stage,
		"pid", p.cmd.Process.Pid, "grace", a.cfg.StopGrace)
	_ = p.cmd.Process.Kill()
	<-p.done
}

// kill ends a stage at once (it is stuck) and waits until it is gone.
func (a *Agent) kill(p *proc, reason string) {
	if !a.markStopping(p, reason) {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// markStopping records why the agent stops p; false when p is already gone.
func (a *Agent) markStopping(p *proc, reason string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	select {
	case <-p.done:
		return false
	default:
	}
	if p.stopReason == "" {
		p.stopReason = reason
	}
	return true
}
