// Package placement decides which devices run which layers of the target
// and drafter models (SEED.md, "GPU allocation strategies"). It is pure
// planning: devices and model sizes go in, a plan comes out, nothing is
// read or started here.
package placement

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Strategy names, as written in placement.strategy.
const (
	MultiGPURatio = "multi_gpu_ratio" // split the devices by the models' gpus counts
	Separate      = "separate"        // target on the first device, drafter on the second
	Same          = "same"            // both on the first device
	Auto          = "auto"            // fit by memory on as few devices as possible
)

// Strategies lists the strategy names in the order the seed documents them.
func Strategies() []string { return []string{MultiGPURatio, Separate, Same, Auto} }

// FieldError is a planning error that one setting of the job is at fault
// for (its dotted HCL path), so the error can point at its line.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// Model roles.
const (
	RoleTarget  = "target"
	RoleDrafter = "drafter"
)

// ErrUnknownMemory is returned (wrapped) by the auto strategy when no
// device reports its memory, as when a job is validated against
// placement.devices without workers: auto can only decide at run time.
var ErrUnknownMemory = errors.New("device memory is unknown")

// Device is one device that may run layers: a GPU, or a CPU device whose
// memory is the host's.
type Device struct {
	Index       int    `json:"index"` // index on its host, as in CUDA_VISIBLE_DEVICES
	Host        string `json:"host,omitempty"`
	Name        string `json:"name,omitempty"`
	MemoryBytes uint64 `json:"memory_bytes,omitempty"`
	FreeBytes   uint64 `json:"free_bytes,omitempty"`
}

func (d Device) String() string {
	if d.Host == "" {
		return strconv.Itoa(d.Index)
	}
	return d.Host + ":" + strconv.Itoa(d.Index)
}

// ModelReq describes one model to place.
type ModelReq struct {
	Role            string // target | drafter, for messages
	Layers          int    // transformer layers
	WeightBytes     uint64 // all weights, embeddings and head included
	KVBytesPerToken uint64 // KV cache bytes per token over all layers
	GPUs            int    // devices under multi_gpu_ratio; under auto an upper bound (0 = no bound)
	Stages          int    // pipeline stages; 0 = one per host among its devices
}

// Request is one placement problem.
type Request struct {
	Strategy string
	Devices  []Device // in the order strategies hand them out
	Target   ModelReq
	Drafter  *ModelReq // nil when only the target runs
	// MaxTokens sizes the KV cache for auto: batch size × max length.
	MaxTokens int
	// Headroom is kept free on every device under auto, for activations
	// and the runtime's own allocations.
	Headroom uint64
}

// Stage is one pipeline stage: one process on one host running a
// contiguous layer range, split again over its devices.
type Stage struct {
	Host         string   `json:"host,omitempty"`
	Devices      []int    `json:"devices"`
	Layers       [2]int   `json:"layers"`        // [first, last) over the whole model
	DeviceLayers [][2]int `json:"device_layers"` // [first, last) per device, in Devices order
}

// ModelPlan is where one model runs. Devices are device indices in pipeline
// order; on a multi-host plan an index can repeat across hosts and the
// stages say which host each belongs to.
type ModelPlan struct {
	Devices []int   `json:"devices"`
	Stages  []Stage `json:"stages"`
}

// Plan is the placement of a job.
type Plan struct {
	Strategy string     `json:"strategy"`
	Target   ModelPlan  `json:"target"`
	Drafter  *ModelPlan `json:"drafter,omitempty"`
	// Notes say where the plan departs from what the job asked for.
	Notes []string `json:"notes,omitempty"`
}

