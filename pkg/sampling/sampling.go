// Package sampling turns a model's logits into a token distribution and draws
// tokens from it.
//
// The processing order follows Hugging Face transformers' logits warpers for
// generate(do_sample=True): mask ids past the tokenizer, then temperature, then
// top-k, then top-p, then softmax. Temperature 0 means greedy decoding, and the
// distribution is a point mass on the argmax.
//
// Randomness is injected: every draw takes a uniform number from the caller,
// usually from a seeded math/rand/v2 PCG (see NewRNG), so the same seed gives
// the same tokens.
package sampling

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// Params are the sampling knobs of a generation request.
type Params struct {
	// Temperature divides the logits; 0 selects greedy decoding.
	Temperature float64
	// TopK keeps the TopK highest logits (and any tied with the last one);
	// 0 disables it.
	TopK int
	// TopP keeps the smallest set of most likely tokens whose mass reaches
	// TopP. 0 (the zero value) and 1 disable it.
	TopP float64
	// VocabLimit, when positive, masks ids >= VocabLimit to -inf before
	// anything else: models such as Qwen pad their embedding rows past the
	// last id the tokenizer can produce.
	VocabLimit int
}

// Greedy reports whether p selects greedy decoding.
func (p Params) Greedy() bool { return p.Temperature == 0 }

// Validate reports the first knob that is out of range.
func (p Params) Validate() error {
	switch {
	case math.IsNaN(p.Temperature) || p.Temperature < 0:
		return fmt.Errorf("sampling: temperature %v must be >= 0 (0 means greedy)", p.Temperature)
	case math.IsInf(p.Temperature, 1):
		return fmt.Errorf("sampling: temperature must be finite")
	case p.TopK < 0:
		return fmt.Errorf("sampling: top_k %d must be >= 0 (0 disables it)", p.TopK)
	case math.IsNaN(p.TopP) || p.TopP < 0 || p.TopP > 1:
		return fmt.Errorf("sampling: top_p %v must be in [0, 1] (0 or 1 disables it)", p.TopP)
	case p.VocabLimit < 0:
		return fmt.Errorf("sampling: vocab limit %d must be >= 0 (0 disables it)", p.VocabLimit)
	}
	return nil
}

// RNG is the source of uniform numbers in [0, 1); *rand.Rand from math/rand/v2
// satisfies it.
type RNG interface{ Float64() float64 }

// pcgStream is the fixed second word of the PCG state, so one seed names one
// stream.
const pcgStream = 0x9e3779b97f4a7c15

// NewRNG returns a PCG generator for seed; the same seed gives the same
// sequence on every platform.
func NewRNG(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, pcgStream))
}

// Argmax returns the id of the largest logit among ids below vocabLimit (all
// ids when vocabLimit <= 0), the lowest id on ties as torch.argmax does. NaN
// logits are never chosen unless nothing else is left, in which case the answer
// is 0 (greedy decoding uses ArgmaxMargin, which refuses such a row). It
// returns -1 for empty logits.
func Argmax(logits []float32, vocabLimit int) int {
	arg, _ := ArgmaxMargin(logits, vocabLimit)
	if arg < 0 && limit(len(logits), vocabLimit) > 0 {
		return 0
	}
	return arg
}

// ErrNoUsableLogit is why greedy decoding cannot choose at a position whose
// logits are all NaN or -inf: the forward pass broke (NaN weights, a numeric
// overflow), and a token read from it would be garbage.
var ErrNoUsableLogit = errors.New("no token can be chosen: every logit is NaN or -inf (broken weights, or a numeric overflow in the forward pass)")

// ChoiceError is why ArgmaxMargin's answer (id, margin) is not a token, or
// nil when it is one.
func ChoiceError(id int, margin float32) error {
	switch {
	case id >= 0:
		return nil
	case math.IsNaN(float64(margin)):
		return ErrNoUsableLogit
	default:
		return errors.New("no token can be chosen: the vocabulary is empty")
	}
}

// Margin is how clearly greedy decoding chose at these logits: the gap
// between the best and the second-best logit of the ids < vocabLimit,
// relative to the best one's size, (top1 − top2) / max(1, |top1|). A margin
// of a few bf16 steps (2⁻⁸ each) is a near-tie that rounding can flip. NaN
// logits do not count; with fewer than two usable ids it is 1, with none NaN.
func Margin(logits []float32, vocabLimit int) float32 {
	_, m := ArgmaxMargin(logits, vocabLimit)
	return m
}

