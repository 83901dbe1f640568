package safetensors

import (
	"errors"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

func TestBF16ToFloat32(t *testing.T) {
	tests := []struct {
		name string
		bits uint16
		want float32
	}{
		{"one", 0x3f80, 1},
		{"minus 2.5", 0xc020, -2.5},
		{"zero", 0x0000, 0},
		{"negative zero", 0x8000, float32(math.Copysign(0, -1))},
		{"smallest subnormal", 0x0001, math.Float32frombits(0x00010000)},
		{"largest finite", 0x7f7f, math.Float32frombits(0x7f7f0000)},
		{"inf", 0x7f80, float32(math.Inf(1))},
		{"minus inf", 0xff80, float32(math.Inf(-1))},
		{"nan", 0x7fc0, float32(math.NaN())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := BF16ToFloat32(tt.bits); !sameFloat32(got, tt.want) {
				t.Errorf("BF16ToFloat32(%#04x) = %v, want %v", tt.bits, got, tt.want)
			}
		})
	}
}

func TestFloat32ToBF16(t *testing.T) {
	tests := []struct {
		name string
		in   uint32 // float32 bits, to state ties exactly
		want uint16
	}{
		{"one", 0x3f800000, 0x3f80},
		{"minus 2.5", 0xc0200000, 0xc020},
		{"negative zero", 0x80000000, 0x8000},
		{"below tie rounds down", 0x3f807fff, 0x3f80},
		{"tie to even stays", 0x3f808000, 0x3f80},
		{"above tie rounds up", 0x3f808001, 0x3f81},
		{"tie to even rounds up", 0x3f818000, 0x3f82},
		{"negative tie to even", 0xbf818000, 0xbf82},
		{"mantissa carry bumps exponent", 0x3fffff00, 0x4000},
		{"largest float32 overflows to inf", 0x7f7fffff, 0x7f80},
		{"largest bf16 stays finite", 0x7f7f0000, 0x7f7f},
		{"inf", 0x7f800000, 0x7f80},
		{"minus inf", 0xff800000, 0xff80},
		{"quiet nan", 0x7fc00000, 0x7fc0},
		{"nan with only low payload stays nan", 0x7f800001, 0x7fc0},
		{"float32 subnormal", 0x00018000, 0x0002},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Float32ToBF16(math.Float32frombits(tt.in)); got != tt.want {
				t.Errorf("Float32ToBF16(%#08x) = %#04x, want %#04x", tt.in, got, tt.want)
			}
		})
	}
}

func TestF16ToFloat32(t *testing.T) {
	tests := []struct {
		name string
		bits uint16
		want float32
	}{
		{"one", 0x3c00, 1},
		{"minus 2.5", 0xc100, -2.5},
		{"largest finite", 0x7bff, 65504},
		{"smallest normal", 0x0400, 0x1p-14},
		{"smallest subnormal", 0x0001, 0x1p-24},
		{"largest subnormal", 0x03ff, 1023 * 0x1p-24},
		{"negative subnormal", 0x8001, -0x1p-24},
		{"one third", 0x3555, 0.333251953125},
		{"zero", 0x0000, 0},
		{"negative zero", 0x8000, float32(math.Copysign(0, -1))},
		{"inf", 0x7c00, float32(math.Inf(1))},
		{"minus inf", 0xfc00, float32(math.Inf(-1))},
		{"nan", 0x7e00, float32(math.NaN())},
		{"signalling nan", 0x7c01, float32(math.NaN())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := F16ToFloat32(tt.bits); !sameFloat32(got, tt.want) {
				t.Errorf("F16ToFloat32(%#04x) = %v, want %v", tt.bits, got, tt.want)
			}
			// The slice loop has its own fast path for normal numbers.
			dst := make([]float32, 1)
			if err := ToFloat32(dst, F16, u16s(tt.bits)); err != nil {
				t.Fatal(err)
			}
			if !sameFloat32(dst[0], tt.want) {
				t.Errorf("ToFloat32(F16, %#04x) = %v, want %v", tt.bits, dst[0], tt.want)
			}
		})
	}
}

