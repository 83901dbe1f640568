package driver

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/sampling"
)

// cancelAt cancels the request's context when the session sends its first step of op, as a
// user's cancel arriving mid-request does, then lets the step go on.
type cancelAt struct {
	next   Stepper
	op     protocol.Op
	cancel context.CancelFunc
}

func (c *cancelAt) Step(ctx context.Context, subject string, req *protocol.StepRequest) (*protocol.StepReply, error) {
	if req.Op == c.op {
		c.cancel()
	}
	return c.next.Step(ctx, subject, req)
}

// TestStepErrorNamesTheStepOnce: the error of a step cut short names its op, session and
// subject once, not once per layer that passed it on ("verify on S: verify step of session …
// on S: context canceled").
func TestStepErrorNamesTheStepOnce(t *testing.T) {
	c := newCluster(t, [][2]int{{0, 4}}, [][2]int{{0, 2}})
	for _, tc := range []struct {
		name   string
		mode   metrics.Mode
		op     protocol.Op
		resend time.Duration
	}{
		{"verify", metrics.ModeSpeculative, protocol.OpVerify, 0},
		{"verify without resends", metrics.ModeSpeculative, protocol.OpVerify, -1},
		{"decode", metrics.ModeTarget, protocol.OpDecode, 0},
		{"prefill", metrics.ModeTarget, protocol.OpPrefill, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			e := &Engine{Client: &cancelAt{next: c.client, op: tc.op, cancel: cancel}, Target: c.target, Drafter: &c.draft,
				ResendAfter: tc.resend, StepTimeout: 10 * time.Second}
			var out []int
			_, err := e.Generate(ctx, tc.mode, gen([]int{5, 17, 200}, sampling.Params{}, 2, 1, &out))
			if err == nil {
				t.Fatal("a cancelled request succeeded")
			}
			msg := err.Error()
			t.Logf("error: %s", msg)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("error %q does not wrap context.Canceled", msg)
			}
			if n := strings.Count(msg, "draftbench.stage."); n != 1 {
				t.Errorf("error %q names a stage subject %d times, want once", msg, n)
			}
			if n := strings.Count(msg, " step of session "); n != 1 {
				t.Errorf("error %q names the step %d times, want once", msg, n)
			}
		})
	}
}
