// Package loadgen decides when the benchmark's requests are sent: a fixed number at once
// (count mode) or at a rate for a duration (rate mode, Poisson, constant or gamma arrivals),
// capped by max_concurrency, optionally in batches, after a few warmup requests.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Plan is the load block of a job.
type Plan struct {
	// NumRequests is count mode: this many requests, released at once.
	NumRequests int
	// Rate (requests/s) and Duration are rate mode; Arrival picks the gaps (default poisson)
	// and Burstiness is the gamma shape (default 1). Count mode checks but ignores them, so
	// a job may carry rate-mode defaults.
	Rate       float64
	Duration   time.Duration
	Arrival    Arrival
	Burstiness float64
	// MaxConcurrency caps the requests in flight (0: no cap).
	MaxConcurrency int
	// WarmupRequests run before the measured phase and its clock, flagged Request.Warmup.
	WarmupRequests int
	// BatchSize > 0 sends requests in consecutive batches of this size: a batch starts when
	// every request of the one before it has finished.
	BatchSize int
	// Seed is the job seed; it fixes the arrival times.
	Seed uint64
}

// Validate checks the plan and says what is allowed.
func (p Plan) Validate() error {
	switch {
	case p.NumRequests < 0:
		return fmt.Errorf("loadgen: num_requests must not be negative, got %d", p.NumRequests)
	case p.Rate < 0:
		return fmt.Errorf("loadgen: rate must not be negative, got %g", p.Rate)
	case p.Duration < 0:
		return fmt.Errorf("loadgen: duration must not be negative, got %s", p.Duration)
	case p.NumRequests > 0 && p.Rate > 0:
		return errors.New("loadgen: set either num_requests (count mode) or rate and duration (rate mode), not both")
	case p.NumRequests == 0 && p.Rate == 0:
		return errors.New("loadgen: nothing to send: set num_requests, or rate and duration")
	case p.Rate > 0 && p.Duration == 0:
		return fmt.Errorf("loadgen: rate %g req/s needs a positive duration", p.Rate)
	case p.MaxConcurrency < 0:
		return fmt.Errorf("loadgen: max_concurrency must not be negative (0 is no cap), got %d", p.MaxConcurrency)
	case p.WarmupRequests < 0:
		return fmt.Errorf("loadgen: warmup_requests must not be negative, got %d", p.WarmupRequests)
	case p.BatchSize < 0:
		return fmt.Errorf("loadgen: batch size must not be negative (0 is no batching), got %d", p.BatchSize)
	case p.Burstiness < 0:
		return fmt.Errorf("loadgen: burstiness must be positive, got %g", p.Burstiness)
	}
	if err := validArrival(p.arrival()); err != nil {
		return err
	}
	if p.Burstiness != 0 && p.Burstiness != 1 && p.arrival() != Gamma {
		return fmt.Errorf("loadgen: burstiness %g applies to arrival \"gamma\", not %q", p.Burstiness, p.arrival())
	}
	if n := p.expectedCount(); n > MaxScheduled {
		return fmt.Errorf("loadgen: %g req/s for %s schedules about %.0f requests, more than the %d allowed", p.Rate, p.Duration, n, MaxScheduled)
	}
	return nil
}

// Request is one send.
type Request struct {
	// Index counts within its phase: warmup requests are 0..WarmupRequests-1, measured ones
	// 0..n-1 (the caller maps it to a prompt).
	Index int
	// Warmup requests are sent before the measured phase; metrics leave them out.
	Warmup bool
	// Scheduled is the planned send time as an offset from the start of the measured phase
	// (0 for warmup and count mode).
	Scheduled time.Duration
}

// Handler performs one request; a returned error counts it as failed. It receives the run's
// context, so a cancelled run can end it early.
type Handler func(ctx context.Context, r Request) error

// Report summarises a run. Rates and lateness cover the measured phase only.
type Report struct {
	Planned      int `json:"planned"`
	Sent         int `json:"sent"`
	Completed    int `json:"completed"`
	Failed       int `json:"failed"`
	WarmupSent   int `json:"warmup_sent"`
	WarmupFailed int `json:"warmup_failed"`
	// Start is when the measured phase began; Elapsed runs from it to the last completion.
	Start   time.Time     `json:"start"`
	Elapsed time.Duration `json:"elapsed_ns"`
	// SendSpan runs from the first send to the last.
	SendSpan time.Duration `json:"send_span_ns"`
	// ScheduledRate is the rate the schedule itself holds, (n-1)/(t_{n-1}-t_0) over its n
	// requests (over the first `sent` of them when the run was cut short), and
	// AchievedRate the rate the sends held, (sent-1)/SendSpan; both are 0 in count mode.
	// Their ratio isolates the generator's own error from the randomness of the arrivals.
	ScheduledRate float64 `json:"scheduled_rate"`
	AchievedRate  float64 `json:"achieved_rate"`
	// Lateness is send time minus planned time; it includes waits for a concurrency slot or
	// for the previous batch.
	MaxLateness  time.Duration `json:"max_lateness_ns"`
	MeanLateness time.Duration `json:"mean_lateness_ns"`
	// PeakInFlight is the most requests that were in flight at once in the measured phase
	// (warm-up requests release all at once; they finish before it starts).
	PeakInFlight int `json:"peak_in_flight"`
	// Canceled is true when the context stopped the run before every request was sent.
	Canceled bool `json:"canceled"`
}

// Option configures Run.
type Option func(*runner)

// WithClock replaces the wall clock.
func WithClock(c Clock) Option { return func(r *runner) { r.clock = c } }

