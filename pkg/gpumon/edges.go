package gpumon

import (
	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// DeviceRef names a device as the samples of its own host's monitor do: the host the worker
// reports and the NVML index it samples.
type DeviceRef struct {
	Host  string
	Index int
}

// EdgeSampler reads the energy counter and the power of monitored GPUs at the edges of the
// phases, for Aggregator.SampleAtMarks. The periodic samples alone cannot measure a phase
// shorter than the sampling interval: it may hold no sample at all, or the job may end with
// one. With a reading at each mark, every phase starts and ends on a counter reading.
//
// The workers sample their GPUs in their own processes; an EdgeSampler is this process's own
// view, through NVML, of those of the workers' GPUs that are attached to this machine (the
// controller and its worker on one host, as in `controller run`), found by UUID. Its samples
// carry the worker's host and device index, so they join that device's periodic samples.
type EdgeSampler struct {
	mon    *Monitor
	owners map[string]DeviceRef // by UUID
}

// OpenEdgeSamplerNVML opens this machine's NVIDIA driver library for an EdgeSampler; see
// OpenEdgeSampler.
func OpenEdgeSamplerNVML(owners map[string]DeviceRef, opts ...Option) (*EdgeSampler, error) {
	if len(owners) == 0 {
		return nil, nil
	}
	o := buildOptions(opts)
	var libOpts []nvml.LibraryOption
	if o.libPath != "" {
		libOpts = append(libOpts, nvml.WithLibraryPath(o.libPath))
	}
	return OpenEdgeSampler(nvml.New(libOpts...), owners, opts...)
}

// OpenEdgeSampler opens through lib the devices of owners (keyed by GPU UUID) that this
// machine has. It returns nil and no error when NVML does not start here or none of the
// devices is attached here: the aggregator then has the periodic samples only. An error means
// NVML started but the devices could not be listed.
func OpenEdgeSampler(lib Library, owners map[string]DeviceRef, opts ...Option) (*EdgeSampler, error) {
	if len(owners) == 0 {
		return nil, nil
	}
	m, err := open(lib, nil, func(uuid string) bool { _, ok := owners[uuid]; return ok }, opts)
	if err != nil {
		return nil, err
	}
	if !m.Available() {
		m.log.Debug("phase edges are not read here", "reason", m.Reason())
		return nil, nil
	}
	if len(m.gpus) == 0 {
		// Shutdown is best effort: there is nothing to read.
		_ = m.Close()
		return nil, nil
	}
	return &EdgeSampler{mon: m, owners: owners}, nil
}

// Devices lists the devices the sampler reads, as their workers name them.
func (e *EdgeSampler) Devices() []DeviceRef {
	out := make([]DeviceRef, len(e.mon.gpus))
	for i, g := range e.mon.gpus {
		out[i] = e.owners[g.info.UUID]
	}
	return out
}

// Sample reads the energy counter and power of every device once, keyed as its worker keys
// it. A failed sweep (NVML closed) gives no samples; the periodic ones remain.
func (e *EdgeSampler) Sample() []Sample {
	ss, err := e.mon.SweepEnergy()
	if err != nil {
		e.mon.log.Debug("no reading at a phase edge", "error", err)
		return nil
	}
	for i := range ss {
		ref := e.owners[ss[i].UUID]
		ss[i].Host, ss[i].Device = ref.Host, ref.Index
		// The workers' samples arrive through JSON, without a monotonic clock reading; these
		// drop theirs so that every sample of a device is ordered by the same (wall) clock.
		ss[i].T = ss[i].T.Round(0)
	}
	return ss
}

// Close shuts NVML down.
func (e *EdgeSampler) Close() error { return e.mon.Close() }
