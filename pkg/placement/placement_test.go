package placement

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const gib = uint64(1) << 30

// gpus returns n devices on host with the given memory each, indices 0..n-1.
func gpus(host string, n int, mem uint64) []Device {
	out := make([]Device, n)
	for i := range out {
		out[i] = Device{Index: i, Host: host, Name: "GPU", MemoryBytes: mem}
	}
	return out
}

// free returns devices with the given free memory (total 80 GiB each).
func free(host string, frees ...uint64) []Device {
	out := make([]Device, len(frees))
	for i, f := range frees {
		out[i] = Device{Index: i, Host: host, MemoryBytes: 80 * gib, FreeBytes: f}
	}
	return out
}

func st(host string, first, last int, devices []int, deviceLayers ...[2]int) Stage {
	return Stage{Host: host, Devices: devices, Layers: [2]int{first, last}, DeviceLayers: deviceLayers}
}

func TestMake(t *testing.T) {
	target36 := ModelReq{Layers: 36, GPUs: 6}
	drafter28 := &ModelReq{Layers: 28, GPUs: 2}
	tests := []struct {
		name string
		req  Request
		want *Plan
	}{
		{
			name: "8 GPUs at 6:2",
			req:  Request{Strategy: MultiGPURatio, Devices: gpus("", 8, 80*gib), Target: target36, Drafter: drafter28},
			want: &Plan{
				Strategy: MultiGPURatio,
				Target: ModelPlan{Devices: []int{0, 1, 2, 3, 4, 5}, Stages: []Stage{
					st("", 0, 36, []int{0, 1, 2, 3, 4, 5}, [2]int{0, 6}, [2]int{6, 12}, [2]int{12, 18}, [2]int{18, 24}, [2]int{24, 30}, [2]int{30, 36}),
				}},
				Drafter: &ModelPlan{Devices: []int{6, 7}, Stages: []Stage{
					st("", 0, 28, []int{6, 7}, [2]int{0, 14}, [2]int{14, 28}),
				}},
			},
		},
		{
			name: "4 GPUs at 6:2: the visible devices split by the ratio",
			req:  Request{Strategy: MultiGPURatio, Devices: gpus("", 4, 80*gib), Target: target36, Drafter: drafter28},
			want: &Plan{
				Strategy: MultiGPURatio,
				Target: ModelPlan{Devices: []int{0, 1, 2}, Stages: []Stage{
					st("", 0, 36, []int{0, 1, 2}, [2]int{0, 12}, [2]int{12, 24}, [2]int{24, 36}),
				}},
				Drafter: &ModelPlan{Devices: []int{3}, Stages: []Stage{st("", 0, 28, []int{3}, [2]int{0, 28})}},
				Notes:   []string{"multi_gpu_ratio asks for 8 devices (target 6 + drafter 2) and only 4 are given: split by the same ratio, target 3 + drafter 1"},
			},
		},
		{
			name: "4 GPUs at 2:2, layers that do not divide evenly",
			req: Request{Strategy: MultiGPURatio, Devices: gpus("", 4, 24*gib),
				Target: ModelReq{Layers: 25, GPUs: 2}, Drafter: &ModelReq{Layers: 7, GPUs: 2}},
			want: &Plan{
				Strategy: MultiGPURatio,
				Target:   ModelPlan{Devices: []int{0, 1}, Stages: []Stage{st("", 0, 25, []int{0, 1}, [2]int{0, 13}, [2]int{13, 25})}},
				Drafter:  &ModelPlan{Devices: []int{2, 3}, Stages: []Stage{st("", 0, 7, []int{2, 3}, [2]int{0, 4}, [2]int{4, 7})}},
			},
		},
		{
			name: "ratio hands out devices in the order listed",
			req: Request{Strategy: MultiGPURatio,
				Devices: []Device{{Index: 4}, {Index: 5}, {Index: 2}},
				Target:  ModelReq{Layers: 4, GPUs: 2}, Drafter: &ModelReq{Layers: 2, GPUs: 1}},
			want: &Plan{
				Strategy: MultiGPURatio,
				Target:   ModelPlan{Devices: []int{4, 5}, Stages: []Stage{st("", 0, 4, []int{4, 5}, [2]int{0, 2}, [2]int{2, 4})}},
				Drafter:  &ModelPlan{Devices: []int{2}, Stages: []Stage{st("", 0, 2, []int{2}, [2]int{0, 2})}},
			},
		},
		{
			name: "1 GPU shared with same",
			req:  Request{Strategy: Same, Devices: gpus("", 1, 80*gib), Target: target36, Drafter: drafter28},
			want: &Plan{
				Strategy: Same,
				Target:   ModelPlan{Devices: []int{0}, Stages: []Stage{st("", 0, 36, []int{0}, [2]int{0, 36})}},
				Drafter:  &ModelPlan{Devices: []int{0}, Stages: []Stage{st("", 0, 28, []int{0}, [2]int{0, 28})}},
			},
		},
		{
			name: "separate on 2 GPUs",
			req:  Request{Strategy: Separate, Devices: gpus("", 2, 80*gib), Target: target36, Drafter: drafter28},
			want: &Plan{
				Strategy: Separate,
				Target:   ModelPlan{Devices: []int{0}, Stages: []Stage{st("", 0, 36, []int{0}, [2]int{0, 36})}},
				Drafter:  &ModelPlan{Devices: []int{1}, Stages: []Stage{st("", 0, 28, []int{1}, [2]int{0, 28})}},
			},
		},
		{
			name: "separate without a drafter needs one GPU",
			req:  Request{Strategy: Separate, Devices: gpus("", 1, 80*gib), Target: target36},
			want: &Plan{
				Strategy: Separate,
				Target:   ModelPlan{Devices: []int{0}, Stages: []Stage{st("", 0, 36, []int{0}, [2]int{0, 36})}},
			},
		},
		{
			// 28 layers after the one-each minimum: quotas 18.67 and 9.33,
			// the leftover layer goes to the larger remainder.
			name: "unequal memory splits by memory",
			req: Request{Strategy: MultiGPURatio,
				Devices: []Device{{Index: 0, MemoryBytes: 80 * gib}, {Index: 1, MemoryBytes: 40 * gib}},
				Target:  ModelReq{Layers: 30, GPUs: 2}},
			want: &Plan{
				Strategy: MultiGPURatio,
				Target:   ModelPlan{Devices: []int{0, 1}, Stages: []Stage{st("", 0, 30, []int{0, 1}, [2]int{0, 20}, [2]int{20, 30})}},
			},
		},
		{
			name: "unknown memory splits evenly",
			req: Request{Strategy: MultiGPURatio, Devices: []Device{{Index: 0}, {Index: 1}, {Index: 2}},
				Target: ModelReq{Layers: 10, GPUs: 3}},
			want: &Plan{
				Strategy: MultiGPURatio,
				Target:   ModelPlan{Devices: []int{0, 1, 2}, Stages: []Stage{st("", 0, 10, []int{0, 1, 2}, [2]int{0, 4}, [2]int{4, 7}, [2]int{7, 10})}},
			},
		},
		{
			name: "two hosts make two stages",
			req: Request{Strategy: MultiGPURatio, Devices: append(gpus("a", 2, 80*gib), gpus("b", 2, 80*gib)...),
				Target: ModelReq{Layers: 36, GPUs: 4}},
			want: &Plan{
				Strategy: MultiGPURatio,
				Target: ModelPlan{Devices: []int{0, 1, 0, 1}, Stages: []Stage{
					st("a", 0, 18, []int{0, 1}, [2]int{0, 9}, [2]int{9, 18}),
					st("b", 18, 36, []int{0, 1}, [2]int{18, 27}, [2]int{27, 36}),
				}},
			},
		},
		{
			// hcl/multi-host.hcl: the target takes all of gpu-node-1 and two
			// of gpu-node-2; the bigger stage gets the bigger share.
			name: "multi-host example, 6:2 over two hosts of four",
			req: Request{Strategy: MultiGPURatio,
				Devices: append(gpus("gpu-node-1", 4, 80*gib), gpus("gpu-node-2", 4, 80*gib)...),
				Target:  ModelReq{Layers: 36, GPUs: 6, Stages: 2}, Drafter: &ModelReq{Layers: 28, GPUs: 2}},
			want: &Plan{
				Strategy: MultiGPURatio,
				Target: ModelPlan{Devices: []int{0, 1, 2, 3, 0, 1}, Stages: []Stage{
					st("gpu-node-1", 0, 24, []int{0, 1, 2, 3}, [2]int{0, 6}, [2]int{6, 12}, [2]int{12, 18}, [2]int{18, 24}),
					st("gpu-node-2", 24, 36, []int{0, 1}, [2]int{24, 30}, [2]int{30, 36}),
				}},
				Drafter: &ModelPlan{Devices: []int{2, 3}, Stages: []Stage{
					st("gpu-node-2", 0, 28, []int{2, 3}, [2]int{0, 14}, [2]int{14, 28}),
				}},
			},
		},
		{
			name: "forced stages on one host",
			req: Request{Strategy: MultiGPURatio, Devices: gpus("", 4, 80*gib),
				Target: ModelReq{Layers: 36, GPUs: 4, Stages: 2}},
			want: &Plan{
				Strategy: MultiGPURatio,
				Target: ModelPlan{Devices: []int{0, 1, 2, 3}, Stages: []Stage{
					st("", 0, 18, []int{0, 1}, [2]int{0, 9}, [2]int{9, 18}),
					st("", 18, 36, []int{2, 3}, [2]int{18, 27}, [2]int{27, 36}),
				}},
			},
		},
		{
			// Three stages over hosts of four and two devices: the extra
			// stage goes to the host with more devices per stage.
			name: "forced stages over two hosts",
			req: Request{Strategy: MultiGPURatio, Devices: append(gpus("a", 4, 80*gib), gpus("b", 2, 80*gib)...),
				Target: ModelReq{Layers: 36, GPUs: 6, Stages: 3}},
			want: &Plan{
				Strategy: MultiGPURatio,
				Target: ModelPlan{Devices: []int{0, 1, 2, 3, 0, 1}, Stages: []Stage{
					st("a", 0, 12, []int{0, 1}, [2]int{0, 6}, [2]int{6, 12}),
					st("a", 12, 24, []int{2, 3}, [2]int{12, 18}, [2]int{18, 24}),
					st("b", 24, 36, []int{0, 1}, [2]int{24, 30}, [2]int{30, 36}),
				}},
			},
		},
		{
			// 16 GiB of weights take 32 of device 0's 48 half-GiB slots;
			// the drafter then fits best on device 1, which is untouched.
			name: "auto fits a small pair on one device each",
			req: Request{Strategy: Auto, Devices: free("", 24*gib, 24*gib, 24*gib, 24*gib),
				Target:  ModelReq{Layers: 32, WeightBytes: 16 * gib},
				Drafter: &ModelReq{Layers: 28, WeightBytes: 4 * gib}},
			want: &Plan{
				Strategy: Auto,
				Target:   ModelPlan{Devices: []int{0}, Stages: []Stage{st("", 0, 32, []int{0}, [2]int{0, 32})}},
				Drafter:  &ModelPlan{Devices: []int{1}, Stages: []Stage{st("", 0, 28, []int{1}, [2]int{0, 28})}},
			},
		},
		{
			name: "auto shares a device when it holds both",
			req: Request{Strategy: Auto, Devices: free("", 80*gib),
				Target:  ModelReq{Layers: 32, WeightBytes: 16 * gib},
				Drafter: &ModelReq{Layers: 28, WeightBytes: 4 * gib}},
			want: &Plan{
				Strategy: Auto,
				Target:   ModelPlan{Devices: []int{0}, Stages: []Stage{st("", 0, 32, []int{0}, [2]int{0, 32})}},
				Drafter:  &ModelPlan{Devices: []int{0}, Stages: []Stage{st("", 0, 28, []int{0}, [2]int{0, 28})}},
			},
		},
		{
			// 60 GiB of weights + 4 GiB of KV cache = 1 GiB per layer; two
			// devices hold 48 layers, three hold 72, so three it is, spread
			// 22/21/21. The drafter goes where most memory is left.
			name: "auto spreads a large model over the fewest devices",
			req: Request{Strategy: Auto, Devices: free("", 24*gib, 24*gib, 24*gib, 24*gib), MaxTokens: 4096,
				Target:  ModelReq{Layers: 64, WeightBytes: 60 * gib, KVBytesPerToken: 1 << 20},
				Drafter: &ModelReq{Layers: 16, WeightBytes: 8 * gib}},
			want: &Plan{
				Strategy: Auto,
				Target: ModelPlan{Devices: []int{0, 1, 2}, Stages: []Stage{
					st("", 0, 64, []int{0, 1, 2}, [2]int{0, 22}, [2]int{22, 43}, [2]int{43, 64}),
				}},
				Drafter: &ModelPlan{Devices: []int{3}, Stages: []Stage{st("", 0, 16, []int{3}, [2]int{0, 16})}},
			},
		},
		{
			// Free memory, not total, decides; headroom comes off each.
			name: "auto prefers the devices with the most free memory",
			req: Request{Strategy: Auto, Devices: free("", 10*gib, 40*gib, 20*gib), Headroom: 2 * gib,
				Target: ModelReq{Layers: 40, WeightBytes: 40 * gib}},
			want: &Plan{
				Strategy: Auto,
				Target: ModelPlan{Devices: []int{1, 2}, Stages: []Stage{
					st("", 0, 40, []int{1, 2}, [2]int{0, 27}, [2]int{27, 40}),
				}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Make(tc.req)
			if err != nil {
				t.Fatalf("Make: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				g, _ := json.Marshal(got)
				w, _ := json.Marshal(tc.want)
				t.Errorf("plan\n got %s\nwant %s", g, w)
			}
		})
	}
}

func TestMakeErrors(t *testing.T) {
	target36 := ModelReq{Layers: 36, GPUs: 6}
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{
			name: "separate with 1 GPU",
			req:  Request{Strategy: Separate, Devices: gpus("", 1, 80*gib), Target: target36, Drafter: &ModelReq{Layers: 28}},
			want: "separate needs 2 devices (target on the first, drafter on the second) but only 1 is given: 0; use same to share one",
		},
		{
			name: "ratio with fewer devices than models",
			req: Request{Strategy: MultiGPURatio, Devices: gpus("", 1, 80*gib),
				Target: target36, Drafter: &ModelReq{Layers: 28, GPUs: 2}},
			want: "multi_gpu_ratio needs 8 devices (target 6 + drafter 2), or one per model split by that ratio, but placement.devices gives only 1: 0; use same to share one",
		},
		{
			name: "ratio with zero gpus",
			req:  Request{Strategy: MultiGPURatio, Devices: gpus("", 8, 80*gib), Target: ModelReq{Layers: 36}},
			want: "multi_gpu_ratio: target.gpus = 0; it needs at least 1",
		},
		{
			name: "fewer layers than devices",
			req:  Request{Strategy: MultiGPURatio, Devices: gpus("", 4, 80*gib), Target: ModelReq{Layers: 2, GPUs: 4}},
			want: "target has 2 layers but 4 devices (0,1,2,3); every device needs at least one layer, so give it at most 2",
		},
		{
			name: "more stages than devices",
			req:  Request{Strategy: MultiGPURatio, Devices: gpus("", 4, 80*gib), Target: ModelReq{Layers: 36, GPUs: 2, Stages: 3}},
			want: "model.target.stages = 3 but target has 2 devices (0,1); a stage needs at least one device",
		},
		{
			name: "fewer stages than hosts",
			req: Request{Strategy: MultiGPURatio, Devices: append(gpus("a", 2, 80*gib), gpus("b", 2, 80*gib)...),
				Target: ModelReq{Layers: 36, GPUs: 4, Stages: 1}},
			want: "model.target.stages = 1 but its devices sit on 2 hosts (a, b); a stage runs on one host, so use at least 2",
		},
		{
			// 16.5 GiB over 32 layers is 528 MiB a layer; 8 GiB holds 15.
			name: "auto refuses a model that does not fit",
			req: Request{Strategy: Auto, Devices: free("", 8*gib, 8*gib), MaxTokens: 2048,
				Target: ModelReq{Layers: 32, WeightBytes: 16 * gib, KVBytesPerToken: 256 << 10}},
			want: "auto: target needs 16.5 GiB (weights 16.0 GiB + KV cache 512.0 MiB for 2048 tokens, 528.0 MiB per layer over 32 layers), but the devices offer 16.0 GiB in all: 0 (8.0 GiB), 1 (8.0 GiB)",
		},
		{
			name: "auto refuses a drafter that does not fit beside the target",
			req: Request{Strategy: Auto, Devices: free("", 20*gib),
				Target:  ModelReq{Layers: 32, WeightBytes: 16 * gib},
				Drafter: &ModelReq{Layers: 28, WeightBytes: 7 * gib}},
			want: "auto: drafter needs 7.0 GiB (weights 7.0 GiB + KV cache 0 B for 0 tokens, 256.0 MiB per layer over 28 layers), but the devices after the target offer 4.0 GiB in all: 0 (4.0 GiB)",
		},
		{
			name: "auto respects gpus as an upper bound",
			req: Request{Strategy: Auto, Devices: free("", 8*gib, 8*gib, 8*gib),
				Target: ModelReq{Layers: 32, WeightBytes: 20 * gib, GPUs: 2}},
			want: "auto: target needs 20.0 GiB (weights 20.0 GiB + KV cache 0 B for 0 tokens, 640.0 MiB per layer over 32 layers) on at most 2 (its gpus), but the devices offer 24.0 GiB in all: 0 (8.0 GiB), 1 (8.0 GiB), 2 (8.0 GiB)",
		},
		{
			name: "unknown strategy",
			req:  Request{Strategy: "ratio", Devices: gpus("", 1, 0), Target: target36},
			want: `unknown strategy "ratio"; use multi_gpu_ratio, separate, same, auto`,
		},
		{
			name: "no devices",
			req:  Request{Strategy: Same, Target: target36},
			want: "no devices to place the models on",
		},
		{
			name: "duplicate device",
			req:  Request{Strategy: Same, Devices: []Device{{Host: "a", Index: 1}, {Host: "a", Index: 1}}, Target: target36},
			want: "device a:1 is listed twice",
		},
		{
			name: "model without layers",
			req:  Request{Strategy: Same, Devices: gpus("", 1, 0), Target: ModelReq{}},
			want: "target has 0 layers; it needs at least one",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := Make(tc.req)
			if err == nil {
				t.Fatalf("Make succeeded with %+v, want error %q", plan, tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got %s\nwant %s", err, tc.want)
			}
			// The errors a setting is at fault for name it, for its line.
			var fe *FieldError
			if field, ok := strings.CutPrefix(tc.want, "model."); ok && strings.Contains(field, ".stages = ") {
				if !errors.As(err, &fe) || !strings.HasPrefix(tc.want, fe.Field) {
					t.Errorf("%v: no FieldError for the stages setting", err)
				}
			}
			if strings.Contains(tc.want, "placement.devices gives") && (!errors.As(err, &fe) || fe.Field != "placement.devices") {
				t.Errorf("%v: no FieldError for placement.devices", err)
			}
		})
	}
}

func TestAutoUnknownMemory(t *testing.T) {
	_, err := Make(Request{Strategy: Auto, Devices: gpus("", 2, 0), Target: ModelReq{Layers: 4}})
	if !errors.Is(err, ErrUnknownMemory) {
		t.Fatalf("error %v, want ErrUnknownMemory", err)
	}
}

// The plan's JSON is part of `controller validate --json` (DESIGN §2).
func TestPlanJSON(t *testing.T) {
	plan, err := Make(Request{Strategy: MultiGPURatio, Devices: gpus("", 3, 0),
		Target: ModelReq{Layers: 4, GPUs: 2}, Drafter: &ModelReq{Layers: 2, GPUs: 1}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"strategy":"multi_gpu_ratio",` +
		`"target":{"devices":[0,1],"stages":[{"devices":[0,1],"layers":[0,4],"device_layers":[[0,2],[2,4]]}]},` +
		`"drafter":{"devices":[2],"stages":[{"devices":[2],"layers":[0,2],"device_layers":[[0,2]]}]}}`
	if string(got) != want {
		t.Errorf("JSON\n got %s\nwant %s", got, want)
	}
}

func TestApportion(t *testing.T) {
	tests := []struct {
		name    string
		total   int
		weights []uint64
		mins    []int
		caps    []int
		want    []int
	}{
		{"equal", 12, []uint64{1, 1, 1}, []int{1, 1, 1}, nil, []int{4, 4, 4}},
		{"ties go to the earlier part", 10, []uint64{1, 1, 1}, []int{0, 0, 0}, nil, []int{4, 3, 3}},
		{"zero weights share equally", 5, []uint64{0, 0}, []int{1, 1}, nil, []int{3, 2}},
		{"minimum beats a tiny weight", 10, []uint64{1000, 1}, []int{1, 1}, nil, []int{9, 1}},
		{"minimum per stage", 10, []uint64{6, 2}, []int{4, 2}, nil, []int{7, 3}},
		{"cap moves the rest elsewhere", 10, []uint64{9, 1}, []int{1, 1}, []int{5, 8}, []int{5, 5}},
		{"huge weights do not overflow", 100, []uint64{1 << 62, 1 << 62}, []int{0, 0}, nil, []int{50, 50}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := apportion(tc.total, tc.weights, tc.mins, tc.caps)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("apportion(%d, %v, %v, %v) = %v, want %v", tc.total, tc.weights, tc.mins, tc.caps, got, tc.want)
			}
		})
	}
}

func TestSplitByRatio(t *testing.T) {
	for _, tc := range []struct {
		n       int
		weights []int
		want    []int
	}{
		{8, []int{6, 2}, []int{6, 2}},
		{4, []int{6, 2}, []int{3, 1}},
		{2, []int{6, 2}, []int{1, 1}},
		{3, []int{6, 2}, []int{2, 1}},
		{8, []int{6, 4}, []int{5, 3}},
		{5, []int{1, 1}, []int{3, 2}},
		{7, []int{1, 6}, []int{1, 6}},
		{3, []int{9}, []int{3}},
	} {
		got := splitByRatio(tc.n, tc.weights)
		if !slices.Equal(got, tc.want) {
			t.Errorf("splitByRatio(%d, %v) = %v, want %v", tc.n, tc.weights, got, tc.want)
		}
	}
}
