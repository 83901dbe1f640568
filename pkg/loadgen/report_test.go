package loadgen

import (
	"testing"
	"time"
)

// TestScheduledRateOfACutRun: a rate-mode run cut short compares its sends
// with the arrival times of the part it sent, not with the whole schedule's
// rate (a Poisson prefix often runs below it, which read as the generator
// falling behind).
func TestScheduledRateOfACutRun(t *testing.T) {
	sched := make([]time.Duration, 40)
	for i := range sched {
		// The first ten arrive 100 ms apart, the rest 10 ms apart.
		if i < 10 {
			sched[i] = time.Duration(i) * 100 * time.Millisecond
		} else {
			sched[i] = 900*time.Millisecond + time.Duration(i-9)*10*time.Millisecond
		}
	}
	t0 := time.Unix(0, 0)
	ph := &phase{sched: sched, sent: 10, firstSend: t0, lastSend: t0.Add(900 * time.Millisecond)}
	var rep Report
	ph.fill(&rep, true)
	if rep.ScheduledRate < 9.99 || rep.ScheduledRate > 10.01 || rep.AchievedRate < 9.99 || rep.AchievedRate > 10.01 {
		t.Errorf("cut short after 10 sends: scheduled %.2f, achieved %.2f req/s; want both 10", rep.ScheduledRate, rep.AchievedRate)
	}
}
