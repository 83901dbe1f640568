package agent

import (
	"fmt"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/gpumon"
	"github.com/draftbench/draftbench/pkg/protocol"
)

// EnergyReader reads the energy counter and the power of a host's monitored GPUs at once;
// *gpumon.Monitor is one.
type EnergyReader interface {
	SweepEnergy() ([]gpumon.Sample, error)
}

var _ EnergyReader = (*gpumon.Monitor)(nil)

// ServeGPUReads answers GPURead requests on worker's WorkerGPURead subject with a reading of
// mon taken when the request arrives. The controller asks at every phase change: the periodic
// samples leave a phase shorter than their interval with one reading or none, and only this
// host can read its GPUs' counters. The caller unsubscribes before it closes mon.
func ServeGPUReads(nc *nats.Conn, subj protocol.Subjects, worker string, mon EnergyReader, log hclog.Logger) (*nats.Subscription, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	subject := subj.WorkerGPURead(worker)
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		reply := &protocol.GPUReadReply{}
		if err := protocol.Decode(m.Data, &protocol.GPURead{}); err != nil {
			reply.Error = err.Error()
		} else if ss, err := mon.SweepEnergy(); err != nil {
			reply.Error = err.Error()
		} else {
			reply.Samples = ss
		}
		data, err := protocol.Encode(reply)
		if err != nil {
			data, _ = protocol.Encode(&protocol.GPUReadReply{Error: err.Error()})
		}
		if err := m.Respond(data); err != nil {
			log.Debug("answering a GPU read", "subject", subject, "error", err)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("agent: subscribing to %s: %w", subject, err)
	}
	return sub, nil
}
