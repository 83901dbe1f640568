package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"text/tabwriter"

	"github.com/draftbench/draftbench/pkg/cli"
	"github.com/draftbench/draftbench/pkg/model"
)

func inspectCmd() *cli.Command {
	var dir string
	var asJSON bool
	return &cli.Command{
		Name:     "inspect",
		Synopsis: "print a model folder's architecture, parameter count, dtype, bytes and layers",
		Usage:    "worker inspect --model DIR [--json]",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&dir, "model", "", "Hugging Face model folder")
			fs.BoolVar(&asJSON, "json", false, "print one JSON object")
		},
		Run: func(env *cli.Env, fs *flag.FlagSet) error {
			if dir == "" {
				return cli.Usagef("--model is required")
			}
			info, err := model.Inspect(dir)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(env.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			}
			w := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintf(w, "model\t%s\n", info.Path)
			fmt.Fprintf(w, "architecture\t%s\n", info.Architecture)
			fmt.Fprintf(w, "parameters\t%d (%.3g M)\n", info.Parameters, float64(info.Parameters)/1e6)
			fmt.Fprintf(w, "dtype\t%s\n", info.DType)
			fmt.Fprintf(w, "bytes\t%d (%.3g MiB)\n", info.Bytes, float64(info.Bytes)/(1<<20))
			fmt.Fprintf(w, "layers\t%d\n", info.Layers)
			fmt.Fprintf(w, "hidden size\t%d\n", info.HiddenSize)
			fmt.Fprintf(w, "intermediate size\t%d\n", info.IntermediateSize)
			fmt.Fprintf(w, "heads / kv heads / head dim\t%d / %d / %d\n", info.Heads, info.KVHeads, info.HeadDim)
			fmt.Fprintf(w, "vocab (embedding rows)\t%d\n", info.VocabSize)
			if info.TokenizerVocab > 0 {
				fmt.Fprintf(w, "tokenizer ids\t%d\n", info.TokenizerVocab)
			}
			if warning := info.VocabWarning(); warning != "" {
				defer fmt.Fprintf(env.Stderr, "warning: %s\n", warning)
			}
			fmt.Fprintf(w, "tied embeddings\t%v\n", info.Tied)
			fmt.Fprintf(w, "rope theta\t%g\n", info.RopeTheta)
			fmt.Fprintf(w, "max positions\t%d\n", info.MaxPositions)
			fmt.Fprintf(w, "kv cache per token\t%d bytes (f32)\n", info.KVBytesPerToken)
			return w.Flush()
		},
	}
}
