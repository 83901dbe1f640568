package main

import (
	"flag"
	"fmt"

	"github.com/draftbench/draftbench/pkg/cli"
	"github.com/draftbench/draftbench/pkg/tinymodel"
)

func tinyModelCmd() *cli.Command {
	spec := tinymodel.Default()
	var out, drafterOut string
	var drafterLayers int
	return &cli.Command{
		Name:     "tinymodel",
		Synopsis: "write a tiny random model (and a drafter of its first layers) in the Hugging Face format",
		Usage:    "worker tinymodel --out DIR [--drafter-out DIR --drafter-layers N] [--arch A --layers N --hidden N ...]",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&out, "out", "", "folder for the target model")
			fs.StringVar(&drafterOut, "drafter-out", "", "folder for a drafter made of the target's first layers")
			fs.IntVar(&drafterLayers, "drafter-layers", 1, "layers of the drafter")
			fs.StringVar(&spec.Arch, "arch", spec.Arch, "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM or Qwen3ForCausalLM")
			fs.IntVar(&spec.Layers, "layers", spec.Layers, "decoder layers")
			fs.IntVar(&spec.Hidden, "hidden", spec.Hidden, "hidden size")
			fs.IntVar(&spec.Intermediate, "intermediate", spec.Intermediate, "MLP size")
			fs.IntVar(&spec.Heads, "heads", spec.Heads, "attention heads")
			fs.IntVar(&spec.KVHeads, "kv-heads", spec.KVHeads, "key/value heads")
			fs.IntVar(&spec.HeadDim, "head-dim", spec.HeadDim, "head dimension")
			fs.IntVar(&spec.TokVocab, "tokenizer-vocab", spec.TokVocab, "byte-level BPE ids (bytes + merges)")
			fs.IntVar(&spec.VocabPad, "vocab-pad", spec.VocabPad, "embedding rows past the tokenizer's ids")
			fs.StringVar(&spec.DType, "dtype", spec.DType, "BF16, F16 or F32 on disk")
			fs.BoolVar(&spec.Tied, "tied", spec.Tied, "tie the LM head to the embeddings")
			fs.Uint64Var(&spec.Seed, "seed", spec.Seed, "random seed")
		},
		Run: func(env *cli.Env, fs *flag.FlagSet) error {
			if out == "" {
				return cli.Usagef("--out is required")
			}
			if err := tinymodel.Write(out, spec); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "wrote %s\n", out)
			if drafterOut != "" {
				if err := tinymodel.WriteDrafter(out, drafterOut, drafterLayers); err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "wrote %s (first %d layers of %s)\n", drafterOut, drafterLayers, out)
			}
			return nil
		},
	}
}
