package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/draftbench/draftbench/pkg/backend/cuda"
	"github.com/draftbench/draftbench/pkg/cli"
	"github.com/draftbench/draftbench/pkg/kvcache"
	"github.com/draftbench/draftbench/pkg/model"
	"github.com/draftbench/draftbench/pkg/sampling"
)

// benchRow is one line of the engine benchmark table.
type benchRow struct {
	Batch           int     `json:"batch"`
	PromptLen       int     `json:"prompt_len"`
	PrefillTokPerS  float64 `json:"prefill_tok_per_s"`
	DecodeTokPerS   float64 `json:"decode_tok_per_s"`
	DecodeStepMs    float64 `json:"decode_step_ms"`
	WeightBytes     int64   `json:"weight_bytes_in_memory"`
	FloorStepMs     float64 `json:"bandwidth_floor_step_ms,omitempty"`
	BandwidthGBPerS float64 `json:"measured_bandwidth_gb_per_s,omitempty"`
	// ReadWaitMs is, per decode step, the time spent waiting for the GPU to
	// finish and copying the logits or picks back (CUDA only): the step less
	// the host's own work. Near zero means the host, not the GPU, sets the
	// pace.
	ReadWaitMs float64 `json:"decode_read_wait_ms,omitempty"`
}

func benchCmd() *cli.Command {
	var dir, batches string
	var profileOps, graphs, invariant, greedy, tune bool
	var temperature float64
	var promptLen, newTokens, threads, warmup int
	var asJSON, bandwidth bool
	var cpuProfile, backendName string
	var random bool
	var seed uint64
	return &cli.Command{
		Name:     "bench",
		Synopsis: "time prefill and batched decode of one model on this machine (a table, or --json)",
		Usage:    "worker bench --model DIR [--backend cpu|cuda] [--random-weights] [--batch 1,8] [--prompt-len 128] [--new-tokens 32] [--greedy=false] [--temperature T] [--graphs] [--batch-invariant] [--tune-gemm] [--profile-ops] [--threads N] [--json]",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&dir, "model", "", "Hugging Face model folder")
			fs.StringVar(&batches, "batch", "1,8", "comma-separated batch sizes for decode")
			fs.IntVar(&promptLen, "prompt-len", 128, "prompt tokens per sequence")
			fs.IntVar(&newTokens, "new-tokens", 32, "decode steps timed per batch size")
			fs.IntVar(&warmup, "warmup", 2, "untimed decode steps first")
			fs.IntVar(&threads, "threads", 0, "CPU threads (0 = all cores)")
			fs.BoolVar(&bandwidth, "bandwidth", true, "measure memory read bandwidth and report the decode floor")
			fs.BoolVar(&asJSON, "json", false, "print JSON")
			fs.BoolVar(&random, "random-weights", false, "draw the weights at random (seeded): only config.json is read")
			fs.Uint64Var(&seed, "seed", 1, "seed of --random-weights")
			fs.StringVar(&cpuProfile, "cpuprofile", "", "write a Go CPU profile of the timed part to this file")
			fs.StringVar(&backendName, "backend", "cpu", "backend: cpu or cuda")
			fs.BoolVar(&invariant, "batch-invariant", false, "cuda: batch-invariant mode (cuda.Options.BatchInvariant)")
			fs.BoolVar(&tune, "tune-gemm", false, "cuda: products of up to 64 rows through the fastest of cuBLASLt's algorithms, timed per shape (cuda.Options.TuneGEMM); the choices are listed")
			fs.BoolVar(&greedy, "greedy", true, "end each step with greedy picks (argmax and margin, on the device when the backend can), as greedy decoding does; false: read every logit row to the host")
			fs.Float64Var(&temperature, "temperature", 0, "end each step with a token drawn at this temperature (sampled decoding: probabilities and the draw on the device when the backend can) instead of greedy picks")
			fs.BoolVar(&graphs, "graphs", false, "cuda: capture each decode step into a CUDA graph and replay it")
			fs.BoolVar(&profileOps, "profile-ops", false, "cuda: synchronize after every operation and print where prefill and decode spend their time (slower; a diagnosis, not a timing)")
		},
		Run: func(env *cli.Env, fs *flag.FlagSet) error {
			if dir == "" {
				return cli.Usagef("--model is required")
			}
			var sizes []int
			for _, s := range strings.Split(batches, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil || n <= 0 {
					return cli.Usagef("--batch %q: want positive integers", batches)
				}
				sizes = append(sizes, n)
			}
			if threads > 0 {
				runtime.GOMAXPROCS(threads)
			}
			if profileOps && backendName != "cuda" {
				return cli.Usagef("--profile-ops needs --backend cuda")
			}
			var sampled *sampling.Params
			if temperature != 0 {
				sampled = &sampling.Params{Temperature: temperature}
				if err := sampled.Validate(); err != nil || temperature < 0 {
					return cli.Usagef("--temperature %v: must be > 0 (0: greedy)", temperature)
				}
			}
			if tune && backendName != "cuda" {
				return cli.Usagef("--tune-gemm needs --backend cuda")
			}
			if invariant && backendName != "cuda" {
				return cli.Usagef("--batch-invariant needs --backend cuda (the CPU backend is batch-invariant for bf16 weights already)")
			}
			if graphs && backendName != "cuda" {
				return cli.Usagef("--graphs needs --backend cuda")
			}
			eng, err := openBackend(backendName, threads, false, cuda.Options{Profile: profileOps, Graphs: graphs, BatchInvariant: invariant, TuneGEMM: tune})
			if err != nil {
				return err
			}
			defer eng.close()
			m, err := model.Load(dir, eng.Backend, model.Options{RandomWeights: random, Seed: seed}) // the backend itself: its RandomLoader draws on the device
			if err != nil {
				if !random && errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("%w (to time the shape of config.json without weights, add --random-weights)", err)
				}
				return err
			}
			// As a stage does: tuned products (--tune-gemm) for every row
			// count up to 64 now; its time is reported, not timed as steps.
			t0 := time.Now()
			prepared, err := m.PrepareProducts()
			if err != nil {
				return err
			}
			prepareMS := float64(time.Since(t0).Microseconds()) / 1000
			weights := m.MemoryBytes() // bf16 weight matrices stay bf16 on the CPU backend
			var bw float64
			if bandwidth {
				if bw, err = eng.bandwidth(); err != nil {
					return err
				}
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			rng := rand.New(rand.NewPCG(1, 2))
			randomPrompt := func() []int {
				prompt := make([]int, promptLen)
				for j := range prompt {
					prompt[j] = rng.IntN(m.Config.VocabSize)
				}
				return prompt
			}
			// One untimed prefill first: the first call of each kind loads
			// kernels, picks GEMM algorithms and fills the memory pools.
			{
				c := m.NewCache(kvcache.Options{})
				if _, err := m.Forward([]model.Seq{{Cache: c, Tokens: randomPrompt()}}, nil); err != nil {
					return err
				}
				c.Free()
			}
			printProfile := func(what string, steps int) {
				if !profileOps || eng.profile == nil {
					return
				}
				p := eng.profile()
				var total time.Duration
				for _, o := range p.Ops {
					total += o.Total
				}
				fmt.Fprintf(env.Stderr, "profile (synchronized after every op): %s, per step\n", what)
				fmt.Fprintf(env.Stderr, "  %-12s %8s %10s %6s\n", "op", "calls", "ms", "share")
				for _, o := range p.Ops {
					fmt.Fprintf(env.Stderr, "  %-12s %8.1f %10.3f %5.1f%%\n", o.Op, float64(o.Calls)/float64(steps),
						o.Total.Seconds()*1000/float64(steps), 100*o.Total.Seconds()/total.Seconds())
				}
				fmt.Fprintf(env.Stderr, "  %-12s %8s %10.3f\n", "all ops", "", total.Seconds()*1000/float64(steps))
			}
			var rows []benchRow
			for _, b := range sizes {
				row := benchRow{Batch: b, PromptLen: promptLen, WeightBytes: weights}
				seqs := make([]model.Seq, b)
				var prefill time.Duration
				if eng.resetProfile != nil {
					eng.resetProfile()
				}
				for i := range seqs {
					seqs[i] = model.Seq{Cache: m.NewCache(kvcache.Options{}), Tokens: randomPrompt(), Greedy: greedy && sampled == nil, Sampled: sampled,
						Draw: sampled != nil, U: 0.5}
					start := time.Now()
					if _, err := m.Forward(seqs[i:i+1], nil); err != nil {
						return err
					}
					prefill += time.Since(start)
				}
				row.PrefillTokPerS = float64(b*promptLen) / prefill.Seconds()
				printProfile(fmt.Sprintf("prefill of %d tokens, batch %d (one sequence at a time)", promptLen, b), b)
				var elapsed time.Duration
				for step := 0; step < warmup+newTokens; step++ {
					for i := range seqs {
						seqs[i].Tokens = []int{rng.IntN(m.Config.VocabSize)}
					}
					if step == warmup && eng.resetProfile != nil {
						eng.resetProfile()
					}
					start := time.Now()
					if _, err := m.Forward(seqs, nil); err != nil {
						return err
					}
					if step >= warmup {
						elapsed += time.Since(start)
					}
				}
				row.DecodeStepMs = elapsed.Seconds() * 1000 / float64(newTokens)
				row.DecodeTokPerS = float64(b*newTokens) / elapsed.Seconds()
				if eng.profile != nil {
					row.ReadWaitMs = eng.profile().ReadWait.Seconds() * 1000 / float64(newTokens)
				}
				printProfile(fmt.Sprintf("decode, batch %d", b), newTokens)
				if bw > 0 {
					row.BandwidthGBPerS = bw / 1e9
					row.FloorStepMs = float64(weights) / bw * 1000
				}
				for _, s := range seqs {
					s.Cache.Free()
				}
				rows = append(rows, row)
			}
			if asJSON {
				enc := json.NewEncoder(env.Stdout)
				enc.SetIndent("", "  ")
				out := map[string]any{"model": dir, "threads": runtime.GOMAXPROCS(0), "engine": "draftbench-" + eng.Name(), "device": eng.about, "greedy_picks": greedy && sampled == nil, "temperature": temperature, "rows": rows}
				if graphs {
					out["step_graphs"] = eng.graphStats()
				}
				if tune {
					plans, err := eng.gemmPlans()
					if err != nil {
						return err
					}
					out["gemm_plans"] = plans
				}
				if prepared {
					out["prepare_products_ms"] = prepareMS
				}
				return enc.Encode(out)
			}
			w := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintf(w, "batch\tprompt\tprefill tok/s\tdecode tok/s\tdecode step ms\tfloor step ms\tbandwidth GB/s\t\n")
			for _, r := range rows {
				fmt.Fprintf(w, "%d\t%d\t%.1f\t%.1f\t%.2f\t%.2f\t%.2f\t\n", r.Batch, r.PromptLen, r.PrefillTokPerS, r.DecodeTokPerS, r.DecodeStepMs, r.FloorStepMs, r.BandwidthGBPerS)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if !tune {
				return nil
			}
			plans, err := eng.gemmPlans()
			if err != nil {
				return err
			}
			// Every row count up to 64 is tuned at load: the table shows the
			// bench's batch sizes (--json lists them all); batch-invariant
			// mode runs every product in 64-row pieces, so all of its.
			benched := map[int]bool{}
			for _, r := range rows {
				benched[r.Batch] = true
			}
			fmt.Fprintf(env.Stdout, "\ntuned products (µs per call; %d shapes tuned, %.0f ms of tuning at load; those the batch sizes above use):\n",
				len(plans), prepareMS)
			w = tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintf(w, "GPU\tm\tn\tk\tcublasGemmEx\tchosen\tby\tsplit k\tcandidates\t\n")
			for _, p := range plans {
				if !benched[p.M] && !invariant {
					continue
				}
				by := "cublasGemmEx"
				if p.CublasLt {
					by = "cuBLASLt"
				}
				fmt.Fprintf(w, "%d\t%d\t%d\t%d\t%.1f\t%.1f\t%s\t%d\t%d\t\n", p.Device, p.M, p.N, p.K, p.DefaultUs, p.BestUs, by, p.SplitK, p.Candidates)
			}
			return w.Flush()
		},
	}
}
