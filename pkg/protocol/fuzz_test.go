package protocol

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"
)

// seedCorpus adds the wire fixtures, so the fuzzer starts from valid messages.
func seedCorpus(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "v1", "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no fixtures: %v", err)
	}
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"v":1,"op":"verify","q":[{"ids":[1],"probs":[1e39]}]}`))
	f.Add([]byte(`{"v":99999999999999999999}`))
}

// FuzzDecode feeds any bytes to every message type: decoding may fail but
// never panics, and whatever decodes encodes and decodes back.
func FuzzDecode(f *testing.F) {
	seedCorpus(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, m := range examples() {
			m = blank(m)
			if err := Decode(data, m); err != nil {
				continue
			}
			out, err := Encode(m)
			if err != nil {
				t.Fatalf("%T decoded from %q does not encode: %v", m, data, err)
			}
			if err := Decode(out, blank(m)); err != nil {
				t.Fatalf("%T re-encoded as %q does not decode: %v", m, out, err)
			}
		}
	})
}

// FuzzAssemble feeds chunks with arbitrary headers to an Assembler.
func FuzzAssemble(f *testing.F) {
	msgs, err := Split("s", "x", []byte(`{"v":1}`), &Tensor{Shape: []int{4, 8}, Data: make([]float32, 32)}, 300)
	if err != nil {
		f.Fatal(err)
	}
	for _, m := range msgs {
		h := m.Header
		f.Add(h.Get(HeaderChunk), h.Get(HeaderChunks), h.Get(HeaderBytes), h.Get(HeaderControl), h.Get(HeaderDType), h.Get(HeaderShape), m.Data)
	}
	f.Add("0", "1", "4", "0", "f32", "1", []byte{0, 0, 128, 63})
	f.Fuzz(func(t *testing.T, chunk, chunks, total, control, dtype, shape string, data []byte) {
		a := NewAssembler(AssemblerOptions{MaxBytes: 1 << 16})
		m := nats.NewMsg("s")
		m.Header.Set(HeaderFrame, "f")
		for k, v := range map[string]string{HeaderChunk: chunk, HeaderChunks: chunks, HeaderBytes: total, HeaderControl: control, HeaderDType: dtype, HeaderShape: shape} {
			if v != "" {
				m.Header.Set(k, v)
			}
		}
		m.Data = data
		for range 3 { // the same chunk again: continuation or duplicate
			fr, err := a.Add(m)
			if err != nil || fr == nil {
				continue
			}
			if fr.Tensor != nil {
				n, err := elements(fr.Tensor.Shape)
				if err != nil || n != len(fr.Tensor.Data) {
					t.Fatalf("frame with shape %v and %d values", fr.Tensor.Shape, len(fr.Tensor.Data))
				}
			}
		}
	})
}
