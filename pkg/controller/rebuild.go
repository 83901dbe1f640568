package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/draftbench/draftbench/pkg/gpumon"
	"github.com/draftbench/draftbench/pkg/jobrun"
	"github.com/draftbench/draftbench/pkg/metrics"
)

// GPUSamples reads the workers' GPU samples kept outside the controller (the GPU stream,
// jobstore.Store.GPUSamples): those that arrived from since on and were taken no later than
// until.
type GPUSamples func(ctx context.Context, since, until time.Time) ([]gpumon.Sample, error)

// RebuildGPU is the jobrun.RebuildOptions.GPU of a controller restarted after a crash. It
// builds the aggregator the job's monitor had from the setup the job kept, gives it the
// phase marks the job kept and the samples read returns from when the monitor started to
// until, and returns its GPU section and power series, with warnings saying what they cover
// and what they lack.
func RebuildGPU(ctx context.Context, read GPUSamples) func(*jobrun.Kept, time.Time, map[metrics.Mode]int) jobrun.RebuiltGPU {
	return func(k *jobrun.Kept, until time.Time, out map[metrics.Mode]int) jobrun.RebuiltGPU {
		if !k.Spec.GPUMonitor.Enabled {
			return jobrun.RebuiltGPU{Section: gpumon.Unavailable(gpuDisabled)}
		}
		missing := func(why string) jobrun.RebuiltGPU {
			why = "the results were written after the controller stopped, and " + why
			return jobrun.RebuiltGPU{Section: gpumon.Unavailable(why), Warnings: []string{"the GPU monitor's readings are not in these results: " + why}}
		}
		if len(k.GPU) == 0 {
			return missing("the run kept no GPU monitor setup to rebuild its readings with")
		}
		var setup gpuSetup
		if err := json.Unmarshal(k.GPU, &setup); err != nil {
			return missing("the GPU monitor setup the run kept does not decode: " + err.Error())
		}
		if read == nil {
			return missing("there is no GPU samples stream to read its readings from")
		}
		samples, err := read(ctx, setup.Since, until)
		if err != nil {
			return missing("the GPU samples could not be read: " + err.Error())
		}
		agg := setup.aggregator()
		for _, s := range samples {
			agg.Add(s)
		}
		for _, m := range k.Marks {
			agg.Mark(gpumon.Phase(m.Phase), m.T)
		}
		tokens := map[gpumon.Phase]int{}
		for m, n := range out {
			tokens[gpumon.Phase(m)] = n
		}
		res := agg.Result(tokens)
		window := fmt.Sprintf("from %s (when the job's monitor started) to %s (the job's last finished request or phase mark)",
			stamp(setup.Since), stamp(until))
		if !res.Available {
			if len(setup.Unavailable) > 0 {
				return jobrun.RebuiltGPU{Section: res} // the hosts' reasons, as the run would have said
			}
			return missing("the GPU samples stream holds no sample " + window)
		}
		return jobrun.RebuiltGPU{Section: res, Power: powerSeries(agg), Warnings: rebuiltCover(k, setup, len(samples), window)}
	}
}

// rebuiltCover says what a rebuilt GPU section covers and how it differs from what the run
// would have written.
func rebuiltCover(k *jobrun.Kept, setup gpuSetup, samples int, window string) []string {
	var marks []string
	for _, m := range k.Marks {
		marks = append(marks, m.Phase+" from "+stamp(m.T))
	}
	phases := "no phase mark was kept, so every sample counts as idle"
	if len(marks) > 0 {
		phases = "the phases are cut at the marks the run kept (" + strings.Join(marks, ", ") + ")"
	}
	w := fmt.Sprintf("the GPU figures were rebuilt after the controller stopped from the %d samples the GPU stream kept %s; %s; "+
		"what the GPUs did after that time, for the requests in flight at the crash included, is not in them, and "+
		"joules_per_output_token divides a mode's energy up to then by the output tokens of its finished requests only", samples, window, phases)
	out := []string{w}
	if setup.EdgeReads {
		out = append(out, "the rebuilt GPU figures lack the energy readings the run took at each phase mark: a sampling interval "+
			"that spans a mark is shared between its phases in proportion to time, and a phase shorter than the interval may have no energy")
	}
	if k.Spec.GPUMonitor.CooldownBelowC > 0 {
		out = append(out, "the rebuilt GPU figures do not list the cool-down waits (cool_downs): only the running controller knew them")
	}
	return out
}

// stamp writes t in the results' time format, to the millisecond.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }
