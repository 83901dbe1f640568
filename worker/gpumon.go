package main

import (
	"context"
	"encoding/json"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/agent"
	"github.com/draftbench/draftbench/pkg/gpumon"
	"github.com/draftbench/draftbench/pkg/protocol"
)

// startGPUMonitor samples this worker's GPUs through NVML every interval and
// publishes each sample on <prefix>.gpu.<host>.<device> until ctx ends, and
// answers the controller's reads at phase changes on the worker's gpu_read
// subject. It returns "" when sampling runs, else why it does not (for the
// registration; the controller then asks for no reads), and the monitor's
// SetInterval (nil without a monitor), through which jobs set the interval.
func startGPUMonitor(ctx context.Context, nc *nats.Conn, subj protocol.Subjects, worker, host string, devices []protocol.Device,
	interval time.Duration, log hclog.Logger) (string, func(time.Duration)) {
	var gpus []int
	for _, d := range devices {
		if d.Kind == protocol.DeviceGPU {
			gpus = append(gpus, d.Index)
		}
	}
	if len(gpus) == 0 {
		return "worker " + host + " offers CPU devices only: no GPU to monitor", nil
	}
	mon, err := gpumon.OpenNVML(gpus, gpumon.WithHost(host), gpumon.WithLogger(log))
	if err != nil {
		return "NVML on " + host + ": " + err.Error(), nil
	}
	if !mon.Available() {
		return mon.Reason(), nil
	}
	// Without the reads a mode shorter than the interval has the periodic
	// samples only, as before them: a failed subscription is no reason to
	// stop sampling.
	reads, err := agent.ServeGPUReads(nc, subj, worker, mon, log)
	if err != nil {
		log.Warn("phase-edge GPU reads are not answered", "error", err)
	}
	go func() {
		defer mon.Close()
		if reads != nil {
			// Deferred after Close, so it runs first; a read already being
			// answered then gets the closed monitor's error.
			defer func() { _ = reads.Unsubscribe() }()
		}
		err := mon.Run(ctx, interval, func(s gpumon.Sample) {
			data, err := json.Marshal(s)
			if err != nil {
				return
			}
			if err := nc.PublishMsg(protocol.RecordMsg(subj.GPU(host, s.Device), data)); err != nil {
				log.Debug("publishing a GPU sample", "error", err)
			}
		})
		if err != nil && ctx.Err() == nil {
			log.Warn("GPU monitor stopped", "error", err)
		}
	}()
	log.Info("GPU monitor running", "devices", gpus, "interval", interval)
	return "", mon.SetInterval
}
