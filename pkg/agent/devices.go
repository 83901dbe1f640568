package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/hashicorp/go-hclog"

	"github.com/draftbench/draftbench/pkg/protocol"
)

// NVML is the part of the NVIDIA management library that device discovery
// needs. nvml.New() and go-nvml's mock servers satisfy it.
type NVML interface {
	Init() nvml.Return
	Shutdown() nvml.Return
	DeviceGetCount() (int, nvml.Return)
	DeviceGetHandleByIndex(index int) (nvml.Device, nvml.Return)
}

var _ NVML = nvml.Interface(nil)

// DefaultMeminfo is where the host's memory is read on Linux.
const DefaultMeminfo = "/proc/meminfo"

// DeviceOptions say which devices a worker offers.
type DeviceOptions struct {
	// CPUDevices, when positive, offers that many CPU devices and ignores
	// the GPUs: the host's memory is split evenly between them.
	CPUDevices int
	// Devices is the --devices list: NVML indexes ("0,1") or GPU UUIDs. It
	// takes precedence over CUDAVisibleDevices.
	Devices string
	// CUDAVisibleDevices is the agent's CUDA_VISIBLE_DEVICES, read the same
	// way as Devices. Empty means every GPU.
	CUDAVisibleDevices string
	// NVML is the library to ask (nil: nvml.New(), the host's driver).
	NVML NVML
	// Meminfo is the file holding MemTotal (empty: DefaultMeminfo).
	Meminfo string
	Logger  hclog.Logger // nil: discarded
}

// Discover lists the devices this worker offers: the NVIDIA GPUs NVML
// reports, narrowed by Devices or CUDA_VISIBLE_DEVICES, or CPU devices.
// Without a driver (or without GPUs) it offers one CPU device and logs why,
// unless a GPU list was asked for explicitly, which is then an error.
func Discover(opts DeviceOptions) ([]protocol.Device, error) {
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if opts.CPUDevices < 0 {
		return nil, fmt.Errorf("--cpu-devices %d is negative", opts.CPUDevices)
	}
	if opts.CPUDevices > 0 {
		if opts.Devices != "" {
			return nil, errors.New("give --devices or --cpu-devices, not both")
		}
		return cpuDevices(opts.CPUDevices, opts.Meminfo)
	}
	lib := opts.NVML
	if lib == nil {
		lib = nvml.New()
	}
	gpus, reason, err := listGPUs(lib)
	if err != nil {
		return nil, err
	}
	filter, source := opts.Devices, "--devices"
	if filter == "" {
		filter, source = opts.CUDAVisibleDevices, "CUDA_VISIBLE_DEVICES"
	}
	if len(gpus) == 0 {
		if opts.Devices != "" {
			return nil, fmt.Errorf("--devices %s: this host has no NVIDIA GPUs (%s); use --cpu-devices N for a CPU worker", opts.Devices, reason)
		}
		log.Info("no GPUs; offering one CPU device", "reason", reason)
		return cpuDevices(1, opts.Meminfo)
	}
	if filter != "" {
		if gpus, err = selectGPUs(gpus, filter); err != nil {
			return nil, fmt.Errorf("%s %q: %w", source, filter, err)
		}
	}
	return gpus, nil
}

// listGPUs asks NVML for every GPU. A library that does not start is not an
// error: the host has no usable GPUs, and reason says why.
func listGPUs(lib NVML) (gpus []protocol.Device, reason string, err error) {
	if ret := lib.Init(); ret != nvml.SUCCESS {
		switch ret {
		case nvml.ERROR_LIBRARY_NOT_FOUND:
			return nil, "NVML: libnvidia-ml.so.1 not found (is the NVIDIA driver installed?)", nil
		case nvml.ERROR_DRIVER_NOT_LOADED:
			return nil, "NVML: the NVIDIA driver is not loaded", nil
		}
		return nil, "NVML: " + ret.Error(), nil
	}
	// Shutdown only balances Init; the devices are already read.
	defer lib.Shutdown()
	count, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, "", fmt.Errorf("counting GPUs with NVML: %s", ret.Error())
	}
	if count == 0 {
		return nil, "NVML reports no GPUs", nil
	}
	for i := range count {
		d, err := readGPU(lib, i)
		if err != nil {
			return nil, "", err
		}
		gpus = append(gpus, d)
	}
	return gpus, "", nil
}

