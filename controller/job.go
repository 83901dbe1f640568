package main

import (
	"flag"
	"os"
	"strings"

	"github.com/draftbench/draftbench/pkg/cli"
	"github.com/draftbench/draftbench/pkg/jobspec"
)

// jobFlags are the -var/-var-file flags of every command that reads a job.
type jobFlags struct {
	vars, varFiles cli.Repeated
}

func (f *jobFlags) add(fs *flag.FlagSet) {
	fs.Var(&f.vars, "var", "set a job variable: -var name=value (repeatable)")
	fs.Var(&f.varFiles, "var-file", "read job variables from an HCL file (repeatable)")
}

// parse reads the job file named by the single positional argument.
func (f *jobFlags) parse(env *cli.Env) (*jobspec.Job, error) {
	if len(env.Args) != 1 {
		return nil, cli.Usagef("want exactly one job file, got %d arguments", len(env.Args))
	}
	vars := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	return jobspec.ParseFile(env.Args[0], jobspec.Config{Env: vars, Vars: f.vars, VarFiles: f.varFiles})
}
