package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/draftbench/draftbench/pkg/backend/cpu"
	"github.com/draftbench/draftbench/pkg/cli"
	"github.com/draftbench/draftbench/pkg/model"
	"github.com/draftbench/draftbench/pkg/sampling"
	"github.com/draftbench/draftbench/pkg/spec"
	"github.com/draftbench/draftbench/pkg/tokenizer"
)

type generateFlags struct {
	model, drafter, prompt, tokens string
	maxNew, topK, gamma, threads   int
	draftTopK                      int
	temperature, topP              float64
	seed                           uint64
	asJSON, logits, ignoreEOS      bool
	adaptive                       bool
}

// generateOutput is the JSON contract of `worker generate --json` (DESIGN §2),
// plus the acceptance figures of a speculative run.
type generateOutput struct {
	Tokens       []int       `json:"tokens"`
	Text         string      `json:"text"`
	Logits       [][]float32 `json:"logits,omitempty"`
	PromptTokens int         `json:"prompt_tokens"`
	FinishReason string      `json:"finish_reason"`
	ElapsedMs    float64     `json:"elapsed_ms"`

	Gamma                int          `json:"gamma,omitempty"`
	NumDrafts            int          `json:"num_drafts,omitempty"`
	NumDraftTokens       int          `json:"num_draft_tokens,omitempty"`
	NumAcceptedTokens    *int         `json:"num_accepted_tokens,omitempty"`
	AcceptanceRate       *float64     `json:"acceptance_rate,omitempty"`
	MeanAcceptanceLength *float64     `json:"mean_acceptance_length,omitempty"`
	AcceptanceByPosition []float64    `json:"acceptance_by_position,omitempty"`
	Gammas               []int        `json:"gammas,omitempty"`
	Rounds               []spec.Round `json:"rounds,omitempty"`
}

func generateCmd() *cli.Command {
	var f generateFlags
	return &cli.Command{
		Name:     "generate",
		Synopsis: "generate from one model (or a drafter/target pair) on this machine, without NATS",
		Usage: `worker generate --model DIR (--prompt TEXT | --tokens 1,2,3) [--max-new-tokens N]
       [--temperature T] [--top-k K] [--top-p P] [--seed S] [--json] [--logits]
       [--drafter DIR --gamma N [--adaptive-gamma]]`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&f.model, "model", "", "Hugging Face model folder (the target)")
			fs.StringVar(&f.prompt, "prompt", "", "prompt text (encoded with the model's tokenizer.json)")
			fs.StringVar(&f.tokens, "tokens", "", "prompt as comma-separated token ids")
			fs.IntVar(&f.maxNew, "max-new-tokens", 32, "tokens to generate")
			fs.Float64Var(&f.temperature, "temperature", 0, "sampling temperature (0 = greedy)")
			fs.IntVar(&f.topK, "top-k", 0, "keep the k most likely tokens (0 = all)")
			fs.Float64Var(&f.topP, "top-p", 1, "nucleus sampling mass")
			fs.Uint64Var(&f.seed, "seed", 0, "random seed")
			fs.BoolVar(&f.asJSON, "json", false, "print one JSON object")
			fs.BoolVar(&f.logits, "logits", false, "with --json: include the logits of the last prompt position and of every generated position")
			fs.BoolVar(&f.ignoreEOS, "ignore-eos", false, "do not stop at end-of-sequence tokens")
			fs.StringVar(&f.drafter, "drafter", "", "drafter model folder: speculative decoding")
			fs.IntVar(&f.gamma, "gamma", 4, "draft tokens per speculative round")
			fs.IntVar(&f.draftTopK, "draft-top-k", 0, "ids kept in the drafter's q (0 = 64)")
			fs.BoolVar(&f.adaptive, "adaptive-gamma", false, "grow gamma by 2 after a fully accepted round, shrink by 1 otherwise")
			fs.IntVar(&f.threads, "threads", 0, "CPU threads (0 = all cores)")
		},
		Run: func(env *cli.Env, fs *flag.FlagSet) error { return runGenerate(env, fs, f) },
	}
}

