package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/google/uuid"
	"golang.org/x/term"

	"github.com/draftbench/draftbench/pkg/backend/cpu"
	"github.com/draftbench/draftbench/pkg/cli"
	"github.com/draftbench/draftbench/pkg/jobrun"
	"github.com/draftbench/draftbench/pkg/jobspec"
	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/model"
)

func runCmd() *cli.Command {
	var jf jobFlags
	var o runOptions
	return &cli.Command{
		Name:     "run",
		Synopsis: "run a job on this machine: embedded NATS, a local worker, the result files",
		Usage: `controller run JOB.hcl [-var k=v]... [-var-file F] [--out DIR]
       [--cpu-devices N] [--threads N] [--in-process] [--worker-bin PATH]
       [--cuda-graphs] [--tune-gemm] [--batch-invariant]`,
		Flags: func(fs *flag.FlagSet) {
			jf.add(fs)
			fs.StringVar(&o.out, "out", "", "output folder (default: the job's output_dir, else results/<job>-<id>)")
			fs.IntVar(&o.threads, "threads", 0, "CPU threads per stage (0 = all cores)")
			fs.StringVar(&o.workerBin, "worker-bin", "", "the worker binary to start (default: bin/worker beside this binary, else $PATH)")
			fs.IntVar(&o.cpuDevices, "cpu-devices", 0, "run on N CPU devices even when NVML reports GPUs (0 = the GPUs when there are any, else as many CPU devices as the job's placement needs)")
			fs.BoolVar(&o.inProcess, "in-process", false, "no NATS and no worker: load both models in this process (a quick single-process check)")
			fs.BoolVar(&o.gpu.Graphs, "cuda-graphs", false, "the local worker's GPU stages capture each decode step into a CUDA graph (docs/cuda.md)")
			fs.BoolVar(&o.gpu.TuneGEMM, "tune-gemm", false, "the local worker's GPU stages time cuBLASLt's algorithms per product shape (docs/cuda.md)")
			fs.BoolVar(&o.gpu.BatchInvariant, "batch-invariant", false, "the local worker's GPU stages give results independent of batching (docs/cuda.md)")
		},
		Run: func(env *cli.Env, fs *flag.FlagSet) error {
			job, err := jf.parse(env)
			if err != nil {
				return err
			}
			if err := job.CheckPaths(jobspec.StatFunc(os.Stat)); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if o.inProcess {
				err = runLocal(ctx, env, job, o.out, o.threads)
			} else {
				err = runEmbedded(ctx, env, job, o)
			}
			if ctx.Err() != nil {
				// Exit 130, as a shell reports a Ctrl-C, so a script that
				// runs several jobs (scripts/sweep.sh) stops too.
				if err == nil || errors.Is(err, context.Canceled) {
					return fmt.Errorf("%w: partial results written", cli.ErrInterrupted)
				}
				return fmt.Errorf("%w: %w", cli.ErrInterrupted, err)
			}
			return err
		},
	}
}

// runLocal runs the job with both models in this process on the CPU.
func runLocal(ctx context.Context, env *cli.Env, job *jobspec.Job, out string, threads int) error {
	log := env.Logger.Named("run")
	jobID := uuid.NewString()
	if out == "" {
		out = job.OutputDir
	}
	if out == "" {
		out = jobrun.DefaultOutputDir(job.Name, jobID)
	}
	local, _ := localDevices(env, job)
	devices, err := jobrun.DevicesFromJob(job, local)
	if err != nil {
		return err
	}
	plan, targetInfo, drafterInfo, err := jobrun.Plan(job, devices)
	if err != nil {
		return err
	}
	log.Info("plan", "strategy", plan.Strategy, "target_devices", plan.Target.Devices)

	tok, err := jobrun.LoadTokenizer(job)
	if err != nil {
		return err
	}
	defer tok.Close()
	be, err := cpu.ForDType(job.Models.Target.DType, threads)
	if err != nil {
		return job.Errorf("model.target.dtype", "%w", err)
	}
	start := time.Now()
	engine := &jobrun.Local{DraftTopK: job.Generation.DraftTopK}
	engine.Target, err = model.Load(job.Models.Target.Path, be, model.Options{})
	if err != nil {
		return job.Errorf("model.target.path", "%w", err)
	}
	if job.Modes.Speculative {
		dbe, err := cpu.ForDType(job.Models.Drafter.DType, threads)
		if err != nil {
			return job.Errorf("model.drafter.dtype", "%w", err)
		}
		engine.Drafter, err = model.Load(job.Models.Drafter.Path, dbe, model.Options{})
		if err != nil {
			return job.Errorf("model.drafter.path", "%w", err)
		}
	}
	log.Info("models loaded", "elapsed", time.Since(start).Round(time.Millisecond))

	hostname, _ := os.Hostname()
	envInfo := map[string]any{
		"host": hostname, "os": runtime.GOOS, "arch": runtime.GOARCH, "cpus": runtime.NumCPU(),
		"go": runtime.Version(), "version": cli.Version, "backend": "cpu", "engine": "in-process",
		"target": targetInfo, "drafter": drafterInfo,
	}
	res, err := jobrun.Run(ctx, job, tok, engine, out, jobrun.Options{
		MaxContext: jobrun.MaxContext(targetInfo, drafterInfo),
		Log:        env.Logger, Console: env.Stdout, Progress: env.Stderr, Terminal: isTerminal(os.Stderr),
		Environment: envInfo, JobID: jobID,
		GPU: func(map[metrics.Mode]int) any {
			return map[string]any{"available": false, "reason": "no GPU in this run: the CPU backend was used"}
		},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "results written to %s\n", res.Dir)
	if ctx.Err() != nil {
		return nil // the caller says it was interrupted
	}
	return res.NothingMeasured()
}

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
