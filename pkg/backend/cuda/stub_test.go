//go:build !cuda

package cuda

import (
	"errors"
	"testing"
)

// TestStub: without -tags cuda, asking for a GPU is a clear error.
func TestStub(t *testing.T) {
	b, err := New(Options{})
	if b != nil || !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("New = %v, %v; want nil, ErrNotBuilt", b, err)
	}
	if _, err := DeviceCount(); !errors.Is(err, ErrNotBuilt) {
		t.Errorf("DeviceCount error %v, want ErrNotBuilt", err)
	}
	if Built {
		t.Error("Built is true in a build without the cuda tag")
	}
}
