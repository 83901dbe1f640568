package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/protocol"
)

// Defaults for Config.
const (
	DefaultHeartbeat    = time.Second
	DefaultStopGrace    = 10 * time.Second
	DefaultStartTimeout = 10 * time.Minute
	// DefaultRequestTimeout bounds one registration request. It is short: a
	// request sent just as the connection fails over to another server can
	// lose its reply, and no heartbeat goes out until registration succeeds, so
	// retrying soon keeps the gap under the three intervals that mean lost.
	DefaultRequestTimeout = time.Second
)

// Registration retries back off from registerBackoffMin, doubling up to
// registerBackoffMax, so a worker started before its controller finds it
// within seconds without flooding it.
const (
	registerBackoffMin = 250 * time.Millisecond
	registerBackoffMax = 10 * time.Second
)

// UnknownWorker starts the Error of the Ack a controller sends in answer to
// a heartbeat from a worker it does not know (it restarted, or declared the
// worker lost); the worker then registers again.
const UnknownWorker = protocol.UnknownWorker

// HostTaken starts the Error of a registration refused for good: a live
// worker holds this worker's host name (cluster.HostTaken, the controller's
// side). Run then ends with the controller's reason instead of retrying.
const HostTaken = protocol.HostTaken

// TokenEnv carries the NATS token to stage processes: the environment, not
// the command line, which any user of the host can read.
const TokenEnv = natsrv.TokenEnv

// Clock tells the time and waits; tests pass a fake one to drive heartbeats
// and retries without sleeping.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Config configures an Agent.
type Config struct {
	// Conn is the agent's connection; Run re-registers after it reconnects.
	Conn     *nats.Conn
	Subjects protocol.Subjects
	// WorkerID identifies the worker for its lifetime ("": a new UUID).
	WorkerID string
	// Name is the host name reported to the controller ("": os.Hostname()).
	Name string
	// Devices are the devices offered (see Discover); at least one.
	Devices []protocol.Device
	// GPUMonitor is "" when the worker publishes GPU samples, else why not
	// (sent with the registration).
	GPUMonitor string
	// Heartbeat is the heartbeat interval (0: DefaultHeartbeat). When the
	// controller asks for a shorter one at registration, the shorter wins:
	// the controller declares a worker lost after three of its intervals.
	Heartbeat time.Duration
	// Version is the build reported at registration ("": "dev").
	Version string

	// StageCommand starts a stage process; the agent appends the stage's
	// flags (nil: this executable and "stage").
	StageCommand []string
	// StageURL is the NATS URL stages connect to ("": the URL Conn is connected to).
	StageURL string
	// Token (passed in TokenEnv) or CredsFile (passed as --creds)
	// authenticate the stages.
	Token, CredsFile string
	// TLS holds the client TLS files, passed on to stage processes.
	TLS natsrv.TLSFlags
	// NKeySeedFile authenticates with an NKey (passed on as --nkey).
	NKeySeedFile string
	// Environ is the environment stages start from, before
	// CUDA_VISIBLE_DEVICES is narrowed (nil: os.Environ()).
	Environ []string
	// TempDir holds the assignment files ("": os.TempDir()).
	TempDir string
	// GPU are the opt-in modes of the CUDA backend in the GPU stages.
	GPU GPUOptions
	// CPUThreads are the cores the CPU devices share (0: runtime.NumCPU()).
	CPUThreads int
	// GPUInterval, when set, is told the GPU sampling interval the jobs of
	// the stages here ask for whenever it changes: the shortest, or 0 when no
	// stage asks (the worker's own interval then). It must not block.
	GPUInterval func(time.Duration)

	// StopGrace is how long a stage has to exit after SIGTERM before SIGKILL
	// (0: DefaultStopGrace).
	StopGrace time.Duration
	// StartTimeout bounds the wait for a stage to become ready; a stage
	// still loading then is killed and reported failed (0: DefaultStartTimeout).
	StartTimeout time.Duration
	// RequestTimeout bounds one registration request (0: DefaultRequestTimeout).
	RequestTimeout time.Duration

	Logger hclog.Logger // nil: discarded
	Clock  Clock        // nil: the system clock
}

