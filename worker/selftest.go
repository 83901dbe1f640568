package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/backend/cpu"
	"github.com/draftbench/draftbench/pkg/backend/cuda"
	"github.com/draftbench/draftbench/pkg/backend/selftest"
	"github.com/draftbench/draftbench/pkg/cli"
	"github.com/draftbench/draftbench/pkg/golden"
)

// engine is a backend opened by name, with what the benchmarks need beside it.
type engine struct {
	backend.Backend
	// bandwidth measures the memory bandwidth a decode step streams weights at.
	bandwidth func() (float64, error)
	close     func() error
	about     string // one line: the device(s)
	// profile and resetProfile read the CUDA backend's measurements (nil on the CPU).
	profile      func() cuda.Profile
	resetProfile func()
	graphStats   func() cuda.GraphStats
	gemmPlans    func() ([]cuda.GEMMPlan, error)
	placement    func() []int64 // weight bytes per device (nil on the CPU)
}

// openBackend opens the backend --backend names: cpu, or cuda with copts
// (its Devices nil: every visible one). f32 asks for f32 weights too.
func openBackend(name string, threads int, f32 bool, copts cuda.Options) (*engine, error) {
	switch name {
	case "cpu":
		b := cpu.New(threads)
		if f32 {
			b = cpu.NewF32(threads)
		}
		return &engine{Backend: b, close: func() error { return nil },
			bandwidth: func() (float64, error) { return cpu.ReadBandwidth(512 << 20), nil },
			about:     fmt.Sprintf("cpu, bf16 kernel %s", cpu.Kernel())}, nil
	case "cuda":
		copts.F32 = f32
		b, err := cuda.New(copts)
		if errors.Is(err, cuda.ErrNotBuilt) {
			return nil, fmt.Errorf("--backend cuda: %w", err)
		}
		if err != nil {
			return nil, err
		}
		var about []string
		for _, d := range b.Devices() {
			about = append(about, fmt.Sprintf("GPU %d: %s (sm_%d%d, %d SMs, %.1f GiB, %.1f GiB free)", d.Ordinal, d.Name, d.Major, d.Minor,
				d.SMs, float64(d.TotalBytes)/(1<<30), float64(d.FreeBytes)/(1<<30)))
		}
		return &engine{Backend: b, close: b.Close,
			bandwidth: func() (float64, error) { return b.CopyBandwidth(1 << 30) },
			about:     strings.Join(about, "; ") + ", kernels " + cuda.KernelsID,
			profile:   b.Profile, resetProfile: b.ResetProfile, graphStats: b.GraphStats, gemmPlans: b.GEMMPlans, placement: b.Placement}, nil
	}
	return nil, cli.Usagef("--backend %q is not one of cpu, cuda", name)
}

