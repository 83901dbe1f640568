package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/draftbench/draftbench/pkg/agent"
	"github.com/draftbench/draftbench/pkg/cli"
	"github.com/draftbench/draftbench/pkg/dataset"
	"github.com/draftbench/draftbench/pkg/jobrun"
	"github.com/draftbench/draftbench/pkg/jobspec"
	"github.com/draftbench/draftbench/pkg/placement"
	"github.com/draftbench/draftbench/pkg/protocol"
)

func validateCmd() *cli.Command {
	var jf jobFlags
	var asJSON bool
	return &cli.Command{
		Name:     "validate",
		Synopsis: "parse and validate a job, print its placement plan; run nothing",
		Usage:    "controller validate JOB.hcl [-var k=v]... [-var-file F] [--json]",
		Flags: func(fs *flag.FlagSet) {
			jf.add(fs)
			fs.BoolVar(&asJSON, "json", false, "print the plan as JSON")
		},
		Run: func(env *cli.Env, fs *flag.FlagSet) error {
			job, err := jf.parse(env)
			if err != nil {
				return err
			}
			if err := job.CheckPaths(jobspec.StatFunc(os.Stat)); err != nil {
				return err
			}
			local, what := localDevices(env, job)
			devices, err := jobrun.DevicesFromJob(job, local)
			if err != nil {
				return err
			}
			plan, target, drafter, err := jobrun.Plan(job, devices)
			if err != nil {
				if job.Placement.Devices == "" {
					return fmt.Errorf("%w (planned on %s, as `controller run` here would; set placement.devices to plan for other machines)", err, what)
				}
				return err
			}
			var data *dataset.Stats
			if err := jobrun.CheckTokenizers(job); err != nil {
				return err
			}
			// The dataset is read too (not tokenized), so a malformed record
			// is found here rather than in the run.
			if job.Dataset.Kind == jobspec.DatasetShareGPT {
				d, err := loadShareGPT(job, dataset.LoadOptions{}, "")
				if err != nil {
					return err
				}
				job.Warnings = append(job.Warnings, d.Warnings()...)
				st := d.Stats()
				data = &st
			}
			if asJSON {
				models := map[string]any{"target": planJSON(&plan.Target)}
				if plan.Drafter != nil {
					models["drafter"] = planJSON(plan.Drafter)
				}
				enc := json.NewEncoder(env.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"job": job.Name, "strategy": plan.Strategy, "models": models,
					"load": job.Load, "modes": job.Modes, "dataset": data, "warnings": job.Warnings,
					"config": job}) // every setting as resolved, as the results' config holds it
			}
			fmt.Fprintf(env.Stdout, "%s: valid\n", env.Args[0])
			fmt.Fprintf(env.Stdout, "%s\n", job)
			printSettings(env, job)
			for _, w := range job.Warnings {
				fmt.Fprintf(env.Stdout, "warning: %s\n", w)
			}
			if data != nil {
				fmt.Fprintf(env.Stdout, "dataset: %d usable records of %d read from %s\n", data.Loaded, data.Records, strings.Join(data.Files, ", "))
			}
			printModelPlan(env, "target", job.Models.Target.Path, target.Architecture, target.Layers, job.Models.Target.DType, &plan.Target)
			if plan.Drafter != nil && drafter != nil {
				printModelPlan(env, "drafter", job.Models.Drafter.Path, drafter.Architecture, drafter.Layers, job.Models.Drafter.DType, plan.Drafter)
			}
			return nil
		},
	}
}

// loadShareGPT reads the job's ShareGPT files as the run does, an error
// located at dataset.sharegpt.dir, with note (where the files were looked
// for) after it when not empty.
func loadShareGPT(job *jobspec.Job, opts dataset.LoadOptions, note string) (*dataset.Dataset, error) {
	d, err := dataset.LoadShareGPT(job.Dataset.Dir, job.Dataset.Files, opts)
	switch {
	case err == nil:
		return d, nil
	case note != "":
		return nil, job.Errorf("dataset.sharegpt.dir", "%w (%s)", err, note)
	}
	return nil, job.Errorf("dataset.sharegpt.dir", "%w", err)
}

