package loadgen_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/draftbench/draftbench/pkg/loadgen"
)

// fakeClock jumps forward instead of sleeping; every Sleep wakes `overshoot` late, as a busy
// machine would, so tests can see whether lateness accumulates.
type fakeClock struct {
	mu        sync.Mutex
	now       time.Time
	overshoot time.Duration
	sleeps    int
}

func newFakeClock(overshoot time.Duration) *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), overshoot: overshoot}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d + c.overshoot)
	c.sleeps++
	return nil
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var _ loadgen.Clock = (*fakeClock)(nil)

// Sends wait for start+t_k, not for the previous send plus a gap: with every sleep waking 1 ms
// late, no request is more than 1 ms late, however many came before it.
func TestRunAbsoluteSchedule(t *testing.T) {
	tests := []struct {
		name    string
		arrival loadgen.Arrival
	}{
		{"constant", loadgen.Constant},
		{"poisson", loadgen.Poisson},
		{"gamma", loadgen.Gamma},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock(time.Millisecond)
			plan := loadgen.Plan{Rate: 100, Duration: 2 * time.Second, Arrival: tt.arrival, Seed: 9}
			sched, err := loadgen.Schedule(plan)
			if err != nil {
				t.Fatal(err)
			}
			h := func(_ context.Context, r loadgen.Request) error {
				if r.Scheduled != sched[r.Index] {
					t.Errorf("request %d scheduled at %s, want %s", r.Index, r.Scheduled, sched[r.Index])
				}
				return nil
			}
			rep, err := loadgen.Run(context.Background(), plan, h, loadgen.WithClock(clk))
			if err != nil {
				t.Fatal(err)
			}
			if rep.Sent != len(sched) || rep.Completed != len(sched) || rep.Planned != len(sched) {
				t.Fatalf("sent %d completed %d planned %d, want %d", rep.Sent, rep.Completed, rep.Planned, len(sched))
			}
			// Sleeping "gap" after each send would make the last request about n ms late.
			if rep.MaxLateness != time.Millisecond || rep.MeanLateness > time.Millisecond {
				t.Errorf("lateness max %s mean %s, want max exactly 1ms", rep.MaxLateness, rep.MeanLateness)
			}
			if clk.sleeps == 0 {
				t.Error("the generator never slept")
			}
			if math.Abs(rep.AchievedRate/rep.ScheduledRate-1) > 0.01 {
				t.Errorf("achieved rate %.2f drifts from the scheduled %.2f", rep.AchievedRate, rep.ScheduledRate)
			}
		})
	}
}

// gate holds the first n arrivals until the n-th arrives, so a cap below n deadlocks into the
// context's deadline and a cap above n shows up as a higher count.
type gate struct {
	n        int32
	once     sync.Once
	open     chan struct{}
	inFlight atomic.Int32
	peak     atomic.Int32
}

func newGate(n int) *gate { return &gate{n: int32(n), open: make(chan struct{})} }

func (g *gate) handler(ctx context.Context, _ loadgen.Request) error {
	cur := g.inFlight.Add(1)
	defer g.inFlight.Add(-1)
	for {
		p := g.peak.Load()
		if cur <= p || g.peak.CompareAndSwap(p, cur) {
			break
		}
	}
	if cur == g.n {
		g.once.Do(func() { close(g.open) })
	}
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("only %d of %d requests ever ran at once: %w", g.peak.Load(), g.n, ctx.Err())
	}
}

func TestRunMaxConcurrency(t *testing.T) {
	tests := []struct {
		name     string
		plan     loadgen.Plan
		wantPeak int
	}{
		{"cap 1", loadgen.Plan{NumRequests: 20, MaxConcurrency: 1}, 1},
		{"cap 3", loadgen.Plan{NumRequests: 40, MaxConcurrency: 3}, 3},
		{"no cap sends all at once", loadgen.Plan{NumRequests: 25}, 25},
		{"cap above the request count", loadgen.Plan{NumRequests: 5, MaxConcurrency: 10}, 5},
		{"cap in rate mode", loadgen.Plan{Rate: 1000, Duration: 50 * time.Millisecond, MaxConcurrency: 4}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The deadline only turns a broken cap (a deadlock) into a failure; it asserts nothing.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			g := newGate(tt.wantPeak)
			rep, err := loadgen.Run(ctx, tt.plan, g.handler, loadgen.WithClock(newFakeClock(0)))
			if err != nil {
				t.Fatal(err)
			}
			if int(g.peak.Load()) != tt.wantPeak || rep.PeakInFlight != tt.wantPeak {
				t.Errorf("peak in flight: handler saw %d, report says %d, want %d", g.peak.Load(), rep.PeakInFlight, tt.wantPeak)
			}
			if rep.Failed != 0 || rep.Completed != rep.Planned {
				t.Errorf("completed %d failed %d of %d", rep.Completed, rep.Failed, rep.Planned)
			}
		})
	}
}

// event is a handler start or end, in the order the handlers saw them.
type event struct {
	start bool
	index int
}

