package sampling

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
)

// logit decodes a JSON number or the string "-inf".
type logit float32

func (l *logit) UnmarshalJSON(b []byte) error {
	if string(b) == `"-inf"` {
		*l = logit(math.Inf(-1))
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*l = logit(f)
	return nil
}

type warperCase struct {
	Name        string    `json:"name"`
	Logits      []logit   `json:"logits"`
	Temperature float64   `json:"temperature"`
	TopK        int       `json:"top_k"`
	TopP        float64   `json:"top_p"`
	VocabLimit  int       `json:"vocab_limit"`
	Probs       []float64 `json:"probs"`
}

// TestProbsMatchesWarpers compares Probs with testdata/warpers.json, written by
// gen_warpers.py, a plain-Python transcription of transformers' warpers.
func TestProbsMatchesWarpers(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "warpers.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []warperCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatalf("decoding warpers.json: %v", err)
	}
	if len(cases) == 0 {
		t.Fatal("warpers.json holds no cases")
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			logits := make([]float32, len(c.Logits))
			for i, v := range c.Logits {
				logits[i] = float32(v)
			}
			p := Params{Temperature: c.Temperature, TopK: c.TopK, TopP: c.TopP, VocabLimit: c.VocabLimit}
			got := Probs(logits, p)
			if len(got) != len(c.Probs) {
				t.Fatalf("len = %d, want %d", len(got), len(c.Probs))
			}
			for i := range got {
				if c.Probs[i] == 0 && got[i] != 0 {
					t.Errorf("id %d: got %g, want exactly 0 (cut)", i, got[i])
				}
				if math.Abs(float64(got[i])-c.Probs[i]) > 1e-6 {
					t.Errorf("id %d: got %.8f, want %.8f", i, got[i], c.Probs[i])
				}
			}
		})
	}
}

func oneHot(n, at int) []float32 {
	v := make([]float32, n)
	v[at] = 1
	return v
}

func TestProbsEdgeCases(t *testing.T) {
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	ninf := -inf
	tests := []struct {
		name   string
		logits []float32
		p      Params
		want   []float32
	}{
		{"greedy is a point mass", []float32{0.1, 2, -1}, Params{}, oneHot(3, 1)},
		{"greedy ties pick the lowest id", []float32{3, 1, 3}, Params{}, oneHot(3, 0)},
		{"greedy ignores padded ids", []float32{1, 2, 9}, Params{VocabLimit: 2}, oneHot(3, 1)},
		{"greedy skips NaN", []float32{nan, 0.5, 0.2}, Params{}, oneHot(3, 1)},
		{"top-k 1 is greedy", []float32{0.2, 0.9, 0.1}, Params{Temperature: 1, TopK: 1}, oneHot(3, 1)},
		{"NaN logits get no mass", []float32{nan, 0, 0}, Params{Temperature: 1}, []float32{0, 0.5, 0.5}},
		{"+inf logits share the mass", []float32{inf, 1, inf}, Params{Temperature: 1}, []float32{0.5, 0, 0.5}},
		{"nothing usable has no mass", []float32{ninf, ninf}, Params{Temperature: 1}, []float32{0, 0}},
		{"all NaN has no mass", []float32{nan, nan, nan}, Params{Temperature: 0.7, TopK: 2, TopP: 0.9}, []float32{0, 0, 0}},
		{"usable ids only past the limit: no mass", []float32{nan, ninf, 3}, Params{Temperature: 1, VocabLimit: 2}, []float32{0, 0, 0}},
		{"vocab limit past the end is ignored", []float32{0, 0}, Params{Temperature: 1, VocabLimit: 9}, []float32{0.5, 0.5}},
		{"top-p 1 keeps everything", []float32{0, 0}, Params{Temperature: 1, TopP: 1}, []float32{0.5, 0.5}},
		{"empty logits", []float32{}, Params{Temperature: 1}, []float32{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Probs(tt.logits, tt.p)
			if len(got) != len(tt.want) {
				t.Fatalf("len = %d, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if math.Abs(float64(got[i]-tt.want[i])) > 1e-7 {
					t.Fatalf("Probs = %v, want %v", got, tt.want)
				}
			}
		})
	}
}

