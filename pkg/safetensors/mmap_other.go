//go:build !unix

package safetensors

import (
	"fmt"
	"io"
	"os"
)

// mapFile reads the whole of f where mmap is not available; slower to open
// and held in memory, but the rest of the package behaves the same.
func mapFile(f *os.File, size int64) (data []byte, unmap func() error, err error) {
	data = make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, nil, fmt.Errorf("reading: %w", err)
	}
	return data, func() error { return nil }, nil
}
