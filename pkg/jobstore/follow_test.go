package jobstore

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/draftbench/draftbench/pkg/controller"
	"github.com/draftbench/draftbench/pkg/jobspec"
	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/report"
)

// A follower that joins a running job sees what was stored as Stored and
// what comes after live, up to the job's end.
func TestFollowLive(t *testing.T) {
	runner := newRunner()
	runner.blockAfter = 2
	s := serve(t, nil, runner, nil)
	id := s.submit(t)
	waitRecords(t, s, id, 2) // the runner now waits until the job is cancelled
	var got collected
	var live []Event
	cancelled := false
	final, err := s.client.Follow(testContext(t), id, FollowOptions{}, func(ev Event) error {
		if !cancelled {
			cancelled = true // joined: stop the job so its end arrives live
			if err := s.client.Cancel(testContext(t), id, "enough"); err != nil {
				return err
			}
		}
		if !ev.Stored {
			live = append(live, ev)
		}
		return collect(&got)(ev)
	})
	if err != nil {
		t.Fatal(err)
	}
	if final.State != protocol.JobCancelled {
		t.Errorf("final state %s, want cancelled", final.State)
	}
	for i, st := range got.stored[:3] { // queued, running, first record
		if !st {
			t.Errorf("event %d was stored before Follow began but is not marked Stored", i)
		}
	}
	if len(live) < 2 || live[len(live)-2].Summary == nil || live[len(live)-1].Progress == nil {
		t.Fatalf("live events %+v, want the summary then the final progress", live)
	}
	for _, r := range got.requests {
		if r.Mode != metrics.ModeSpeculative {
			t.Errorf("record of mode %s; the runner stopped in the speculative mode", r.Mode)
		}
	}
}

func TestFollowUntilStored(t *testing.T) {
	for _, tc := range []struct {
		name    string
		records int
	}{
		{"nothing stored", 0},
		{"records without an end", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc := connect(t, startNATS(t, "").ClientURL())
			store := openStore(t, nc)
			ctx := testContext(t)
			for i := range tc.records {
				if err := store.PublishRequest(ctx, idA, record(metrics.ModeTarget, i, i, false)); err != nil {
					t.Fatal(err)
				}
			}
			var got collected
			final, err := NewClient(nc, protocol.Subjects{}, 0).Follow(ctx, idA, FollowOptions{UntilStored: true}, collect(&got))
			if err != nil || final != nil {
				t.Fatalf("Follow() = %v, %v; want no final state and no error", final, err)
			}
			if len(got.requests) != tc.records {
				t.Errorf("%d records, want %d", len(got.requests), tc.records)
			}
		})
	}
}

// Without UntilStored, Follow waits for the job's end past what is stored.
func TestFollowWaitsForTheEnd(t *testing.T) {
	nc := connect(t, startNATS(t, "").ClientURL())
	store := openStore(t, nc)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	if err := store.PublishRequest(ctx, idA, record(metrics.ModeTarget, 0, 0, false)); err != nil {
		t.Fatal(err)
	}
	n := 0
	_, err := NewClient(nc, protocol.Subjects{}, 0).Follow(ctx, idA, FollowOptions{}, func(Event) error {
		n++
		cancel() // the only way out without a final state
		return nil
	})
	if !errors.Is(err, context.Canceled) || n != 1 {
		t.Fatalf("Follow() error = %v after %d events, want context.Canceled after 1", err, n)
	}
}

func TestFollowWithoutStream(t *testing.T) {
	nc := connect(t, startNATS(t, "").ClientURL())
	_, err := NewClient(nc, protocol.Subjects{}, 0).Follow(testContext(t), idA, FollowOptions{}, func(Event) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "no JetStream stream captures draftbench.results."+idA+".> on this server") {
		t.Fatalf("Follow() error = %v", err)
	}
}

// TestClientSummary: the summary a client reads back for a job is the last
// one the controller published for it; none before it published one.
func TestClientSummary(t *testing.T) {
	nc := connect(t, startNATS(t, "").ClientURL())
	store := openStore(t, nc)
	ctx := testContext(t)
	client := NewClient(nc, protocol.Subjects{}, 0)
	if got, err := client.Summary(ctx, idA); got != nil || err != nil {
		t.Fatalf("Summary() before any = %+v, %v; want nil, nil", got, err)
	}
	job := &controller.Job{ID: idA, Spec: &jobspec.Job{Name: "summary", Modes: jobspec.Modes{Speculative: true, TargetAR: true}}}
	recs := []metrics.Request{record(metrics.ModeSpeculative, 0, 0, false), record(metrics.ModeTarget, 0, 0, false)}
	res := results(job, recs)
	if err := store.PublishRequest(ctx, idA, recs[0]); err != nil {
		t.Fatal(err)
	}
	if err := store.PublishSummary(ctx, idA, res); err != nil {
		t.Fatal(err)
	}
	if err := store.PublishSummary(ctx, idB, report.Results{Job: report.Job{ID: idB}}); err != nil {
		t.Fatal(err)
	}
	got, err := client.Summary(ctx, idA)
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || got.Job.ID != idA || got.Speculative == nil || got.Speculative.Completed != 1 || got.Comparison == nil ||
		got.Comparison.Lossless.Checked != res.Comparison.Lossless.Checked {
		t.Errorf("Summary() = %+v, want the published summary of %s", got, idA)
	}
}