// TestTopPBoundary checks the nucleus on exact binary probabilities, where
// the cumulative mass hits 1-top_p exactly (transformers drops a token whose
// ascending cumulative mass is <= 1-top_p).
func TestTopPBoundary(t *testing.T) {
	tests := []struct {
		name string
		w    []float64
		topP float64
		want []float64
	}{
		{"mass reaching top_p exactly stops", []float64{0.5, 0.25, 0.125, 0.125}, 0.75, []float64{2.0 / 3, 1.0 / 3, 0, 0}},
		{"just above needs the next token", []float64{0.5, 0.25, 0.125, 0.125}, 0.7500001, []float64{4.0 / 7, 2.0 / 7, 0, 1.0 / 7}},
		{"first token alone", []float64{0.125, 0.5, 0.375}, 0.5, []float64{0, 1, 0}},
		{"tie at the boundary keeps the higher id", []float64{0.25, 0.25, 0.5}, 0.75, []float64{0, 1.0 / 3, 2.0 / 3}},
		{"zeros stay out", []float64{0, 1, 0}, 0.3, []float64{0, 1, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := slices.Clone(tt.w)
			topP(w, tt.topP)
			for i := range w {
				if math.Abs(w[i]-tt.want[i]) > 1e-12 {
					t.Fatalf("topP(%v, %v) = %v, want %v", tt.w, tt.topP, w, tt.want)
				}
			}
		})
	}
}

func TestKthLargestAgreesWithSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 3, 5, 17, 64, 301} {
		for _, distinct := range []int{1, 3, 1000} {
			v := make([]float64, n)
			for i := range v {
				switch x := rng.IntN(distinct + 1); x {
				case 0:
					v[i] = math.Inf(-1)
				default:
					v[i] = float64(x)
				}
			}
			sorted := slices.Clone(v)
			slices.Sort(sorted)
			slices.Reverse(sorted)
			for k := 1; k <= n; k++ {
				if got := kthLargest(v, k); got != sorted[k-1] {
					t.Fatalf("n=%d distinct=%d k=%d: got %v, want %v (input %v)", n, distinct, k, got, sorted[k-1], v)
				}
			}
		}
	}
}

func TestArgmax(t *testing.T) {
	nan := float32(math.NaN())
	tests := []struct {
		name   string
		logits []float32
		limit  int
		want   int
	}{
		{"plain", []float32{0, 3, 1}, 0, 1},
		{"ties pick the lowest id", []float32{2, 5, 5, 5}, 0, 1},
		{"limit masks the padded max", []float32{1, 0, 7}, 2, 0},
		{"NaN is skipped", []float32{nan, -1, -2}, 0, 1},
		{"all NaN gives 0", []float32{nan, nan}, 0, 0},
		{"empty gives -1", nil, 0, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Argmax(tt.logits, tt.limit); got != tt.want {
				t.Fatalf("Argmax(%v, %d) = %d, want %d", tt.logits, tt.limit, got, tt.want)
			}
		})
	}
}

func TestSample(t *testing.T) {
	tests := []struct {
		name  string
		probs []float32
		u     float64
		want  int
	}{
		{"u=0 takes the first positive id", []float32{0, 0.5, 0.5}, 0, 1},
		{"just below a boundary", []float32{0.25, 0.25, 0.5}, 0.2499, 0},
		{"on a boundary moves on", []float32{0.25, 0.25, 0.5}, 0.25, 1},
		{"zero weights are skipped", []float32{0.5, 0, 0.5}, 0.5, 2},
		{"u near 1 takes the last positive id", []float32{0.5, 0.5, 0}, 0.9999999999, 1},
		{"unnormalised weights are scaled", []float32{2, 6}, 0.3, 1},
		{"negative and NaN weights are skipped", []float32{-1, float32(math.NaN()), 1}, 0.1, 2},
		{"no mass gives -1", []float32{0, 0}, 0.5, -1},
		{"empty gives -1", nil, 0.5, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Sample(tt.probs, tt.u); got != tt.want {
				t.Fatalf("Sample(%v, %v) = %d, want %d", tt.probs, tt.u, got, tt.want)
			}
		})
	}
}

