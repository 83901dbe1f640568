package gpumon

import (
	"context"
	"fmt"
	"time"
)

// CoolDown waits until the latest temperature of every device is below belowC, or until
// timeout has passed, checking at each sampling interval; it records the wait in the results
// and returns how long it waited and whether the GPUs got cool. Devices that never reported a
// temperature are not waited for; when none did, it returns at once with reached false.
// Mark the idle phase before calling it, so the wait is not billed to a mode.
func (a *Aggregator) CoolDown(ctx context.Context, belowC uint32, timeout time.Duration) (time.Duration, bool, error) {
	start := a.clock.Now()
	rec := CoolDownRecord{BelowC: belowC}
	finish := func(reached bool, note string) (time.Duration, bool, error) {
		waited := a.clock.Now().Sub(start)
		rec.WaitedS, rec.Reached, rec.Note = round3(waited.Seconds()), reached, note
		a.mu.Lock()
		a.coolDowns = append(a.coolDowns, rec)
		a.mu.Unlock()
		return waited, reached, nil
	}
	check := func() (cool, known bool) {
		a.mu.Lock()
		defer a.mu.Unlock()
		cool = true
		for _, ss := range a.samples {
			t, ok := latestTemp(ss)
			if !ok {
				continue
			}
			known = true
			if t >= belowC {
				cool = false
			}
		}
		return cool, known
	}
	if cool, known := check(); !known {
		return finish(false, "no device reports its temperature")
	} else if cool {
		return finish(true, "")
	}
	poll := a.interval
	if poll <= 0 {
		poll = time.Second
	}
	t := a.clock.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return a.clock.Now().Sub(start), false, fmt.Errorf("gpumon: waiting for the GPUs to cool below %d °C: %w", belowC, ctx.Err())
		case <-t.C():
			if cool, _ := check(); cool {
				return finish(true, "")
			}
			if a.clock.Now().Sub(start) >= timeout {
				return finish(false, fmt.Sprintf("still at or above %d °C after %v", belowC, timeout))
			}
		}
	}
}

// latestTemp is the temperature of the newest sample that has one.
func latestTemp(ss []Sample) (uint32, bool) {
	var best *Sample
	for i := range ss {
		s := &ss[i]
		if s.TempC != nil && (best == nil || s.T.After(best.T)) {
			best = s
		}
	}
	if best == nil {
		return 0, false
	}
	return *best.TempC, true
}