// printSettings says what the knobs resolved to (variables, environment,
// defaults), so a user can check them before a run.
func printSettings(env *cli.Env, job *jobspec.Job) {
	w := env.Stdout
	switch b := job.Batch; {
	case job.Load.Mode == jobspec.LoadModeRate && b.Enabled:
		fmt.Fprintf(w, "batch: rate mode sends each request at its arrival time; at most %d tokens a sequence\n", b.MaxLength)
	case job.Load.Mode == jobspec.LoadModeRate:
		fmt.Fprintln(w, "batch: rate mode sends each request at its arrival time")
	case b.Enabled:
		fmt.Fprintf(w, "batch: %d prompts a batch, at most %d tokens a sequence\n", b.Size, b.MaxLength)
	default:
		fmt.Fprintln(w, "batch: off (prompts one by one, unless load.max_concurrency says otherwise)")
	}
	g := job.Generation
	draft := ""
	if g.Temperature > 0 && job.Modes.Speculative {
		draft = fmt.Sprintf(", the drafter's q cut to its top %d ids (draft_top_k)", g.DraftTopK)
		if g.DraftTopK < 0 {
			draft = ", the drafter's whole q (draft_top_k -1)"
		}
	}
	fmt.Fprintf(w, "generation: %d new tokens, gamma %d, temperature %g, top_k %d, top_p %g, ignore_eos %t%s\n",
		g.MaxNewTokens, g.Gamma, g.Temperature, g.TopK, g.TopP, g.IgnoreEOS, draft)
	var modes []string
	if job.Modes.Speculative {
		modes = append(modes, "speculative")
	}
	if job.Modes.TargetAR {
		modes = append(modes, "target")
	}
	fmt.Fprintf(w, "modes: %s; warm-up requests %d per mode\n", strings.Join(modes, ", "), job.Load.WarmupRequests)
	if m := job.GPUMonitor; m.Enabled {
		fmt.Fprintf(w, "gpu monitor: every %s\n", m.Interval)
	} else {
		fmt.Fprintln(w, "gpu monitor: off")
	}
}

func printModelPlan(env *cli.Env, role, path, arch string, layers int, dtype string, p *placement.ModelPlan) {
	fmt.Fprintf(env.Stdout, "%s: %s (%s, %d layers, dtype %s) on devices %s\n", role, path, arch, layers, dtype, deviceList(p.Devices, deviceHosts(p)))
	for i, s := range p.Stages {
		host := s.Host
		if host == "" {
			host = "any host"
		}
		fmt.Fprintf(env.Stdout, "  stage %d: layers [%d,%d) on %s devices %v\n", i, s.Layers[0], s.Layers[1], host, s.Devices)
	}
}

// modelPlanJSON is a model's plan as validate --json prints it: the plan's
// own fields (DESIGN §2's contract) and, when placement.devices names
// hosts, "hosts": the host of each entry of "devices", in the same order
// (an index alone repeats across hosts).
type modelPlanJSON struct {
	*placement.ModelPlan
	Hosts []string `json:"hosts,omitempty"`
}

func planJSON(p *placement.ModelPlan) modelPlanJSON {
	return modelPlanJSON{ModelPlan: p, Hosts: deviceHosts(p)}
}

// deviceHosts is the host of each of p.Devices, read from the stages that
// hold them; nil when no stage names a host.
func deviceHosts(p *placement.ModelPlan) []string {
	var hosts []string
	var devs []int
	named := false
	for _, s := range p.Stages {
		for _, d := range s.Devices {
			hosts, devs = append(hosts, s.Host), append(devs, d)
		}
		named = named || s.Host != ""
	}
	if !named || !slices.Equal(devs, p.Devices) {
		return nil
	}
	return hosts
}

// deviceList prints devices as fmt's %v does ("[0 1]"), each as host:index
// when hosts are known ("[gpu-a:0 gpu-b:0]").
func deviceList(devices []int, hosts []string) string {
	parts := make([]string, len(devices))
	for i, d := range devices {
		parts[i] = strconv.Itoa(d)
		if i < len(hosts) && hosts[i] != "" {
			parts[i] = hosts[i] + ":" + parts[i]
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// localDevices is what `controller run` offers the job on this machine when
// placement.devices is not set, so validate plans as run does: the GPUs NVML
// reports (narrowed by CUDA_VISIBLE_DEVICES), else as many CPU devices as the
// job asks for, sharing the host's memory. what says which, for errors.
func localDevices(env *cli.Env, spec *jobspec.Job) (devices []placement.Device, what string) {
	gpus := localGPUs(env)
	var devs []protocol.Device
	if len(gpus) > 0 {
		devs, what = gpus, fmt.Sprintf("this machine's %d GPU(s)", len(gpus))
	} else {
		n := devicesNeeded(spec)
		var err error
		if devs, err = agent.Discover(agent.DeviceOptions{CPUDevices: n}); err != nil {
			devs = agent.CPUDevices(n, 0)
		}
		what = fmt.Sprintf("%d CPU device(s) of this machine, which has no GPU", n)
	}
	for _, d := range devs {
		devices = append(devices, placement.Device{Index: d.Index, Name: d.Name, MemoryBytes: uint64(d.MemoryBytes), FreeBytes: uint64(d.MemoryBytes)})
	}
	return devices, what
}

// localGPUs are the GPUs NVML reports on this machine, narrowed by
// CUDA_VISIBLE_DEVICES; none without a driver.
func localGPUs(env *cli.Env) []protocol.Device {
	devs, err := agent.Discover(agent.DeviceOptions{CUDAVisibleDevices: env.Getenv("CUDA_VISIBLE_DEVICES")})
	if err != nil {
		return nil
	}
	return slices.DeleteFunc(devs, func(d protocol.Device) bool { return d.Kind != protocol.DeviceGPU })
}
