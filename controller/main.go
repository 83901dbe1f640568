// Command controller parses benchmark jobs, places models on workers, drives
// the sessions and writes the results (DESIGN §2).
package main

import "github.com/draftbench/draftbench/pkg/cli"

func main() {
	prog := &cli.Program{
		Name:     "controller",
		Synopsis: "draftbench controller: speculative vs autoregressive decoding benchmarks",
		Commands: []*cli.Command{runCmd(), validateCmd(), serveCmd(), submitCmd(), tailCmd(), statusCmd(), cancelCmd(), compareCmd()},
	}
	prog.Main()
}