// ArgmaxMargin is Argmax and Margin in one pass over the logits, except
// that a row with no usable logit (nothing above -inf: all NaN or -inf) gives
// id -1 and margin NaN (ChoiceError says why); empty logits give -1 and 1.
// The device's Picker (db_argmax_margin) answers the same, to the bit. Four
// interleaved lanes keep the loop free of a serial dependency (the common
// case, a value under every lane's runner-up, is one predictable compare).
func ArgmaxMargin(logits []float32, vocabLimit int) (int, float32) {
	n := limit(len(logits), vocabLimit)
	if n == 0 {
		return -1, 1
	}
	ninf := float32(math.Inf(-1))
	t1 := [4]float32{ninf, ninf, ninf, ninf} // each lane's best
	t2 := t1                                 // and runner-up
	a := [4]int{-1, -1, -1, -1}
	l := logits[:n]
	i := 0
	// The common case (under every lane's runner-up) first, with the
	// runners-up in registers.
	r0, r1, r2, r3 := t2[0], t2[1], t2[2], t2[3]
	for ; i+4 <= n; i += 4 {
		q := l[i : i+4 : i+4]
		x0, x1, x2, x3 := q[0], q[1], q[2], q[3]
		if x0 <= r0 && x1 <= r1 && x2 <= r2 && x3 <= r3 {
			continue
		}
		t2[0], t2[1], t2[2], t2[3] = r0, r1, r2, r3
		for k, x := range q {
			if x > t2[k] {
				if x > t1[k] {
					t2[k], t1[k], a[k] = t1[k], x, i+k
				} else {
					t2[k] = x
				}
			}
		}
		r0, r1, r2, r3 = t2[0], t2[1], t2[2], t2[3]
	}
	t2[0], t2[1], t2[2], t2[3] = r0, r1, r2, r3
	for k := 0; i+k < n; k++ {
		if x := l[i+k]; x > t2[k] {
			if x > t1[k] {
				t2[k], t1[k], a[k] = t1[k], x, i+k
			} else {
				t2[k] = x
			}
		}
	}
	// The winner: the largest best, the lowest index among equals (Argmax
	// takes the first maximum).
	w := -1
	for k := 0; k < 4; k++ {
		if a[k] >= 0 && (w < 0 || t1[k] > t1[w] || (t1[k] == t1[w] && a[k] < a[w])) {
			w = k
		}
	}
	if w < 0 {
		return -1, float32(math.NaN()) // nothing above -inf: no choice
	}
	second := t2[w]
	for k := 0; k < 4; k++ {
		if k != w && t1[k] > second {
			second = t1[k]
		}
	}
	return a[w], margin(float64(t1[w]), float64(second))
}

func margin(top1, top2 float64) float32 {
	if math.IsInf(top1, -1) || math.IsInf(top2, -1) {
		return 1
	}
	if math.IsInf(top1, 1) {
		if math.IsInf(top2, 1) {
			return 0
		}
		return 1
	}
	return float32((top1 - top2) / math.Max(1, math.Abs(top1)))
}

// limit is the number of ids that may be produced out of n.
func limit(n, vocabLimit int) int {
	if vocabLimit > 0 && vocabLimit < n {
		return vocabLimit
	}
	return n
}

// Probs returns the dense distribution that sampling with p draws from: masked
// ids and ids cut by top-k or top-p get exactly 0. With p.Greedy() it is a
// point mass on Argmax(logits, p.VocabLimit). NaN logits count as -inf; when no
// id has a usable logit (all NaN or -inf: a broken forward pass) a sampled
// row is all zeros, so Sample answers -1 and the caller fails with
// ErrNoUsableLogit rather than draw a token from nothing.
//
// The softmax subtracts the maximum and accumulates in float64.
func Probs(logits []float32, p Params) []float32 {
	out := make([]float32, len(logits))
	if len(logits) == 0 {
		return out
	}
	if p.Temperature <= 0 {
		out[Argmax(logits, p.VocabLimit)] = 1
		return out
	}
	n := limit(len(logits), p.VocabLimit)
	s := make([]float64, len(logits))
	for i, v := range logits {
		if i >= n || math.IsNaN(float64(v)) {
			s[i] = math.Inf(-1)
			continue
		}
		s[i] = float64(v) / p.Temperature
	}
	if p.TopK > 0 {
		topK(s, p.TopK)
	}
	w := softmax(s)
	if w == nil {
		return out // no usable logit: no mass
	}
	if p.TopP > 0 && p.TopP < 1 {
		topP(w, p.TopP)
	}
	for i, v := range w {
		out[i] = float32(v)
	}
	return out
}

// topK sets every score below the k-th largest to -inf, keeping ties with the
// k-th as transformers' TopKLogitsWarper does (scores < topk(scores)[k-1]).
func topK(s []float64, k int) {
	live := 0
	for _, v := range s {
		if v > math.Inf(-1) {
			live++
		}
	}
	if k >= live {
		return
	}
	thr := kthLargest(s, k)
	for i, v := range s {
		if v < thr {
			s[i] = math.Inf(-1)
		}
	}
}

