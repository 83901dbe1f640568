package jobrun

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/draftbench/draftbench/pkg/jobspec"
	"github.com/draftbench/draftbench/pkg/model"
	"github.com/draftbench/draftbench/pkg/placement"
)

// ModelInfos reads config.json and the safetensors headers of the job's
// models (no weights), naming the HCL position of a broken one.
func ModelInfos(job *jobspec.Job) (target, drafter *model.Info, err error) {
	target, err = model.Inspect(job.Models.Target.Path)
	if err != nil {
		return nil, nil, job.Errorf("model.target.path", "target model: %w", err)
	}
	if job.Models.Drafter != nil && job.Modes.Speculative {
		drafter, err = model.Inspect(job.Models.Drafter.Path)
		if err != nil {
			return nil, nil, job.Errorf("model.drafter.path", "drafter model: %w", err)
		}
	}
	// The results' environment names each folder absolutely (as this host
	// sees it), so runs started from different folders compare.
	for _, info := range []*model.Info{target, drafter} {
		if info != nil {
			if abs, err := filepath.Abs(info.Path); err == nil {
				info.Path = abs
			}
		}
	}
	return target, drafter, nil
}

// PlacementRequest turns a job and the devices it may use into a placement problem.
func PlacementRequest(job *jobspec.Job, devices []placement.Device, target, drafter *model.Info) placement.Request {
	maxTokens := job.Generation.MaxNewTokens + 2048
	if job.Batch.Enabled {
		maxTokens = job.Batch.Size * job.Batch.MaxLength
	}
	stored := func(info *model.Info, dtype string) uint64 {
		return uint64(float64(info.Bytes) * info.StorageScale(dtype))
	}
	req := placement.Request{Strategy: job.Placement.Strategy, Devices: devices, MaxTokens: maxTokens,
		Target: placement.ModelReq{Role: placement.RoleTarget, Layers: target.Layers, WeightBytes: stored(target, job.Models.Target.DType),
			KVBytesPerToken: uint64(target.KVBytesPerToken), GPUs: job.Models.Target.GPUs, Stages: job.Models.Target.Stages}}
	if drafter != nil {
		req.Drafter = &placement.ModelReq{Role: placement.RoleDrafter, Layers: drafter.Layers, WeightBytes: stored(drafter, job.Models.Drafter.DType),
			KVBytesPerToken: uint64(drafter.KVBytesPerToken), GPUs: job.Models.Drafter.GPUs, Stages: job.Models.Drafter.Stages}
	}
	return req
}

// Plan places the job's models on devices, with errors located in the job file.
func Plan(job *jobspec.Job, devices []placement.Device) (*placement.Plan, *model.Info, *model.Info, error) {
	target, drafter, err := ModelInfos(job)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, info := range []*model.Info{target, drafter} {
		if info != nil {
			if w := info.VocabWarning(); w != "" {
				job.Warnings = append(job.Warnings, w)
			}
		}
	}
	if err := checkPositions(job, "target", target); err != nil {
		return nil, nil, nil, err
	}
	if err := checkPositions(job, "drafter", drafter); err != nil {
		return nil, nil, nil, err
	}
	plan, err := placement.Make(PlacementRequest(job, devices, target, drafter))
	if err != nil {
		field := "placement.strategy"
		if fe := (*placement.FieldError)(nil); errors.As(err, &fe) {
			field = fe.Field
		}
		return nil, nil, nil, job.Errorf(field, "%w", err)
	}
	// Where the plan departs from the job (a ratio split over fewer devices),
	// the console, validate and the results say so, at the devices' line.
	for _, n := range plan.Notes {
		if w := job.Where("placement.devices"); w != "" {
			n = w + ": " + n
		}
		job.Warnings = append(job.Warnings, n)
	}
	return plan, target, drafter, nil
}