// Agent is a worker's host agent: it registers the host and its devices,
// heartbeats, and runs one stage process per assignment.
type Agent struct {
	cfg      Config
	id       string
	log      hclog.Logger
	devices  map[int]protocol.Device
	cpuShare int // threads per CPU device
	// registration is the encoded Registration, the same at every try.
	registration []byte
	reregister   chan string
	running      atomic.Bool

	mu          sync.Mutex
	stages      map[stageKey]*proc
	closing     bool
	gpuInterval time.Duration  // the last one told to cfg.GPUInterval
	work        sync.WaitGroup // assign and release handlers in flight
}

// New checks cfg and fills in its defaults.
func New(cfg Config) (*Agent, error) {
	if cfg.Conn == nil {
		return nil, errors.New("agent: no NATS connection")
	}
	if len(cfg.Devices) == 0 {
		return nil, errors.New("agent: no devices to offer")
	}
	if cfg.WorkerID == "" {
		cfg.WorkerID = uuid.NewString()
	}
	if cfg.Name == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("agent: naming the host (give a name): %w", err)
		}
		cfg.Name = host
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	registration, err := protocol.Encode(&protocol.Registration{WorkerID: cfg.WorkerID, Host: cfg.Name, Devices: cfg.Devices, BuildVersion: cfg.Version, GPUMonitor: cfg.GPUMonitor, CUDAModes: cudaModes(cfg),
		StepVersion: protocol.StepVersion})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if len(cfg.StageCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("agent: finding this executable to start stages with: %w", err)
		}
		cfg.StageCommand = []string{exe, "stage"}
	}
	if cfg.StageURL == "" {
		cfg.StageURL = cfg.Conn.ConnectedUrl()
	}
	if cfg.Token != "" && cfg.CredsFile != "" {
		return nil, errors.New("agent: give a token or a creds file, not both")
	}
	if cfg.Environ == nil {
		cfg.Environ = os.Environ()
	}
	if cfg.TempDir == "" {
		cfg.TempDir = os.TempDir()
	}
	if cfg.CPUThreads <= 0 {
		cfg.CPUThreads = runtime.NumCPU()
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = DefaultStopGrace
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Clock == nil {
		cfg.Clock = systemClock{}
	}
	a := &Agent{
		cfg:          cfg,
		registration: registration,
		id:           cfg.WorkerID,
		log:          cfg.Logger.Named("agent").With("worker", cfg.WorkerID),
		devices:      map[int]protocol.Device{},
		reregister:   make(chan string, 1),
		stages:       map[stageKey]*proc{},
	}
	cpus := 0
	for _, d := range cfg.Devices {
		a.devices[d.Index] = d
		if d.Kind == protocol.DeviceCPU {
			cpus++
		}
	}
	if cpus > 0 {
		a.cpuShare = max(1, cfg.CPUThreads/cpus)
	}
	return a, nil
}

// ID is the worker id.
func (a *Agent) ID() string { return a.id }

// Stages reports the stages the agent runs or last ran, as a heartbeat does.
func (a *Agent) Stages() []protocol.StageStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]protocol.StageStatus, 0, len(a.stages))
	for _, p := range a.stages {
		out = append(out, p.status)
	}
	slices.SortFunc(out, func(x, y protocol.StageStatus) int {
		if c := strings.Compare(x.Instance, y.Instance); c != 0 {
			return c
		}
		return x.Stage - y.Stage
	})
	return out
}

