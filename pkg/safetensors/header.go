package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"unicode/utf8"
)

const (
	// headerLenSize is the size of the little-endian u64 that starts a file.
	headerLenSize = 8
	// maxHeaderSize is the header limit of the reference implementation
	// (MAX_HEADER_SIZE in huggingface/safetensors); real headers are a few MB
	// at most, so anything larger is corruption, not a model.
	maxHeaderSize = 100_000_000
	// metadataKey is the reserved header key holding string metadata.
	metadataKey = "__metadata__"
)

// FormatError reports a malformed or inconsistent safetensors file or index.
type FormatError struct {
	File   string // path of the file at fault
	Tensor string // tensor concerned; empty when the fault is the file's
	Reason string // may be empty when Err says it all
	Err    error  // underlying cause, such as a JSON syntax error; may be nil
}

func (e *FormatError) Error() string {
	var b bytes.Buffer
	b.WriteString("safetensors: ")
	b.WriteString(e.File)
	if e.Tensor != "" {
		fmt.Fprintf(&b, ": tensor %q", e.Tensor)
	}
	for _, part := range []string{e.Reason, errString(e.Err)} {
		if part != "" {
			b.WriteString(": ")
			b.WriteString(part)
		}
	}
	return b.String()
}

func (e *FormatError) Unwrap() error { return e.Err }

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name   string
	DType  DType
	Shape  []int
	File   string // path of the file holding the tensor
	Offset int64  // absolute byte offset of the data in File
	Size   int64  // bytes of data
}

// NumElements returns the product of the shape (1 for a scalar).
func (t TensorInfo) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// header is a parsed and validated file header.
type header struct {
	tensors  map[string]TensorInfo
	names    []string // sorted
	metadata map[string]string
}

// tensorEntry is one tensor as spelled in the header JSON; pointers tell a
// missing (or null) field from an empty one.
type tensorEntry struct {
	DType   *string
	Shape   *[]int64
	Offsets *[]int64
}

// LFSPointerPrefix starts the small text file Git LFS leaves in place of a
// large file that was cloned without LFS.
const LFSPointerPrefix = "version https://git-lfs.github.com/spec/"

// parseFile parses and validates the header of a whole safetensors file held
// in data (usually a memory mapping). path is used in errors and TensorInfo.
func parseFile(path string, data []byte) (*header, error) {
	fail := func(tensor, reason string, err error) error {
		return &FormatError{File: path, Tensor: tensor, Reason: reason, Err: err}
	}
	if bytes.HasPrefix(data, []byte(LFSPointerPrefix)) {
		return nil, fail("", fmt.Sprintf("this %d-byte file is a Git LFS pointer, not the weights: fetch them (git lfs pull, or huggingface-cli download)", len(data)), nil)
	}
	if len(data) < headerLenSize {
		return nil, fail("", fmt.Sprintf("file is %d bytes, shorter than the 8-byte header length", len(data)), nil)
	}
	n := binary.LittleEndian.Uint64(data[:headerLenSize])
	if n > maxHeaderSize {
		return nil, fail("", fmt.Sprintf("header length %d exceeds the %d-byte limit", n, maxHeaderSize), nil)
	}
	if n > uint64(len(data)-headerLenSize) {
		return nil, fail("", fmt.Sprintf("header length %d runs past the end of the %d-byte file", n, len(data)), nil)
	}
	dataStart := int64(headerLenSize) + int64(n)
	dataLen := int64(len(data)) - dataStart
	raw := data[headerLenSize:dataStart]
	if !utf8.Valid(raw) {
		return nil, fail("", "header is not valid UTF-8", nil)
	}

	h := &header{tensors: map[string]TensorInfo{}}
	err := walkObject(raw, func(key string, value json.RawMessage) error {
		if key == metadataKey {
			if err := json.Unmarshal(value, &h.metadata); err != nil {
				return fail("", metadataKey+" is not an object of strings", err)
			}
			return nil
		}
		info, err := parseTensor(path, key, value, dataStart, dataLen)
		if err != nil {
			return err
		}
		h.tensors[key] = info
		return nil
	})
	if err != nil {
		var fe *FormatError
		var dup *duplicateKeyError
		switch {
		case errors.As(err, &fe):
			return nil, err
		case errors.As(err, &dup):
			return nil, fail(dup.key, "name appears more than once in the header", nil)
		}
		return nil, fail("", "header", err)
	}

	h.names = make([]string, 0, len(h.tensors))
	for name := range h.tensors {
		h.names = append(h.names, name)
	}
	sort.Strings(h.names)
	if err := checkOverlap(path, h); err != nil {
		return nil, err
	}
	return h, nil
}

