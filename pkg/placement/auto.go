package placement

import (
	"fmt"
	"sort"
	"strings"
)

// auto places each model, target first, on the fewest devices whose memory
// holds it, after ollama's layer fit (llm/server.go): try one device, then
// two, and so on; on k devices spread the layers in proportion to free
// memory rather than filling the first device to the brim, which is what
// ollama's binary search over a capacity factor achieves.
//
// Here a model needs (WeightBytes + KVBytesPerToken·MaxTokens) / Layers
// bytes per layer, rounded up; a device offers its free memory (its total
// when free is not reported) less Headroom, and holds floor(offer/per-layer)
// layers. Candidates are the devices with the most memory left, ties to the
// earlier device; the chosen ones keep their listed order in the pipeline.
// The drafter is fitted on what the target leaves, so it shares a device
// with the target only when that is where the memory is. Layers are
// apportioned by largest remainder with every device at least one layer and
// at most its capacity.
func auto(req Request, models []*ModelReq) ([]pick, error) {
	known := false
	for _, d := range req.Devices {
		if d.MemoryBytes > 0 || d.FreeBytes > 0 {
			known = true
			break
		}
	}
	if !known {
		return nil, fmt.Errorf("%s places by memory, but no device among %s reports any: %w", Auto, list(req.Devices), ErrUnknownMemory)
	}
	if req.MaxTokens < 0 {
		return nil, fmt.Errorf("%s: max tokens %d is negative", Auto, req.MaxTokens)
	}
	offer := make([]uint64, len(req.Devices))
	for i, d := range req.Devices {
		o := d.FreeBytes
		if o == 0 {
			o = d.MemoryBytes
		}
		if o > req.Headroom {
			offer[i] = o - req.Headroom
		}
	}

	picks := make([]pick, len(models))
	for mi, m := range models {
		kv := m.KVBytesPerToken * uint64(req.MaxTokens)
		need := m.WeightBytes + kv
		perLayer := (need + uint64(m.Layers) - 1) / uint64(m.Layers)
		if perLayer == 0 {
			perLayer = 1 // a model of zero bytes still takes a slot per layer
		}
		p, ok := fit(m, offer, perLayer)
		if !ok {
			after := ""
			if mi > 0 {
				after = fmt.Sprintf(" after the %s", models[0].Role)
			}
			bound := ""
			if m.GPUs > 0 && m.GPUs < len(offer) {
				bound = fmt.Sprintf(" on at most %d (its gpus)", m.GPUs)
			}
			return nil, fmt.Errorf("%s: %s needs %s (weights %s + KV cache %s for %d tokens, %s per layer over %d layers)%s, but the devices%s offer %s",
				Auto, m.Role, bytes(need), bytes(m.WeightBytes), bytes(kv), req.MaxTokens, bytes(perLayer), m.Layers,
				bound, after, offers(req.Devices, offer))
		}
		for k, o := range p.ords {
			offer[o] -= uint64(p.counts[k]) * perLayer
		}
		picks[mi] = p
	}
	return picks, nil
}

// fit finds the fewest devices that hold m; false when even the allowed
// maximum does not.
func fit(m *ModelReq, offer []uint64, perLayer uint64) (pick, bool) {
	order := make([]int, len(offer))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return offer[order[a]] > offer[order[b]] })
	maxK := len(order)
	if m.GPUs > 0 && m.GPUs < maxK {
		maxK = m.GPUs
	}
	if m.Layers < maxK {
		maxK = m.Layers // every device must hold at least one layer
	}
	for k := 1; k <= maxK; k++ {
		chosen := append([]int(nil), order[:k]...)
		sort.Ints(chosen)
		caps := make([]int, k)
		weights := make([]uint64, k)
		mins := make([]int, k)
		total := 0
		usable := true
		for i, o := range chosen {
			c := offer[o] / perLayer
			if c == 0 {
				usable = false // a device that holds no layer cannot be in the pipeline
				break
			}
			if c > uint64(m.Layers) {
				c = uint64(m.Layers)
			}
			caps[i], weights[i], mins[i] = int(c), offer[o], 1
			total += int(c)
		}
		if !usable || total < m.Layers {
			continue
		}
		return pick{ords: chosen, counts: apportion(m.Layers, weights, mins, caps)}, true
	}
	return pick{}, false
}

func offers(devs []Device, offer []uint64) string {
	parts := make([]string, len(devs))
	var sum uint64
	for i, d := range devs {
		parts[i] = fmt.Sprintf("%s (%s)", d, bytes(offer[i]))
		sum += offer[i]
	}
	return fmt.Sprintf("%s in all: %s", bytes(sum), strings.Join(parts, ", "))
}

// bytes formats a size in binary units with one decimal.
func bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for v := n / unit; v >= unit && exp < 4; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
