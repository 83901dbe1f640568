package stage

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/draftbench/draftbench/pkg/protocol"
)

// waitFor polls cond until it holds; it fails the test after 10s. It waits
// for the stage to receive messages, it measures nothing.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// forwardLog records the forward passes of a stage; the first one can be held
// so that steps queue up behind it.
type forwardLog struct {
	mu    sync.Mutex
	steps []ForwardInfo
	hold  chan struct{}
}

func (l *forwardLog) record(f ForwardInfo) {
	l.mu.Lock()
	first := len(l.steps) == 0
	l.steps = append(l.steps, f)
	l.mu.Unlock()
	if first && l.hold != nil {
		<-l.hold
	}
}

func (l *forwardLog) all() []ForwardInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.steps)
}

// TestConcurrentSessionsAreBatched holds stage 0's first forward pass while
// more sessions send their prefill, so they must arrive together and run as
// batches within the token budget; every session still gets the golden
// tokens through concurrent decoding.
func TestConcurrentSessionsAreBatched(t *testing.T) {
	g := readGolden(t)
	const sessions = 6
	cases := []struct {
		name   string
		budget int
		// wantBatch is the number of sessions the second forward pass of
		// stage 0 must hold: every waiting prefill, or as many as fit.
		wantBatch int
	}{
		{"whole queue in one pass", 2048, sessions - 1},
		// The held session has prompt 0; the waiting ones have prompts 1, 2,
		// 0, 1, 2 with 12, 2, 7, 12, 2 tokens: a budget of 14 takes the first
		// two and leaves the rest.
		{"token budget splits the queue", 14, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 0)
			log := &forwardLog{hold: make(chan struct{})}
			stages := c.pipeline(t, "batched", [][2]int{{0, 1}, {1, 3}}, func(cfg *Config) {
				cfg.MaxBatchTokens = tc.budget
				if cfg.Index == 0 {
					cfg.OnForward = log.record
				}
			})
			ids := make([]uuid.UUID, sessions)
			outs := make([][]int, sessions)
			errs := make([]error, sessions)
			var wg sync.WaitGroup
			run := func(i int) {
				defer wg.Done()
				p := g.Prompts[i%len(g.Prompts)]
				outs[i], errs[i] = c.generate("batched", ids[i], p.Tokens, len(p.Greedy))
			}
			for i := range ids {
				ids[i] = uuid.New()
			}
			wg.Add(1)
			go run(0)
			waitFor(t, "the first forward pass", func() bool { return len(log.all()) == 1 })
			// One at a time, so the queue order is known.
			for i := 1; i < sessions; i++ {
				wg.Add(1)
				go run(i)
				waitFor(t, "a prefill to queue", func() bool { return stages[0].Queued() == i })
			}
			close(log.hold)
			wg.Wait()
			for i, out := range outs {
				if errs[i] != nil {
					t.Errorf("session %d: %v", i, errs[i])
				}
				if want := g.Prompts[i%len(g.Prompts)].Greedy; !slices.Equal(out, want) {
					t.Errorf("session %d: got %v, want %v", i, out, want)
				}
			}
			steps := log.all()
			if got := steps[1].Sessions; got != tc.wantBatch {
				t.Errorf("the pass after the held one ran %d sessions, want %d", got, tc.wantBatch)
			}
			total := 0
			for i, f := range steps {
				total += f.Sessions
				if f.Sessions > 1 && f.Tokens > tc.budget {
					t.Errorf("pass %d ran %d sessions with %d tokens, over the budget of %d", i, f.Sessions, f.Tokens, tc.budget)
				}
			}
			if want := sessions * len(g.Prompts[0].Greedy); total != want {
				t.Errorf("the passes carried %d session steps, want %d", total, want)
			}
			if len(steps) >= total {
				t.Errorf("%d passes for %d session steps: nothing was batched", len(steps), total)
			}
		})
	}
}

// TestSessionStepsStayInOrder queues a session's prefill, decode and release
// behind a held forward pass: they must run one after the other, never in
// the same batch, so each sees the cache its predecessor left.
func TestSessionStepsStayInOrder(t *testing.T) {
	g := readGolden(t)
	p := g.Prompts[0]
	c := newCluster(t, 0)
	log := &forwardLog{hold: make(chan struct{})}
	stages := c.pipeline(t, "ordered", [][2]int{{0, 1}, {1, 3}}, func(cfg *Config) {
		if cfg.Index == 0 {
			cfg.OnForward = log.record
		}
	})
	other, id := uuid.New(), uuid.New()
	reqs := []*protocol.StepRequest{
		{Session: id, Op: protocol.OpPrefill, Tokens: p.Tokens},
		{Session: id, Op: protocol.OpDecode, CacheLen: len(p.Tokens), Tokens: p.Greedy[:1]},
		{Session: id, Op: protocol.OpDecode, CacheLen: len(p.Tokens) + 1, Tokens: p.Greedy[1:2]},
		{Session: id, Op: protocol.OpRelease},
	}
	replies := make([]*protocol.StepReply, len(reqs))
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, err := c.generate("ordered", other, []int{1, 2}, 1)
		if err != nil {
			t.Error(err)
		}
	}()
	waitFor(t, "the first forward pass", func() bool { return len(log.all()) == 1 })
	for i, req := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			replies[i], errs[i] = c.client.Step(ctx, protocol.Subjects{}.Stage("ordered", 0), req)
		}()
		waitFor(t, "a step to queue", func() bool { return stages[0].Queued() == i+1 })
	}
	close(log.hold)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	for i := range 3 {
		if got := replies[i].Tokens; !slices.Equal(got, p.Greedy[i:i+1]) {
			t.Errorf("step %d (%s): token %v, want %v", i, reqs[i].Op, got, p.Greedy[i:i+1])
		}
	}
	for k, s := range stages {
		if s.Sessions() != 1 { // other's session remains
			t.Errorf("stage %d holds %d sessions after the release, want 1", k, s.Sessions())
		}
	}
}
