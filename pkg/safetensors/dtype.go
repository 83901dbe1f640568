package safetensors

import (
	"errors"
	"fmt"
)

// DType is a tensor element type as spelled in a safetensors header.
type DType string

// The dtypes of the safetensors format that this package recognises.
const (
	F64    DType = "F64"
	F32    DType = "F32"
	F16    DType = "F16"
	BF16   DType = "BF16"
	F8E4M3 DType = "F8_E4M3"
	F8E5M2 DType = "F8_E5M2"
	I64    DType = "I64"
	I32    DType = "I32"
	I16    DType = "I16"
	I8     DType = "I8"
	U64    DType = "U64"
	U32    DType = "U32"
	U16    DType = "U16"
	U8     DType = "U8"
	Bool   DType = "BOOL"
)

var (
	// ErrUnknownDType is wrapped by errors about a dtype this package does not know.
	ErrUnknownDType = errors.New("unknown dtype")
	// ErrUnsupportedDType is wrapped by errors about a known dtype that cannot
	// be converted to or from float32.
	ErrUnsupportedDType = errors.New("dtype not convertible to float32")
)

// ElemSize returns the size in bytes of one element of d.
func (d DType) ElemSize() (int, error) {
	switch d {
	case F64, I64, U64:
		return 8, nil
	case F32, I32, U32:
		return 4, nil
	case F16, BF16, I16, U16:
		return 2, nil
	case F8E4M3, F8E5M2, I8, U8, Bool:
		return 1, nil
	}
	return 0, fmt.Errorf("%w %q (known: F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32, I16, I8, U64, U32, U16, U8, BOOL)", ErrUnknownDType, string(d))
}

// convertible reports whether d converts to and from float32.
func (d DType) convertible() bool {
	return d == F32 || d == F16 || d == BF16
}
