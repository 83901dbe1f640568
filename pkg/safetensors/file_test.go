package safetensors

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// hfFixture is testdata/hf.safetensors, written by Hugging Face's safetensors
// 0.8.0 (testdata/make_hf_fixture.py); hfTensors are its tensors in the order
// that writer laid them out.
const hfFixture = "testdata/hf.safetensors"

var hfMetadata = map[string]string{"format": "np", "writer": "huggingface safetensors 0.8.0"}

func hfTensors() []WriteTensor {
	return []WriteTensor{
		{"i64", I64, []int{2}, []byte{1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"f32", F32, []int{3}, f32s(1, -2.5, 3.4028235e38)},
		{"scalar", F32, []int{}, f32s(0.5)},
		{"bf16", BF16, []int{2, 3}, u16s(0x3f80, 0xc020, 0x7f80, 0x7fc0, 0x0001, 0x8000)},
		{"empty", F16, []int{0, 4}, nil},
		{"f16", F16, []int{2, 4}, u16s(0x3c00, 0xc100, 0x7bff, 0x0001, 0x03ff, 0xfc00, 0x7e00, 0x8000)},
		{"u8", U8, []int{3}, []byte{0, 127, 255}},
	}
}

func TestOpenReferenceFile(t *testing.T) {
	f, err := Open(hfFixture)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	if got, want := f.Names(), []string{"bf16", "empty", "f16", "f32", "i64", "scalar", "u8"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	if got := f.Metadata(); fmt.Sprint(got) != fmt.Sprint(hfMetadata) {
		t.Errorf("Metadata() = %v, want %v", got, hfMetadata)
	}
	negZero := float32(math.Copysign(0, -1))
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	floats := map[string][]float32{
		"bf16":   {1, -2.5, inf, nan, math.Float32frombits(0x00010000), negZero},
		"f16":    {1, -2.5, 65504, 0x1p-24, 1023 * 0x1p-24, -inf, nan, negZero},
		"f32":    {1, -2.5, 3.4028235e38},
		"scalar": {0.5},
		"empty":  {},
	}
	for _, want := range hfTensors() {
		t.Run(want.Name, func(t *testing.T) {
			info, ok := f.Info(want.Name)
			if !ok {
				t.Fatal("Info: not found")
			}
			if info.DType != want.DType || !slices.Equal(info.Shape, want.Shape) || info.File != hfFixture {
				t.Errorf("Info = %+v, want dtype %s shape %v", info, want.DType, want.Shape)
			}
			if info.Size != int64(len(want.Data)) || info.NumElements()*elemSize(t, want.DType) != len(want.Data) {
				t.Errorf("Info size %d, %d elements; want %d bytes", info.Size, info.NumElements(), len(want.Data))
			}
			raw, err := f.Raw(want.Name)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(raw, want.Data) {
				t.Errorf("Raw = %x, want %x", raw, want.Data)
			}
			got, err := f.Float32(want.Name)
			if wantF, ok := floats[want.Name]; ok {
				if err != nil {
					t.Fatal(err)
				}
				checkFloat32s(t, got, wantF)
			} else if !errors.Is(err, ErrUnsupportedDType) || !strings.Contains(err.Error(), want.Name) {
				t.Errorf("Float32 of %s: error %v, want ErrUnsupportedDType naming the tensor", want.DType, err)
			}
		})
	}
}

func elemSize(t *testing.T, d DType) int {
	t.Helper()
	n, err := d.ElemSize()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWriteMatchesReference writes what the reference writer wrote, in its
// order, and expects the same bytes: header JSON, metadata placement, space
// padding and data layout all agree.
func TestWriteMatchesReference(t *testing.T) {
	want, err := os.ReadFile(hfFixture)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "out.safetensors")
	if err := Write(path, hfTensors(), hfMetadata); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Write produced\n%q\nthe reference writer produced\n%q", got, want)
	}
}

// TestRoundTrip writes each float dtype from known bit patterns, reads it
// back through Float32 and encodes the floats again with FromFloat32.
func TestRoundTrip(t *testing.T) {
	negZero := float32(math.Copysign(0, -1))
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	tests := []struct {
		dtype DType
		data  []byte
		want  []float32
	}{
		{BF16, u16s(0x3f80, 0xc020, 0x0001, 0x7f7f, 0x7f80, 0xff80, 0x7fc0, 0x8000),
			[]float32{1, -2.5, math.Float32frombits(0x00010000), math.Float32frombits(0x7f7f0000), inf, -inf, nan, negZero}},
		{F16, u16s(0x3c00, 0xc100, 0x7bff, 0x0001, 0x0400, 0x7c00, 0xfc00, 0x7e00, 0x8000),
			[]float32{1, -2.5, 65504, 0x1p-24, 0x1p-14, inf, -inf, nan, negZero}},
		{F32, f32s(1, -2.5, 65504, 0x1p-149, math.MaxFloat32, inf, -inf, nan, negZero),
			[]float32{1, -2.5, 65504, 0x1p-149, math.MaxFloat32, inf, -inf, nan, negZero}},
	}
	for _, tt := range tests {
		t.Run(string(tt.dtype), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "model.safetensors")
			tensors := []WriteTensor{
				{Name: "w", DType: tt.dtype, Shape: []int{len(tt.want)}, Data: tt.data},
				{Name: "m", DType: tt.dtype, Shape: []int{1, 2, 1}, Data: tt.data[:2*elemSize(t, tt.dtype)]},
			}
			if err := Write(path, tensors, map[string]string{"format": "pt"}); err != nil {
				t.Fatal(err)
			}
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := f.Float32("w")
			if err != nil {
				t.Fatal(err)
			}
			checkFloat32s(t, got, tt.want)
			back, err := FromFloat32(tt.dtype, got)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, tt.data) {
				t.Errorf("FromFloat32 = %x, want %x", back, tt.data)
			}
			m, ok := f.Info("m")
			if !ok || !slices.Equal(m.Shape, []int{1, 2, 1}) || m.NumElements() != 2 {
				t.Errorf("Info(m) = %+v, %v", m, ok)
			}
			w, _ := f.Info("w")
			// Tensors follow the given order, right after the padded header.
			if w.Offset%8 != 0 || m.Offset != w.Offset+w.Size {
				t.Errorf("offsets w=%d (size %d) m=%d: want w 8-aligned and m right after w", w.Offset, w.Size, m.Offset)
			}
		})
	}
}

