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
			"Each DIR is a run's output folder (or its benchmark_results.json, or a folder whose\n" +
			"subfolders are runs). The table has a column for each job setting that differs between\n" +
			"the runs; one numeric setting that differs (a sweep) orders the rows.",
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