func TestFloat32ToF16(t *testing.T) {
	tests := []struct {
		name string
		in   float32
		want uint16
	}{
		{"one", 1, 0x3c00},
		{"minus 2.5", -2.5, 0xc100},
		{"largest finite", 65504, 0x7bff},
		{"just below overflow threshold", 65519.99, 0x7bff},
		{"overflow threshold ties to inf", 65520, 0x7c00},
		{"large overflows", 1e10, 0x7c00},
		{"negative overflow", -1e10, 0xfc00},
		{"smallest normal", 0x1p-14, 0x0400},
		{"smallest subnormal", 0x1p-24, 0x0001},
		{"largest subnormal", 1023 * 0x1p-24, 0x03ff},
		{"half smallest subnormal ties to zero", 0x1p-25, 0x0000},
		{"just above half smallest subnormal", 0x1.000002p-25, 0x0001},
		{"subnormal tie rounds to even", 3 * 0x1p-25, 0x0002},
		{"subnormal rounds up into normal", 0x1.fffp-15, 0x0400},
		{"tiny flushes to signed zero", -1e-10, 0x8000},
		{"normal tie stays even", 1 + 0x1p-11, 0x3c00},
		{"normal tie rounds up to even", 1 + 3*0x1p-11, 0x3c02},
		{"inf", float32(math.Inf(1)), 0x7c00},
		{"minus inf", float32(math.Inf(-1)), 0xfc00},
		{"negative zero", float32(math.Copysign(0, -1)), 0x8000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Float32ToF16(tt.in); got != tt.want {
				t.Errorf("Float32ToF16(%v) = %#04x, want %#04x", tt.in, got, tt.want)
			}
		})
	}
	t.Run("nan stays nan", func(t *testing.T) {
		for _, bits := range []uint32{0x7fc00000, 0x7f800001, 0xffc00000} {
			got := Float32ToF16(math.Float32frombits(bits))
			if got&0x7c00 != 0x7c00 || got&0x3ff == 0 || got&0x8000 != uint16(bits>>16)&0x8000 {
				t.Errorf("Float32ToF16(%#08x) = %#04x, want a NaN of the same sign", bits, got)
			}
		}
	})
}

// f16Value decodes binary16 from its definition in IEEE 754-2008 §3.4, in
// float64, as an oracle independent of the bit manipulation under test.
func f16Value(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp, mant := int(h>>10)&0x1f, float64(h&0x3ff)
	switch exp {
	case 0x1f:
		if mant != 0 {
			return math.NaN()
		}
		return sign * math.Inf(1)
	case 0:
		return sign * math.Ldexp(mant, -24)
	}
	return sign * math.Ldexp(1+mant/1024, exp-15)
}

func TestF16AllPatterns(t *testing.T) {
	for i := 0; i <= 0xffff; i++ {
		h := uint16(i)
		want := f16Value(h)
		got := F16ToFloat32(h)
		if !sameFloat32(got, float32(want)) || (want == 0 && math.Signbit(float64(got)) != math.Signbit(want)) {
			t.Fatalf("F16ToFloat32(%#04x) = %v, want %v", h, got, want)
		}
		back := Float32ToF16(got)
		if want != want {
			if back&0x7c00 != 0x7c00 || back&0x3ff == 0 {
				t.Fatalf("NaN %#04x came back as %#04x", h, back)
			}
			continue
		}
		if back != h {
			t.Fatalf("%#04x -> %v -> %#04x, want the same bits back", h, got, back)
		}
	}
}

func TestBF16AllPatterns(t *testing.T) {
	for i := 0; i <= 0xffff; i++ {
		h := uint16(i)
		f := BF16ToFloat32(h)
		back := Float32ToBF16(f)
		if f != f {
			if back&0x7f80 != 0x7f80 || back&0x7f == 0 {
				t.Fatalf("NaN %#04x came back as %#04x", h, back)
			}
			continue
		}
		if back != h {
			t.Fatalf("%#04x -> %v -> %#04x, want the same bits back", h, f, back)
		}
	}
}

// TestFloat32ToF16Nearest checks rounding against a brute-force oracle: the
// nearest of all binary16 values, ties to the even bit pattern, with the
// overflow threshold placed where an unbounded exponent would put the next
// value (2^16), as IEEE 754 specifies.
func TestFloat32ToF16Nearest(t *testing.T) {
	grid := make([]float64, 0x7c01) // magnitudes of 0x0000..0x7bff, then 2^16 for inf
	for h := range 0x7c00 {
		grid[h] = f16Value(uint16(h))
	}
	grid[0x7c00] = 65536
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200_000 {
		// Random sign and mantissa; biased exponents 90..149 reach from below
		// half the smallest subnormal (2^-25) to past the overflow threshold.
		bits := rng.Uint32()&0x807fffff | uint32(90+rng.IntN(60))<<23
		x := math.Float32frombits(bits)
		mag := math.Abs(float64(x))
		want := uint16(0x7c00)
		if mag < 65536 {
			i := sort.SearchFloat64s(grid, mag) // first grid value >= mag
			want = uint16(i)
			if i > 0 && grid[i] != mag {
				lo, hi := grid[i-1], grid[i]
				if mag-lo < hi-mag || (mag-lo == hi-mag && (i-1)%2 == 0) {
					want = uint16(i - 1)
				}
			}
		}
		if x < 0 {
			want |= 0x8000
		}
		if got := Float32ToF16(x); got != want {
			t.Fatalf("Float32ToF16(%v = %#08x) = %#04x, want %#04x", x, bits, got, want)
		}
	}
}

