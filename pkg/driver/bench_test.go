package driver

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/sampling"
	"github.com/draftbench/draftbench/pkg/tinymodel"
)

// benchCluster serves a very small target and drafter (fast compute), so the
// figures are dominated by coordination: NATS round trips, framing, queueing.
func benchCluster(b *testing.B) *cluster {
	dir := b.TempDir()
	s := tinymodel.Default()
	s.Hidden, s.Intermediate, s.Layers, s.Heads, s.KVHeads, s.HeadDim, s.TokVocab = 32, 64, 2, 2, 1, 16, 300
	if err := tinymodel.Write(dir+"/target", s); err != nil {
		b.Fatal(err)
	}
	if err := tinymodel.WriteDrafter(dir+"/target", dir+"/drafter", 1); err != nil {
		b.Fatal(err)
	}
	return newClusterFrom(b, dir+"/target", dir+"/drafter", [][2]int{{0, 2}}, [][2]int{{0, 1}})
}

// BenchmarkRoundOverhead reports the coordination overhead of a speculative
// round (round wall time − the stages' compute time) on loopback, greedy and
// sampled (the drafter's q cut to 64 ids, and whole: draft_top_k -1).
func BenchmarkRoundOverhead(b *testing.B) {
	c := benchCluster(b)
	for _, tc := range []struct {
		name   string
		params sampling.Params
		topK   int
	}{
		{"greedy", sampling.Params{}, 0},
		{"sampled_top64", sampling.Params{Temperature: 0.8, VocabLimit: 300}, 64},
		{"sampled_whole", sampling.Params{Temperature: 0.8, VocabLimit: 300}, -1},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := &Engine{Client: c.client, Target: c.target, Drafter: &c.draft, DraftTopK: tc.topK}
			var overheads []float64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var out []int
				res, err := e.Generate(context.Background(), metrics.ModeSpeculative, gen([]int{1, 2, 3}, tc.params, 4, uint64(i), &out))
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range res.Rounds {
					overheads = append(overheads, float64(r.Overhead().Microseconds()))
				}
			}
			b.StopTimer()
			sort.Float64s(overheads)
			b.ReportMetric(metrics.Percentile(overheads, 50), "p50_overhead_us")
			b.ReportMetric(metrics.Percentile(overheads, 99), "p99_overhead_us")
		})
	}
}

// BenchmarkConcurrentSteps reports how many decode steps per second the
// driver, NATS and one stage sustain with 64 concurrent sessions.
func BenchmarkConcurrentSteps(b *testing.B) {
	c := benchCluster(b)
	e := &Engine{Client: c.client, Target: c.target, Drafter: &c.draft}
	const sessions = 64
	b.ResetTimer()
	start := time.Now()
	var steps int64
	var mu sync.Mutex
	for i := 0; i < b.N; i++ {
		var wg sync.WaitGroup
		for s := 0; s < sessions; s++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var out []int
				g := gen([]int{1, 2, 3}, sampling.Params{}, 0, 1, &out)
				res, err := e.Generate(context.Background(), metrics.ModeTarget, g)
				if err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				steps += int64(len(res.Tokens))
				mu.Unlock()
			}()
		}
		wg.Wait()
	}
	b.ReportMetric(float64(steps)/time.Since(start).Seconds(), "steps/s")
}