func TestHeaderPadding(t *testing.T) {
	for n := range 9 { // every header length modulo 8
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "p.safetensors")
			name := strings.Repeat("x", n+1)
			if err := Write(path, []WriteTensor{{Name: name, DType: U8, Shape: []int{1}, Data: []byte{7}}}, nil); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			hlen := int(data[0]) // small enough for one byte
			if hlen%8 != 0 {
				t.Errorf("header length %d is not a multiple of 8", hlen)
			}
			hdr := string(data[8 : 8+hlen])
			if trimmed := strings.TrimRight(hdr, " "); !strings.HasSuffix(trimmed, "}") || len(hdr)-len(trimmed) >= 8 {
				t.Errorf("header %q should be JSON padded with fewer than 8 spaces", hdr)
			}
			if strings.Contains(hdr, metadataKey) {
				t.Errorf("header %q has __metadata__ though none was given", hdr)
			}
		})
	}
}

func TestRawIsZeroCopy(t *testing.T) {
	f, err := Open(hfFixture)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, _ := f.Info("f16")
	raw, err := f.Raw("f16")
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(raw)) != info.Size || cap(raw) != len(raw) {
		t.Errorf("len %d cap %d, want both %d", len(raw), cap(raw), info.Size)
	}
	if unsafe.SliceData(raw) != &f.data[info.Offset] {
		t.Error("Raw copied the data instead of slicing the mapping")
	}
	again, _ := f.Raw("f16")
	if unsafe.SliceData(again) != unsafe.SliceData(raw) {
		t.Error("two Raw calls returned different memory")
	}
}

func TestFileAccessors(t *testing.T) {
	f, err := Open(hfFixture)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("returns copies", func(t *testing.T) {
		info, _ := f.Info("f16")
		info.Shape[0] = 99
		f.Names()[0] = "changed"
		f.Metadata()["format"] = "changed"
		again, _ := f.Info("f16")
		if again.Shape[0] != 2 || f.Names()[0] != "bf16" || f.Metadata()["format"] != "np" {
			t.Error("changing returned values changed the file's header")
		}
	})
	t.Run("unknown tensor", func(t *testing.T) {
		if _, ok := f.Info("nope"); ok {
			t.Error("Info found a tensor that does not exist")
		}
		_, errRaw := f.Raw("nope")
		_, errF32 := f.Float32("nope")
		for _, err := range []error{errRaw, errF32} {
			if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) || !strings.Contains(err.Error(), hfFixture) {
				t.Errorf("error %v: want ErrNotFound naming the file and tensor", err)
			}
		}
	})
	t.Run("after close", func(t *testing.T) {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		_, errRaw := f.Raw("f16")
		_, errF32 := f.Float32("f16")
		for _, err := range []error{errRaw, errF32} {
			if !errors.Is(err, ErrClosed) {
				t.Errorf("error %v, want ErrClosed", err)
			}
		}
	})
}

func TestOpenMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.safetensors")
	if _, err := Open(path); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("Open: %v, want ErrNotExist naming the path", err)
	}
	if _, err := Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Open(dir): %v, want a not-a-regular-file error", err)
	}
}

// TestOpenRejects feeds Open every kind of broken file: each must give a
// *FormatError naming the file and, where there is one, the tensor.
func TestOpenRejects(t *testing.T) {
	const ok8 = `{"dtype":"U8","shape":[8],"data_offsets":[0,8]}`
	data8 := make([]byte, 8)
	tests := []struct {
		name   string
		file   []byte
		tensor string
		reason string
	}{
		{"empty file", nil, "", "0 bytes, shorter than the 8-byte header length"},
		{"shorter than 8 bytes", []byte{1, 0, 0, 0, 0}, "", "5 bytes, shorter"},
		{"header length past end", fileBytesWithLen(64, `{}`, nil), "", "header length 64 runs past the end of the 10-byte file"},
		{"header length absurd", fileBytesWithLen(100_000_001, `{}`, nil), "", "exceeds the 100000000-byte limit"},
		{"header length u64 max", fileBytesWithLen(math.MaxUint64, `{}`, nil), "", "exceeds"},
		{"zero header length", fileBytesWithLen(0, ``, nil), "", "not JSON"},
		{"not json", fileBytes(`{"a":`, nil), "", "not JSON"},
		{"json array", fileBytes(`[1,2]`, nil), "", "not a JSON object"},
		{"json string", fileBytes(`"hello"`, nil), "", "not a JSON object"},
		{"trailing data", fileBytes(`{} {}`, nil), "", "data after the JSON object"},
		{"trailing garbage", fileBytes(`{}x`, nil), "", "data after the JSON object"},
		{"invalid utf-8", fileBytes("{\"\xff\":1}", nil), "", "not valid UTF-8"},
		{"entry not an object", fileBytes(`{"w":5}`, nil), "w", "not a {dtype, shape, data_offsets} object"},
		{"dtype not a string", fileBytes(`{"w":{"dtype":4,"shape":[],"data_offsets":[0,0]}}`, nil), "w", "not a {dtype"},
		{"repeated field", fileBytes(`{"w":{"dtype":"U8","shape":[8],"data_offsets":[0,8],"shape":[2,4]}}`, data8), "w", `key "shape" appears more than once`},
		{"missing dtype", fileBytes(`{"w":{"shape":[8],"data_offsets":[0,8]}}`, data8), "w", "missing dtype"},
		{"missing shape", fileBytes(`{"w":{"dtype":"U8","data_offsets":[0,8]}}`, data8), "w", "missing shape"},
		{"null shape", fileBytes(`{"w":{"dtype":"U8","shape":null,"data_offsets":[0,8]}}`, data8), "w", "missing shape"},
		{"missing offsets", fileBytes(`{"w":{"dtype":"U8","shape":[8]}}`, data8), "w", "missing data_offsets"},
		{"unknown dtype", fileBytes(`{"w":{"dtype":"F12","shape":[8],"data_offsets":[0,8]}}`, data8), "w", `unknown dtype "F12"`},
		{"negative dim", fileBytes(`{"w":{"dtype":"U8","shape":[-2,-4],"data_offsets":[0,8]}}`, data8), "w", "negative dimension -2"},
		{"fractional dim", fileBytes(`{"w":{"dtype":"U8","shape":[2.5],"data_offsets":[0,8]}}`, data8), "w", "not a {dtype"},
		{"shape overflows", fileBytes(`{"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}`, data8), "w", "overflows"},
		{"size mismatch", fileBytes(`{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, data8), "w", "needs 12 bytes but data_offsets [0 8] span 8"},
		{"begin after end", fileBytes(`{"w":{"dtype":"U8","shape":[0],"data_offsets":[8,0]}}`, data8), "w", "begin after they end"},
		{"negative offset", fileBytes(`{"w":{"dtype":"U8","shape":[2],"data_offsets":[-2,0]}}`, data8), "w", "negative"},
		{"one offset", fileBytes(`{"w":{"dtype":"U8","shape":[8],"data_offsets":[8]}}`, data8), "w", "must be [begin, end]"},
		{"offsets past end", fileBytes(`{"w":{"dtype":"U8","shape":[8],"data_offsets":[4,12]}}`, data8), "w", "run past the end of the 8-byte data buffer"},
		{"overlap", fileBytes(`{"a":`+ok8+`,"b":{"dtype":"U8","shape":[2],"data_offsets":[6,8]}}`, data8), "b", `overlaps tensor "a"`},
		{"overlap far back", fileBytes(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},"c":{"dtype":"U8","shape":[3],"data_offsets":[3,6]}}`, data8), "c", `overlaps tensor "b"`},
		{"duplicate name", fileBytes(`{"a":`+ok8+`,"a":`+ok8+`}`, data8), "a", "more than once"},
		{"metadata not strings", fileBytes(`{"__metadata__":{"n":1}}`, nil), "", "__metadata__ is not an object of strings"},
		{"metadata not object", fileBytes(`{"__metadata__":[]}`, nil), "", "__metadata__ is not an object of strings"},
	}
	dir := t.TempDir()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeBytes(t, dir, fmt.Sprintf("bad%d.safetensors", i), tt.file)
			f, err := Open(path)
			if err == nil {
				f.Close()
			}
			checkFormatError(t, err, path, tt.tensor, tt.reason)
		})
	}
}