func readGPU(lib NVML, i int) (protocol.Device, error) {
	h, ret := lib.DeviceGetHandleByIndex(i)
	if ret != nvml.SUCCESS {
		return protocol.Device{}, fmt.Errorf("opening GPU %d with NVML: %s", i, ret.Error())
	}
	d := protocol.Device{Index: i, Kind: protocol.DeviceGPU}
	if d.UUID, ret = h.GetUUID(); ret != nvml.SUCCESS {
		return d, fmt.Errorf("reading the UUID of GPU %d: %s", i, ret.Error())
	}
	if d.Name, ret = h.GetName(); ret != nvml.SUCCESS {
		return d, fmt.Errorf("reading the name of GPU %d: %s", i, ret.Error())
	}
	mem, ret := h.GetMemoryInfo()
	if ret != nvml.SUCCESS {
		return d, fmt.Errorf("reading the memory of GPU %d: %s", i, ret.Error())
	}
	d.MemoryBytes = int64(mem.Total)
	return d, nil
}

// selectGPUs keeps the GPUs a CUDA_VISIBLE_DEVICES-style list names, in the
// list's order. Numbers are NVML indexes (CUDA ordinals when
// CUDA_DEVICE_ORDER=PCI_BUS_ID); other entries are UUIDs or UUID prefixes
// ("GPU-8f3a"), as CUDA accepts them.
func selectGPUs(gpus []protocol.Device, list string) ([]protocol.Device, error) {
	var out []protocol.Device
	for _, entry := range strings.Split(list, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			return nil, errors.New("empty entry")
		}
		var match []protocol.Device
		if n, err := strconv.Atoi(entry); err == nil {
			if n < 0 || n >= len(gpus) {
				return nil, fmt.Errorf("GPU %d does not exist (this host has GPUs 0-%d)", n, len(gpus)-1)
			}
			match = gpus[n : n+1]
		} else {
			for _, g := range gpus {
				if strings.HasPrefix(g.UUID, entry) {
					match = append(match, g)
				}
			}
			switch len(match) {
			case 0:
				return nil, fmt.Errorf("no GPU has a UUID starting with %q", entry)
			case 1:
			default:
				return nil, fmt.Errorf("%q names %d GPUs; give more of the UUID", entry, len(match))
			}
		}
		if slices.ContainsFunc(out, func(d protocol.Device) bool { return d.Index == match[0].Index }) {
			return nil, fmt.Errorf("GPU %d is listed twice", match[0].Index)
		}
		out = append(out, match[0])
	}
	return out, nil
}

// cpuDevices offers n CPU devices sharing the host's memory evenly.
func cpuDevices(n int, meminfo string) ([]protocol.Device, error) {
	if meminfo == "" {
		meminfo = DefaultMeminfo
	}
	f, err := os.Open(meminfo)
	if err != nil {
		return nil, fmt.Errorf("reading the host's memory: %w", err)
	}
	defer f.Close()
	total, err := MemTotal(f)
	if err != nil {
		return nil, fmt.Errorf("reading the host's memory from %s: %w", meminfo, err)
	}
	return CPUDevices(n, total), nil
}

// CPUDevices returns n CPU devices, each with an equal share of memBytes.
func CPUDevices(n int, memBytes int64) []protocol.Device {
	devs := make([]protocol.Device, n)
	for i := range devs {
		devs[i] = protocol.Device{Index: i, Name: fmt.Sprintf("cpu%d", i), MemoryBytes: memBytes / int64(n), Kind: protocol.DeviceCPU}
	}
	return devs
}

// MemTotal reads the MemTotal line of a /proc/meminfo file, in bytes.
func MemTotal(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || key != "MemTotal" {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("MemTotal line %q: want \"MemTotal: N kB\"", sc.Text())
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil || kb <= 0 {
			return 0, fmt.Errorf("MemTotal line %q: %q is not a positive number", sc.Text(), fields[0])
		}
		return kb * 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no MemTotal line")
}

// visibleDevices is the CUDA_VISIBLE_DEVICES value that shows a stage the
// GPUs among devs and nothing else. UUIDs are used when known: NVML numbers
// GPUs in PCI order, CUDA by default fastest first, and a UUID means the same
// GPU to both. CPU devices show no GPU at all (an empty value).
func visibleDevices(devs []protocol.Device) string {
	var ids []string
	for _, d := range devs {
		if d.Kind != protocol.DeviceGPU {
			continue
		}
		if d.UUID != "" {
			ids = append(ids, d.UUID)
		} else {
			ids = append(ids, strconv.Itoa(d.Index))
		}
	}
	return strings.Join(ids, ",")
}