// Run serves until ctx ends: it subscribes to the worker's assign, release
// and stage subjects, registers (retrying until the controller answers),
// heartbeats, and registers again after a reconnect or when the controller
// says it does not know the worker. When ctx ends it stops every stage and
// returns nil; it stops them too and returns an error when the connection
// closes for good (its reconnects ran out) or it cannot subscribe, and with
// the controller's reason when the controller refuses the worker for good
// (HostTaken: another live worker has its host name). An Agent runs once.
func (a *Agent) Run(ctx context.Context) error {
	if a.running.Swap(true) {
		return errors.New("agent: Run called twice")
	}
	nc, subj := a.cfg.Conn, a.cfg.Subjects
	inbox := nc.NewInbox()
	var subs []*nats.Subscription
	unsubscribe := func() {
		for _, s := range subs {
			// Unsubscribing fails only on a closed connection, which
			// delivers nothing anyway.
			_ = s.Unsubscribe()
		}
		subs = nil
	}
	for _, s := range []struct {
		subject string
		handle  nats.MsgHandler
	}{
		{subj.WorkerStages(a.id), a.onEvent},
		{inbox, a.onHeartbeatReply},
		{subj.WorkerAssign(a.id), a.onAssign},
		{subj.WorkerRelease(a.id), a.onRelease},
	} {
		sub, err := nc.Subscribe(s.subject, s.handle)
		if err != nil {
			unsubscribe()
			return fmt.Errorf("agent: subscribing to %s: %w", s.subject, err)
		}
		subs = append(subs, sub)
	}
	if err := nc.Flush(); err != nil {
		unsubscribe()
		return fmt.Errorf("agent: subscribing: %w", err)
	}
	prevReconnect := nc.Opts.ReconnectedCB
	nc.SetReconnectHandler(func(c *nats.Conn) {
		if prevReconnect != nil {
			prevReconnect(c)
		}
		a.requestRegistration("reconnected to NATS")
	})
	defer nc.SetReconnectHandler(prevReconnect)

	if !cudaBuilt {
		for _, d := range a.cfg.Devices {
			if d.Kind == protocol.DeviceGPU {
				a.log.Warn("this worker was built without CUDA: assignments on its GPUs will fail; rebuild with make build-cuda")
				break
			}
		}
	}
	var refused error
	for ctx.Err() == nil && !nc.IsClosed() {
		interval, ok, err := a.register(ctx)
		if err != nil {
			refused = err
			break
		}
		if !ok {
			break
		}
		a.heartbeats(ctx, inbox, interval)
	}
	var err error
	switch {
	case refused != nil:
		err = refused
	case ctx.Err() == nil:
		err = errors.New("agent: the NATS connection closed for good")
	}

	// New work stops first (the last two subscriptions), then the stages,
	// then the handlers still answering; stage events are heard to the end.
	for _, s := range subs[2:] {
		_ = s.Unsubscribe()
	}
	if ctx.Err() != nil && !nc.IsClosed() {
		a.leave()
	}
	a.stopAll("the worker is shutting down")
	a.work.Wait()
	unsubscribe()
	a.log.Info("stopped")
	return err
}

// requestRegistration asks Run to register again (at most one request waits).
func (a *Agent) requestRegistration(reason string) {
	select {
	case a.reregister <- reason:
	default:
	}
}

// register sends the Registration until the controller accepts it, backing
// off between tries, and returns the heartbeat interval to use. It returns
// false when ctx ends or the connection closes first, and an error when the
// controller refuses the worker for good (HostTaken).
func (a *Agent) register(ctx context.Context) (time.Duration, bool, error) {
	select { // a request made before this registration is answered by it
	case <-a.reregister:
	default:
	}
	backoff := registerBackoffMin
	for attempt := 1; ; attempt++ {
		rep, err := a.sendRegistration(ctx, a.registration)
		if err == nil {
			interval := min(a.cfg.Heartbeat, rep.HeartbeatInterval())
			a.log.Info("registered", "host", a.cfg.Name, "devices", len(a.cfg.Devices), "heartbeat", interval)
			return interval, true, nil
		}
		if ctx.Err() != nil || a.cfg.Conn.IsClosed() {
			return 0, false, nil
		}
		var r *refusal
		if errors.As(err, &r) && (strings.HasPrefix(r.reason, HostTaken) || strings.HasPrefix(r.reason, protocol.VersionRefused)) {
			return 0, false, err
		}
		log := a.log.Info
		if errors.Is(err, errRefused) { // the controller's answer, not its absence: worth a warning
			log = a.log.Warn
		}
		log("waiting for the controller", "attempt", attempt, "retry_in", backoff, "error", err)
		select {
		case <-ctx.Done():
			return 0, false, nil
		case <-a.cfg.Clock.After(backoff):
		}
		backoff = min(2*backoff, registerBackoffMax)
	}
}

