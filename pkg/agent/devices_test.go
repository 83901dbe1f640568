package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"

	"github.com/draftbench/draftbench/pkg/protocol"
)

// memTotal is MemTotal of testdata/meminfo in bytes.
const memTotal = 16384000 * 1024

func TestMemTotal(t *testing.T) {
	tests := []struct {
		file    string
		want    int64
		wantErr string
	}{
		{file: "meminfo", want: memTotal},
		{file: "meminfo_bad", wantErr: `"lots" is not a positive number`},
		{file: "meminfo_none", wantErr: "no MemTotal line"},
		{file: "meminfo_units", wantErr: `want "MemTotal: N kB"`},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := MemTotal(f)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("MemTotal() = %d, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("MemTotal() = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

// h100 is the go-nvml mock of a DGX H100 (8 GPUs of 80 GiB).
func h100(t *testing.T) (NVML, []protocol.Device) {
	t.Helper()
	lib := dgxh100.New()
	var all []protocol.Device
	for i := range 8 {
		h, _ := lib.DeviceGetHandleByIndex(i)
		uuid, _ := h.GetUUID()
		all = append(all, protocol.Device{Index: i, UUID: uuid, Name: "NVIDIA H100 80GB HBM3", MemoryBytes: 80 << 30, Kind: protocol.DeviceGPU})
	}
	return lib, all
}

func TestDiscover(t *testing.T) {
	lib, gpus := h100(t)
	noDriver := dgxh100.New()
	noDriver.InitFunc = func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }
	meminfo := filepath.Join("testdata", "meminfo")
	cpus := func(n int) []protocol.Device { return CPUDevices(n, memTotal) }

	tests := []struct {
		name    string
		opts    DeviceOptions
		want    []protocol.Device
		wantErr string
	}{
		{name: "every GPU", opts: DeviceOptions{NVML: lib}, want: gpus},
		{name: "--devices", opts: DeviceOptions{NVML: lib, Devices: "6,7"}, want: gpus[6:8]},
		{name: "--devices order kept", opts: DeviceOptions{NVML: lib, Devices: "3, 1"}, want: []protocol.Device{gpus[3], gpus[1]}},
		{name: "CUDA_VISIBLE_DEVICES", opts: DeviceOptions{NVML: lib, CUDAVisibleDevices: "0,2"}, want: []protocol.Device{gpus[0], gpus[2]}},
		{name: "--devices wins over CUDA_VISIBLE_DEVICES", opts: DeviceOptions{NVML: lib, Devices: "5", CUDAVisibleDevices: "0,2"}, want: gpus[5:6]},
		{name: "UUID", opts: DeviceOptions{NVML: lib, Devices: gpus[4].UUID}, want: gpus[4:5]},
		{name: "UUID prefix", opts: DeviceOptions{NVML: lib, CUDAVisibleDevices: gpus[4].UUID[:20]}, want: gpus[4:5]},
		{name: "no such GPU", opts: DeviceOptions{NVML: lib, Devices: "8"}, wantErr: `--devices "8": GPU 8 does not exist (this host has GPUs 0-7)`},
		{name: "no such UUID", opts: DeviceOptions{NVML: lib, CUDAVisibleDevices: "GPU-nope"}, wantErr: `CUDA_VISIBLE_DEVICES "GPU-nope": no GPU has a UUID starting with "GPU-nope"`},
		{name: "ambiguous UUID", opts: DeviceOptions{NVML: lib, Devices: "GPU-"}, wantErr: `"GPU-" names 8 GPUs`},
		{name: "listed twice", opts: DeviceOptions{NVML: lib, Devices: "1,1"}, wantErr: "GPU 1 is listed twice"},
		{name: "empty entry", opts: DeviceOptions{NVML: lib, Devices: "1,,2"}, wantErr: "empty entry"},
		{name: "CPU devices", opts: DeviceOptions{NVML: lib, CPUDevices: 4, Meminfo: meminfo}, want: cpus(4)},
		{name: "CPU and GPU lists", opts: DeviceOptions{CPUDevices: 2, Devices: "0"}, wantErr: "not both"},
		{name: "negative CPU devices", opts: DeviceOptions{CPUDevices: -1}, wantErr: "--cpu-devices -1 is negative"},
		{name: "no driver: one CPU device", opts: DeviceOptions{NVML: noDriver, Meminfo: meminfo}, want: cpus(1)},
		{name: "no driver, GPUs asked for", opts: DeviceOptions{NVML: noDriver, Devices: "0"}, wantErr: "--devices 0: this host has no NVIDIA GPUs (NVML: libnvidia-ml.so.1 not found"},
		{name: "no meminfo", opts: DeviceOptions{CPUDevices: 1, Meminfo: filepath.Join("testdata", "missing")}, wantErr: "reading the host's memory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Discover(tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Discover() = %v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Discover() =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestCPUDevicesShareMemory(t *testing.T) {
	devs := CPUDevices(3, 3000)
	for i, d := range devs {
		want := protocol.Device{Index: i, Name: "cpu" + string(rune('0'+i)), MemoryBytes: 1000, Kind: protocol.DeviceCPU}
		if d != want {
			t.Errorf("device %d = %+v, want %+v", i, d, want)
		}
	}
}

func TestVisibleDevices(t *testing.T) {
	tests := []struct {
		name string
		devs []protocol.Device
		want string
	}{
		{"UUIDs", []protocol.Device{{Index: 3, UUID: "GPU-a", Kind: protocol.DeviceGPU}, {Index: 1, UUID: "GPU-b", Kind: protocol.DeviceGPU}}, "GPU-a,GPU-b"},
		{"indexes without UUIDs", []protocol.Device{{Index: 3, Kind: protocol.DeviceGPU}, {Index: 1, Kind: protocol.DeviceGPU}}, "3,1"},
		{"CPU devices hide every GPU", []protocol.Device{{Index: 0, Kind: protocol.DeviceCPU}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := visibleDevices(tt.devs); got != tt.want {
				t.Errorf("visibleDevices() = %q, want %q", got, tt.want)
			}
		})
	}
}
