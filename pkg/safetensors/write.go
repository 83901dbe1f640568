package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// WriteTensor is one tensor to write: little-endian element bytes of DType in
// row-major order.
type WriteTensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// Write writes a safetensors file at path holding tensors, their data laid out
// in the order given, and metadata as __metadata__ (omitted when empty). The
// header is padded with spaces to a multiple of 8 bytes, as the reference
// writer does, which keeps tensor data 8-byte aligned.
func Write(path string, tensors []WriteTensor, metadata map[string]string) error {
	hdr, err := encodeHeader(tensors, metadata)
	if err != nil {
		return fmt.Errorf("safetensors: writing %s: %w", path, err)
	}
	err = writeAtomic(path, func(w io.Writer) error {
		var n [headerLenSize]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(hdr)))
		if _, err := w.Write(n[:]); err != nil {
			return err
		}
		if _, err := w.Write(hdr); err != nil {
			return err
		}
		for _, t := range tensors {
			if _, err := w.Write(t.Data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("safetensors: writing %s: %w", path, err)
	}
	return nil
}

// encodeHeader validates tensors and builds the padded header JSON.
func encodeHeader(tensors []WriteTensor, metadata map[string]string) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	member := func(key string, value any) error {
		if !first {
			b.WriteByte(',')
		}
		first = false
		if err := writeJSON(&b, key); err != nil {
			return err
		}
		b.WriteByte(':')
		return writeJSON(&b, value)
	}
	if len(metadata) > 0 {
		if err := member(metadataKey, metadata); err != nil { // maps marshal with sorted keys
			return nil, err
		}
	}

	seen := make(map[string]bool, len(tensors))
	var offset int64
	for _, t := range tensors {
		switch {
		case t.Name == metadataKey:
			return nil, fmt.Errorf("tensor name %q is reserved for metadata", t.Name)
		case seen[t.Name]:
			return nil, fmt.Errorf("tensor %q appears more than once", t.Name)
		}
		seen[t.Name] = true
		elem, err := t.DType.ElemSize()
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		for _, d := range t.Shape {
			if d < 0 {
				return nil, fmt.Errorf("tensor %q: shape %v has negative dimension %d", t.Name, t.Shape, d)
			}
		}
		want, ok := byteSize(t.Shape, elem)
		if !ok {
			return nil, fmt.Errorf("tensor %q: shape %v of %s overflows 64-bit byte counts", t.Name, t.Shape, t.DType)
		}
		if int64(len(t.Data)) != want {
			return nil, fmt.Errorf("tensor %q: shape %v of %s needs %d bytes, data has %d", t.Name, t.Shape, t.DType, want, len(t.Data))
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{} // a scalar is "shape": [], never null
		}
		entry := struct {
			DType   DType    `json:"dtype"`
			Shape   []int    `json:"shape"`
			Offsets [2]int64 `json:"data_offsets"`
		}{t.DType, shape, [2]int64{offset, offset + want}}
		if err := member(t.Name, entry); err != nil {
			return nil, err
		}
		offset += want
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	return b.Bytes(), nil
}

// writeJSON appends v as compact JSON without HTML escaping, so names such as
// "a<b" stay readable in the header.
func writeJSON(b *bytes.Buffer, v any) error {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	b.Truncate(b.Len() - 1) // Encode ends with a newline
	return nil
}

// indexFile is the layout transformers writes for sharded checkpoints.
type indexFile struct {
	Metadata  indexMetadata     `json:"metadata"`
	WeightMap map[string]string `json:"weight_map"`
}

type indexMetadata struct {
	TotalSize int64 `json:"total_size"`
}

// WriteIndex writes dir/model.safetensors.index.json mapping each tensor name
// to its shard file (a path relative to dir) with metadata.total_size, in the
// indented, key-sorted form transformers writes.
func WriteIndex(dir string, weightMap map[string]string, totalSize int64) error {
	path := filepath.Join(dir, IndexFileName)
	if totalSize < 0 {
		return fmt.Errorf("safetensors: writing %s: total size %d is negative", path, totalSize)
	}
	names := make([]string, 0, len(weightMap))
	for name := range weightMap {
		names = append(names, name)
	}
	sort.Strings(names) // report the first bad entry deterministically
	for _, name := range names {
		if shard := weightMap[name]; !filepath.IsLocal(filepath.FromSlash(shard)) {
			return fmt.Errorf("safetensors: writing %s: tensor %q: shard %q is not a path inside the folder", path, name, shard)
		}
	}
	data, err := json.MarshalIndent(indexFile{indexMetadata{totalSize}, weightMap}, "", "  ")
	if err != nil {
		return fmt.Errorf("safetensors: writing %s: %w", path, err)
	}
	data = append(data, '\n')
	err = writeAtomic(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
	if err != nil {
		return fmt.Errorf("safetensors: writing %s: %w", path, err)
	}
	return nil
}

// writeAtomic writes path through a temporary file in the same directory and
// renames it into place, so a reader never maps a half-written file and a
// failed write leaves any previous file intact.
func writeAtomic(path string, fill func(io.Writer) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	w := bufio.NewWriterSize(tmp, 1<<20)
	if err := fill(w); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	// CreateTemp makes the file 0600; model files are meant to be shared.
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
