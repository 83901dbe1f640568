package gpumon

import (
	"context"
	"fmt"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Sample is one reading of one device, as workers publish it on draftbench.gpu.<host>.<device>.
// A reading the device does not support, or that failed, is nil and left out of the JSON: an
// absent temperature is not a temperature of 0.
type Sample struct {
	Host   string    `json:"host"`
	Device int       `json:"device"` // NVML index on the host
	UUID   string    `json:"uuid"`
	Name   string    `json:"name,omitempty"`
	T      time.Time `json:"t"`

	PowerW        *float64 `json:"power_w,omitempty"`
	EnergyMJ      *uint64  `json:"energy_mj,omitempty"` // total-energy counter, mJ since the driver loaded
	GPUUtil       *uint32  `json:"gpu_util_pct,omitempty"`
	MemUtil       *uint32  `json:"mem_util_pct,omitempty"` // memory controller busy, not memory used
	MemUsedBytes  *uint64  `json:"mem_used_bytes,omitempty"`
	MemTotalBytes *uint64  `json:"mem_total_bytes,omitempty"`
	TempC         *uint32  `json:"temp_c,omitempty"`
	SMClockMHz    *uint32  `json:"sm_clock_mhz,omitempty"`
	Throttle      *uint64  `json:"throttle_reasons,omitempty"` // nvmlClocksEventReason bit mask
}

// Sweep reads every device once.
func (m *Monitor) Sweep() ([]Sample, error) { return m.sweep(true) }

// SweepEnergy reads only the energy counter and the power of every device: what the edge of a
// phase needs, read close to its timestamp and without the calls that do not bear on energy.
func (m *Monitor) SweepEnergy() ([]Sample, error) { return m.sweep(false) }

// sweep reads every device; all false reads the energy counter and power only.
func (m *Monitor) sweep(all bool) ([]Sample, error) {
	if !m.Available() {
		return nil, fmt.Errorf("gpumon: sampling %s: %w: %s", m.host, ErrUnavailable, m.reason)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("gpumon: sampling %s: the monitor is closed", m.host)
	}
	out := make([]Sample, len(m.gpus))
	for i, g := range m.gpus {
		out[i] = m.read(g, all)
	}
	return out, nil
}

// SetInterval makes a running Run sample every d from now on (d <= 0: Run's own interval
// again): a job asks for its gpu_monitor interval on the workers that run its stages. The
// latest call wins; it never blocks.
func (m *Monitor) SetInterval(d time.Duration) {
	for {
		select {
		case m.intervals <- d:
			return
		default:
		}
		select { // replace a value Run has not taken yet
		case <-m.intervals:
		default:
		}
	}
}

// Run samples every device at once and then at each tick of interval (or of the interval
// SetInterval gives), handing each sample to fn, until ctx is done; it then returns nil. fn
// runs on Run's goroutine.
func (m *Monitor) Run(ctx context.Context, interval time.Duration, fn func(Sample)) error {
	if interval <= 0 {
		return fmt.Errorf("gpumon: sampling interval %v on %s: must be positive", interval, m.host)
	}
	base, current := interval, interval
	emit := func() error {
		samples, err := m.Sweep()
		if err != nil {
			return err
		}
		for _, s := range samples {
			fn(s)
		}
		return nil
	}
	if err := emit(); err != nil {
		return err
	}
	t := m.clock.NewTicker(interval)
	defer func() { t.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case d := <-m.intervals:
			if d <= 0 {
				d = base
			}
			if d != current {
				m.log.Info("sampling interval changed", "from", current, "to", d)
				t.Stop()
				t, current = m.clock.NewTicker(d), d
			}
		case <-t.C():
			if err := emit(); err != nil {
				return err
			}
		}
	}
}

// read takes one sample of g: every reading, or with all false the energy counter and power
// only. The caller holds m.mu (or owns m, during Open).
func (m *Monitor) read(g *gpu, all bool) Sample {
	s := Sample{Host: m.host, Device: g.info.Index, UUID: g.info.UUID, Name: g.info.Name, T: m.clock.Now()}
	// The energy counter goes first, nearest the timestamp, since energy deltas are what the
	// results rest on.
	if m.wants(g, fieldEnergy) {
		v, ret := g.h.GetTotalEnergyConsumption()
		if m.ok(g, fieldEnergy, ret) {
			s.EnergyMJ = &v
		}
	}
	if m.wants(g, fieldPower) {
		v, ret := g.h.GetPowerUsage()
		if m.ok(g, fieldPower, ret) {
			w := float64(v) / 1000 // NVML reports milliwatts
			s.PowerW = &w
		}
	}
	if !all {
		return s
	}
	if m.wants(g, fieldUtil) {
		v, ret := g.h.GetUtilizationRates()
		if m.ok(g, fieldUtil, ret) {
			s.GPUUtil, s.MemUtil = &v.Gpu, &v.Memory
		}
	}
	if m.wants(g, fieldMemory) {
		v, ret := g.h.GetMemoryInfo()
		if m.ok(g, fieldMemory, ret) {
			s.MemUsedBytes, s.MemTotalBytes = &v.Used, &v.Total
		}
	}
	if m.wants(g, fieldTemp) {
		v, ret := g.h.GetTemperature(nvml.TEMPERATURE_GPU)
		if m.ok(g, fieldTemp, ret) {
			s.TempC = &v
		}
	}
	if m.wants(g, fieldSMClock) {
		v, ret := g.h.GetClockInfo(nvml.CLOCK_SM)
		if m.ok(g, fieldSMClock, ret) {
			s.SMClockMHz = &v
		}
	}
	if m.wants(g, fieldThrottle) {
		read := g.h.GetCurrentClocksEventReasons
		if m.oldEvents {
			read = g.h.GetCurrentClocksThrottleReasons
		}
		v, ret := read()
		if m.ok(g, fieldThrottle, ret) {
			s.Throttle = &v
		}
	}
	return s
}

func (m *Monitor) wants(g *gpu, f field) bool { return !g.unsupported[f] }

// ok reports whether ret is a success. A reading the device does not support is never asked
// for again; any other failure leaves this sample's reading absent and is logged once.
func (m *Monitor) ok(g *gpu, f field, ret nvml.Return) bool {
	switch {
	case ret == nvml.SUCCESS:
		return true
	case ret == nvml.ERROR_NOT_SUPPORTED, ret == nvml.ERROR_FUNCTION_NOT_FOUND:
		g.unsupported[f] = true
		m.log.Debug("reading not supported", "device", g.info.Index, "reading", string(f))
		return false
	}
	key := string(f) + "/" + ret.Error()
	if !g.logged[key] {
		g.logged[key] = true
		m.log.Warn("GPU reading failed; left out of the samples", "device", g.info.Index, "reading", string(f), "error", ret.Error())
	}
	return false
}