func selftestCmd() *cli.Command {
	var name, dtypes, devices, only, goldens string
	var invariant, tune bool
	var seed uint64
	var threads int
	return &cli.Command{
		Name:     "selftest",
		Synopsis: "check every backend operation against float64 references on fresh random inputs (a table)",
		Usage:    "worker selftest [--backend cpu|cuda] [--dtype bf16,f32] [--devices 0,1] [--seed N] [--only op,op] [--goldens DIR] [--batch-invariant] [--tune-gemm] [--threads N]",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&name, "backend", "cpu", "backend to check: cpu or cuda")
			fs.StringVar(&dtypes, "dtype", "bf16,f32", "storage to check: bf16 (bf16 weights), f32 (all f32), or both")
			fs.StringVar(&devices, "devices", "", "CUDA devices (default: every visible one); one listed more than once splits the goldens' layers over handles of it")
			fs.Uint64Var(&seed, "seed", 0, "seed of the inputs (0: a new one, printed)")
			fs.StringVar(&only, "only", "", "comma-separated ops to check (default: all)")
			fs.IntVar(&threads, "threads", 0, "CPU threads (0 = all cores)")
			fs.BoolVar(&invariant, "batch-invariant", false, "cuda: batch-invariant mode (cuda.Options.BatchInvariant)")
			fs.BoolVar(&tune, "tune-gemm", false, "cuda: products of up to 64 rows through the fastest of cuBLASLt's algorithms, timed per shape (cuda.Options.TuneGEMM)")
			fs.StringVar(&goldens, "goldens", "", "also run the transformers goldens in DIR (testdata/golden) on the backend: logits within 1e-3 (f32) or, in bf16, 1e-2 or twice transformers' own bf16 error (bf16_yardstick.json), greedy tokens compared")
		},
		Run: func(env *cli.Env, fs *flag.FlagSet) error {
			if invariant && name != "cuda" {
				return cli.Usagef("--batch-invariant needs --backend cuda (the CPU backend is batch-invariant for bf16 weights already)")
			}
			if tune && name != "cuda" {
				return cli.Usagef("--tune-gemm needs --backend cuda")
			}
			devs, err := parseInts(devices)
			if err != nil {
				return cli.Usagef("--devices %q: %v", devices, err)
			}
			if devices != "" && name != "cuda" {
				return cli.Usagef("--devices needs --backend cuda")
			}
			if seed == 0 {
				seed = uint64(time.Now().UnixNano())
			}
			cfg := selftest.Config{Seed: seed, Reference: cpu.NewF32(threads), WeightDType: backend.BF16}
			if only != "" {
				cfg.Only = map[string]bool{}
				for _, op := range strings.Split(only, ",") {
					cfg.Only[strings.TrimSpace(op)] = true
				}
			}
			failed := 0
			for _, dt := range strings.Split(dtypes, ",") {
				dt = strings.TrimSpace(dt)
				if dt != "bf16" && dt != "f32" {
					return cli.Usagef("--dtype %q: each is bf16 or f32", dtypes)
				}
				copts := cuda.Options{Devices: devs, BatchInvariant: invariant, TuneGEMM: tune}
				e, err := openBackend(name, threads, dt == "f32", copts)
				if err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "%s, %s storage, seed %d\n", e.about, dt, seed)
				rs := selftest.Run(e.Backend, cfg) // the backend itself: the optional device ops are its methods
				failed += selftest.Failed(rs)
				if err := selftest.WriteTable(env.Stdout, name+"/"+dt, rs); err != nil {
					return err
				}
				if goldens != "" {
					lim := golden.BF16
					if dt == "f32" {
						lim = golden.F32
					}
					grs, err := golden.Check(goldens, e.Backend, lim)
					if err != nil {
						return err
					}
					failed += golden.Failed(grs)
					fmt.Fprintln(env.Stdout)
					if err := golden.WriteTable(env.Stdout, name+"/"+dt, grs); err != nil {
						return err
					}
					// A step's outputs made where the logits are (picks,
					// probabilities, draws, top-k qs, verdicts) against the
					// host's functions on this backend's own numbers.
					ors, err := golden.CheckOutputs(goldens, e.Backend)
					if err != nil {
						return err
					}
					failed += golden.OutputFailures(ors)
					fmt.Fprintln(env.Stdout)
					if err := golden.WriteOutputs(env.Stdout, name+"/"+dt, ors); err != nil {
						return err
					}
					// Informational: does a position get the same logits in a
					// decode step and inside a verify-sized step? (Batch
					// invariance makes greedy speculative decoding exact.)
					inv, err := golden.CheckInvariance(goldens, e.Backend, 5)
					if err != nil {
						return err
					}
					fmt.Fprintln(env.Stdout)
					if err := golden.WriteInvariance(env.Stdout, name+"/"+dt, 5, inv); err != nil {
						return err
					}
					switch {
					case name == "cuda" && len(devs) > 1:
						// Step graphs are for one device; instead, the
						// layers split over the devices listed.
						n, err := goldensSplit(env, name, threads, dt, copts, goldens, lim)
						if err != nil {
							return err
						}
						failed += n
					case name == "cuda":
						// Again with step graphs: every decode step after the
						// first of its shape is a replayed graph.
						n, err := goldensWithGraphs(env, name, threads, dt, copts, goldens, lim, grs)
						if err != nil {
							return err
						}
						failed += n
					}
				}
				if err := e.close(); err != nil {
					return err
				}
				fmt.Fprintln(env.Stdout)
			}
			if failed > 0 {
				return fmt.Errorf("selftest of %s: %d checks failed (seed %d)", name, failed, seed)
			}
			return nil
		},
	}
}

