package main

import (
	"context"
	"encoding/json"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/gpumon"
	"github.com/draftbench/draftbench/pkg/protocol"
)

// startGPUMonitor samples this worker's GPUs through NVML every interval and
// publishes each sample on <prefix>.gpu.<host>.<device> until ctx ends. It
// returns "" when sampling runs, else why it does not (for the registration).
func startGPUMonitor(ctx context.Context, nc *nats.Conn, subj protocol.Subjects, host string, devices []protocol.Device,
	interval time.Duration, log hclog.Logger) string {
	var gpus []int
	for _, d := range devices {
		if d.Kind == protocol.DeviceGPU {
			gpus = append(gpus, d.Index)
		}
	}
	if len(gpus) == 0 {
		return "worker " + host + " offers CPU devices only: no GPU to monitor"
	}
	mon, err := gpumon.OpenNVML(gpus, gpumon.WithHost(host), gpumon.WithLogger(log))
	if err != nil {
		return "NVML on " + host + ": " + err.Error()
	}
	if !mon.Available() {
		return mon.Reason()
	}
	go func() {
		defer mon.Close()
		err := mon.Run(ctx, interval, func(s gpumon.Sample) {
			data, err := json.Marshal(s)
			if err != nil {
				return
			}
			if err := nc.Publish(subj.GPU(host, s.Device), data); err != nil {
				log.Debug("publishing a GPU sample", "error", err)
			}
		})
		if err != nil && ctx.Err() == nil {
			log.Warn("GPU monitor stopped", "error", err)
		}
	}()
	log.Info("GPU monitor running", "devices", gpus, "interval", interval)
	return ""
}