// errRefused is a registration the controller answered with an error.
var errRefused = errors.New("the controller refused the registration")

// refusal is the controller's error answer to a registration (errRefused).
type refusal struct{ reason string }

func (r *refusal) Error() string        { return errRefused.Error() + ": " + r.reason }
func (r *refusal) Is(target error) bool { return target == errRefused }

func (a *Agent) sendRegistration(ctx context.Context, data []byte) (*protocol.RegisterReply, error) {
	subject := a.cfg.Subjects.WorkersRegister()
	ctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	msg, err := a.cfg.Conn.RequestWithContext(ctx, subject, data)
	if err != nil {
		return nil, fmt.Errorf("registering on %s: %w", subject, err)
	}
	rep := &protocol.RegisterReply{}
	if err := protocol.Decode(msg.Data, rep); err != nil {
		return nil, fmt.Errorf("registering on %s: %w", subject, err)
	}
	if rep.Error != "" {
		return nil, &refusal{reason: rep.Error}
	}
	return rep, nil
}

// heartbeats publishes a heartbeat now and every interval until ctx ends or
// a new registration is due.
func (a *Agent) heartbeats(ctx context.Context, inbox string, interval time.Duration) {
	for {
		a.beat(inbox)
		select {
		case <-ctx.Done():
			return
		case why := <-a.reregister:
			a.log.Info("registering again", "reason", why)
			return
		case <-a.cfg.Clock.After(interval):
		}
		if a.cfg.Conn.IsClosed() {
			return
		}
	}
}

// beat publishes one heartbeat with a reply subject, so the controller can
// answer a heartbeat it does not expect (UnknownWorker).
func (a *Agent) beat(inbox string) {
	hb := &protocol.Heartbeat{WorkerID: a.id, Host: a.cfg.Name, Sent: a.cfg.Clock.Now(), Stages: a.Stages()}
	data, err := protocol.Encode(hb)
	if err == nil {
		err = a.cfg.Conn.PublishRequest(a.cfg.Subjects.WorkerHeartbeat(a.id), inbox, data)
	}
	if err != nil {
		a.log.Warn("sending a heartbeat", "error", err)
	}
}

// leave sends the last heartbeat, marked Leaving, so the controller stops
// counting on this worker at once (no new stages, its jobs end now).
func (a *Agent) leave() {
	hb := &protocol.Heartbeat{WorkerID: a.id, Host: a.cfg.Name, Sent: a.cfg.Clock.Now(), Stages: a.Stages(), Leaving: true}
	data, err := protocol.Encode(hb)
	if err == nil {
		if err = a.cfg.Conn.Publish(a.cfg.Subjects.WorkerHeartbeat(a.id), data); err == nil {
			// Bounded: a worker stopping while NATS is away must not hold
			// its stages' SIGTERM back for the default 10 s.
			err = a.cfg.Conn.FlushTimeout(time.Second)
		}
	}
	if err != nil {
		a.log.Warn("telling the controller this worker leaves", "error", err)
	}
}

