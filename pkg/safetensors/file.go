package safetensors

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"sync"
)

var (
	// ErrNotFound is wrapped by errors about a tensor name a file or folder
	// does not hold.
	ErrNotFound = errors.New("tensor not found")
	// ErrClosed is wrapped by errors from a File or Folder used after Close.
	ErrClosed = errors.New("closed")
)

// File is one safetensors file, memory-mapped read-only. Its methods are safe
// for concurrent use; Close waits for running conversions.
type File struct {
	path string
	hdr  *header

	mu    sync.RWMutex // guards data against Close
	data  []byte       // the whole file; nil once closed
	unmap func() error
}

// Open maps the safetensors file at path and validates its header. Errors
// about the content are *FormatError.
func Open(path string) (*File, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("safetensors: %s is not a regular file", path)
	}
	size := st.Size()
	if size < headerLenSize {
		// Checked before mapping: a zero-length mmap is an error of its own.
		return nil, &FormatError{File: path, Reason: fmt.Sprintf("file is %d bytes, shorter than the 8-byte header length", size)}
	}
	if size > math.MaxInt {
		return nil, fmt.Errorf("safetensors: %s: %d bytes do not fit in this platform's address space", path, size)
	}
	data, unmap, err := mapFile(fd, size)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	hdr, err := parseFile(path, data)
	if err != nil {
		_ = unmap() // the parse error is the one worth reporting
		return nil, err
	}
	return &File{path: path, hdr: hdr, data: data, unmap: unmap}, nil
}

// Path returns the path the file was opened with.
func (f *File) Path() string { return f.path }

// Names returns the tensor names in sorted order.
func (f *File) Names() []string { return slices.Clone(f.hdr.names) }

// Info describes the named tensor.
func (f *File) Info(name string) (TensorInfo, bool) {
	t, ok := f.hdr.tensors[name]
	if ok {
		t.Shape = slices.Clone(t.Shape) // callers may not reach into the header
	}
	return t, ok
}

// Metadata returns a copy of the header's __metadata__ (nil when absent).
func (f *File) Metadata() map[string]string { return maps.Clone(f.hdr.metadata) }

// Raw returns the tensor's bytes as a read-only slice of the mapping, without
// copying. The slice must not be written to nor used after Close.
func (f *File) Raw(name string) ([]byte, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.raw(name)
}

// raw is Raw with f.mu held for reading.
func (f *File) raw(name string) ([]byte, error) {
	if f.data == nil {
		return nil, fmt.Errorf("safetensors: %s: %w", f.path, ErrClosed)
	}
	t, ok := f.hdr.tensors[name]
	if !ok {
		return nil, fmt.Errorf("safetensors: %s: tensor %q: %w", f.path, name, ErrNotFound)
	}
	end := t.Offset + t.Size
	// Capacity is capped so an append cannot reach the next tensor's bytes.
	return f.data[t.Offset:end:end], nil
}

// Float32 returns a float32 copy of an F32, F16 or BF16 tensor; other dtypes
// give an error wrapping ErrUnsupportedDType.
func (f *File) Float32(name string) ([]float32, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	raw, err := f.raw(name)
	if err != nil {
		return nil, err
	}
	t := f.hdr.tensors[name]
	if !t.DType.convertible() {
		return nil, fmt.Errorf("safetensors: %s: tensor %q is %s: %w", f.path, name, t.DType, ErrUnsupportedDType)
	}
	out := make([]float32, t.NumElements())
	if err := ToFloat32(out, t.DType, raw); err != nil {
		return nil, fmt.Errorf("safetensors: %s: tensor %q: %w", f.path, name, err)
	}
	return out, nil
}

// Close unmaps the file. Slices from Raw become invalid. Closing twice is a
// no-op.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.data == nil {
		return nil
	}
	f.data = nil
	if err := f.unmap(); err != nil {
		return fmt.Errorf("safetensors: unmapping %s: %w", f.path, err)
	}
	return nil
}
