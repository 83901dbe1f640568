package protocol

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// StepClient sends step requests to the first stage of a pipeline and waits
// for the answer of its last stage (or of the stage that failed the step).
// One client serves many concurrent steps over one inbox subscription; it is
// what a session driver uses.
type StepClient struct {
	nc      *nats.Conn
	inbox   string
	sub     *nats.Subscription
	asm     *Assembler
	n       atomic.Uint64
	mu      sync.Mutex
	waiting map[string]chan *StepReply
}

// NewStepClient subscribes to a fresh inbox on nc.
func NewStepClient(nc *nats.Conn) (*StepClient, error) {
	c := &StepClient{nc: nc, inbox: nc.NewInbox(), asm: NewAssembler(AssemblerOptions{}), waiting: map[string]chan *StepReply{}}
	sub, err := nc.Subscribe(c.inbox+".*", c.receive)
	if err != nil {
		return nil, fmt.Errorf("protocol: subscribing to the step inbox: %w", err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("protocol: %w", err)
	}
	c.sub = sub
	return c, nil
}

// Close unsubscribes; steps still waiting end with their context.
func (c *StepClient) Close() error { return c.sub.Unsubscribe() }

// Step sends req to subject (a Stage subject) with its Reply set to a fresh
// inbox subject and waits for the reply or ctx. A reply that reports a
// failed step is returned together with its error. Every error names the
// step once, as StepError does: callers add what the step was for, not
// which step it was.
func (c *StepClient) Step(ctx context.Context, subject string, req *StepRequest) (*StepReply, error) {
	req.Reply = c.inbox + "." + strconv.FormatUint(c.n.Add(1), 10)
	ch := make(chan *StepReply, 1)
	c.mu.Lock()
	c.waiting[req.Reply] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiting, req.Reply)
		c.mu.Unlock()
	}()
	if err := Send(c.nc, subject, req.Session.String(), req, nil); err != nil {
		return nil, StepError(req, subject, fmt.Errorf("sending: %w", err))
	}
	select {
	case rep := <-ch:
		if err := rep.Err(); err != nil {
			return rep, StepError(req, subject, err)
		}
		return rep, nil
	case <-ctx.Done():
		return nil, StepError(req, subject, ctx.Err())
	}
}

// StepError wraps err with the step it ended: "verify step of session S on
// SUBJECT: err". Code that passes a step's error on adds what the step was
// for ("round 3: …"), never the op or the subject again.
func StepError(req *StepRequest, subject string, err error) error {
	return fmt.Errorf("%s step of session %s on %s: %w", req.Op, req.Session, subject, err)
}

func (c *StepClient) receive(m *nats.Msg) {
	rep := &StepReply{}
	f, err := c.asm.Add(m)
	switch {
	case err != nil:
		rep.Error = fmt.Sprintf("reassembling the reply: %v", err)
	case f == nil:
		return
	default:
		if err := Decode(f.Control, rep); err != nil {
			rep = &StepReply{Error: fmt.Sprintf("reading the reply: %v", err)}
		}
	}
	c.mu.Lock()
	ch := c.waiting[m.Subject]
	c.mu.Unlock()
	if ch != nil {
		select {
		case ch <- rep:
		default: // a second reply to the same step; the first one counts
		}
	}
}
