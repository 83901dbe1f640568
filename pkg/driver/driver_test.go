package driver

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/draftbench/draftbench/pkg/backend/cpu"
	"github.com/draftbench/draftbench/pkg/jobrun"
	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/model"
	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/natsrv/natstest"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/sampling"
	"github.com/draftbench/draftbench/pkg/stage"
	"github.com/draftbench/draftbench/pkg/tinymodel"
)

// cluster serves a target and a drafter as pipelines of real stage servers
// over an embedded NATS server.
type cluster struct {
	client *protocol.StepClient
	target Pipeline
	draft  Pipeline
	local  *jobrun.Local
}

func tinyPair(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	s := tinymodel.Default()
	s.Hidden, s.Intermediate, s.Layers, s.Heads, s.KVHeads, s.HeadDim, s.TokVocab = 64, 128, 4, 4, 2, 16, 300
	target, drafter := dir+"/target", dir+"/drafter"
	if err := tinymodel.Write(target, s); err != nil {
		t.Fatal(err)
	}
	if err := tinymodel.WriteDrafter(target, drafter, 2); err != nil {
		t.Fatal(err)
	}
	return target, drafter
}

// serve starts one stage server per layer range.
func serve(t testing.TB, ctx context.Context, srv *natsrv.Server, dir, instance string, splits [][2]int) Pipeline {
	t.Helper()
	for k, r := range splits {
		nc, err := natsrv.Connect(srv.ClientURL(), natsrv.ConnectOptions{Name: fmt.Sprintf("%s-%d", instance, k)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		st, err := stage.New(stage.Config{ModelDir: dir, First: r[0], Last: r[1], Backend: cpu.New(1), Conn: nc,
			Instance: instance, Index: k, Count: len(splits)})
		if err != nil {
			t.Fatal(err)
		}
		go st.Serve(ctx)
		select {
		case <-st.Ready():
		case <-time.After(10 * time.Second):
			t.Fatal("stage not ready")
		}
	}
	var subj protocol.Subjects
	return Pipeline{Subject: subj.Stage(instance, 0), Stages: len(splits)}
}

func newCluster(t *testing.T, targetSplits, drafterSplits [][2]int) *cluster {
	t.Helper()
	target, drafter := tinyPair(t)
	return newClusterFrom(t, target, drafter, targetSplits, drafterSplits)
}

func newClusterFrom(t testing.TB, target, drafter string, targetSplits, drafterSplits [][2]int) *cluster {
	t.Helper()
	srv, nc := natstest.Start(t, natsrv.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := &cluster{}
	c.target = serve(t, ctx, srv, target, "target", targetSplits)
	c.draft = serve(t, ctx, srv, drafter, "drafter", drafterSplits)
	var err error
	if c.client, err = protocol.NewStepClient(nc); err != nil {
		t.Fatal(err)
	}
	be := cpu.New(1)
	c.local = &jobrun.Local{}
	if c.local.Target, err = model.Load(target, be, model.Options{}); err != nil {
		t.Fatal(err)
	}
	if c.local.Drafter, err = model.Load(drafter, be, model.Options{}); err != nil {
		t.Fatal(err)
	}
	return c
}

func gen(prompt []int, params sampling.Params, gamma int, seed uint64, emitted *[]int) jobrun.Gen {
	return jobrun.Gen{Prompt: prompt, MaxNewTokens: 24, Gamma: gamma, Params: params, IgnoreEOS: true, Seed: seed,
		OnEmit: func(tokens []int) { *emitted = append(*emitted, tokens...) }}
}

// TestGreedyOverNATSMatchesInProcess: AR and speculative over stage pipelines
// (whole, and split into stages) give exactly the in-process AR tokens.
func TestGreedyOverNATSMatchesInProcess(t *testing.T) {
	layouts := []struct {
		name            string
		target, drafter [][2]int
	}{
		{"one stage each", [][2]int{{0, 4}}, [][2]int{{0, 2}}},
		{"2-stage target, 1-stage drafter", [][2]int{{0, 1}, {1, 4}}, [][2]int{{0, 2}}},
		{"3-stage target, 2-stage drafter", [][2]int{{0, 2}, {2, 3}, {3, 4}}, [][2]int{{0, 1}, {1, 2}}},
	}
	prompts := [][]int{{5, 17, 200, 31}, {9}, {100, 101, 102, 103, 104, 105, 106, 107}}
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			c := newCluster(t, l.target, l.drafter)
			e := &Engine{Client: c.client, Target: c.target, Drafter: &c.draft}
			for _, p := range prompts {
				var want []int
				ref, err := c.local.Generate(context.Background(), metrics.ModeTarget, gen(p, sampling.Params{}, 0, 1, &want))
				if err != nil {
					t.Fatal(err)
				}
				// The in-process loop times its passes: each round's compute
				// is the drafter's and the target's, inside the round's wall.
				var local []int
				lr, err := c.local.Generate(context.Background(), metrics.ModeSpeculative, gen(p, sampling.Params{}, 3, 1, &local))
				if err != nil {
					t.Fatal(err)
				}
				for i, r := range lr.Rounds {
					if r.DraftCompute <= 0 || r.DraftCompute >= r.Compute || r.Compute > r.Wall {
						t.Errorf("in-process round %d: wall %v, compute %v, the drafter's %v", i, r.Wall, r.Compute, r.DraftCompute)
					}
				}
				for _, gamma := range []int{1, 3, 5} {
					for _, mode := range []metrics.Mode{metrics.ModeTarget, metrics.ModeSpeculative} {
						var emitted []int
						res, err := e.Generate(context.Background(), mode, gen(p, sampling.Params{}, gamma, 1, &emitted))
						if err != nil {
							t.Fatal(err)
						}
						if !slices.Equal(res.Tokens, ref.Tokens) || !slices.Equal(emitted, ref.Tokens) {
							t.Fatalf("%s gamma %d prompt %v:\n got %v\nwant %v", mode, gamma, p, res.Tokens, ref.Tokens)
						}
						// The stages report the margin of every greedy choice, the
						// in-process loop's to the bit (same batch-invariant backend).
						if len(ref.Margins) != len(ref.Tokens) || !slices.Equal(res.Margins, ref.Margins) {
							t.Fatalf("%s gamma %d prompt %v: margins\n got %v\nwant %v", mode, gamma, p, res.Margins, ref.Margins)
						}
						if mode == metrics.ModeSpeculative {
							// Rounds count what reached the output: the prefill's
							// token, then each round's, cut at max_new_tokens.
							n := 1
							for _, r := range res.Rounds {
								n += r.Emitted
							}
							if n != len(res.Tokens) {
								t.Errorf("gamma %d prompt %v: 1 + rounds' emitted = %d, %d tokens out", gamma, p, n, len(res.Tokens))
							}
							acc := metrics.Acceptance(res.Rounds)
							if acc.NumDrafts == 0 || acc.AcceptanceRate == nil || *acc.AcceptanceRate <= 0 {
								t.Errorf("gamma %d: no acceptance recorded: %+v", gamma, acc)
							}
							for _, r := range res.Rounds {
								if r.Compute <= 0 || r.Wall < r.Compute {
									t.Errorf("round wall %v compute %v", r.Wall, r.Compute)
								}
								if r.DraftCompute <= 0 || r.DraftCompute >= r.Compute {
									t.Errorf("round compute %v, the drafter's share %v: want a part of it", r.Compute, r.DraftCompute)
								}
							}
						}
					}
				}
			}
		})
	}
}

