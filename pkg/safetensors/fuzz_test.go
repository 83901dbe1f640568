package safetensors

import (
	"encoding/binary"
	"os"
	"slices"
	"testing"
)

// FuzzParseHeader parses arbitrary headers over a zero-filled data buffer,
// with the declared header length off by skew. It must never panic, and
// whatever it accepts must describe tensors that lie inside the file, match
// their dtype and shape, and do not overlap.
func FuzzParseHeader(f *testing.F) {
	f.Add([]byte(`{}`), uint16(0), int8(0))
	f.Add([]byte(`{"__metadata__":{"format":"pt"},"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]}}`), uint16(8), int8(0))
	f.Add([]byte(`{"a":{"dtype":"F16","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}  `), uint16(4), int8(0))
	f.Add([]byte(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}}`), uint16(8), int8(0))
	f.Add([]byte(`{"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}`), uint16(8), int8(0))
	f.Add([]byte(`{"w":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}`), uint16(8), int8(3))
	f.Add([]byte(`{"w":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}`), uint16(8), int8(-3))
	f.Add([]byte(`{"a":1,"a":2}`), uint16(0), int8(0))
	f.Add([]byte("{\"\xff\":1}"), uint16(0), int8(0))
	if ref, err := os.ReadFile(hfFixture); err == nil {
		n := binary.LittleEndian.Uint64(ref)
		f.Add(ref[8:8+n], uint16(len(ref)-8-int(n)), int8(0))
	}

	f.Fuzz(func(t *testing.T, hdr []byte, dataLen uint16, skew int8) {
		declared := max(int64(len(hdr))+int64(skew), 0)
		file := fileBytesWithLen(uint64(declared), string(hdr), make([]byte, dataLen))
		h, err := parseFile("fuzz.safetensors", file)
		if err != nil {
			if _, ok := err.(*FormatError); !ok {
				t.Fatalf("error %v is %T, want *FormatError", err, err)
			}
			return
		}
		if !slices.IsSorted(h.names) || len(h.names) != len(h.tensors) {
			t.Fatalf("names %v do not list the %d tensors in order", h.names, len(h.tensors))
		}
		dataStart := 8 + declared
		var spans [][2]int64
		for _, name := range h.names {
			info := h.tensors[name]
			size, err := info.DType.ElemSize()
			if err != nil {
				t.Fatalf("accepted tensor %q with dtype %q", name, info.DType)
			}
			if info.Offset < dataStart || info.Offset+info.Size > int64(len(file)) {
				t.Fatalf("tensor %q at [%d, %d) lies outside the data buffer [%d, %d)", name, info.Offset, info.Offset+info.Size, dataStart, len(file))
			}
			if int64(info.NumElements())*int64(size) != info.Size {
				t.Fatalf("tensor %q: %d elements of %d bytes but %d bytes of data", name, info.NumElements(), size, info.Size)
			}
			if info.Size > 0 {
				spans = append(spans, [2]int64{info.Offset, info.Offset + info.Size})
			}
			if info.DType.convertible() {
				dst := make([]float32, info.NumElements())
				if err := ToFloat32(dst, info.DType, file[info.Offset:info.Offset+info.Size]); err != nil {
					t.Fatalf("converting accepted tensor %q: %v", name, err)
				}
			}
		}
		slices.SortFunc(spans, func(a, b [2]int64) int { return cmpInt64(a[0], b[0]) })
		for i := 1; i < len(spans); i++ {
			if spans[i][0] < spans[i-1][1] {
				t.Fatalf("accepted overlapping spans %v and %v", spans[i-1], spans[i])
			}
		}
	})
}
