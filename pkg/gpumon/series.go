package gpumon

import "time"

// PowerSeries is one device's power over the run. It has the fields of report.PowerSeries, so
// report.PowerSeries(s) converts it without this package importing the plotting code.
type PowerSeries struct {
	Device string    // "host/GPU 3"
	T      []float64 // seconds since the first sample of any device
	Watts  []float64
}

// PowerSeries returns the power readings of every device that gave any, in host and index
// order, on one time axis.
func (a *Aggregator) PowerSeries() []PowerSeries {
	a.mu.Lock()
	defer a.mu.Unlock()
	var start time.Time
	for _, ss := range a.samples {
		for _, s := range ss {
			if start.IsZero() || s.T.Before(start) {
				start = s.T
			}
		}
	}
	var out []PowerSeries
	for _, k := range a.sortedKeys() {
		ps := PowerSeries{Device: k.String()}
		for _, s := range dedupe(a.samples[k]) {
			if s.PowerW != nil {
				ps.T = append(ps.T, s.T.Sub(start).Seconds())
				ps.Watts = append(ps.Watts, *s.PowerW)
			}
		}
		if len(ps.T) > 0 {
			out = append(out, ps)
		}
	}
	return out
}
