package cuda

import (
	"math"
	"sort"
	"unsafe"

	"github.com/draftbench/draftbench/pkg/sampling"
)

// placer assigns weight tensors to devices in load order: a greedy fit by
// memory in the manner of ollama's layer split (llm/server.go), except that
// a model's tensors arrive one at a time. Each device gets a share of the
// weights; the current device takes tensors until the next one would pass
// its share, then the next device becomes current (never going back, so
// consecutive layers stay together and the hidden state crosses each device
// boundary once). The last device takes whatever is left.
type placer struct {
	share []int64
	used  []int64
	cur   int
	hold  int64 // bytes of the current group still to come: they stay on cur
}

// newPlacer gives device i the share budget_i = free_i - reserve_i, or,
// when total (the bytes of all the weights) is known, total split in
// proportion to those budgets, so the KV caches find room on every device.
func newPlacer(free []int64, reserve []int64, total int64) *placer {
	return newPlacerMax(free, reserve, total, 0)
}

// newPlacerMax is newPlacer with every share capped at most bytes (0: no
// cap); a device still takes at least one tensor or group.
func newPlacerMax(free []int64, reserve []int64, total, most int64) *placer {
	p := &placer{share: make([]int64, len(free)), used: make([]int64, len(free))}
	var sum int64
	for i := range free {
		p.share[i] = max(0, free[i]-reserve[i])
		sum += p.share[i]
	}
	if total > 0 && sum > 0 {
		for i := range p.share {
			p.share[i] = int64(math.Ceil(float64(total) * float64(p.share[i]) / float64(sum)))
		}
	}
	if most > 0 {
		for i := range p.share {
			p.share[i] = min(p.share[i], most)
		}
	}
	return p
}

// place returns the device index for a tensor of n bytes and accounts it.
func (p *placer) place(n int64) int {
	if p.hold > 0 {
		p.hold -= n
	} else {
		for p.cur < len(p.share)-1 && p.full(n) {
			p.cur++
		}
	}
	p.used[p.cur] += n
	return p.cur
}

// group says the next n bytes of tensors belong together (one decoder
// layer): they go to the current device if they fit there, else all to the
// next one, so an operation never meets weights of two devices and the
// hidden state crosses devices only between layers.
func (p *placer) group(n int64) {
	p.hold = 0
	for p.cur < len(p.share)-1 && p.full(n) {
		p.cur++
	}
	p.hold = n
}

// full says whether n more bytes pass the current device's share. A device
// with a share takes at least one tensor or group even when that passes it
// (a cap below one layer still gives each device a layer); a device with no
// share (no memory to spare) takes none.
func (p *placer) full(n int64) bool {
	c := p.cur
	return p.share[c] <= 0 || (p.used[c] > 0 && p.used[c]+n > p.share[c])
}

// defaultReserve is a tenth of a device's memory, at least 1 GiB.
func defaultReserve(total int64) int64 { return max(total/10, 1<<30) }

// sizeClass rounds an activation's size up to its pool class: powers of two
// up to 64 MiB, then multiples of 2 MiB. Freed activations wait in a pool per
// device and class, since cudaMalloc and cudaFree (which synchronizes the
// device) are far too slow for every step's temporaries.
func sizeClass(n int64) int64 {
	const big = 64 << 20
	if n <= 256 {
		return 256
	}
	if n > big {
		const step = 2 << 20
		return (n + step - 1) / step * step
	}
	c := int64(256)
	for c < n {
		c <<= 1
	}
	return c
}

// packSparse flattens draft distributions for the device: q_i is
// ids[off[i]:off[i+1]] with probs at the same places.
func packSparse(q []sampling.Sparse) (ids []int32, probs []float32, off []int32) {
	off = make([]int32, len(q)+1)
	for i, s := range q {
		ids = append(ids, s.IDs...)
		probs = append(probs, s.Probs...)
		off[i+1] = int32(len(ids))
	}
	return ids, probs, off
}

// freeList holds the freed buffers of one size class, lowest address taken
// first. The order buffers are freed in then does not matter: a step that
// allocates in the same order as the last one gets the same buffers back,
// which a replayed step graph (whose kernels hold the addresses) needs.
type freeList []unsafe.Pointer

// put adds p, keeping the list sorted by descending address.
func (l *freeList) put(p unsafe.Pointer) {
	s := *l
	i := sort.Search(len(s), func(i int) bool { return uintptr(s[i]) < uintptr(p) })
	s = append(s, nil)
	copy(s[i+1:], s[i:])
	s[i] = p
	*l = s
}

// take removes and returns the lowest address (nil when empty).
func (l *freeList) take() unsafe.Pointer {
	s := *l
	if len(s) == 0 {
		return nil
	}
	p := s[len(s)-1]
	*l = s[:len(s)-1]
	return p
}

// bf16Tail returns the upper half of dst's memory as len(dst) bf16 values:
// a device's bf16 tensor is copied there and widened in place by
// widenBF16, so reading it needs no second host buffer.
func bf16Tail(dst []float32) []uint16 {
	if len(dst) == 0 {
		return nil
	}
	all := unsafe.Slice((*uint16)(unsafe.Pointer(&dst[0])), 2*len(dst))
	return all[len(dst):]
}

// widenBF16 converts the bf16 values bf16Tail(dst) holds into dst, front to
// back: dst[i] (bytes 4i..4i+3) is written after tail[i] (bytes 2n+2i..) is
// read, and never reaches a tail value not yet read (4i+4 <= 2n+2i+2 for
// i < n).
func widenBF16(dst []float32) {
	tail := bf16Tail(dst)
	for i := range dst {
		dst[i] = math.Float32frombits(uint32(tail[i]) << 16)
	}
}
