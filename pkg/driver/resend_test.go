package driver

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/sampling"
)

// lossy passes steps to a real client but loses some, by call number, as a
// NATS server that stops takes the messages passing through it: the
// request (no stage sees it) or the reply (the stages ran the step).
type lossy struct {
	next        Stepper
	loseRequest map[int]bool
	loseReply   map[int]bool

	mu    sync.Mutex
	calls int
	lost  int
}

func (l *lossy) Step(ctx context.Context, subject string, req *protocol.StepRequest) (*protocol.StepReply, error) {
	if req.Op == protocol.OpRelease { // sent in the background after the request: not counted
		return l.next.Step(ctx, subject, req)
	}
	l.mu.Lock()
	l.calls++
	n := l.calls
	lose := l.loseRequest[n] || l.loseReply[n]
	if lose {
		l.lost++
	}
	l.mu.Unlock()
	if l.loseReply[n] {
		_, _ = l.next.Step(ctx, subject, req)
	}
	if lose {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return l.next.Step(ctx, subject, req)
}

func (l *lossy) counts() (calls, lost int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls, l.lost
}

// TestLostStepsAreSentAgain: with requests and replies lost at every kind
// of step, the driver sends them again and the output is the in-process
// one, token for token: a step run twice gives the same answer.
func TestLostStepsAreSentAgain(t *testing.T) {
	layouts := []struct {
		name            string
		target, drafter [][2]int
	}{
		{"one stage each", [][2]int{{0, 4}}, [][2]int{{0, 2}}},
		{"2-stage target, 2-stage drafter", [][2]int{{0, 1}, {1, 4}}, [][2]int{{0, 1}, {1, 2}}},
	}
	prompt := []int{5, 17, 200, 31}
	for _, lay := range layouts {
		c := newCluster(t, lay.target, lay.drafter)
		var want []int
		ref, err := c.local.Generate(context.Background(), metrics.ModeTarget, gen(prompt, sampling.Params{}, 0, 1, &want))
		if err != nil {
			t.Fatal(err)
		}
		for _, mode := range []metrics.Mode{metrics.ModeTarget, metrics.ModeSpeculative} {
			t.Run(lay.name+"/"+string(mode), func(t *testing.T) {
				l := &lossy{next: c.client,
					loseRequest: map[int]bool{1: true, 4: true, 9: true},
					loseReply:   map[int]bool{3: true, 6: true, 7: true, 12: true}}
				e := &Engine{Client: l, Target: c.target, Drafter: &c.draft, ResendAfter: 20 * time.Millisecond, StepTimeout: time.Second}
				var emitted []int
				res, err := e.Generate(context.Background(), mode, gen(prompt, sampling.Params{}, 3, 1, &emitted))
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(res.Tokens, ref.Tokens) || !slices.Equal(emitted, ref.Tokens) {
					t.Fatalf("after lost steps:\n got %v\nwant %v", res.Tokens, ref.Tokens)
				}
				if _, lost := l.counts(); lost < 5 {
					t.Errorf("only %d steps were lost: the test did not exercise the resends", lost)
				}
			})
		}
	}
}

// TestResendOff: a negative ResendAfter waits for the one copy until
// StepTimeout, as before resends existed.
func TestResendOff(t *testing.T) {
	c := newCluster(t, [][2]int{{0, 4}}, [][2]int{{0, 2}})
	l := &lossy{next: c.client, loseRequest: map[int]bool{2: true}}
	e := &Engine{Client: l, Target: c.target, ResendAfter: -1, StepTimeout: 300 * time.Millisecond}
	var out []int
	if _, err := e.Generate(context.Background(), metrics.ModeTarget, gen([]int{1, 2}, sampling.Params{}, 0, 1, &out)); err == nil {
		t.Fatal("a lost step without resends must fail the request")
	}
	if calls, _ := l.counts(); calls != 2 {
		t.Errorf("%d steps sent, want the prefill and the one lost decode step", calls)
	}
}