// TestFloat32ToBF16Nearest checks rounding against the two bfloat16 values
// bracketing each input, compared in float64.
func TestFloat32ToBF16Nearest(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200_000 {
		bits := rng.Uint32()
		if bits&0x7f800000 == 0x7f800000 {
			continue // inf and NaN have their own cases
		}
		x := math.Float32frombits(bits)
		lo := bits &^ 0xffff
		loV := math.Abs(float64(math.Float32frombits(lo)))
		hiV := math.Abs(float64(math.Float32frombits(lo + 0x10000)))
		if lo&0x7fffffff == 0x7f7f0000 {
			hiV = math.Ldexp(1, 128) // rounding past the largest value gives inf
		}
		mag := math.Abs(float64(x))
		want := uint16(lo>>16) + 1
		if mag-loV < hiV-mag || (mag-loV == hiV-mag && (lo>>16)%2 == 0) {
			want = uint16(lo >> 16)
		}
		if got := Float32ToBF16(x); got != want {
			t.Fatalf("Float32ToBF16(%v = %#08x) = %#04x, want %#04x", x, bits, got, want)
		}
	}
}

func TestToFloat32(t *testing.T) {
	tests := []struct {
		name  string
		dtype DType
		raw   []byte
		want  []float32
	}{
		{"f32", F32, f32s(1, -2.5, 3.25), []float32{1, -2.5, 3.25}},
		{"f16", F16, u16s(0x3c00, 0xc100, 0x7bff, 0x0001), []float32{1, -2.5, 65504, 0x1p-24}},
		{"bf16", BF16, u16s(0x3f80, 0xc020, 0x7f80), []float32{1, -2.5, float32(math.Inf(1))}},
		{"empty", BF16, nil, []float32{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make([]float32, len(tt.want))
			if err := ToFloat32(got, tt.dtype, tt.raw); err != nil {
				t.Fatal(err)
			}
			checkFloat32s(t, got, tt.want)
			back, err := FromFloat32(tt.dtype, tt.want)
			if err != nil {
				t.Fatal(err)
			}
			if string(back) != string(tt.raw) {
				t.Errorf("FromFloat32 = %x, want %x", back, tt.raw)
			}
		})
	}
}

func TestConvertErrors(t *testing.T) {
	tests := []struct {
		name   string
		dtype  DType
		raw    []byte
		n      int
		target error // nil: a length error, which has no sentinel
	}{
		{"raw too short", BF16, []byte{1, 2, 3}, 2, nil},
		{"raw too long", F32, make([]byte, 12), 2, nil},
		{"integer dtype", I32, make([]byte, 8), 2, ErrUnsupportedDType},
		{"f64", F64, make([]byte, 16), 2, ErrUnsupportedDType},
		{"unknown dtype", DType("F12"), nil, 0, ErrUnknownDType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ToFloat32(make([]float32, tt.n), tt.dtype, tt.raw)
			if err == nil {
				t.Fatal("ToFloat32: got no error")
			}
			if tt.target != nil && !errors.Is(err, tt.target) {
				t.Errorf("ToFloat32 error %q does not wrap %q", err, tt.target)
			}
			if tt.target != nil {
				if _, err := FromFloat32(tt.dtype, []float32{1}); !errors.Is(err, tt.target) {
					t.Errorf("FromFloat32 error %v does not wrap %q", err, tt.target)
				}
			}
		})
	}
}

func TestElemSize(t *testing.T) {
	want := map[DType]int{
		F64: 8, I64: 8, U64: 8, F32: 4, I32: 4, U32: 4, F16: 2, BF16: 2, I16: 2, U16: 2,
		F8E4M3: 1, F8E5M2: 1, I8: 1, U8: 1, Bool: 1,
	}
	for d, size := range want {
		t.Run(string(d), func(t *testing.T) {
			got, err := d.ElemSize()
			if err != nil || got != size {
				t.Errorf("ElemSize() = %d, %v; want %d", got, err, size)
			}
		})
	}
	for _, d := range []DType{"", "f32", "F12", "Q4_0"} {
		t.Run("unknown "+string(d), func(t *testing.T) {
			if _, err := d.ElemSize(); !errors.Is(err, ErrUnknownDType) {
				t.Errorf("ElemSize() error = %v, want ErrUnknownDType", err)
			}
		})
	}
}
