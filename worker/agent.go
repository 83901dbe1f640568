package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/agent"
	"github.com/draftbench/draftbench/pkg/cli"
	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/protocol"
)

type agentFlags struct {
	nats, devices, name, prefix, token, creds string
	tokenFrom                                 string // "--token" or "$DRAFTBENCH_NATS_TOKEN"
	cpuDevices, threads                       int
	heartbeat, gpuInterval                    time.Duration
	tls                                       natsrv.TLSFlags
	nkey                                      string
	gpu                                       agent.GPUOptions
}

// addGPUFlags registers the CUDA backend's opt-in modes for GPU stages.
func addGPUFlags(fs *flag.FlagSet, o *agent.GPUOptions) {
	fs.BoolVar(&o.Graphs, "cuda-graphs", false, "GPU stages capture each decode step into a CUDA graph and replay it (docs/cuda.md)")
	fs.BoolVar(&o.TuneGEMM, "tune-gemm", false, "GPU stages time cuBLASLt's algorithms per product shape and keep the fastest (docs/cuda.md)")
	fs.BoolVar(&o.BatchInvariant, "batch-invariant", false, "GPU stages give results independent of batching, so greedy speculative decoding reproduces greedy decoding bit for bit (slower; docs/cuda.md)")
}

// connectRetry is the pause between attempts to reach NATS at start-up: a
// worker may start before its server (docker compose, a rebooting host).
const connectRetry = 2 * time.Second

func agentCmd() *cli.Command {
	var f agentFlags
	return &cli.Command{
		Name:     "agent",
		Synopsis: "host agent (the default): register this host's devices and run the stages the controller assigns",
		Usage: `worker [agent] [--nats URL] [--devices 0,1,... | --cpu-devices N] [--name NAME]
       [--heartbeat 1s] [--prefix draftbench] [--token TOKEN | --creds FILE]
       [--cuda-graphs] [--tune-gemm] [--batch-invariant]`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&f.nats, "nats", "nats://127.0.0.1:4222", "NATS server URL")
			fs.StringVar(&f.devices, "devices", "", "GPUs to offer: NVML indexes or UUIDs (default: CUDA_VISIBLE_DEVICES, else every GPU)")
			fs.IntVar(&f.cpuDevices, "cpu-devices", 0, "offer N CPU devices instead of GPUs, sharing the cores and memory evenly")
			fs.StringVar(&f.name, "name", "", "host name reported to the controller (default: the hostname)")
			fs.DurationVar(&f.heartbeat, "heartbeat", agent.DefaultHeartbeat, "heartbeat interval (the controller's, when shorter, wins)")
			fs.StringVar(&f.prefix, "prefix", protocol.DefaultPrefix, "NATS subject prefix")
			fs.StringVar(&f.token, "token", "", "NATS token (default: $"+agent.TokenEnv+")")
			fs.StringVar(&f.creds, "creds", "", "NATS credentials file")
			f.tls.Add(fs)
			fs.StringVar(&f.nkey, "nkey", "", "NKey seed file (a worker-role user of the controller's NATS)")
			fs.IntVar(&f.threads, "threads", 0, "CPU threads the CPU devices share (0 = all cores)")
			fs.DurationVar(&f.gpuInterval, "gpu-interval", time.Second, "GPU monitor sampling interval (NVML) when no job asks for one (a job's gpu_monitor.interval wins while its stages run)")
			addGPUFlags(fs, &f.gpu)
		},
		Run: func(env *cli.Env, fs *flag.FlagSet) error { return runAgent(env, f) },
	}
}

