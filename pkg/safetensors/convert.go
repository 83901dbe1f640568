package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
)

// BF16ToFloat32 widens a bfloat16 bit pattern. bfloat16 is the upper half of
// an IEEE 754 binary32, so widening is exact and keeps NaN payloads.
func BF16ToFloat32(h uint16) float32 {
	return math.Float32frombits(uint32(h) << 16)
}

// Float32ToBF16 narrows f to bfloat16 with round-to-nearest-even, the rounding
// PyTorch and the reference safetensors tools use. Values past the bfloat16
// range round to infinity; NaNs stay NaN (quieted, so dropping low payload
// bits cannot turn them into infinity).
func Float32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x0040
	}
	// Adding 0x7fff plus the lowest kept bit rounds ties to the even neighbour;
	// a carry out of the mantissa correctly bumps the exponent (up to inf).
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// F16ToFloat32 widens an IEEE 754 binary16 bit pattern (1 sign, 5 exponent,
// 10 mantissa bits, bias 15). Every binary16 value, subnormals included, is
// exactly representable in binary32; infinities and NaN payloads carry over.
func F16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch exp {
	case 0x1f: // inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case 0: // zero or subnormal: mant × 2^-24, exact in binary32
		v := float32(mant) * 0x1p-24
		return math.Float32frombits(sign | math.Float32bits(v))
	}
	// Normal: rebias the exponent from 15 to 127.
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// Float32ToF16 narrows f to IEEE 754 binary16 with round-to-nearest-even.
// Magnitudes from 65520 up become infinity, those at or below 2^-25 become
// (signed) zero, and results below 2^-14 are subnormal; NaNs stay NaN.
func Float32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			// Keep the top payload bits and force the quiet bit so it stays NaN.
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15 // binary16 biased exponent
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Subnormal result: value = m × 2^-24 with m = full × 2^(e-14).
		if e < -10 {
			return sign // below half the smallest subnormal
		}
		full := mant | 0x800000
		shift := uint(14 - e)
		return sign | uint16(roundShiftEven(full, shift))
	}
	// Normal: drop 13 mantissa bits; a carry into the exponent is correct and
	// turns 65520 and up into infinity.
	return sign | uint16(uint32(e)<<10+roundShiftEven(mant, 13))
}

// roundShiftEven returns v >> shift rounded to nearest, ties to even.
func roundShiftEven(v uint32, shift uint) uint32 {
	q := v >> shift
	rem := v & (1<<shift - 1)
	half := uint32(1) << (shift - 1)
	if rem > half || (rem == half && q&1 == 1) {
		q++
	}
	return q
}

// ToFloat32 converts raw little-endian elements of dtype (F32, F16 or BF16)
// into dst. raw must hold exactly len(dst) elements.
func ToFloat32(dst []float32, dtype DType, raw []byte) error {
	size, err := dtype.ElemSize()
	if err != nil {
		return fmt.Errorf("converting to float32: %w", err)
	}
	if !dtype.convertible() {
		return fmt.Errorf("converting %s to float32: %w", dtype, ErrUnsupportedDType)
	}
	if len(raw) != len(dst)*size {
		return fmt.Errorf("converting %s to float32: %d bytes is not %d elements of %d bytes", dtype, len(raw), len(dst), size)
	}
	switch dtype {
	case F32:
		f32ToF32(dst, raw)
	case F16:
		f16ToF32(dst, raw)
	case BF16:
		bf16ToF32(dst, raw)
	}
	return nil
}

// The loops below rely on ToFloat32 having checked the lengths; re-slicing
// raw first states that to the compiler, and they stay plain indexed loops
// because on amd64 that measured faster than the fully bounds-check-free
// form that advances both slices.

func f32ToF32(dst []float32, raw []byte) {
	raw = raw[:4*len(dst)]
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i : 4*i+4]))
	}
}

func bf16ToF32(dst []float32, raw []byte) {
	raw = raw[:2*len(dst)]
	for i := range dst {
		dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(raw[2*i:2*i+2])) << 16)
	}
}

func f16ToF32(dst []float32, raw []byte) {
	raw = raw[:2*len(dst)]
	for i := range dst {
		h := binary.LittleEndian.Uint16(raw[2*i : 2*i+2])
		if e := h & 0x7c00; e != 0 && e != 0x7c00 {
			// Normal numbers, the common case, without the call and switch.
			dst[i] = math.Float32frombits(uint32(h&0x8000)<<16 | (uint32(h&0x7fff)<<13 + (127-15)<<23))
			continue
		}
		dst[i] = F16ToFloat32(h)
	}
}

// FromFloat32 encodes src as little-endian elements of dtype (F32, F16 or
// BF16), rounding to nearest even when narrowing.
func FromFloat32(dtype DType, src []float32) ([]byte, error) {
	size, err := dtype.ElemSize()
	if err != nil {
		return nil, fmt.Errorf("converting from float32: %w", err)
	}
	if !dtype.convertible() {
		return nil, fmt.Errorf("converting float32 to %s: %w", dtype, ErrUnsupportedDType)
	}
	out := make([]byte, len(src)*size)
	switch dtype {
	case F32:
		for i, v := range src {
			binary.LittleEndian.PutUint32(out[4*i:4*i+4], math.Float32bits(v))
		}
	case F16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(out[2*i:2*i+2], Float32ToF16(v))
		}
	case BF16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(out[2*i:2*i+2], Float32ToBF16(v))
		}
	}
	return out, nil
}