// DevicesFromJob lists the devices named by placement.devices, or, when it is
// empty, fallback (the workers' devices, or CUDA_VISIBLE_DEVICES).
func DevicesFromJob(job *jobspec.Job, fallback []placement.Device) ([]placement.Device, error) {
	if job.Placement.Devices == "" {
		if len(fallback) == 0 {
			return nil, job.Errorf("placement", "no devices: set placement.devices or start a worker")
		}
		return fallback, nil
	}
	refs, err := job.Placement.DeviceRefs()
	if err != nil {
		return nil, job.Errorf("placement.devices", "%w", err)
	}
	out := make([]placement.Device, 0, len(refs))
	for _, r := range refs {
		d := placement.Device{Index: r.Index, Host: r.Host}
		for _, f := range fallback {
			if f.Index == r.Index && (r.Host == "" || r.Host == f.Host) {
				d = f
				break
			}
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("placement.devices %q names no device", job.Placement.Devices)
	}
	return out, nil
}

// CheckOffered checks, once workers have registered, that every device
// placement.devices names is one a worker offers, so a wrong index is
// refused with the job's line instead of failing at deployment. A host with
// no worker is left to the deployment, which says so.
func CheckOffered(job *jobspec.Job, offered []placement.Device) error {
	if job.Placement.Devices == "" {
		return nil
	}
	refs, err := job.Placement.DeviceRefs()
	if err != nil {
		return job.Errorf("placement.devices", "%w", err)
	}
	hosts := map[string]bool{}
	var have []string
	for _, f := range offered {
		hosts[f.Host] = true
		have = append(have, f.String())
	}
	for _, r := range refs {
		if r.Host != "" && !hosts[r.Host] {
			continue
		}
		if !slices.ContainsFunc(offered, func(f placement.Device) bool {
			return f.Index == r.Index && (r.Host == "" || r.Host == f.Host)
		}) {
			name := strconv.Itoa(r.Index)
			if r.Host != "" {
				name = r.Host + ":" + name
			}
			return job.Errorf("placement.devices", "placement.devices names device %s, which no worker offers (the workers offer %s)", name, strings.Join(have, ", "))
		}
	}
	return nil
}

// checkPositions refuses sequences longer than a model's
// max_position_embeddings: every request would fail at that position.
func checkPositions(job *jobspec.Job, role string, info *model.Info) error {
	if info == nil || info.MaxPositions <= 0 {
		return nil
	}
	// A sequence grows to its prompt and max_new_tokens, and a speculative
	// round may draft up to gamma positions past them.
	gamma := job.Generation.Gamma
	if job.Batch.Enabled && job.Batch.MaxLength+gamma > info.MaxPositions {
		return job.Errorf("batch.max_length", "batch.max_length %d (+ gamma %d drafted past it) is past the %s's max_position_embeddings %d (%s)",
			job.Batch.MaxLength, gamma, role, info.MaxPositions, info.Path)
	}
	if job.Dataset.Kind == jobspec.DatasetSynthetic && !job.Batch.Enabled {
		if n := job.Dataset.InputTokens + job.Generation.MaxNewTokens + gamma; n > info.MaxPositions {
			return job.Errorf("dataset.synthetic.input_tokens", "dataset.synthetic.input_tokens %d + max_new_tokens %d + gamma %d is past the %s's max_position_embeddings %d (%s)",
				job.Dataset.InputTokens, job.Generation.MaxNewTokens, gamma, role, info.MaxPositions, info.Path)
		}
	}
	if n := job.Generation.MaxNewTokens + gamma + 1; n > info.MaxPositions {
		return job.Errorf("generation.max_new_tokens", "generation.max_new_tokens %d (+ gamma %d + 1) is past the %s's max_position_embeddings %d (%s)",
			job.Generation.MaxNewTokens, job.Generation.Gamma, role, info.MaxPositions, info.Path)
	}
	return nil
}

// MaxContext is the shortest max_position_embeddings of the models given (0
// when none says), for Options.MaxContext.
func MaxContext(infos ...*model.Info) int {
	n := 0
	for _, info := range infos {
		if info != nil && info.MaxPositions > 0 && (n == 0 || info.MaxPositions < n) {
			n = info.MaxPositions
		}
	}
	return n
}