func runAgent(env *cli.Env, f agentFlags) error {
	if len(env.Args) > 0 {
		return cli.Usagef("unexpected argument %q", env.Args[0])
	}
	if f.cpuDevices > 0 && f.devices != "" {
		return cli.Usagef("give --devices or --cpu-devices, not both")
	}
	if f.heartbeat <= 0 {
		return cli.Usagef("--heartbeat %s must be positive", f.heartbeat)
	}
	subjects, err := protocol.NewSubjects(f.prefix)
	if err != nil {
		return cli.Usagef("--prefix: %v", err)
	}
	f.tokenFrom = "--token"
	if f.token == "" {
		f.token, f.tokenFrom = env.Getenv(agent.TokenEnv), "$"+agent.TokenEnv
	}
	if f.token != "" && f.creds != "" {
		return cli.Usagef("give --token or --creds, not both")
	}
	if f.name == "" {
		if f.name, err = os.Hostname(); err != nil {
			return fmt.Errorf("naming this host (give --name): %w", err)
		}
	}
	log := env.Logger
	devices, err := agent.Discover(agent.DeviceOptions{
		CPUDevices:         f.cpuDevices,
		Devices:            f.devices,
		CUDAVisibleDevices: env.Getenv("CUDA_VISIBLE_DEVICES"),
		Logger:             log.Named("devices"),
	})
	if err != nil {
		return err
	}
	for _, d := range devices {
		log.Info("device", "index", d.Index, "kind", d.Kind, "name", d.Name, "uuid", d.UUID, "memory_bytes", d.MemoryBytes)
	}
	if modes := f.gpu.Modes(); len(modes) > 0 && !slices.ContainsFunc(devices, func(d protocol.Device) bool { return d.Kind == protocol.DeviceGPU }) {
		log.Warn("the CUDA modes asked for apply to GPU stages, and this worker offers no GPU", "modes", modes)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	nc, err := connectAgent(ctx, f, log)
	if err != nil || nc == nil {
		return err
	}
	defer nc.Close()
	// The id is chosen here, not by agent.New, because the GPU monitor answers
	// on a subject named after it.
	id := uuid.NewString()
	gpuReason, setGPUInterval := startGPUMonitor(ctx, nc, subjects, id, f.name, devices, f.gpuInterval, log.Named("gpumon"))
	if gpuReason != "" {
		log.Info("no GPU monitor", "reason", gpuReason)
	}
	ag, err := agent.New(agent.Config{
		WorkerID:     id,
		GPUMonitor:   gpuReason,
		CPUThreads:   f.threads,
		GPUInterval:  setGPUInterval,
		GPU:          f.gpu,
		Conn:         nc,
		Subjects:     subjects,
		Name:         f.name,
		Devices:      devices,
		Heartbeat:    f.heartbeat,
		Version:      cli.Version,
		StageURL:     f.nats,
		Token:        f.token,
		CredsFile:    f.creds,
		TLS:          f.tls,
		NKeySeedFile: f.nkey,
		Logger:       log,
	})
	if err != nil {
		return err
	}
	log.Info("worker starting", "worker", ag.ID(), "nats", nc.ConnectedUrlRedacted())
	return ag.Run(ctx)
}

// connectAgent dials NATS until it answers or ctx ends (then nil, nil), and
// keeps reconnecting for the agent's whole life.
func connectAgent(ctx context.Context, f agentFlags, log hclog.Logger) (*nats.Conn, error) {
	opts := natsrv.ConnectOptions{Name: "worker " + f.name, Token: f.token, CredsFile: f.creds, MaxReconnects: -1}
	f.tls.Apply(&opts)
	if f.nkey != "" {
		opts.NKeySeedFile, opts.Token = f.nkey, ""
	}
	for attempt := 1; ; attempt++ {
		nc, err := natsrv.Connect(f.nats, opts)
		if err == nil {
			return nc, nil
		}
		// A server that is not up yet is waited for; one that refuses the
		// credentials, or whose TLS does not fit this worker's, will do so
		// at every try.
		cause := err
		if c := errors.Unwrap(err); c != nil {
			cause = c // natsrv's prefix repeats the URL
		}
		if why, permanent := natsrv.Why(cause, f.nats, "this worker", f.tokenFrom, opts); permanent {
			return nil, fmt.Errorf("%s (%w)", why, cause)
		}
		log.Info("waiting for NATS", "attempt", attempt, "retry_in", connectRetry, "error", err)
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(connectRetry):
		}
	}
}