// softmax turns s into exp(s - max) normalised, in place, and returns it, or
// nil when every score is -inf. +inf scores share the whole mass. A -inf score
// (masked, or cut by top-k) is 0 without a call to math.Exp.
func softmax(s []float64) []float64 {
	m := math.Inf(-1)
	for _, v := range s {
		m = max(m, v)
	}
	if math.IsInf(m, -1) {
		return nil
	}
	var z float64
	if math.IsInf(m, 1) {
		for i, v := range s {
			s[i] = 0
			if math.IsInf(v, 1) {
				s[i] = 1
			}
			z += s[i]
		}
	} else {
		ninf := math.Inf(-1)
		for i, v := range s {
			e := 0.0
			if v != ninf {
				e = math.Exp(v - m)
			}
			s[i] = e
			z += e
		}
	}
	for i := range s {
		s[i] /= z
	}
	return s
}

// topP zeroes the tail of w (a distribution) outside the nucleus and
// renormalises. It is transformers' TopPLogitsWarper: sort ascending, drop the
// tokens whose cumulative mass is <= 1-topP, always keep the most likely one.
// Read from the top, a token is kept iff the mass strictly above it in that
// order is < topP. The order is the one a stable ascending sort gives, so among
// equal probabilities the lower id is dropped first. Only the nucleus is taken
// out of a heap, so a 150k vocabulary costs O(V + nucleus·log V), not a sort.
func topP(w []float64, topP float64) {
	h := nucleusHeap{w: w, idx: make([]int32, 0, len(w))}
	for i, v := range w {
		if v > 0 {
			h.idx = append(h.idx, int32(i))
		}
	}
	h.init()
	keep := make([]int32, 0, 16)
	var head float64
	for len(h.idx) > 0 && head < topP {
		i := h.pop()
		keep = append(keep, i)
		head += w[i]
	}
	var z float64
	for _, i := range keep {
		z += w[i]
	}
	kept := make([]float64, len(keep))
	for j, i := range keep {
		kept[j] = w[i] / z
	}
	clear(w)
	for j, i := range keep {
		w[i] = kept[j]
	}
}

// nucleusHeap is a max-heap of ids ordered by (w desc, id desc).
type nucleusHeap struct {
	w   []float64
	idx []int32
}

func (h *nucleusHeap) above(a, b int32) bool {
	if h.w[a] != h.w[b] {
		return h.w[a] > h.w[b]
	}
	return a > b
}

func (h *nucleusHeap) init() {
	for i := len(h.idx)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *nucleusHeap) pop() int32 {
	top := h.idx[0]
	last := len(h.idx) - 1
	h.idx[0] = h.idx[last]
	h.idx = h.idx[:last]
	h.down(0)
	return top
}

func (h *nucleusHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h.idx) {
			return
		}
		c := l
		if r := l + 1; r < len(h.idx) && h.above(h.idx[r], h.idx[l]) {
			c = r
		}
		if !h.above(h.idx[c], h.idx[i]) {
			return
		}
		h.idx[i], h.idx[c] = h.idx[c], h.idx[i]
		i = c
	}
}

// kthLargest is the k-th largest of v (1 <= k <= len(v), duplicates counted),
// without reordering or copying v: a min-heap of the k largest values seen,
// about one comparison per value when k is much smaller than len(v) (top-k
// sampling over a vocabulary).
func kthLargest(v []float64, k int) float64 {
	h := make([]float64, 0, k)
	for _, x := range v {
		switch {
		case len(h) < k:
			h = append(h, x)
			for i := len(h) - 1; i > 0; {
				p := (i - 1) / 2
				if h[p] <= h[i] {
					break
				}
				h[p], h[i] = h[i], h[p]
				i = p
			}
		case x > h[0]:
			h[0] = x
			for i := 0; ; {
				c := 2*i + 1
				if c >= k {
					break
				}
				if c+1 < k && h[c+1] < h[c] {
					c++
				}
				if h[i] <= h[c] {
					break
				}
				h[i], h[c] = h[c], h[i]
				i = c
			}
		}
	}
	return h[0]
}

// Sample draws an id from weights by inverse CDF with the uniform u in [0, 1).
// The weights need not sum to 1 (they are scaled by their sum); zero, negative
// and NaN weights are never chosen. It returns -1 when no weight is positive.
func Sample(probs []float32, u float64) int {
	var total float64
	for _, v := range probs {
		if v > 0 {
			total += float64(v)
		}
	}
	if !(total > 0) {
		return -1
	}
	target := min(max(u, 0), 1) * total
	var cum float64
	last := -1
	for i, v := range probs {
		if !(v > 0) {
			continue
		}
		last = i
		cum += float64(v)
		if target < cum {
			return i
		}
	}
	// u*total reached the float64 sum only through rounding.
	return last
}
