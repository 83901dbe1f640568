package cuda

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"unsafe"

	"github.com/draftbench/draftbench/pkg/sampling"
)

const gib = int64(1) << 30

// TestPlacer covers the weight split: in order, by share, never back.
func TestPlacer(t *testing.T) {
	tests := []struct {
		name    string
		free    []int64
		reserve []int64
		total   int64
		tensors []int64
		want    []int
	}{
		{"one device takes all", []int64{10 * gib}, []int64{gib}, 0,
			[]int64{4 * gib, 4 * gib, 4 * gib}, []int{0, 0, 0}},
		{"fill in order without a total", []int64{10 * gib, 10 * gib}, []int64{gib, gib}, 0,
			[]int64{4 * gib, 4 * gib, 4 * gib, gib}, []int{0, 0, 1, 1}},
		{"equal devices split a known total in half", []int64{80 * gib, 80 * gib}, []int64{8 * gib, 8 * gib}, 8 * gib,
			[]int64{gib, gib, gib, gib, gib, gib, gib, gib}, []int{0, 0, 0, 0, 1, 1, 1, 1}},
		{"unequal devices split in proportion to free memory", []int64{31 * gib, 11 * gib}, []int64{gib, gib}, 8 * gib,
			[]int64{gib, gib, gib, gib, gib, gib, gib, gib}, []int{0, 0, 0, 0, 0, 0, 1, 1}},
		{"a tensor past the share moves on, later small ones do not go back", []int64{10 * gib, 10 * gib, 10 * gib}, []int64{0, 0, 0}, 0,
			[]int64{6 * gib, 6 * gib, gib, 9 * gib, 9 * gib}, []int{0, 1, 1, 2, 2}},
		{"the last device takes the rest", []int64{2 * gib, 2 * gib}, []int64{0, 0}, 0,
			[]int64{gib, 2 * gib, 2 * gib}, []int{0, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPlacer(tt.free, tt.reserve, tt.total)
			var got []int
			for _, n := range tt.tensors {
				got = append(got, p.place(n))
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("placed on %v, want %v (shares %v)", got, tt.want, p.share)
			}
		})
	}
}

// TestPlacerGroups: a group (a decoder layer) lands on one device, moving
// on whole when it does not fit where the previous one ended, even when a
// tensor inside it would have passed the share on its own.
func TestPlacerGroups(t *testing.T) {
	// Two devices, 10 GiB each of the 20 GiB total: layers of 3 GiB as a
	// norm (tiny), a 2 GiB product and a 1 GiB product with two norms last,
	// as the loader loads a Qwen3 layer.
	p := newPlacer([]int64{10 * gib, 10 * gib}, []int64{0, 0}, 20*gib)
	const norm = 1 << 12
	var got [][]int
	for range 6 {
		p.group(2*gib + gib + 3*norm)
		layer := []int{p.place(norm), p.place(2 * gib), p.place(gib), p.place(norm), p.place(norm)}
		got = append(got, layer)
	}
	want := [][]int{{0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}, {1, 1, 1, 1, 1}, {1, 1, 1, 1, 1}, {1, 1, 1, 1, 1}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("layers placed on %v, want %v", got, want)
	}
	// Without groups the fourth layer straddles the boundary: its first
	// norm and product stay, the rest moves (what FinishQKV once tripped on).
	p = newPlacer([]int64{10 * gib, 10 * gib}, []int64{0, 0}, 20*gib)
	var flat []int
	for range 4 {
		flat = append(flat, p.place(norm), p.place(2*gib), p.place(gib), p.place(norm), p.place(norm))
	}
	if flat[15] != 0 || flat[17] != 1 {
		t.Errorf("ungrouped layer 4 placed on %v, want it split", flat[15:])
	}
	// A group larger than a whole device still stays together.
	p = newPlacer([]int64{4 * gib, 4 * gib}, []int64{0, 0}, 0)
	p.group(6 * gib)
	if a, b := p.place(3*gib), p.place(3*gib); a != b {
		t.Errorf("a group bigger than a device split over devices %d and %d", a, b)
	}
}

// TestPlacerCap: with every share capped at a byte, each device but the last
// takes one tensor or group (the embedding, then one layer each) and the last
// the rest.
func TestPlacerCap(t *testing.T) {
	p := newPlacerMax([]int64{80 * gib, 80 * gib, 80 * gib}, []int64{0, 0, 0}, 0, 1)
	embed := p.place(gib)
	var layers []int
	for range 3 {
		p.group(3 * gib)
		l := p.place(gib)
		if p.place(2*gib) != l {
			t.Fatal("a layer split over devices")
		}
		layers = append(layers, l)
	}
	head := p.place(gib)
	if embed != 0 || !reflect.DeepEqual(layers, []int{1, 2, 2}) || head != 2 {
		t.Errorf("embedding on %d, layers on %v, head on %d; want 0, [1 2 2], 2", embed, layers, head)
	}
}

