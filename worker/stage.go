package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/draftbench/draftbench/pkg/agent"
	"github.com/draftbench/draftbench/pkg/cli"
	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/protocol"
)

type stageFlags struct {
	nats, assignment, worker, prefix, kind, creds string
	tls                                           natsrv.TLSFlags
	nkey                                          string
	threads                                       int
	gpu                                           agent.GPUOptions
}

// stageCmd is the stage process the host agent starts for each assignment
// (with CUDA_VISIBLE_DEVICES narrowed to the group); users do not run it.
func stageCmd() *cli.Command {
	var f stageFlags
	return &cli.Command{
		Name:     "stage",
		Synopsis: "internal: serve one assigned layer range over NATS (the host agent starts it)",
		Usage: `worker stage --nats URL --assignment FILE [--worker ID] [--prefix P]
       [--device-kind cpu|gpu] [--threads N] [--creds FILE]
       [--cuda-graphs] [--tune-gemm] [--batch-invariant]`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&f.nats, "nats", "nats://127.0.0.1:4222", "NATS server URL (a token comes in $"+agent.TokenEnv+")")
			fs.StringVar(&f.assignment, "assignment", "", "the assignment, a JSON file as sent on workers.<id>.assign")
			fs.StringVar(&f.worker, "worker", "", "id of the agent to report to on workers.<id>.stages (none: report nothing)")
			fs.StringVar(&f.prefix, "prefix", protocol.DefaultPrefix, "NATS subject prefix")
			fs.StringVar(&f.kind, "device-kind", string(protocol.DeviceCPU), "kind of the assigned devices: cpu or gpu")
			fs.IntVar(&f.threads, "threads", 0, "CPU threads (0 = all cores)")
			fs.StringVar(&f.creds, "creds", "", "NATS credentials file")
			f.tls.Add(fs)
			fs.StringVar(&f.nkey, "nkey", "", "NKey seed file")
			addGPUFlags(fs, &f.gpu)
		},
		Run: func(env *cli.Env, fs *flag.FlagSet) error { return runStage(env, f) },
	}
}

func runStage(env *cli.Env, f stageFlags) error {
	if f.assignment == "" {
		return cli.Usagef("--assignment is required")
	}
	kind := protocol.DeviceKind(f.kind)
	if kind != protocol.DeviceCPU && kind != protocol.DeviceGPU {
		return cli.Usagef("--device-kind %q is not one of cpu, gpu", f.kind)
	}
	subjects, err := protocol.NewSubjects(f.prefix)
	if err != nil {
		return cli.Usagef("--prefix: %v", err)
	}
	as, err := agent.ReadAssignment(f.assignment)
	if err != nil {
		return err
	}
	copts := natsrv.ConnectOptions{
		Name:      fmt.Sprintf("stage %s/%d", as.Instance, as.Stage),
		Token:     env.Getenv(agent.TokenEnv),
		CredsFile: f.creds,
		Logger:    env.Logger,
	}
	f.tls.Apply(&copts)
	if f.nkey != "" {
		copts.NKeySeedFile, copts.Token = f.nkey, ""
	}
	nc, err := natsrv.Connect(f.nats, copts)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return agent.RunStage(ctx, agent.StageConfig{
		Conn:       nc,
		Subjects:   subjects,
		Assignment: as,
		WorkerID:   f.worker,
		Kind:       kind,
		Threads:    f.threads,
		GPU:        f.gpu,
		Logger:     env.Logger,
	})
}