func (a *Agent) onHeartbeatReply(msg *nats.Msg) {
	if len(msg.Data) == 0 {
		// The server's "no responders" status: no controller listens to
		// heartbeats right now, which the controller's silence says too.
		return
	}
	ack := &protocol.Ack{}
	if err := protocol.Decode(msg.Data, ack); err != nil {
		a.log.Warn("reading the answer to a heartbeat", "error", err)
		return
	}
	switch {
	case strings.HasPrefix(ack.Error, UnknownWorker):
		a.requestRegistration("the controller answered: " + ack.Error)
	case ack.Error != "":
		a.log.Warn("the controller answered a heartbeat with an error", "error", ack.Error)
	}
}

// onAssign answers on a goroutine of its own: a stage may load for minutes,
// and the assignments of other stages must not queue behind it.
func (a *Agent) onAssign(msg *nats.Msg) {
	if !a.startWork() {
		as := &protocol.Assignment{}
		_ = protocol.Decode(msg.Data, as) // only to name the stage in the answer
		a.respond(msg, failedStatus(a.id, as, errors.New("the worker is shutting down")))
		return
	}
	go func() {
		defer a.work.Done()
		a.respond(msg, a.assign(msg.Data))
	}()
}

func (a *Agent) onRelease(msg *nats.Msg) {
	rel := &protocol.Release{}
	if err := protocol.Decode(msg.Data, rel); err != nil {
		a.respond(msg, &protocol.Ack{Error: err.Error()})
		return
	}
	if !a.startWork() {
		a.respond(msg, &protocol.Ack{Error: "the worker is shutting down"})
		return
	}
	go func() {
		defer a.work.Done()
		a.release(rel)
		a.respond(msg, &protocol.Ack{})
	}()
}

// startWork counts a handler in, unless the agent is shutting down.
func (a *Agent) startWork() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closing {
		return false
	}
	a.work.Add(1)
	return true
}

func (a *Agent) respond(msg *nats.Msg, m protocol.Message) {
	data, err := protocol.Encode(m)
	if err != nil {
		a.log.Error("encoding an answer", "subject", msg.Subject, "error", err)
		return
	}
	if err := msg.Respond(data); err != nil {
		a.log.Warn("answering", "subject", msg.Subject, "error", err)
	}
}

// assign starts the stage (or finds it already started by the same
// assignment) and waits until it is ready or failed.
func (a *Agent) assign(data []byte) *protocol.StageStatus {
	as := &protocol.Assignment{}
	if err := protocol.Decode(data, as); err != nil {
		return failedStatus(a.id, as, err)
	}
	p, err := a.start(as)
	if err != nil {
		a.log.Warn("refusing an assignment", "instance", as.Instance, "stage", as.Stage, "error", err)
		return failedStatus(a.id, as, err)
	}
	select {
	case <-p.settled:
	case <-a.cfg.Clock.After(a.cfg.StartTimeout):
		a.kill(p, fmt.Sprintf("not ready after %s", a.cfg.StartTimeout))
		<-p.settled
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	st := p.status
	return &st
}

// failedStatus answers an assignment that did not start. Its fields come
// from the assignment as far as they make a valid status, so the controller
// can tell which request failed.
func failedStatus(worker string, as *protocol.Assignment, err error) *protocol.StageStatus {
	st := &protocol.StageStatus{WorkerID: worker, Instance: as.Instance, Stage: as.Stage, Stages: as.Stages, State: protocol.StageFailed, Error: err.Error()}
	if st.Instance == "" {
		st.Instance = "unknown"
	}
	if st.Stages < 1 || st.Stage < 0 || st.Stage >= st.Stages {
		st.Stage, st.Stages = 0, 1
	}
	return st
}

// cudaModes are the CUDA modes a worker registers: those of its GPU stages,
// none when it offers no GPU (they would describe nothing it runs).
func cudaModes(cfg Config) []string {
	for _, d := range cfg.Devices {
		if d.Kind == protocol.DeviceGPU {
			return cfg.GPU.Modes()
		}
	}
	return nil
}