// Run sends the plan's requests through h and waits for all of them. Each send waits until
// its absolute due time start+t_k (never "previous send + gap"), so lateness does not
// accumulate and the achieved rate does not drift. When ctx is done Run stops sending, waits
// for the requests in flight, and returns the report so far with an error wrapping ctx.Err().
func Run(ctx context.Context, plan Plan, h Handler, opts ...Option) (Report, error) {
	if h == nil {
		return Report{}, errors.New("loadgen: nil handler")
	}
	sched, err := Schedule(plan)
	if err != nil {
		return Report{}, err
	}
	r := &runner{clock: RealClock{}, h: h, batch: plan.BatchSize}
	for _, o := range opts {
		o(r)
	}
	if plan.MaxConcurrency > 0 {
		r.slots = make(chan struct{}, plan.MaxConcurrency)
	}

	rep := Report{Planned: len(sched)}
	warm := &phase{warmup: true, sched: make([]time.Duration, plan.WarmupRequests), start: r.clock.Now()}
	err = r.run(ctx, warm)
	rep.WarmupSent, rep.WarmupFailed = warm.sent, warm.failed
	if err == nil {
		r.mu.Lock()
		r.peak = r.inFlight // the warm-up's peak is not the load's
		r.mu.Unlock()
		meas := &phase{sched: sched, start: r.clock.Now()}
		err = r.run(ctx, meas)
		meas.fill(&rep, plan.Rate > 0)
	}
	rep.PeakInFlight = r.peak
	if err != nil {
		rep.Canceled = true
		return rep, fmt.Errorf("loadgen: stopped after sending %d of %d requests (%d of %d warmup): %w",
			rep.Sent, rep.Planned, rep.WarmupSent, plan.WarmupRequests, err)
	}
	return rep, nil
}

type runner struct {
	clock Clock
	h     Handler
	batch int
	slots chan struct{} // nil: no concurrency cap

	mu       sync.Mutex
	inFlight int
	peak     int
}

// phase is one pass over a schedule (warmup or measured) and what happened in it.
type phase struct {
	warmup bool
	sched  []time.Duration
	start  time.Time

	sent, completed, failed int
	firstSend, lastSend     time.Time
	lastDone                time.Time
	maxLate, sumLate        time.Duration
}

// run sends ph's requests and returns when all that were sent have finished.
func (r *runner) run(ctx context.Context, ph *phase) error {
	var all sync.WaitGroup
	defer all.Wait()
	batch := new(sync.WaitGroup)
	for i, off := range ph.sched {
		if r.batch > 0 && i > 0 && i%r.batch == 0 {
			batch.Wait()
			batch = new(sync.WaitGroup)
		}
		due := ph.start.Add(off)
		if d := due.Sub(r.clock.Now()); d > 0 {
			if err := r.clock.Sleep(ctx, d); err != nil {
				return err
			}
		}
		if err := r.acquire(ctx); err != nil {
			return err
		}
		now := r.clock.Now()
		r.mu.Lock()
		r.inFlight++
		r.peak = max(r.peak, r.inFlight)
		if ph.sent == 0 {
			ph.firstSend = now
		}
		ph.sent++
		ph.lastSend = now
		late := max(now.Sub(due), 0)
		ph.maxLate = max(ph.maxLate, late)
		ph.sumLate += late
		r.mu.Unlock()

		req := Request{Index: i, Warmup: ph.warmup, Scheduled: off}
		if ph.warmup {
			req.Scheduled = 0
		}
		all.Add(1)
		batch.Add(1)
		go func(b *sync.WaitGroup) {
			defer all.Done()
			defer b.Done()
			err := r.h(ctx, req)
			done := r.clock.Now()
			r.mu.Lock()
			r.inFlight--
			if err != nil {
				ph.failed++
			} else {
				ph.completed++
			}
			if done.After(ph.lastDone) {
				ph.lastDone = done
			}
			r.mu.Unlock()
			r.release()
		}(batch)
	}
	return nil
}

// acquire takes a concurrency slot; a done context wins over a free slot so that no request
// is sent after cancellation.
func (r *runner) acquire(ctx context.Context) error {
	if r.slots == nil {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case r.slots <- struct{}{}:
	}
	if err := ctx.Err(); err != nil {
		<-r.slots
		return err
	}
	return nil
}

func (r *runner) release() {
	if r.slots != nil {
		<-r.slots
	}
}

// fill copies the measured phase into rep; it runs after every request has finished.
func (ph *phase) fill(rep *Report, rateMode bool) {
	rep.Start = ph.start
	rep.Sent, rep.Completed, rep.Failed = ph.sent, ph.completed, ph.failed
	if !ph.lastDone.IsZero() {
		rep.Elapsed = ph.lastDone.Sub(ph.start)
	}
	if ph.sent > 0 {
		rep.SendSpan = ph.lastSend.Sub(ph.firstSend)
		rep.MaxLateness = ph.maxLate
		rep.MeanLateness = ph.sumLate / time.Duration(ph.sent)
	}
	if !rateMode {
		return
	}
	// Over the part that was sent: a run cut short compares its sends with
	// their own arrival times, not with the whole schedule's rate.
	n := len(ph.sched)
	if ph.sent > 1 && ph.sent < n {
		n = ph.sent
	}
	if n > 1 && ph.sched[n-1] > ph.sched[0] {
		rep.ScheduledRate = float64(n-1) / (ph.sched[n-1] - ph.sched[0]).Seconds()
	}
	if ph.sent > 1 && rep.SendSpan > 0 {
		rep.AchievedRate = float64(ph.sent-1) / rep.SendSpan.Seconds()
	}
}
