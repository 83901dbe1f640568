package jobstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/draftbench/draftbench/pkg/cluster"
	"github.com/draftbench/draftbench/pkg/jobspec"
	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/report"
)

// DefaultRequestTimeout bounds one request to the controller.
const DefaultRequestTimeout = 10 * time.Second

// ErrNoController is wrapped when no controller answers a request.
var ErrNoController = errors.New("no controller answered")

// Client is what the client commands (submit, status, tail, cancel) use
// to talk to a controller and read its results stream.
type Client struct {
	nc      *nats.Conn
	subj    protocol.Subjects
	timeout time.Duration
	denials *natsrv.Denials
}

// NewClient talks to the controller serving subj on nc; timeout bounds
// each request (0: DefaultRequestTimeout).
func NewClient(nc *nats.Conn, subj protocol.Subjects, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	return &Client{nc: nc, subj: subj, timeout: timeout}
}

// WithDenials makes the client's requests end at once when the server
// refuses this connection their subject (d must be the ConnectOptions.Denials
// of the client's connection): the server says so only asynchronously, and
// the request would otherwise wait for its timeout and read as "no
// controller answered".
func (c *Client) WithDenials(d *natsrv.Denials) *Client {
	c.denials = d
	return c
}

// roleHint follows a permissions violation on a request subject: what the
// client commands need of their NATS user (docs/deploy.md, Security).
const roleHint = `these credentials lack the controller role, which the client commands (submit, tail, status, cancel) need: ` +
	`connect as a user whose entry in serve's --users file has "role": "controller" (with docker/nats.conf, the controller user)`

// request sends body to subject and returns the answer, turning "nobody
// listens" and "nobody answered" into the one error users need to read.
func (c *Client) request(ctx context.Context, subject string, body []byte) ([]byte, error) {
	dctx, deny := context.WithCancelCause(ctx)
	defer deny(nil)
	rctx, cancel := context.WithTimeout(dctx, c.timeout)
	defer cancel()
	if c.denials != nil {
		refused, stop := c.denials.Watch(subject)
		defer stop()
		go func() {
			select {
			case pe := <-refused:
				deny(pe)
			case <-rctx.Done():
			}
		}()
	}
	m, err := c.nc.RequestWithContext(rctx, subject, body)
	var pe *natsrv.PermissionError
	switch {
	case err == nil:
		return m.Data, nil
	case errors.As(context.Cause(dctx), &pe):
		return nil, fmt.Errorf("%w: %s", pe, roleHint)
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return nil, fmt.Errorf("%w on %s: is `controller serve` running?", ErrNoController, c.nc.ConnectedUrlRedacted())
	}
	return nil, fmt.Errorf("asking %s: %w", subject, err)
}

// Submit sends a job; validation errors come back in the reply's Errors.
func (c *Client) Submit(ctx context.Context, src *jobspec.Source) (*protocol.JobSubmitReply, error) {
	data, err := protocol.Encode(&protocol.JobSubmit{Job: *src})
	if err != nil {
		return nil, err
	}
	data, err = c.request(ctx, c.subj.JobsSubmit(), data)
	if err != nil {
		return nil, err
	}
	reply := &protocol.JobSubmitReply{}
	if err := protocol.Decode(data, reply); err != nil {
		return nil, fmt.Errorf("the controller's answer to the submission: %w", err)
	}
	return reply, nil
}

// Status asks for one job's state.
func (c *Client) Status(ctx context.Context, id string) (*protocol.JobStatus, error) {
	data, err := c.request(ctx, c.subj.JobStatus(id), nil)
	if err != nil {
		return nil, err
	}
	st := &protocol.JobStatus{}
	if err := protocol.Decode(data, st); err != nil {
		if ackErr := ackError(data); ackErr != nil {
			return nil, ackErr
		}
		return nil, fmt.Errorf("the controller's answer about job %s: %w", id, err)
	}
	return st, nil
}

// Cancel asks the controller to cancel job id.
func (c *Client) Cancel(ctx context.Context, id, reason string) error {
	data, err := protocol.Encode(&protocol.JobCancel{Reason: reason})
	if err != nil {
		return err
	}
	data, err = c.request(ctx, c.subj.JobCancel(id), data)
	if err != nil {
		return err
	}
	var ack protocol.Ack
	if err := protocol.Decode(data, &ack); err != nil {
		return fmt.Errorf("the controller's answer to the cancel: %w", err)
	}
	if ack.Error != "" {
		return errors.New(ack.Error)
	}
	return nil
}

