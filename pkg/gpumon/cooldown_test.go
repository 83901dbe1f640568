package gpumon

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
)

func tempSample(dev int, tick int, temp *uint32) Sample {
	return Sample{Host: "node-a", Device: dev, UUID: "GPU-x", T: at(tick), TempC: temp}
}

func TestCoolDown(t *testing.T) {
	tests := []struct {
		name string
		// before holds the samples known when the wait starts; during[k] arrives before tick k+1.
		before      []Sample
		during      [][]Sample
		timeout     time.Duration
		wantWaited  time.Duration
		wantReached bool
		wantNote    string
	}{
		{
			name:        "already cool",
			before:      []Sample{tempSample(0, 0, ptr(uint32(40))), tempSample(1, 0, ptr(uint32(41)))},
			timeout:     time.Minute,
			wantReached: true,
		},
		{
			name:   "cools after three ticks; a device without a sensor is not waited for",
			before: []Sample{tempSample(0, 0, ptr(uint32(70))), tempSample(1, 0, ptr(uint32(60))), tempSample(2, 0, nil)},
			during: [][]Sample{
				{tempSample(0, 1, ptr(uint32(60))), tempSample(1, 1, ptr(uint32(44)))},
				{tempSample(0, 2, ptr(uint32(50)))},
				{tempSample(0, 3, ptr(uint32(44)))},
			},
			timeout:     time.Minute,
			wantWaited:  3 * step,
			wantReached: true,
		},
		{
			name:        "still hot at the timeout",
			before:      []Sample{tempSample(0, 0, ptr(uint32(80)))},
			during:      [][]Sample{{tempSample(0, 1, ptr(uint32(79)))}, {tempSample(0, 2, ptr(uint32(78)))}},
			timeout:     2 * step,
			wantWaited:  2 * step,
			wantReached: false,
			wantNote:    "still at or above 45 °C after 2s",
		},
		{
			name:        "no temperature readings",
			before:      []Sample{tempSample(0, 0, nil)},
			timeout:     time.Minute,
			wantReached: false,
			wantNote:    "no device reports its temperature",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock(at(0))
			agg := NewAggregator(step, WithClock(clk))
			for _, s := range tt.before {
				agg.Add(s)
			}
			type outcome struct {
				waited  time.Duration
				reached bool
				err     error
			}
			done := make(chan outcome, 1)
			go func() {
				w, r, err := agg.CoolDown(context.Background(), 45, tt.timeout)
				done <- outcome{w, r, err}
			}()
			var got outcome
			finished := false
			if len(tt.during) > 0 {
				select {
				case tk := <-clk.tickers:
					for k, batch := range tt.during {
						select {
						case <-tk.ready:
						case got = <-done:
							finished = true
						}
						if finished {
							break
						}
						for _, s := range batch {
							agg.Add(s)
						}
						clk.Set(at(k + 1))
						tk.ch <- at(k + 1)
					}
				case got = <-done:
					finished = true
				}
			}
			if !finished {
				got = <-done
			}
			if got.err != nil || got.waited != tt.wantWaited || got.reached != tt.wantReached {
				t.Errorf("CoolDown = %v, %v, %v; want %v, %v, nil", got.waited, got.reached, got.err, tt.wantWaited, tt.wantReached)
			}
			res := agg.Result(nil)
			want := []CoolDownRecord{{BelowC: 45, WaitedS: tt.wantWaited.Seconds(), Reached: tt.wantReached, Note: tt.wantNote}}
			if !reflect.DeepEqual(res.CoolDowns, want) {
				t.Errorf("recorded cool-downs = %+v, want %+v", res.CoolDowns, want)
			}
		})
	}
}

func TestCoolDownCancelled(t *testing.T) {
	clk := newFakeClock(at(0))
	agg := NewAggregator(step, WithClock(clk))
	agg.Add(tempSample(0, 0, ptr(uint32(90))))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := agg.CoolDown(ctx, 45, time.Hour)
		done <- err
	}()
	<-clk.tickers // the wait has started
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("CoolDown error = %v, want context.Canceled", err)
	}
	if res := agg.Result(nil); len(res.CoolDowns) != 0 {
		t.Errorf("a cancelled wait was recorded: %+v", res.CoolDowns)
	}
}