// parseInts reads "0,1,2"; "" is nil.
func parseInts(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%q is not a device number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// goldensSplit runs the goldens with each model's layers split over the
// devices of copts (a fresh backend per golden, every device but the last
// holding one tensor or layer: the embedding, then a layer each), so the
// several-device path is checked even on one GPU listed several times. It
// fails a golden whose weights did not land on every device.
func goldensSplit(env *cli.Env, name string, threads int, dt string, copts cuda.Options, dir string, lim golden.Limit) (int, error) {
	copts.MaxWeightsPerDevice = 1
	var placed [][]int64
	open := func() (backend.Backend, func(), error) {
		e, err := openBackend(name, threads, dt == "f32", copts)
		if err != nil {
			return nil, nil, err
		}
		return e.Backend, func() {
			placed = append(placed, e.placement())
			_ = e.close()
		}, nil
	}
	grs, err := golden.CheckEach(dir, open, lim)
	if err != nil {
		return 0, err
	}
	failed := golden.Failed(grs)
	fmt.Fprintln(env.Stdout)
	if err := golden.WriteTable(env.Stdout, fmt.Sprintf("%s/%s+split over %d devices", name, dt, len(copts.Devices)), grs); err != nil {
		return 0, err
	}
	for i, r := range grs {
		if i >= len(placed) {
			break
		}
		fmt.Fprintf(env.Stdout, "split %s: weight bytes per device %v\n", r.Name, placed[i])
		for _, b := range placed[i] {
			if b == 0 {
				fmt.Fprintf(env.Stdout, "FAIL: %s: a device holds no weights\n", r.Name)
				failed++
				break
			}
		}
	}
	return failed, nil
}

// goldensWithGraphs runs the goldens on a CUDA backend with step graphs and
// fails unless graphs were replayed, every golden is within its limit and
// no error is above the eager run's.
func goldensWithGraphs(env *cli.Env, name string, threads int, dt string, copts cuda.Options, dir string, lim golden.Limit,
	eager []golden.Result) (int, error) {
	copts.Graphs = true
	e, err := openBackend(name, threads, dt == "f32", copts)
	if err != nil {
		return 0, err
	}
	defer e.close()
	grs, err := golden.Check(dir, e.Backend, lim)
	if err != nil {
		return 0, err
	}
	failed := golden.Failed(grs)
	fmt.Fprintln(env.Stdout)
	if err := golden.WriteTable(env.Stdout, name+"/"+dt+"+graphs", grs); err != nil {
		return 0, err
	}
	st := e.graphStats()
	fmt.Fprintf(env.Stdout, "step graphs: %d replays, %d captures, %d mismatches, %d eager\n", st.Replays, st.Captures, st.Mismatches, st.Eager)
	if st.LastWhy != "" {
		fmt.Fprintf(env.Stdout, "step graphs, last refusal: %s\n", st.LastWhy)
	}
	if st.Replays == 0 {
		fmt.Fprintln(env.Stdout, "FAIL: no step was replayed from a graph")
		failed++
	}
	failed += compareWithEager(env.Stdout, grs, eager, copts.TuneGEMM)
	return failed, nil
}

// compareWithEager holds the goldens' errors with step graphs to the eager
// run's: the same kernels on the same inputs, so the errors should be the
// eager run's (cuBLAS may pick another algorithm inside a capture, so a
// tenth more is allowed). It returns the failures.
//
// With tuned products (tuned) the graphs run is a fresh backend that tunes
// every product shape again, and a timing difference of a few percent can
// choose another algorithm (another split of K) than the eager run did,
// which rounds differently: a larger error then says nothing about graphs.
// So the comparison is only printed, not failed; each golden is still held
// to its limit, and the eager run and its graphs run without --tune-gemm
// (the plain selftest) keep the comparison.
func compareWithEager(w io.Writer, grs, eager []golden.Result, tuned bool) int {
	if tuned {
		fmt.Fprintln(w, "note: --tune-gemm: errors with graphs are not held to the eager run's (the graphs run re-tunes its products "+
			"on a fresh backend, and timing noise can choose other algorithms); each golden is still held to its limit")
	}
	failed := 0
	for i, r := range grs {
		if i < len(eager) && r.MaxRel > 1.1*eager[i].MaxRel+1e-6 {
			if tuned {
				fmt.Fprintf(w, "note: %s with graphs: max rel err %.3g, eager %.3g (not a failure with --tune-gemm)\n", r.Name, r.MaxRel, eager[i].MaxRel)
				continue
			}
			fmt.Fprintf(w, "FAIL: %s with graphs: max rel err %.3g, eager %.3g\n", r.Name, r.MaxRel, eager[i].MaxRel)
			failed++
		}
	}
	return failed
}