type recorder struct {
	mu     sync.Mutex
	events []event
	reqs   []loadgen.Request
}

func (r *recorder) log(e event, req loadgen.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	if e.start {
		r.reqs = append(r.reqs, req)
	}
}

func TestRunBatches(t *testing.T) {
	tests := []struct {
		name string
		plan loadgen.Plan
		// together: the whole batch must be in flight at once (checked with a gate per batch).
		together bool
	}{
		{"size 4 of 10", loadgen.Plan{NumRequests: 10, BatchSize: 4}, true},
		{"size 3 of 9 with cap 2", loadgen.Plan{NumRequests: 9, BatchSize: 3, MaxConcurrency: 2}, false},
		{"size 1 is sequential", loadgen.Plan{NumRequests: 5, BatchSize: 1}, true},
		{"rate mode", loadgen.Plan{Rate: 500, Duration: 40 * time.Millisecond, Arrival: loadgen.Constant, BatchSize: 5}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			sched, err := loadgen.Schedule(tt.plan)
			if err != nil {
				t.Fatal(err)
			}
			n, size := len(sched), tt.plan.BatchSize
			gates := map[int]*gate{}
			for b := 0; b*size < n; b++ {
				gates[b] = newGate(min(size, n-b*size))
			}
			var rec recorder
			h := func(ctx context.Context, r loadgen.Request) error {
				rec.log(event{true, r.Index}, r)
				defer rec.log(event{false, r.Index}, r)
				if tt.together {
					return gates[r.Index/size].handler(ctx, r)
				}
				return nil
			}
			if _, err := loadgen.Run(ctx, tt.plan, h, loadgen.WithClock(newFakeClock(0))); err != nil {
				t.Fatal(err)
			}
			// No request of batch b starts before every request of batch b-1 has ended.
			ended := map[int]int{}
			for _, e := range rec.events {
				b := e.index / size
				if e.start && b > 0 && ended[b-1] != min(size, n-(b-1)*size) {
					t.Fatalf("request %d of batch %d started with %d of batch %d's requests finished: %v", e.index, b, ended[b-1], b-1, rec.events)
				}
				if !e.start {
					ended[b]++
				}
			}
			if len(rec.reqs) != n {
				t.Errorf("%d requests ran, want %d", len(rec.reqs), n)
			}
		})
	}
}

func TestRunWarmup(t *testing.T) {
	tests := []struct {
		name string
		plan loadgen.Plan
	}{
		{"count mode", loadgen.Plan{NumRequests: 6, WarmupRequests: 2}},
		{"rate mode with a cap", loadgen.Plan{Rate: 100, Duration: 100 * time.Millisecond, WarmupRequests: 3, MaxConcurrency: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock(0)
			var rec recorder
			h := func(_ context.Context, r loadgen.Request) error {
				rec.log(event{true, r.Index}, r)
				if r.Warmup {
					clk.Advance(time.Second) // warmup is slow: loading, compiling
					return errors.New("warmup failures are counted apart")
				}
				return nil
			}
			before := clk.Now()
			rep, err := loadgen.Run(context.Background(), tt.plan, h, loadgen.WithClock(clk))
			if err != nil {
				t.Fatal(err)
			}
			w := tt.plan.WarmupRequests
			if rep.WarmupSent != w || rep.WarmupFailed != w || rep.Failed != 0 || rep.Sent != rep.Planned {
				t.Fatalf("report %+v", rep)
			}
			for i, r := range rec.reqs {
				if wantWarm := i < w; r.Warmup != wantWarm {
					t.Fatalf("request %d (%+v): warmup %v, want %v", i, r, r.Warmup, wantWarm)
				}
			}
			var warmIdx, measIdx []int
			for _, r := range rec.reqs {
				if r.Warmup {
					warmIdx = append(warmIdx, r.Index)
				} else {
					measIdx = append(measIdx, r.Index)
				}
			}
			slices.Sort(warmIdx)
			slices.Sort(measIdx)
			if !slices.Equal(warmIdx, seq(w)) || !slices.Equal(measIdx, seq(rep.Planned)) {
				t.Errorf("indexes warmup %v measured %v", warmIdx, measIdx)
			}
			// The measured clock starts after the warmup: its time is not in the span.
			if got := rep.Start.Sub(before); got < time.Duration(w)*time.Second {
				t.Errorf("measured phase started %s after the run, before the %d s of warmup ended", got, w)
			}
		})
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func TestRunCountsFailures(t *testing.T) {
	h := func(_ context.Context, r loadgen.Request) error {
		if r.Index%3 == 0 {
			return errors.New("worker lost")
		}
		return nil
	}
	rep, err := loadgen.Run(context.Background(), loadgen.Plan{NumRequests: 10, MaxConcurrency: 2}, h, loadgen.WithClock(newFakeClock(0)))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 4 || rep.Completed != 6 || rep.Sent != 10 || rep.Canceled {
		t.Errorf("failed %d completed %d sent %d canceled %v, want 4 6 10 false", rep.Failed, rep.Completed, rep.Sent, rep.Canceled)
	}
	if rep.AchievedRate != 0 || rep.ScheduledRate != 0 {
		t.Errorf("count mode reports rates %g/%g, want 0", rep.AchievedRate, rep.ScheduledRate)
	}
}

func TestRunCancel(t *testing.T) {
	tests := []struct {
		name     string
		plan     loadgen.Plan
		clock    loadgen.Clock
		cancelAt int
		maxSent  int
	}{
		// The request that cancels holds its slot until it sees the cancel, so at most one
		// more (the other slot) can go out.
		{"count mode with a cap", loadgen.Plan{NumRequests: 100, MaxConcurrency: 2}, newFakeClock(0), 4, 6},
		// Cancelling while the generator sleeps towards the next send wakes it (real clock:
		// the next send is due in an hour).
		{"rate mode while sleeping", loadgen.Plan{Rate: 1.0 / 3600, Duration: 3 * time.Hour, Arrival: loadgen.Constant}, loadgen.RealClock{}, 0, 1},
		{"during warmup", loadgen.Plan{NumRequests: 10, WarmupRequests: 3, MaxConcurrency: 1}, newFakeClock(0), 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var running, started, returned atomic.Int32
			h := func(ctx context.Context, r loadgen.Request) error {
				started.Add(1)
				running.Add(1)
				defer running.Add(-1)
				defer returned.Add(1)
				phase := r.Warmup == (tt.plan.WarmupRequests > 0)
				switch {
				case phase && r.Index == tt.cancelAt:
					cancel()
					<-ctx.Done() // in flight until it sees the cancel, as a real session would
					return ctx.Err()
				case phase && r.Index > tt.cancelAt:
					// Later requests last until the cancel too, so the generator
					// cannot run through the whole plan before the cancelling
					// request is scheduled.
					<-ctx.Done()
					return ctx.Err()
				}
				return nil
			}
			rep, err := loadgen.Run(ctx, tt.plan, h, loadgen.WithClock(tt.clock))
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("error %v, want context.Canceled", err)
			}
			if running.Load() != 0 || returned.Load() != started.Load() {
				t.Errorf("Run returned with %d requests still running", running.Load())
			}
			if !rep.Canceled || rep.Sent > tt.maxSent || rep.Completed+rep.Failed != rep.Sent {
				t.Errorf("report %+v, want canceled with at most %d sent and all accounted", rep, tt.maxSent)
			}
			if int(started.Load()) != rep.Sent+rep.WarmupSent {
				t.Errorf("handler ran %d times, report says %d + %d warmup", started.Load(), rep.Sent, rep.WarmupSent)
			}
		})
	}
}

