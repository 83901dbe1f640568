//go:build !cuda

package cuda

import "github.com/draftbench/draftbench/pkg/backend"

// Built says whether this binary has the CUDA backend.
const Built = false

// Backend stands in for the CUDA backend in a build without -tags cuda; New
// never returns one.
type Backend struct{ backend.Backend }

// New reports that this binary has no CUDA.
func New(Options) (*Backend, error) { return nil, ErrNotBuilt }

// Close does nothing.
func (b *Backend) Close() error { return nil }

// Devices is empty.
func (b *Backend) Devices() []DeviceInfo { return nil }

// CopyBandwidth reports that this binary has no CUDA.
func (b *Backend) CopyBandwidth(bytes int) (float64, error) { return 0, ErrNotBuilt }

// DeviceCount reports that this binary has no CUDA.
func DeviceCount() (int, error) { return 0, ErrNotBuilt }

// Profile is empty.
func (b *Backend) Profile() Profile { return Profile{} }

// ResetProfile does nothing.
func (b *Backend) ResetProfile() {}

// GraphStep runs f.
func (b *Backend) GraphStep(key func() string, f func() error) error { return f() }

// GraphStats is empty.
func (b *Backend) GraphStats() GraphStats { return GraphStats{} }

// GEMMPlans is empty.
func (b *Backend) GEMMPlans() ([]GEMMPlan, error) { return nil, nil }

// Placement is empty.
func (b *Backend) Placement() []int64 { return nil }
