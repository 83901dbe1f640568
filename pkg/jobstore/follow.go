package jobstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/report"
)

// Event is one message of a job's results, decoded. Exactly one of
// Request, Progress and Summary is set.
type Event struct {
	Seq  uint64    // stream sequence
	Time time.Time // when the stream stored it
	// Stored is true for a message the stream held before Follow began:
	// a live reader shows only what comes after, a replay shows all.
	Stored   bool
	Request  *metrics.Request
	Progress *protocol.JobStatus
	Summary  *report.Results
}

// FollowOptions tune Follow.
type FollowOptions struct {
	// UntilStored ends Follow once the messages stored when it began are
	// delivered, for a job known to be over whose final progress message
	// the stream's limits may have dropped. Without it Follow waits for
	// the final progress message.
	UntilStored bool
}

// Follow reads job's results from the stream, oldest first, and calls fn
// with each. It returns the job's final status when its final progress
// message arrives, nil when UntilStored ends it first, or the first error
// of fn, of decoding, or of ctx.
func Follow(ctx context.Context, js jetstream.JetStream, subj protocol.Subjects, job string, opt FollowOptions, fn func(Event) error) (*protocol.JobStatus, error) {
	filter := subj.JobResults(job)
	var name string
	var info *jetstream.StreamInfo
	var cons jetstream.Consumer
	err := retryAPI(ctx, func(ctx context.Context) (err error) {
		name, err = js.StreamNameBySubject(ctx, subj.ResultsProgress(job))
		if err != nil {
			return fmt.Errorf("no JetStream stream captures %s on this server (is it the controller's?): %w", filter, err)
		}
		return nil
	})
	if err == nil {
		err = retryAPI(ctx, func(ctx context.Context) error {
			stream, err := js.Stream(ctx, name)
			if err != nil {
				return fmt.Errorf("opening stream %s: %w", name, err)
			}
			if info, err = stream.Info(ctx, jetstream.WithSubjectFilter(filter)); err != nil {
				return fmt.Errorf("reading stream %s: %w", name, err)
			}
			return nil
		})
	}
	if err != nil {
		return nil, err
	}
	var stored uint64
	for _, n := range info.State.Subjects {
		stored += n
	}
	if opt.UntilStored && stored == 0 {
		return nil, nil
	}
	lastSeq := info.State.LastSeq
	if err := retryAPI(ctx, func(ctx context.Context) (err error) {
		cons, err = js.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
		if err != nil {
			return fmt.Errorf("reading %s from stream %s: %w", filter, name, err)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("reading %s from stream %s: %w", filter, name, err)
	}
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			return nil, fmt.Errorf("reading %s from stream %s: %w", filter, name, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return nil, fmt.Errorf("reading %s from stream %s: %w", filter, name, err)
		}
		ev := Event{Seq: meta.Sequence.Stream, Time: meta.Timestamp, Stored: meta.Sequence.Stream <= lastSeq}
		if err := protocol.CheckRecordVersion(msg.Headers()); err != nil {
			return nil, fmt.Errorf("message %d of stream %s: %w", ev.Seq, name, err)
		}
		if err := decodeEvent(subj, job, msg.Subject(), msg.Data(), &ev); err != nil {
			return nil, fmt.Errorf("message %d of stream %s: %w", ev.Seq, name, err)
		}
		if err := fn(ev); err != nil {
			return nil, err
		}
		if ev.Progress != nil && Final(ev.Progress.State) {
			return ev.Progress, nil
		}
		if opt.UntilStored && ev.Stored && meta.NumPending == 0 {
			return nil, nil
		}
	}
}

// apiRetry is how long one JetStream API call may take before it is made
// again: while a cluster elects a new leader (a server stopped) a request
// may go unanswered, and Follow must not wait on it for ever.
const apiRetry = 5 * time.Second

// retryAPI calls f with a deadline of apiRetry each time until it succeeds,
// fails for another reason than an answer that never came, or ctx ends.
func retryAPI(ctx context.Context, f func(context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, apiRetry)
		err := f(actx)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return context.Cause(ctx)
		case !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout):
			return err // "no responders" among them: a server without JetStream answers at once
		}
	}
}

// decodeEvent fills ev from a message of job's results.
func decodeEvent(subj protocol.Subjects, job, subject string, data []byte, ev *Event) error {
	switch subject {
	case subj.ResultsRequests(job):
		ev.Request = &metrics.Request{}
		if err := json.Unmarshal(data, ev.Request); err != nil {
			return fmt.Errorf("decoding a request record on %s: %w", subject, err)
		}
	case subj.ResultsProgress(job):
		ev.Progress = &protocol.JobStatus{}
		if err := protocol.Decode(data, ev.Progress); err != nil {
			return fmt.Errorf("decoding progress on %s: %w", subject, err)
		}
	case subj.ResultsSummary(job):
		ev.Summary = &report.Results{}
		if err := json.Unmarshal(data, ev.Summary); err != nil {
			return fmt.Errorf("decoding the summary on %s: %w", subject, err)
		}
	default:
		return fmt.Errorf("unexpected subject %s", subject)
	}
	return nil
}
