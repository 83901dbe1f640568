// Package gpumon measures what the GPUs spend during a benchmark: a sampler that reads power,
// the driver's total-energy counter, utilisation, memory, temperature, SM clock and throttle
// reasons through NVML on each host, and an aggregator in the controller that attributes the
// energy to device roles (target, drafter) and to the mode phases (speculative, target AR), and
// writes the GPU results of DESIGN §7.
//
// Without an NVIDIA driver (a CPU run, CI) nothing fails: the monitor reports itself
// unavailable with the reason, and the results say {"available": false, "reason": ...}.
package gpumon

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/hashicorp/go-hclog"
)

// ErrUnavailable is returned by Run and Sweep when NVML could not be initialised.
var ErrUnavailable = errors.New("GPU monitor unavailable")

// defaultLibrary is the file go-nvml opens when no path is given.
const defaultLibrary = "libnvidia-ml.so.1"

// Library is the part of NVML the monitor needs. nvml.New() and go-nvml's mock servers
// (github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100) satisfy it.
type Library interface {
	Init() nvml.Return
	Shutdown() nvml.Return
	DeviceGetCount() (int, nvml.Return)
	DeviceGetHandleByIndex(index int) (nvml.Device, nvml.Return)
	Extensions() nvml.ExtendedInterface
}

var _ Library = nvml.Interface(nil)

// device is the part of an NVML device handle the sampler reads.
type device interface {
	GetUUID() (string, nvml.Return)
	GetName() (string, nvml.Return)
	GetPowerUsage() (uint32, nvml.Return)
	GetTotalEnergyConsumption() (uint64, nvml.Return)
	GetUtilizationRates() (nvml.Utilization, nvml.Return)
	GetMemoryInfo() (nvml.Memory, nvml.Return)
	GetTemperature(sensor nvml.TemperatureSensors) (uint32, nvml.Return)
	GetClockInfo(clock nvml.ClockType) (uint32, nvml.Return)
	GetCurrentClocksEventReasons() (uint64, nvml.Return)
	GetCurrentClocksThrottleReasons() (uint64, nvml.Return)
}

var _ device = nvml.Device(nil)

// EnergyMethod says how a device's energy was measured.
type EnergyMethod string

const (
	// EnergyCounter: deltas of NVML's total-energy counter (Volta and later).
	EnergyCounter EnergyMethod = "counter"
	// EnergyPowerIntegral: the trapezoid integral of the power readings, for devices whose
	// counter is not supported.
	EnergyPowerIntegral EnergyMethod = "power_integral"
)

const (
	// eventReasonsSymbol exists from driver 535 on; older drivers only have the
	// throttle-reasons call.
	eventReasonsSymbol = "nvmlDeviceGetCurrentClocksEventReasons"
	// temperatureSymbol is deprecated from NVML 13 on; a driver that drops it leaves the
	// temperature absent.
	temperatureSymbol = "nvmlDeviceGetTemperature"
)

// Option configures a Monitor or an Aggregator.
type Option func(*options)

type options struct {
	host    string
	clock   Clock
	logger  hclog.Logger
	libPath string
}

// WithHost names the host in samples (default: os.Hostname()).
func WithHost(host string) Option { return func(o *options) { o.host = host } }

// WithClock replaces the wall clock (tests).
func WithClock(c Clock) Option { return func(o *options) { o.clock = c } }

// WithLogger sets the logger (default: none).
func WithLogger(l hclog.Logger) Option { return func(o *options) { o.logger = l } }

// WithLibraryPath makes OpenNVML load NVML from path instead of libnvidia-ml.so.1.
func WithLibraryPath(path string) Option { return func(o *options) { o.libPath = path } }

func buildOptions(opts []Option) options {
	o := options{clock: realClock{}, logger: hclog.NewNullLogger()}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// DeviceInfo is what the monitor learnt about one device when it opened it.
type DeviceInfo struct {
	Index         int          `json:"index"`
	UUID          string       `json:"uuid"`
	Name          string       `json:"name"`
	MemTotalBytes uint64       `json:"mem_total_bytes,omitempty"`
	EnergyMethod  EnergyMethod `json:"energy_method"`
}

// field names a reading, for the unsupported set and the logs.
type field string

const (
	fieldPower    field = "power"
	fieldEnergy   field = "energy"
	fieldUtil     field = "utilization"
	fieldMemory   field = "memory"
	fieldTemp     field = "temperature"
	fieldSMClock  field = "sm_clock"
	fieldThrottle field = "throttle_reasons"
)

// gpu is one opened device and what it does not support.
type gpu struct {
	info        DeviceInfo
	h           device
	unsupported map[field]bool
	// logged holds the (field, return code) pairs already logged, so a failing reading is
	// logged once rather than at every tick.
	logged map[string]bool
}

// Monitor samples the GPUs of one host. The zero value is not usable; call Open or OpenNVML.
type Monitor struct {
	mu        sync.Mutex
	lib       Library
	host      string
	clock     Clock
	log       hclog.Logger
	reason    string // non-empty when unavailable
	gpus      []*gpu
	oldEvents bool // use GetCurrentClocksThrottleReasons
	closed    bool
	// intervals carries SetInterval's latest value to Run.
	intervals chan time.Duration
}

// OpenNVML opens the host's NVIDIA driver library (nvml.New()). Without a driver the monitor is
// unavailable with the reason; it never panics.
func OpenNVML(devices []int, opts ...Option) (*Monitor, error) {
	o := buildOptions(opts)
	var libOpts []nvml.LibraryOption
	if o.libPath != "" {
		libOpts = append(libOpts, nvml.WithLibraryPath(o.libPath))
	}
	return Open(nvml.New(libOpts...), devices, opts...)
}

// Open initialises lib and opens the devices with the given NVML indices (all devices when
// devices is empty). When Init fails the returned Monitor is unavailable (Available false,
// Reason says why) and the error is nil: a host without a driver still runs the benchmark.
// An error means a request that cannot be met, such as a device index the driver does not have.
func Open(lib Library, devices []int, opts ...Option) (*Monitor, error) {
	return open(lib, devices, nil, opts)
}

// open is Open; keep, when not nil, leaves out (before probing them) the devices whose UUID
// it rejects.
func open(lib Library, devices []int, keep func(uuid string) bool, opts []Option) (*Monitor, error) {
	o := buildOptions(opts)
	if o.host == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("gpumon: naming the host: %w", err)
		}
		o.host = h
	}
	m := &Monitor{lib: lib, host: o.host, clock: o.clock, log: o.logger, intervals: make(chan time.Duration, 1)}
	libName := o.libPath
	if libName == "" {
		libName = defaultLibrary
	}
	if ret := lib.Init(); ret != nvml.SUCCESS {
		m.reason = initFailure(ret, libName)
		m.log.Info("GPU monitor unavailable", "reason", m.reason)
		return m, nil
	}
	if err := m.openDevices(devices, keep); err != nil {
		// Shutdown is best effort: the error that matters is the one being returned.
		_ = lib.Shutdown()
		return nil, err
	}
	return m, nil
}

