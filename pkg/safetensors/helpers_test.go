package safetensors

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fileBytes assembles a safetensors file from a header and a data buffer,
// declaring the header's true length.
func fileBytes(header string, data []byte) []byte {
	return fileBytesWithLen(uint64(len(header)), header, data)
}

// fileBytesWithLen assembles a file whose length prefix says declared.
func fileBytesWithLen(declared uint64, header string, data []byte) []byte {
	out := binary.LittleEndian.AppendUint64(nil, declared)
	out = append(out, header...)
	return append(out, data...)
}

// writeBytes writes data to dir/name and returns the path.
func writeBytes(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// u16s encodes bit patterns as little-endian bytes.
func u16s(bits ...uint16) []byte {
	out := make([]byte, 0, 2*len(bits))
	for _, b := range bits {
		out = binary.LittleEndian.AppendUint16(out, b)
	}
	return out
}

// f32s encodes float32 values as little-endian bytes.
func f32s(vals ...float32) []byte {
	out := make([]byte, 0, 4*len(vals))
	for _, v := range vals {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v))
	}
	return out
}

// sameFloat32 compares bit for bit, except that any NaN equals any NaN.
func sameFloat32(a, b float32) bool {
	if a != a || b != b {
		return a != a && b != b
	}
	return math.Float32bits(a) == math.Float32bits(b)
}

func checkFloat32s(t *testing.T, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d values %v, want %d %v", len(got), got, len(want), want)
	}
	for i := range want {
		if !sameFloat32(got[i], want[i]) {
			t.Errorf("value %d: got %v (%#08x), want %v (%#08x)", i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

// checkFormatError asserts err is a *FormatError about file and tensor whose
// message contains reason.
func checkFormatError(t *testing.T, err error, file, tensor, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", reason)
	}
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error %q (%T) is not a *FormatError", err, err)
	}
	if fe.File != file {
		t.Errorf("error names file %q, want %q (%v)", fe.File, file, err)
	}
	if fe.Tensor != tensor {
		t.Errorf("error names tensor %q, want %q (%v)", fe.Tensor, tensor, err)
	}
	if msg := err.Error(); !strings.Contains(msg, reason) || !strings.Contains(msg, file) {
		t.Errorf("error %q should contain %q and the file name", msg, reason)
	}
}