func runGenerate(env *cli.Env, fs *flag.FlagSet, f generateFlags) error {
	if f.model == "" {
		return cli.Usagef("--model is required")
	}
	if (f.prompt == "") == (f.tokens == "") {
		return cli.Usagef("give exactly one of --prompt and --tokens")
	}
	if f.logits && !f.asJSON {
		return cli.Usagef("--logits needs --json")
	}
	if f.logits && f.drafter != "" {
		return cli.Usagef("--logits is for plain generation; drop --drafter")
	}
	if f.drafter == "" && explicit(fs, "gamma", "adaptive-gamma", "draft-top-k") {
		return cli.Usagef("--gamma, --adaptive-gamma and --draft-top-k need --drafter DIR")
	}
	if st, err := os.Stat(f.model); err != nil || !st.IsDir() {
		if err == nil {
			err = errors.New("not a folder")
		}
		return fmt.Errorf("model folder %s: %w", f.model, err)
	}
	params := sampling.Params{Temperature: f.temperature, TopK: f.topK, TopP: f.topP}

	tok, err := tokenizer.Load(f.model)
	if err != nil && (f.prompt != "" || !errors.Is(err, os.ErrNotExist)) {
		return fmt.Errorf("%s: %w", f.model, err)
	}
	if tok != nil {
		defer tok.Close()
		params.VocabLimit = tok.VocabSize()
	}
	if err := params.Validate(); err != nil {
		return cli.Usagef("%v", err)
	}
	var prompt []int
	if f.prompt != "" {
		prompt, err = tok.Encode(f.prompt)
		if err != nil {
			return err
		}
	} else {
		for _, s := range strings.Split(f.tokens, ",") {
			id, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				return cli.Usagef("--tokens %q: %v", f.tokens, err)
			}
			prompt = append(prompt, id)
		}
	}
	if len(prompt) == 0 {
		return cli.Usagef("the prompt encodes to no tokens")
	}

	be := cpu.New(f.threads)
	log := env.Logger.Named("generate")
	start := time.Now()
	target, err := model.Load(f.model, be, model.Options{})
	if err != nil {
		return err
	}
	log.Debug("loaded target", "model", f.model, "parameters", target.Parameters(), "elapsed", time.Since(start))
	cfg := spec.Config{MaxNewTokens: f.maxNew, Gamma: f.gamma, Params: params, DraftTopK: f.draftTopK, IgnoreEOS: f.ignoreEOS}
	if tok != nil {
		cfg.StopTokens = tok.EOS()
	}
	cfg.Adaptive.Enabled = f.adaptive
	rng := sampling.NewRNG(f.seed)

	out := generateOutput{PromptTokens: len(prompt)}
	var res spec.Output
	ts := target.NewSession()
	defer ts.Close()
	if f.logits {
		ts.OnLogits = func(row []float32) { out.Logits = append(out.Logits, append([]float32(nil), row...)) }
	}
	begin := time.Now()
	if f.drafter == "" {
		res, err = spec.GenerateAR(ts, prompt, cfg, rng)
	} else {
		var drafter *model.Model
		drafter, err = loadDrafter(f, tok, be)
		if err != nil {
			return err
		}
		ds := drafter.NewSession()
		defer ds.Close()
		res, err = spec.GenerateSpeculative(ts, ds, prompt, cfg, rng)
	}
	if err != nil {
		return err
	}
	if f.logits && len(res.Tokens) > 0 {
		// The logits at the last generated position: one more step.
		if _, err := ts.Feed(res.Tokens[len(res.Tokens)-1:], false); err != nil {
			return err
		}
	}
	out.ElapsedMs = float64(time.Since(begin).Microseconds()) / 1000
	out.Tokens = res.Tokens
	out.FinishReason = string(res.FinishReason)
	if tok != nil {
		if out.Text, err = tok.Decode(res.Tokens); err != nil {
			return err
		}
	}
	if f.drafter != "" {
		st := res.Stats
		out.Gamma = f.gamma
		out.NumDrafts, out.NumDraftTokens = st.NumDrafts, st.NumDraftTokens
		out.NumAcceptedTokens = &st.NumAcceptedTokens
		out.AcceptanceRate, out.MeanAcceptanceLength = &st.AcceptanceRate, &st.MeanAcceptanceLength
		out.AcceptanceByPosition = st.AcceptanceByPosition
		out.Rounds = res.Rounds
		if f.adaptive {
			out.Gammas = res.Gammas()
		}
	}
	if f.asJSON {
		return json.NewEncoder(env.Stdout).Encode(out)
	}
	fmt.Fprintf(env.Stdout, "prompt tokens: %d\n", len(prompt))
	fmt.Fprintf(env.Stdout, "tokens: %v\n", out.Tokens)
	if tok != nil {
		fmt.Fprintf(env.Stdout, "text: %q\n", out.Text)
	}
	fmt.Fprintf(env.Stdout, "finish: %s, %d tokens in %.1f ms (%.1f tok/s)\n", out.FinishReason, len(out.Tokens), out.ElapsedMs,
		float64(len(out.Tokens))/out.ElapsedMs*1000)
	if f.drafter != "" {
		fmt.Fprintf(env.Stdout, "speculative: gamma %d, %d drafts, %d/%d drafted tokens accepted (%.1f%%), mean acceptance length %.2f\n",
			f.gamma, out.NumDrafts, *out.NumAcceptedTokens, out.NumDraftTokens, 100**out.AcceptanceRate, *out.MeanAcceptanceLength)
	}
	return nil
}

// loadDrafter loads the drafter and refuses one whose tokenizer differs from
// the target's (DESIGN §3); embedding row counts may differ by padding.
func loadDrafter(f generateFlags, targetTok *tokenizer.Tokenizer, be *cpu.Backend) (*model.Model, error) {
	if targetTok != nil {
		dt, err := tokenizer.Load(f.drafter)
		if err != nil {
			return nil, fmt.Errorf("drafter %s: %w", f.drafter, err)
		}
		defer dt.Close()
		if err := tokenizer.Compatible(targetTok, dt); err != nil {
			return nil, fmt.Errorf("drafter %s cannot draft for %s: %w", filepath.Clean(f.drafter), filepath.Clean(f.model), err)
		}
	}
	return model.Load(f.drafter, be, model.Options{})
}

// explicit reports whether any of the named flags was given.
func explicit(fs *flag.FlagSet, names ...string) bool {
	found := false
	fs.Visit(func(fl *flag.Flag) {
		if slices.Contains(names, fl.Name) {
			found = true
		}
	})
	return found
}