// Make plans req. Errors say which model, what it needs and what the
// devices offer.
func Make(req Request) (*Plan, error) {
	if len(req.Devices) == 0 {
		return nil, errors.New("no devices to place the models on")
	}
	seen := map[Device]bool{}
	for _, d := range req.Devices {
		key := Device{Host: d.Host, Index: d.Index}
		if seen[key] {
			return nil, fmt.Errorf("device %s is listed twice", d)
		}
		seen[key] = true
	}
	target := withRole(req.Target, RoleTarget)
	models := []*ModelReq{&target}
	var drafter ModelReq
	if req.Drafter != nil {
		drafter = withRole(*req.Drafter, RoleDrafter)
		models = append(models, &drafter)
	}
	for _, m := range models {
		if m.Layers < 1 {
			return nil, fmt.Errorf("%s has %d layers; it needs at least one", m.Role, m.Layers)
		}
		if m.Stages < 0 {
			return nil, fmt.Errorf("model.%s.stages = %d; use 0 for one stage per host, or a positive count", m.Role, m.Stages)
		}
	}

	var picks []pick
	var notes []string
	var err error
	switch req.Strategy {
	case MultiGPURatio:
		picks, notes, err = ratio(req.Devices, models)
	case Separate:
		picks, err = separate(req.Devices, models)
	case Same:
		picks = make([]pick, len(models))
		for i := range picks {
			picks[i] = pick{ords: []int{0}}
		}
	case Auto:
		picks, err = auto(req, models)
	default:
		return nil, fmt.Errorf("unknown strategy %q; use %s", req.Strategy, strings.Join(Strategies(), ", "))
	}
	if err != nil {
		return nil, err
	}

	plan := &Plan{Strategy: req.Strategy, Notes: notes}
	for i, m := range models {
		mp, err := modelPlan(*m, req.Devices, picks[i])
		if err != nil {
			return nil, err
		}
		if i == 0 {
			plan.Target = *mp
		} else {
			plan.Drafter = mp
		}
	}
	return plan, nil
}

func withRole(m ModelReq, role string) ModelReq {
	if m.Role == "" {
		m.Role = role
	}
	return m
}

// pick is the devices a strategy chose for one model, as positions in
// Request.Devices, with per-device layer counts when the strategy decided
// them (auto) and nil when layers split by memory.
type pick struct {
	ords   []int
	counts []int
}

// ratio gives the first target.GPUs devices to the target and the next
// drafter.GPUs to the drafter: 8 devices at 6:2 → 0-5 and 6-7. With fewer
// devices than that it splits those there are by the same ratio, as the
// seed's TARGET_GPU_RATIO:DRAFTER_GPU_RATIO did ("split the visible GPUs by
// ratio"): 4 devices at 6:2 → 0-2 and 3; a note says so.
func ratio(devs []Device, models []*ModelReq) ([]pick, []string, error) {
	need := 0
	var parts []string
	for _, m := range models {
		if m.GPUs < 1 {
			return nil, nil, fmt.Errorf("%s: %s.gpus = %d; it needs at least 1", MultiGPURatio, m.Role, m.GPUs)
		}
		need += m.GPUs
		parts = append(parts, fmt.Sprintf("%s %d", m.Role, m.GPUs))
	}
	counts := make([]int, len(models))
	for i, m := range models {
		counts[i] = m.GPUs
	}
	var notes []string
	if need > len(devs) {
		if len(devs) < len(models) {
			return nil, nil, &FieldError{Field: "placement.devices", Err: fmt.Errorf(
				"%s needs %d devices (%s), or one per model split by that ratio, but placement.devices gives only %d: %s; use %s to share one",
				MultiGPURatio, need, strings.Join(parts, " + "), len(devs), list(devs), Same)}
		}
		counts = splitByRatio(len(devs), counts)
		var got []string
		for i, m := range models {
			got = append(got, fmt.Sprintf("%s %d", m.Role, counts[i]))
		}
		notes = append(notes, fmt.Sprintf("%s asks for %d devices (%s) and %s given: split by the same ratio, %s",
			MultiGPURatio, need, strings.Join(parts, " + "), countIs(len(devs)), strings.Join(got, " + ")))
	}
	picks := make([]pick, len(models))
	next := 0
	for i := range models {
		picks[i] = pick{ords: seq(next, counts[i])}
		next += counts[i]
	}
	return picks, notes, nil
}