// TestNewRNGReproducible: the same seed gives the same token stream, so runs
// can be replayed.
func TestNewRNGReproducible(t *testing.T) {
	probs := Probs([]float32{0.3, 1.2, -0.4, 0.8, 0.1}, Params{Temperature: 1})
	draw := func(seed uint64) []int {
		rng := NewRNG(seed)
		out := make([]int, 64)
		for i := range out {
			out[i] = Sample(probs, rng.Float64())
		}
		return out
	}
	a, b, c := draw(7), draw(7), draw(8)
	if !slices.Equal(a, b) {
		t.Fatalf("seed 7 gave %v then %v", a, b)
	}
	if slices.Equal(a, c) {
		t.Fatalf("seeds 7 and 8 gave the same 64 tokens %v", a)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		p    Params
		ok   bool
	}{
		{"greedy", Params{}, true},
		{"all knobs", Params{Temperature: 0.7, TopK: 50, TopP: 0.95, VocabLimit: 151669}, true},
		{"top_p 1", Params{Temperature: 1, TopP: 1}, true},
		{"negative temperature", Params{Temperature: -0.1}, false},
		{"NaN temperature", Params{Temperature: math.NaN()}, false},
		{"infinite temperature", Params{Temperature: math.Inf(1)}, false},
		{"negative top_k", Params{TopK: -1}, false},
		{"top_p above 1", Params{TopP: 1.5}, false},
		{"negative top_p", Params{TopP: -0.5}, false},
		{"negative vocab limit", Params{VocabLimit: -3}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate(%+v) = %v, want ok=%v", tt.p, err, tt.ok)
			}
		})
	}
}

// FuzzProbs checks the invariants every distribution must keep: finite,
// non-negative, summing to 1 (0 for a sampled row with no usable logit),
// nothing on padded ids, top-k respected.
func FuzzProbs(f *testing.F) {
	f.Add([]byte{1, 2, 3, 250, 0, 7}, uint8(10), uint8(0), uint8(0), uint8(0))
	f.Add([]byte{9, 9, 9, 9}, uint8(3), uint8(2), uint8(128), uint8(3))
	f.Fuzz(func(t *testing.T, raw []byte, temp, k, topP, lim uint8) {
		if len(raw) == 0 {
			return
		}
		logits := make([]float32, len(raw))
		for i, b := range raw {
			switch b {
			case 255:
				logits[i] = float32(math.Inf(-1))
			case 254:
				logits[i] = float32(math.NaN())
			default:
				logits[i] = (float32(b) - 128) / 8
			}
		}
		p := Params{Temperature: float64(temp) / 10, TopK: int(k % 8), TopP: float64(topP) / 255, VocabLimit: int(lim % 16)}
		got := Probs(logits, p)
		var sum float64
		live := 0
		for i, v := range got {
			if math.IsNaN(float64(v)) || v < 0 || v > 1 {
				t.Fatalf("id %d has probability %v", i, v)
			}
			if p.VocabLimit > 0 && i >= p.VocabLimit && v != 0 {
				t.Fatalf("padded id %d (limit %d) has probability %v", i, p.VocabLimit, v)
			}
			if v > 0 {
				live++
			}
			sum += float64(v)
		}
		// A sampled row without a usable logit (NaN, -inf or past the
		// limit) has no mass at all; every other row sums to 1.
		want := 1.0
		if !p.Greedy() && !slices.ContainsFunc(logits[:limit(len(logits), p.VocabLimit)], func(v float32) bool {
			return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), -1)
		}) {
			want = 0
		}
		if math.Abs(sum-want) > 1e-5 {
			t.Fatalf("probabilities sum to %v, want %v", sum, want)
		}
		if !p.Greedy() && p.TopK > 0 {
			// Ties with the k-th logit may keep more ids, never ones below it.
			masked := slices.Clone(logits)
			for i := range masked {
				if (p.VocabLimit > 0 && i >= p.VocabLimit) || math.IsNaN(float64(masked[i])) {
					masked[i] = float32(math.Inf(-1))
				}
			}
			sorted := slices.Clone(masked)
			slices.Sort(sorted)
			slices.Reverse(sorted)
			if p.TopK < len(sorted) && !math.IsInf(float64(sorted[p.TopK-1]), -1) {
				for i, v := range got {
					if v > 0 && masked[i] < sorted[p.TopK-1] {
						t.Fatalf("id %d (logit %v) survived top-%d (threshold %v)", i, masked[i], p.TopK, sorted[p.TopK-1])
					}
				}
			}
		}
	})
}

