// Command worker runs draftbench's model shards. Subcommands run one model
// locally without NATS (generate, inspect) or write the tiny test models.
package main

import (
	"github.com/draftbench/draftbench/pkg/cli"
)

func main() {
	prog := &cli.Program{
		Name:     "worker",
		Synopsis: "draftbench worker: runs model shards (host agent and stages) and local generation",
		Default:  "agent",
		Commands: []*cli.Command{agentCmd(), stageCmd(), inspectCmd(), generateCmd(), benchCmd(), tinyModelCmd(), selftestCmd()},
	}
	prog.Main()
}