// parseTensor decodes and validates one tensor entry of the header.
func parseTensor(path, name string, value json.RawMessage, dataStart, dataLen int64) (TensorInfo, error) {
	fail := func(reason string, err error) error {
		return &FormatError{File: path, Tensor: name, Reason: reason, Err: err}
	}
	var e tensorEntry
	err := walkObject(value, func(key string, value json.RawMessage) error {
		var dst any
		switch key {
		case "dtype":
			dst = &e.DType
		case "shape":
			dst = &e.Shape
		case "data_offsets":
			dst = &e.Offsets
		default:
			return nil // tools add fields of their own; they do not change the layout
		}
		if err := json.Unmarshal(value, dst); err != nil {
			return fmt.Errorf("field %q: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return TensorInfo{}, fail("entry is not a {dtype, shape, data_offsets} object", err)
	}
	switch {
	case e.DType == nil:
		return TensorInfo{}, fail("missing dtype", nil)
	case e.Shape == nil:
		return TensorInfo{}, fail("missing shape", nil)
	case e.Offsets == nil:
		return TensorInfo{}, fail("missing data_offsets", nil)
	}
	dtype := DType(*e.DType)
	elem, err := dtype.ElemSize()
	if err != nil {
		return TensorInfo{}, fail("", err)
	}

	shape := make([]int, len(*e.Shape))
	for i, d := range *e.Shape {
		if d < 0 {
			return TensorInfo{}, fail(fmt.Sprintf("shape %v has negative dimension %d", *e.Shape, d), nil)
		}
		if d > math.MaxInt {
			return TensorInfo{}, fail(fmt.Sprintf("shape %v dimension %d is too large", *e.Shape, d), nil)
		}
		shape[i] = int(d)
	}
	want, ok := byteSize(*e.Shape, elem)
	if !ok {
		return TensorInfo{}, fail(fmt.Sprintf("shape %v of %s overflows 64-bit byte counts", *e.Shape, dtype), nil)
	}

	offs := *e.Offsets
	if len(offs) != 2 {
		return TensorInfo{}, fail(fmt.Sprintf("data_offsets %v must be [begin, end]", offs), nil)
	}
	begin, end := offs[0], offs[1]
	switch {
	case begin < 0 || end < 0:
		return TensorInfo{}, fail(fmt.Sprintf("data_offsets %v are negative", offs), nil)
	case begin > end:
		return TensorInfo{}, fail(fmt.Sprintf("data_offsets %v begin after they end", offs), nil)
	case end > dataLen:
		return TensorInfo{}, fail(fmt.Sprintf("data_offsets %v run past the end of the %d-byte data buffer", offs, dataLen), nil)
	case end-begin != want:
		return TensorInfo{}, fail(fmt.Sprintf("shape %v of %s needs %d bytes but data_offsets %v span %d", *e.Shape, dtype, want, offs, end-begin), nil)
	}
	return TensorInfo{
		Name:   name,
		DType:  dtype,
		Shape:  shape,
		File:   path,
		Offset: dataStart + begin,
		Size:   end - begin,
	}, nil
}

// byteSize returns the bytes of a tensor of shape with elem-byte elements, or
// false if that overflows int64. Dimensions must be non-negative; a zero
// dimension makes the size 0 whatever the others are.
func byteSize[T int | int64](shape []T, elem int) (int64, bool) {
	if slices.Contains(shape, 0) {
		return 0, true
	}
	n := int64(elem)
	for _, d := range shape {
		if n > math.MaxInt64/int64(d) {
			return 0, false
		}
		n *= int64(d)
	}
	return n, true
}

// checkOverlap refuses tensors whose byte ranges intersect. Empty tensors
// occupy no bytes and so overlap nothing.
func checkOverlap(path string, h *header) error {
	spans := make([]TensorInfo, 0, len(h.tensors))
	for _, name := range h.names {
		if t := h.tensors[name]; t.Size > 0 {
			spans = append(spans, t)
		}
	}
	slices.SortFunc(spans, func(a, b TensorInfo) int {
		if a.Offset != b.Offset {
			return cmpInt64(a.Offset, b.Offset)
		}
		return cmpInt64(a.Size, b.Size)
	})
	for i := 1; i < len(spans); i++ {
		// Sorted by start and, having got here, pairwise disjoint so far: the
		// previous span is the one reaching furthest, so it is the only check.
		prev, cur := spans[i-1], spans[i]
		if cur.Offset < prev.Offset+prev.Size {
			return &FormatError{File: path, Tensor: cur.Name,
				Reason: fmt.Sprintf("data overlaps tensor %q (file bytes [%d, %d) and [%d, %d))",
					prev.Name, prev.Offset, prev.Offset+prev.Size, cur.Offset, cur.Offset+cur.Size)}
		}
	}
	return nil
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// duplicateKeyError reports a key repeated in a JSON object.
type duplicateKeyError struct{ key string }

func (e *duplicateKeyError) Error() string {
	return fmt.Sprintf("key %q appears more than once", e.key)
}

// walkObject calls fn for each member of the JSON object in data, in order.
// Unlike unmarshalling into a map it refuses repeated keys, which would
// otherwise silently shadow a tensor, and anything after the object other
// than whitespace.
func walkObject(data []byte, fn func(key string, value json.RawMessage) error) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("not a JSON object (starts with %v)", tok)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("not JSON: %w", err)
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("not JSON: object key is %v", tok)
		}
		if seen[key] {
			return &duplicateKeyError{key: key}
		}
		seen[key] = true
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return fmt.Errorf("not JSON: value of %q: %w", key, err)
		}
		if err := fn(key, value); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return fmt.Errorf("not JSON: %w", err)
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return fmt.Errorf("data after the JSON object: %w", err)
		}
		return fmt.Errorf("data after the JSON object (%v)", tok)
	}
	return nil
}