func benchLogits(n int) []float32 {
	rng := rand.New(rand.NewPCG(3, 4))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * 3)
	}
	return v
}

// BenchmarkProbs runs on a Qwen-sized vocabulary.
func BenchmarkProbs(b *testing.B) {
	logits := benchLogits(151936)
	for _, bc := range []struct {
		name string
		p    Params
	}{
		{"greedy", Params{VocabLimit: 151669}},
		{"temperature", Params{Temperature: 0.8, VocabLimit: 151669}},
		{"top-k 50", Params{Temperature: 0.8, TopK: 50, VocabLimit: 151669}},
		{"top-p 0.9", Params{Temperature: 0.8, TopP: 0.9, VocabLimit: 151669}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				Probs(logits, bc.p)
			}
		})
	}
}

func TestMargin(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	tests := []struct {
		name   string
		logits []float32
		limit  int
		want   float32
	}{
		{"clear", []float32{1, 9, 3}, 0, 6.0 / 9},
		{"small logits use an absolute gap", []float32{0.25, 0.5, 0.125}, 0, 0.25},
		{"negative top", []float32{-10, -12}, 0, 0.2},
		{"tie", []float32{2, 5, 5}, 0, 0},
		{"limit hides the runner-up", []float32{5, 4.9, 9}, 2, 0.1 / 5},
		{"NaN ignored", []float32{nan, 4, 2}, 0, 0.5},
		{"one usable id", []float32{nan, 4}, 0, 1},
		{"empty", nil, 0, 1},
		{"infinite top", []float32{inf, 3}, 0, 1},
		{"two infinities", []float32{inf, inf}, 0, 0},
	}
	for _, tt := range tests {
		if got := Margin(tt.logits, tt.limit); math.Abs(float64(got-tt.want)) > 1e-6 {
			t.Errorf("%s: Margin(%v, %d) = %v, want %v", tt.name, tt.logits, tt.limit, got, tt.want)
		}
	}
}

// TestArgmaxMarginAgrees: one pass gives Argmax's id (first of equal maxima)
// and Margin's value, ties and NaN included.
func TestArgmaxMarginAgrees(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 2000; trial++ {
		n := 1 + rng.IntN(40)
		l := make([]float32, n)
		for i := range l {
			switch rng.IntN(8) {
			case 0:
				l[i] = float32(math.NaN())
			case 1:
				l[i] = 2 // ties
			default:
				l[i] = float32(rng.NormFloat64() * 4)
			}
		}
		limit := rng.IntN(n + 1)
		id, m := ArgmaxMargin(l, limit)
		want := refArgmax(l, limit)
		if none := usable(l, limit) == 0; none {
			// Nothing to choose from: no id, NaN margin (Argmax's 0 is
			// only Probs' fallback).
			if id != -1 || !math.IsNaN(float64(m)) || want != 0 {
				t.Fatalf("ArgmaxMargin(%v, %d) = %d, %v with no usable logit; want -1, NaN (Argmax %d, want 0)", l, limit, id, m, want)
			}
			continue
		}
		if id != want {
			t.Fatalf("ArgmaxMargin(%v, %d) id %d, Argmax %d", l, limit, id, want)
		}
		if want := refMargin(l, limit); m != want || m < 0 {
			t.Fatalf("ArgmaxMargin(%v, %d) margin %v, want %v", l, limit, m, want)
		}
	}
}