func TestRunErrors(t *testing.T) {
	ok := func(context.Context, loadgen.Request) error { return nil }
	if _, err := loadgen.Run(context.Background(), loadgen.Plan{}, ok); err == nil {
		t.Error("an empty plan ran")
	}
	if _, err := loadgen.Run(context.Background(), loadgen.Plan{NumRequests: 1}, nil); err == nil {
		t.Error("a nil handler ran")
	}
}

// BenchmarkAchievedRate runs 200 req/s for 5 s on the real clock with an instant handler and
// reports the rate the sends held and its relative error (the lead records them).
func BenchmarkAchievedRate(b *testing.B) {
	const rate = 200.0
	for _, arrival := range []loadgen.Arrival{loadgen.Constant, loadgen.Poisson} {
		b.Run(string(arrival), func(b *testing.B) {
			plan := loadgen.Plan{Rate: rate, Duration: 5 * time.Second, Arrival: arrival, Seed: 42}
			h := func(context.Context, loadgen.Request) error { return nil }
			var rep loadgen.Report
			for b.Loop() {
				var err error
				if rep, err = loadgen.Run(context.Background(), plan, h); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(rep.AchievedRate, "achieved_req/s")
			b.ReportMetric(rep.ScheduledRate, "scheduled_req/s")
			// Against the schedule's own rate, so Poisson's sampling noise is not counted as error.
			b.ReportMetric(math.Abs(rep.AchievedRate-rep.ScheduledRate)/rep.ScheduledRate, "rel_err")
			b.ReportMetric(float64(rep.MaxLateness.Microseconds()), "max_late_us")
			b.ReportMetric(float64(rep.MeanLateness.Microseconds()), "mean_late_us")
		})
	}
}

// TestPeakIsTheMeasuredPhase: the warm-up, released all at once, is not the
// measured phase's peak in flight (one request at a time here).
func TestPeakIsTheMeasuredPhase(t *testing.T) {
	clock := newFakeClock(0)
	rep, err := loadgen.Run(context.Background(), loadgen.Plan{NumRequests: 3, WarmupRequests: 4, BatchSize: 1},
		func(ctx context.Context, r loadgen.Request) error { return clock.Sleep(ctx, time.Millisecond) }, loadgen.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	if rep.PeakInFlight != 1 || rep.WarmupSent != 4 {
		t.Errorf("peak in flight %d after %d warm-up requests, want 1 (the measured phase's, batches of one)", rep.PeakInFlight, rep.WarmupSent)
	}
}