// ackError is the error an Ack in data carries, if data is one.
func ackError(data []byte) error {
	var ack protocol.Ack
	if protocol.Decode(data, &ack) == nil && ack.Error != "" {
		return errors.New(ack.Error)
	}
	return nil
}

// Jobs lists the controller's jobs, oldest first.
func (c *Client) Jobs(ctx context.Context) ([]protocol.JobStatus, error) {
	list, err := c.JobList(ctx)
	if err != nil {
		return nil, err
	}
	return list.Jobs, nil
}

// JobList is Jobs with the count of old jobs the reply left out.
func (c *Client) JobList(ctx context.Context) (*JobList, error) {
	data, err := c.request(ctx, JobsList(c.subj), nil)
	if err != nil {
		return nil, err
	}
	var list JobList
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("the controller's job list: %w", err)
	}
	if err := checkListVersion(list.V, "the controller's job list"); err != nil {
		return nil, err
	}
	if list.Error != "" {
		return nil, fmt.Errorf("listing jobs: %s", list.Error)
	}
	return &list, nil
}

// Workers lists the controller's workers, alive ones first.
func (c *Client) Workers(ctx context.Context) ([]cluster.Worker, error) {
	data, err := c.request(ctx, WorkersList(c.subj), nil)
	if err != nil {
		return nil, err
	}
	var list WorkerList
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("the controller's worker list: %w", err)
	}
	if err := checkListVersion(list.V, "the controller's worker list"); err != nil {
		return nil, err
	}
	return list.Workers, nil
}

// Resolve turns what a user typed into a job id: a whole id as it is, or
// the beginning of exactly one known job's id (as `status` prints them).
func (c *Client) Resolve(ctx context.Context, arg string) (string, error) {
	if _, err := uuid.Parse(arg); err == nil {
		return arg, nil
	}
	if arg == "" {
		return "", errors.New("the job id is empty")
	}
	jobs, err := c.Jobs(ctx)
	if err != nil {
		return "", err
	}
	var matches []string
	for _, j := range jobs {
		if strings.HasPrefix(j.JobID, arg) {
			matches = append(matches, j.JobID)
		}
	}
	switch len(matches) {
	case 0:
		return "", fmt.Errorf("no job id starts with %q (controller status lists them)", arg)
	case 1:
		return matches[0], nil
	}
	return "", fmt.Errorf("%q is the beginning of %d job ids (%s): give more of it", arg, len(matches), strings.Join(matches, ", "))
}

// Latest picks the job a command without a job id means: the running
// one, else the newest.
func Latest(jobs []protocol.JobStatus) (protocol.JobStatus, bool) {
	for _, j := range jobs {
		if j.State == protocol.JobRunning {
			return j, true
		}
	}
	if len(jobs) == 0 {
		return protocol.JobStatus{}, false
	}
	newest := jobs[0]
	for _, j := range jobs[1:] {
		if j.Submitted.After(newest.Submitted) {
			newest = j
		}
	}
	return newest, true
}

// Follow reads job's results from the controller's stream (see Follow).
func (c *Client) Follow(ctx context.Context, job string, opt FollowOptions, fn func(Event) error) (*protocol.JobStatus, error) {
	js, err := jetstream.New(c.nc)
	if err != nil {
		return nil, err
	}
	return Follow(ctx, js, c.subj, job, opt, fn)
}

// Summary is the summary the controller published for job when it ended
// (its benchmark_results.json), read from the results stream: nil when the
// stream holds none (the job ended before it had results, or the stream's
// limits dropped them).
func (c *Client) Summary(ctx context.Context, job string) (*report.Results, error) {
	js, err := jetstream.New(c.nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	subject := c.subj.ResultsSummary(job)
	name, err := js.StreamNameBySubject(ctx, subject)
	if err != nil {
		return nil, fmt.Errorf("no JetStream stream captures %s on this server: %w", subject, err)
	}
	stream, err := js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("opening stream %s: %w", name, err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s from stream %s: %w", subject, name, err)
	}
	if err := protocol.CheckRecordVersion(msg.Header); err != nil {
		return nil, fmt.Errorf("the summary of job %s: %w", job, err)
	}
	ev := Event{}
	if err := decodeEvent(c.subj, job, subject, msg.Data, &ev); err != nil {
		return nil, err
	}
	return ev.Summary, nil
}