// usable counts the logits a greedy choice may take: below limit, above -inf.
func usable(l []float32, limit int) int {
	if limit == 0 || limit > len(l) {
		limit = len(l)
	}
	n := 0
	for _, v := range l[:limit] {
		if v > float32(math.Inf(-1)) {
			n++
		}
	}
	return n
}

// TestNoUsableLogit: a row of NaN and -inf (a broken forward pass) is no
// choice, with the reason, while Argmax keeps Probs' fallback of id 0.
func TestNoUsableLogit(t *testing.T) {
	nan, ninf := float32(math.NaN()), float32(math.Inf(-1))
	for _, tt := range []struct {
		name   string
		logits []float32
		limit  int
	}{
		{"all NaN", []float32{nan, nan, nan}, 0},
		{"NaN and -inf", []float32{ninf, nan, ninf, nan, nan}, 0},
		{"usable only past the limit", []float32{nan, ninf, 3}, 2},
	} {
		id, m := ArgmaxMargin(tt.logits, tt.limit)
		if id != -1 || !math.IsNaN(float64(m)) {
			t.Errorf("%s: ArgmaxMargin = %d, %v; want -1, NaN", tt.name, id, m)
		}
		if err := ChoiceError(id, m); !errors.Is(err, ErrNoUsableLogit) {
			t.Errorf("%s: ChoiceError = %v, want ErrNoUsableLogit", tt.name, err)
		}
		if got := Argmax(tt.logits, tt.limit); got != 0 {
			t.Errorf("%s: Argmax = %d, want Probs' fallback 0", tt.name, got)
		}
	}
	id, m := ArgmaxMargin(nil, 0)
	if err := ChoiceError(id, m); id != -1 || err == nil || errors.Is(err, ErrNoUsableLogit) {
		t.Errorf("empty logits: %d, %v, %v; want -1 and the empty-vocabulary error", id, m, err)
	}
	if err := ChoiceError(ArgmaxMargin([]float32{nan, 1}, 0)); err != nil {
		t.Errorf("one usable logit: %v", err)
	}
}

// refMargin is Margin the slow way: sort the usable logits.
func refMargin(l []float32, limit int) float32 {
	if limit == 0 || limit > len(l) {
		limit = len(l)
	}
	var v []float64
	for _, x := range l[:limit] {
		if x == x && !math.IsInf(float64(x), -1) {
			v = append(v, float64(x))
		}
	}
	sort.Sort(sort.Reverse(sort.Float64Slice(v)))
	if len(v) < 2 {
		return 1
	}
	if math.IsInf(v[0], 1) {
		if math.IsInf(v[1], 1) {
			return 0
		}
		return 1
	}
	return float32((v[0] - v[1]) / math.Max(1, math.Abs(v[0])))
}

// refArgmax is Argmax the plain way: the first of the largest usable logits
// (0 when none is above -inf; -1 for no ids).
func refArgmax(l []float32, limit int) int {
	if limit == 0 || limit > len(l) {
		limit = len(l)
	}
	if limit == 0 {
		return -1
	}
	best, arg := float32(math.Inf(-1)), 0
	for i, v := range l[:limit] {
		if v > best {
			best, arg = v, i
		}
	}
	return arg
}