// TestOpenAccepts covers files that are unusual but valid.
func TestOpenAccepts(t *testing.T) {
	tests := []struct {
		name  string
		file  []byte
		names []string
	}{
		{"no tensors", fileBytes(`{}`, nil), []string{}},
		{"padding and newlines", fileBytes("{\n}   \n\t", nil), []string{}},
		{"gap and trailing bytes", fileBytes(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}`, make([]byte, 16)), []string{"a"}},
		{"unknown field ignored", fileBytes(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":true}}`, []byte{1}), []string{"a"}},
		{"empty tensor inside another", fileBytes(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[3,0],"data_offsets":[2,2]}}`, make([]byte, 4)), []string{"a", "b"}},
		{"null metadata", fileBytes(`{"__metadata__":null}`, nil), []string{}},
		{"empty name", fileBytes(`{"":{"dtype":"BOOL","shape":[],"data_offsets":[0,1]}}`, []byte{1}), []string{""}},
	}
	dir := t.TempDir()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeBytes(t, dir, fmt.Sprintf("ok%d.safetensors", i), tt.file)
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if got := f.Names(); !slices.Equal(got, tt.names) {
				t.Errorf("Names() = %v, want %v", got, tt.names)
			}
		})
	}
}

func TestWriteRejects(t *testing.T) {
	tests := []struct {
		name    string
		tensors []WriteTensor
		reason  string
	}{
		{"reserved name", []WriteTensor{{Name: "__metadata__", DType: U8, Shape: []int{1}, Data: []byte{1}}}, "reserved"},
		{"duplicate", []WriteTensor{{Name: "a", DType: U8, Shape: []int{1}, Data: []byte{1}}, {Name: "a", DType: U8, Shape: []int{1}, Data: []byte{1}}}, `tensor "a" appears more than once`},
		{"unknown dtype", []WriteTensor{{Name: "a", DType: "F12", Shape: []int{1}, Data: []byte{1}}}, `unknown dtype "F12"`},
		{"negative dim", []WriteTensor{{Name: "a", DType: U8, Shape: []int{-1}}}, "negative dimension"},
		{"short data", []WriteTensor{{Name: "a", DType: F32, Shape: []int{2}, Data: []byte{1, 2, 3}}}, "needs 8 bytes, data has 3"},
		{"overflow", []WriteTensor{{Name: "a", DType: F32, Shape: []int{math.MaxInt / 2, 4}}}, "overflows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "model.safetensors")
			err := Write(path, tt.tensors, nil)
			if err == nil || !strings.Contains(err.Error(), tt.reason) || !strings.Contains(err.Error(), path) {
				t.Errorf("Write: %v, want an error naming %s and containing %q", err, path, tt.reason)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("failed Write left files behind: %v", left)
			}
		})
	}
	t.Run("missing folder", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "no", "model.safetensors")
		if err := Write(path, nil, nil); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
			t.Errorf("Write: %v, want ErrNotExist naming the path", err)
		}
	})
}

func TestWriteReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.safetensors")
	for _, v := range []byte{1, 2} {
		if err := Write(path, []WriteTensor{{Name: "v", DType: U8, Shape: []int{1}, Data: []byte{v}}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if raw, _ := f.Raw("v"); !bytes.Equal(raw, []byte{2}) {
		t.Errorf("Raw = %v, want the second write's [2]", raw)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("folder holds %v, want only model.safetensors", entries)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
}