// TestPlacerSkipsFullDevices: a device with nothing to spare (free memory
// under its reserve) takes no weights, however small.
func TestPlacerSkipsFullDevices(t *testing.T) {
	p := newPlacer([]int64{gib / 2, 80 * gib}, []int64{gib, gib}, 0)
	if d := p.place(1 << 20); d != 1 {
		t.Errorf("a tensor went to device %d, whose share is %d", d, p.share[d])
	}
	p = newPlacer([]int64{gib / 2, 80 * gib}, []int64{gib, gib}, 0)
	p.group(gib)
	if d := p.place(gib); d != 1 {
		t.Errorf("a layer went to device %d, whose share is %d", d, p.share[d])
	}
}

func TestDefaultReserve(t *testing.T) {
	tests := []struct{ total, want int64 }{{80 * gib, 8 * gib}, {4 * gib, gib}}
	for _, tt := range tests {
		if got := defaultReserve(tt.total); got != tt.want {
			t.Errorf("defaultReserve(%d) = %d, want %d", tt.total, got, tt.want)
		}
	}
}

func TestSizeClass(t *testing.T) {
	tests := []struct{ n, want int64 }{
		{0, 256}, {1, 256}, {256, 256}, {257, 512}, {4096, 4096}, {4097, 8192},
		{64 << 20, 64 << 20}, {64<<20 + 1, 66 << 20}, {100 << 20, 100 << 20}, {100<<20 + 5, 102 << 20},
	}
	for _, tt := range tests {
		if got := sizeClass(tt.n); got != tt.want {
			t.Errorf("sizeClass(%d) = %d, want %d", tt.n, got, tt.want)
		}
		if got := sizeClass(tt.n); got < tt.n {
			t.Errorf("sizeClass(%d) = %d is too small", tt.n, got)
		}
	}
}

func TestPackSparse(t *testing.T) {
	q := []sampling.Sparse{
		{IDs: []int32{5, 2}, Probs: []float32{0.7, 0.3}},
		{},
		{IDs: []int32{9}, Probs: []float32{1}},
	}
	ids, probs, off := packSparse(q)
	if want := []int32{5, 2, 9}; !reflect.DeepEqual(ids, want) {
		t.Errorf("ids %v, want %v", ids, want)
	}
	if want := []float32{0.7, 0.3, 1}; !reflect.DeepEqual(probs, want) {
		t.Errorf("probs %v, want %v", probs, want)
	}
	if want := []int32{0, 2, 2, 3}; !reflect.DeepEqual(off, want) {
		t.Errorf("offsets %v, want %v", off, want)
	}
}

// TestFreeListLowestFirst: whatever order buffers come back in, they are
// handed out lowest address first, so two steps that allocate alike get
// the same buffers (a replayed step graph relies on it).
func TestFreeListLowestFirst(t *testing.T) {
	buf := make([]byte, 64)
	at := func(i int) unsafe.Pointer { return unsafe.Pointer(&buf[i*8]) }
	var l freeList
	for _, i := range []int{3, 0, 5, 1, 4, 2} {
		l.put(at(i))
	}
	for want := 0; want < 6; want++ {
		if got := l.take(); got != at(want) {
			t.Fatalf("take %d: got buffer %v, want %v", want, got, at(want))
		}
	}
	if l.take() != nil {
		t.Fatal("an empty list gave a buffer")
	}
	// Two "steps": allocate three, free them in another order, allocate again.
	for _, i := range []int{0, 1, 2} {
		l.put(at(i))
	}
	first := []unsafe.Pointer{l.take(), l.take(), l.take()}
	l.put(first[2])
	l.put(first[0])
	l.put(first[1])
	for i := range first {
		if got := l.take(); got != first[i] {
			t.Fatalf("second step's allocation %d got %v, want %v", i, got, first[i])
		}
	}
}

// TestWidenBF16InPlace: bf16 values placed in the upper half of a float32
// slice widen in place to exactly what a separate buffer gives.
func TestWidenBF16InPlace(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, n := range []int{0, 1, 2, 3, 7, 64, 1001} {
		want := make([]uint16, n)
		for i := range want {
			want[i] = uint16(rng.Uint32())
		}
		dst := make([]float32, n)
		for i := range dst {
			dst[i] = float32(rng.NormFloat64()) // garbage the read overwrites
		}
		copy(bf16Tail(dst), want)
		widenBF16(dst)
		for i, h := range want {
			if got, w := math.Float32bits(dst[i]), uint32(h)<<16; got != w {
				t.Fatalf("n %d, element %d: %#x, want %#x", n, i, got, w)
			}
		}
	}
}
