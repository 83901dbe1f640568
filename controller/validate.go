package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/draftbench/draftbench/pkg/cli"
	"github.com/draftbench/draftbench/pkg/jobrun"
	"github.com/draftbench/draftbench/pkg/jobspec"
	"github.com/draftbench/draftbench/pkg/placement"
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
			devices, err := jobrun.DevicesFromJob(job, localDevices(env))
			if err != nil {
				return err
			}
			plan, target, drafter, err := jobrun.Plan(job, devices)
			if err != nil {
				return err
			}
			if err := jobrun.CheckTokenizers(job); err != nil {
				return err
			}
			if asJSON {
				models := map[string]any{"target": plan.Target}
				if plan.Drafter != nil {
					models["drafter"] = plan.Drafter
				}
				enc := json.NewEncoder(env.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"job": job.Name, "strategy": plan.Strategy, "models": models,
					"load": job.Load, "modes": job.Modes, "warnings": job.Warnings})
			}
			fmt.Fprintf(env.Stdout, "%s: valid\n", env.Args[0])
			fmt.Fprintf(env.Stdout, "%s\n", job)
			for _, w := range job.Warnings {
				fmt.Fprintf(env.Stdout, "warning: %s\n", w)
			}
			printModelPlan(env, "target", job.Models.Target.Path, target.Architecture, target.Layers, &plan.Target)
			if plan.Drafter != nil && drafter != nil {
				printModelPlan(env, "drafter", job.Models.Drafter.Path, drafter.Architecture, drafter.Layers, plan.Drafter)
			}
			return nil
		},
	}
}

func printModelPlan(env *cli.Env, role, path, arch string, layers int, p *placement.ModelPlan) {
	fmt.Fprintf(env.Stdout, "%s: %s (%s, %d layers) on devices %v\n", role, path, arch, layers, p.Devices)
	for i, s := range p.Stages {
		host := s.Host
		if host == "" {
			host = "any host"
		}
		fmt.Fprintf(env.Stdout, "  stage %d: layers [%d,%d) on %s devices %v\n", i, s.Layers[0], s.Layers[1], host, s.Devices)
	}
}

// localDevices is what this machine offers when no worker reports devices:
// CUDA_VISIBLE_DEVICES when set, else one CPU device.
func localDevices(env *cli.Env) []placement.Device {
	if v := env.Getenv("CUDA_VISIBLE_DEVICES"); v != "" {
		refs, err := jobspec.ParseDevices(v)
		if err == nil {
			out := make([]placement.Device, 0, len(refs))
			for _, r := range refs {
				out = append(out, placement.Device{Index: r.Index, Host: r.Host})
			}
			return out
		}
	}
	return []placement.Device{{Index: 0, Name: "cpu"}}
}