// TestSampledIsReproducible: with sampling, the same seed gives the same
// output, for a single-stage drafter (draft steps) and a split one (decode
// steps with ReturnQ).
func TestSampledIsReproducible(t *testing.T) {
	for _, split := range [][][2]int{{{0, 2}}, {{0, 1}, {1, 2}}} {
		testSampledIsReproducible(t, split)
	}
}

func testSampledIsReproducible(t *testing.T, drafter [][2]int) {
	c := newCluster(t, [][2]int{{0, 4}}, drafter)
	params := sampling.Params{Temperature: 0.9, TopP: 0.95}
	e := &Engine{Client: c.client, Target: c.target, Drafter: &c.draft}
	var a, b []int
	r1, err := e.Generate(context.Background(), metrics.ModeSpeculative, gen([]int{3, 4, 5}, params, 3, 7, &a))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := e.Generate(context.Background(), metrics.ModeSpeculative, gen([]int{3, 4, 5}, params, 3, 7, &b))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r1.Tokens, r2.Tokens) || len(r1.Tokens) != 24 {
		t.Fatalf("same seed, different output: %v vs %v", r1.Tokens, r2.Tokens)
	}
	if r1.Margins != nil {
		t.Errorf("sampled output came with greedy margins: %v", r1.Margins)
	}
	// Each round records how much of the drafter's mass its q kept (top-p
	// 0.95 cuts some; the q travels to the driver from either layout).
	for i, r := range r1.Rounds {
		if !(r.QMass > 0 && r.QMass <= 1.0001) {
			t.Errorf("round %d: q_mass %v, want in (0, 1]", i, r.QMass)
		}
	}
}

func TestDeadPipelineFailsFast(t *testing.T) {
	_, nc := natstest.Start(t, natsrv.Options{})
	client, err := protocol.NewStepClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{Client: client, Target: Pipeline{Subject: "draftbench.stage.nobody.0", Stages: 1}, StepTimeout: 200 * time.Millisecond}
	var out []int
	_, err = e.Generate(context.Background(), metrics.ModeTarget, gen([]int{1}, sampling.Params{}, 0, 1, &out))
	if err == nil {
		t.Fatal("a pipeline with no stage must fail the request")
	}
}
