package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/agent"
	"github.com/draftbench/draftbench/pkg/cli"
	"github.com/draftbench/draftbench/pkg/cluster"
	"github.com/draftbench/draftbench/pkg/controller"
	"github.com/draftbench/draftbench/pkg/jobspec"
	"github.com/draftbench/draftbench/pkg/jobstore"
	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/placement"
	"github.com/draftbench/draftbench/pkg/protocol"
)

type runOptions struct {
	out, workerBin string
	threads        int
	cpuDevices     int
	inProcess      bool
	gpu            agent.GPUOptions // the local worker's GPU stages
}

// runEmbedded is `controller run`: an embedded NATS server on loopback, one
// local worker agent as a subprocess, the job, the result files.
func runEmbedded(ctx context.Context, env *cli.Env, spec *jobspec.Job, o runOptions) error {
	log := env.Logger.Named("run")
	srv, err := natsrv.Start(natsrv.Options{Logger: env.Logger.Named("nats")})
	if err != nil {
		return err
	}
	defer srv.Shutdown()
	nc, err := natsrv.Connect(srv.ClientURL(), natsrv.ConnectOptions{Name: "controller", Logger: env.Logger})
	if err != nil {
		return err
	}
	defer nc.Close()
	var subj protocol.Subjects
	reg, stopRegistry, err := watchWorkers(ctx, nc, subj, env.Logger)
	if err != nil {
		return err
	}
	defer stopRegistry()

	worker, err := startWorker(env, srv.ClientURL(), spec, o)
	if err != nil {
		return err
	}
	defer stopWorker(worker, log)
	waitCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	_, err = reg.Wait(waitCtx, 1)
	cancel()
	if err != nil {
		return fmt.Errorf("the local worker did not register: %w", err)
	}
	job := controller.NewJob(spec, o.out)
	// Live results go to the embedded server's JetStream as they would to
	// serve's, so `nats sub 'draftbench.results.>'` works during a run too.
	store, err := jobstore.Open(ctx, nc, jobstore.Options{Subjects: subj, Log: env.Logger})
	if err != nil {
		return err
	}
	log.Info("live results", "subscribe", fmt.Sprintf("nats sub --server %s '%s'", srv.ClientURL(), subj.AllResults()))
	res, err := controller.Run(ctx, controller.Config{
		NC: nc, Subjects: subj, Registry: reg, Log: env.Logger, Console: env.Stdout, Progress: env.Stderr,
		Terminal: isTerminal(os.Stderr),
		OnRequest: func(jobID string, r metrics.Request) {
			if err := store.PublishRequest(ctx, jobID, r); err != nil {
				log.Debug("publishing a request record", "error", err)
			}
		},
	}, job)
	if res != nil {
		if perr := store.PublishSummary(context.Background(), job.ID, res.Results); perr != nil {
			log.Debug("publishing the summary", "error", perr)
		}
		fmt.Fprintf(env.Stdout, "results written to %s\n", res.Dir)
		if err == nil {
			err = res.NothingMeasured()
		}
	}
	return err
}

// startWorker starts `worker --nats URL --cpu-devices N` beside this binary.
func startWorker(env *cli.Env, url string, spec *jobspec.Job, o runOptions) (*exec.Cmd, error) {
	bin := o.workerBin
	if bin == "" {
		if self, err := os.Executable(); err == nil {
			if cand := filepath.Join(filepath.Dir(self), "worker"); fileExists(cand) {
				bin = cand
			}
		}
	}
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("worker"); err != nil {
			return nil, errors.New("no worker binary beside the controller nor on $PATH: run `make build`, or pass --worker-bin")
		}
	}
	// The local worker is run's own machinery: at the default level its
	// lines (devices, stages starting and stopping, which the controller's
	// deploy lines say too) would bury the summary, so it says only warnings
	// unless debugging was asked for.
	level := env.Logger.GetLevel()
	if level == hclog.Info {
		level = hclog.Warn
	}
	args := []string{"--nats", url, "--name", "local", "--log-level", level.String()}
	gpus := 0
	if o.cpuDevices <= 0 {
		// The worker finds the same GPUs itself.
		gpus = len(localGPUs(env))
	}
	if gpus == 0 {
		n := o.cpuDevices
		if n <= 0 {
			n = devicesNeeded(spec)
		}
		args = append(args, "--cpu-devices", strconv.Itoa(n))
	}
	if o.threads > 0 {
		args = append(args, "--threads", strconv.Itoa(o.threads))
	}
	args = append(args, o.gpu.Args()...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = env.Stderr, env.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	env.Logger.Named("run").Debug("worker started", "bin", bin, "pid", cmd.Process.Pid, "gpus", gpus, "args", args)
	return cmd, nil
}

func stopWorker(cmd *exec.Cmd, log interface{ Warn(string, ...any) }) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		log.Warn("the local worker did not stop in 15s; killing it")
		_ = cmd.Process.Kill()
		<-done
	}
}

// devicesNeeded is how many CPU devices the local worker must offer for the
// job's placement: the highest index placement.devices names, or what the
// strategy hands out.
func devicesNeeded(spec *jobspec.Job) int {
	if refs, err := spec.Placement.DeviceRefs(); err == nil && len(refs) > 0 {
		n := 0
		for _, r := range refs {
			n = max(n, r.Index+1)
		}
		return n
	}
	switch spec.Placement.Strategy {
	case placement.MultiGPURatio:
		n := spec.Models.Target.GPUs
		if spec.Models.Drafter != nil {
			n += spec.Models.Drafter.GPUs
		}
		return max(n, 1)
	case placement.Separate:
		return 2
	}
	return 1
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// watchWorkers starts the worker registry on nc and watches liveness until
// the returned stop (or ctx) ends it.
func watchWorkers(ctx context.Context, nc *nats.Conn, subj protocol.Subjects, log hclog.Logger) (*cluster.Registry, func(), error) {
	rlog := log.Named("registry")
	reg, err := cluster.NewRegistry(nc, subj, cluster.Options{Log: rlog, Version: cli.Version,
		// Stages no job of this controller holds were left by one that
		// stopped (a crash, a restart): they would keep their devices.
		OnOrphans: func(w cluster.Worker, instances []string) {
			for _, inst := range instances {
				rlog.Warn("releasing a stage no job of this controller holds", "worker", w.Host, "instance", inst)
				if err := cluster.ReleaseInstance(nc, subj, w, inst, "no job of this controller holds it (left by a controller that stopped)"); err != nil {
					rlog.Warn("releasing a left-over stage", "worker", w.Host, "instance", inst, "error", err)
				}
			}
		}})
	if err != nil {
		return nil, nil, err
	}
	wctx, stopWatch := context.WithCancel(ctx)
	go reg.Watch(wctx)
	return reg, func() {
		stopWatch()
		reg.Close()
	}, nil
}