// splitByRatio shares n devices in proportion to weights (n ≥ len(weights)):
// each its whole share, at least one; what is left to the largest fractions,
// ties to the earlier (the target).
func splitByRatio(n int, weights []int) []int {
	total := 0
	for _, w := range weights {
		total += w
	}
	out := make([]int, len(weights))
	frac := make([]int, len(weights)) // in 1/total
	used := 0
	for i, w := range weights {
		out[i], frac[i] = max(1, n*w/total), n*w%total
		used += out[i]
	}
	for ; used > n; used-- { // minimums of one overshot: take from the largest
		big := 0
		for i := range out {
			if out[i] > out[big] {
				big = i
			}
		}
		out[big]--
	}
	for ; used < n; used++ {
		best := 0
		for i := range frac {
			if frac[i] > frac[best] {
				best = i
			}
		}
		out[best]++
		frac[best] = -1
	}
	return out
}

func separate(devs []Device, models []*ModelReq) ([]pick, error) {
	if len(models) > 1 && len(devs) < 2 {
		return nil, fmt.Errorf("%s needs 2 devices (target on the first, drafter on the second) but %s given: %s; use %s to share one",
			Separate, countIs(len(devs)), list(devs), Same)
	}
	picks := make([]pick, len(models))
	for i := range models {
		picks[i] = pick{ords: []int{i}}
	}
	return picks, nil
}

// modelPlan groups the picked devices into stages and splits the layers.
func modelPlan(m ModelReq, all []Device, p pick) (*ModelPlan, error) {
	devs := make([]Device, len(p.ords))
	for i, o := range p.ords {
		devs[i] = all[o]
	}
	if m.Layers < len(devs) {
		return nil, fmt.Errorf("%s has %d layers but %s (%s); every device needs at least one layer, so give it at most %d",
			m.Role, m.Layers, devices(len(devs)), list(devs), m.Layers)
	}
	groups, err := stageGroups(m, devs)
	if err != nil {
		return nil, err
	}

	counts := p.counts
	if counts == nil {
		// Stages first, by the memory of their devices, then the devices
		// inside each stage, so that a big host gets a big stage.
		stageMem := make([]uint64, len(groups))
		stageMin := make([]int, len(groups))
		for g, grp := range groups {
			for _, i := range grp {
				stageMem[g] += devs[i].MemoryBytes
			}
			stageMin[g] = len(grp)
		}
		perStage := apportion(m.Layers, stageMem, stageMin, nil)
		counts = make([]int, len(devs))
		for g, grp := range groups {
			mem := make([]uint64, len(grp))
			ones := make([]int, len(grp))
			for k, i := range grp {
				mem[k] = devs[i].MemoryBytes
				ones[k] = 1
			}
			for k, c := range apportion(perStage[g], mem, ones, nil) {
				counts[grp[k]] = c
			}
		}
	}

	mp := &ModelPlan{Devices: []int{}, Stages: make([]Stage, 0, len(groups))}
	layer := 0
	for _, grp := range groups {
		st := Stage{Host: devs[grp[0]].Host, Layers: [2]int{layer, layer}}
		for _, i := range grp {
			st.Devices = append(st.Devices, devs[i].Index)
			st.DeviceLayers = append(st.DeviceLayers, [2]int{layer, layer + counts[i]})
			layer += counts[i]
		}
		st.Layers[1] = layer
		mp.Devices = append(mp.Devices, st.Devices...)
		mp.Stages = append(mp.Stages, st)
	}
	return mp, nil
}

func seq(start, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = start + i
	}
	return out
}

// list renders devices as "0,1,2" or "a:0,a:1".
func list(devs []Device) string {
	parts := make([]string, len(devs))
	for i, d := range devs {
		parts[i] = d.String()
	}
	return strings.Join(parts, ",")
}

// devices is "1 device" or "n devices".
func devices(n int) string {
	if n == 1 {
		return "1 device"
	}
	return strconv.Itoa(n) + " devices"
}

func countIs(n int) string {
	if n == 1 {
		return "only 1 is"
	}
	return "only " + strconv.Itoa(n) + " are"
}
