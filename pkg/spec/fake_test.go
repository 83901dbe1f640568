package spec

import (
	"fmt"
	"math"
	"slices"
)

// model writes the next-token logits for the prefix whose hash is h.
type model func(h uint64, out []float32)

// splitmix64 (Steele, Lea and Flood 2014) scrambles a 64-bit state.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// hashModel gives every prefix its own pseudo-random logits in
// [-scale, scale]: a "Markov" model of infinite order, so any cache bug
// (a lost, duplicated or stale position) changes what comes next.
func hashModel(seed uint64, scale float32) model {
	return func(h uint64, out []float32) {
		for j := range out {
			r := splitmix64(h ^ splitmix64(seed<<20+uint64(j)))
			out[j] = scale * (float32(r>>40)/float32(1<<24)*2 - 1)
		}
	}
}

// blend is a + w·b: a drafter that partly agrees with a.
func blend(a, b model, w float32) model {
	return func(h uint64, out []float32) {
		a(h, out)
		tmp := make([]float32, len(out))
		b(h, tmp)
		for j := range out {
			out[j] += w * tmp[j]
		}
	}
}

// padded gives the ids from limit on a large logit, as untrained padding rows
// could, so an unmasked vocabulary shows at once.
func padded(m model, limit int) model {
	return func(h uint64, out []float32) {
		m(h, out)
		for j := limit; j < len(out); j++ {
			out[j] = 50
		}
	}
}

// fakeLM is an LM over a hash model that records its cache contents and
// every call.
type fakeLM struct {
	model  model
	vocab  int
	tokens []int    // the cache
	hashes []uint64 // hashes[i] is the hash of tokens[:i+1]

	feeds     [][]int // every Feed's tokens
	truncates []int

	feedErr error // returned by Feed when set
	extra   int   // positions Len over-reports, to fake an engine bug
	short   bool  // return one logits row too few
	nanFrom int   // rows at this cache length and later are all NaN (0: none), a broken pass
}

func newFake(m model, vocab int) *fakeLM { return &fakeLM{model: m, vocab: vocab} }

func (f *fakeLM) Feed(tokens []int, all bool) ([][]float32, error) {
	if f.feedErr != nil {
		return nil, f.feedErr
	}
	f.feeds = append(f.feeds, slices.Clone(tokens))
	out := make([][]float32, 0, len(tokens))
	for _, t := range tokens {
		if t < 0 || t >= f.vocab {
			return nil, fmt.Errorf("fake: token %d outside vocabulary of %d", t, f.vocab)
		}
		h := uint64(0x5eed)
		if n := len(f.hashes); n > 0 {
			h = f.hashes[n-1]
		}
		h = splitmix64(h ^ uint64(t+1)*0x100000001b3)
		f.tokens = append(f.tokens, t)
		f.hashes = append(f.hashes, h)
		row := make([]float32, f.vocab)
		f.model(h, row)
		if f.nanFrom > 0 && len(f.tokens) >= f.nanFrom {
			for i := range row {
				row[i] = float32(math.NaN())
			}
		}
		out = append(out, row)
	}
	if !all {
		out = out[len(out)-1:]
	}
	if f.short {
		out = out[:len(out)-1]
	}
	return out, nil
}

func (f *fakeLM) Len() int { return len(f.tokens) + f.extra }

func (f *fakeLM) Truncate(n int) error {
	if n < 0 || n > len(f.tokens) {
		return fmt.Errorf("fake: truncate to %d with %d cached", n, len(f.tokens))
	}
	f.truncates = append(f.truncates, n)
	f.tokens = f.tokens[:n]
	f.hashes = f.hashes[:n]
	return nil
}

// fedTotal is the number of tokens fed over the LM's life.
func (f *fakeLM) fedTotal() int {
	n := 0
	for _, t := range f.feeds {
		n += len(t)
	}
	return n
}

const vocab = 16

// The models the loop tests share: a target, a drafter equal to it, one that
// partly agrees with it and one unrelated to it.
var (
	targetModel  = hashModel(1, 3)
	partialModel = blend(targetModel, hashModel(2, 3), 0.8)
	randomModel  = hashModel(99, 3)
)

var drafters = []struct {
	name  string
	model model
}{
	{"equal", targetModel},
	{"partial", partialModel},
	{"random", randomModel},
}
