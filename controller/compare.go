package main

import (
	"encoding/json"
	"flag"

	"github.com/draftbench/draftbench/pkg/cli"
	"github.com/draftbench/draftbench/pkg/report"
)

func compareCmd() *cli.Command {
	var asJSON bool
	return &cli.Command{
		Name:     "compare",
		Synopsis: "one table of several runs' results (a gamma sweep, drafters side by side)",
		Usage: "controller compare DIR [DIR...] [--json]\n\n" +
			"Each DIR is a run's output folder (or its benchmark_results.json, or a folder with runs\n" +
			"below it, such as scripts/sweep.sh's). The table has a column for each job setting that\n" +
			"differs between the runs (generation, models, placement, load and batch first); one\n" +
			"numeric setting that differs (a sweep) orders the rows. Runs whose settings are all equal\n" +
			"(sweep.sh --repeat) are one row: each figure's median and its (min–max) over them, n the\n" +
			"runs. A relative model path is resolved from the current folder where it names one.\n" +
			"--json gives every run and the rows (groups) with their statistics.",
		Flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&asJSON, "json", false, "print the comparison as JSON")
		},
		Run: func(env *cli.Env, fs *flag.FlagSet) error {
			if fs.NArg() == 0 {
				return cli.Usagef("give at least one results folder")
			}
			c, err := report.CompareDirs(fs.Args())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(env.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(c)
			}
			return report.PrintComparison(env.Stdout, c)
		},
	}
}