// initFailure words why NVML did not start.
func initFailure(ret nvml.Return, libName string) string {
	switch ret {
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return fmt.Sprintf("NVML: %s not found (is the NVIDIA driver installed?)", libName)
	case nvml.ERROR_DRIVER_NOT_LOADED:
		return "NVML: the NVIDIA driver is not loaded"
	case nvml.ERROR_NO_PERMISSION:
		return "NVML: no permission to open the GPUs"
	case nvml.ERROR_LIB_RM_VERSION_MISMATCH:
		return "NVML: the driver library and the kernel module versions differ (reboot or reload the driver)"
	default:
		return fmt.Sprintf("NVML: Init failed: %s", ret.Error())
	}
}

func (m *Monitor) openDevices(indices []int, keep func(uuid string) bool) error {
	count, ret := m.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return fmt.Errorf("gpumon: counting the devices of %s: %w", m.host, ret)
	}
	if len(indices) == 0 {
		for i := range count {
			indices = append(indices, i)
		}
	}
	// Calling a function the installed driver lacks crashes the process through go-nvml, so
	// the calls that come and go between driver versions are looked up first.
	ext := m.lib.Extensions()
	missing := func(symbol string) bool { return ext != nil && ext.LookupSymbol(symbol) != nil }
	m.oldEvents = missing(eventReasonsSymbol)
	noTemp := missing(temperatureSymbol)
	seen := map[int]bool{}
	for _, idx := range indices {
		if idx < 0 || idx >= count {
			return fmt.Errorf("gpumon: device %d of %s: NVML reports %d devices (0-%d)", idx, m.host, count, count-1)
		}
		if seen[idx] {
			return fmt.Errorf("gpumon: device %d of %s is listed twice", idx, m.host)
		}
		seen[idx] = true
		h, ret := m.lib.DeviceGetHandleByIndex(idx)
		if ret != nvml.SUCCESS {
			return fmt.Errorf("gpumon: opening device %d of %s: %w", idx, m.host, ret)
		}
		g := &gpu{info: DeviceInfo{Index: idx}, h: h, unsupported: map[field]bool{fieldTemp: noTemp}, logged: map[string]bool{}}
		if g.info.UUID, ret = h.GetUUID(); ret != nvml.SUCCESS {
			return fmt.Errorf("gpumon: reading the UUID of device %d of %s: %w", idx, m.host, ret)
		}
		if keep != nil && !keep(g.info.UUID) {
			continue
		}
		if g.info.Name, ret = h.GetName(); ret != nvml.SUCCESS {
			m.log.Warn("cannot read the device name", "device", idx, "error", ret.Error())
		}
		m.probe(g)
		m.gpus = append(m.gpus, g)
	}
	return nil
}

// probe reads every field once so that readings the device does not support are never asked
// for again, and so the energy method is known before the first sample.
func (m *Monitor) probe(g *gpu) {
	m.read(g, true)
	g.info.EnergyMethod = EnergyCounter
	if g.unsupported[fieldEnergy] {
		g.info.EnergyMethod = EnergyPowerIntegral
	}
	if mem, ret := g.h.GetMemoryInfo(); ret == nvml.SUCCESS {
		g.info.MemTotalBytes = mem.Total
	}
}

// Available reports whether NVML started.
func (m *Monitor) Available() bool { return m.reason == "" }

// Reason says why the monitor is unavailable; empty when it is available.
func (m *Monitor) Reason() string { return m.reason }

// Host is the host name the samples carry.
func (m *Monitor) Host() string { return m.host }

// Devices lists the opened devices in the order they were asked for.
func (m *Monitor) Devices() []DeviceInfo {
	out := make([]DeviceInfo, len(m.gpus))
	for i, g := range m.gpus {
		out[i] = g.info
	}
	return out
}

// Close shuts NVML down. It is a no-op on an unavailable monitor.
func (m *Monitor) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.Available() || m.closed {
		return nil
	}
	m.closed = true
	if ret := m.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("gpumon: shutting NVML down on %s: %w", m.host, ret)
	}
	return nil
}
