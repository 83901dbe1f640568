package sampling

import (
	"cmp"
	"container/heap"
	"slices"
)

// Sparse is a distribution over a few ids: the truncated draft distribution q
// that a drafter sends with its proposals. IDs are ordered by probability,
// highest first, ties by lower id. A drafter must draw its proposal from
// exactly this q (Sparse.Sample), not from the dense distribution it was cut
// from, or the acceptance rule no longer reproduces the target's distribution.
type Sparse struct {
	IDs   []int32
	Probs []float32
	// Kept is how much of the dense distribution's mass the ids held before
	// the cut renormalised them (TopKSparse: 1, to rounding, when nothing
	// was cut; 0 when unknown). Where it is far below 1, acceptance measures
	// the cut as well as the drafter (either way).
	Kept float32
}

// MeanKept is the mean Kept mass (kept(q)) of the qs that know theirs (a
// round's q_mass); 0 when none does. qs may be Sparse or its wire form.
func MeanKept[Q any](qs []Q, kept func(Q) float32) float64 {
	var sum float64
	n := 0
	for _, q := range qs {
		if k := kept(q); k > 0 {
			sum += float64(k)
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// Len is the number of ids with probability.
func (s Sparse) Len() int { return len(s.IDs) }

// Prob returns q(id), 0 for ids outside the support.
func (s Sparse) Prob(id int) float32 {
	for j, x := range s.IDs {
		if int(x) == id {
			return s.Probs[j]
		}
	}
	return 0
}

// Sample draws an id from s with the uniform u in [0, 1); -1 when s is empty.
func (s Sparse) Sample(u float64) int {
	j := Sample(s.Probs, u)
	if j < 0 {
		return -1
	}
	return int(s.IDs[j])
}

// Dense expands s over a vocabulary of n ids; ids >= n are dropped.
func (s Sparse) Dense(n int) []float32 {
	out := make([]float32, n)
	for j, x := range s.IDs {
		if int(x) < n {
			out[x] = s.Probs[j]
		}
	}
	return out
}

// TopKSparse keeps the k most likely ids of probs (ties by lower id) and
// renormalises them. k <= 0, or k at least the number of ids with positive
// probability, keeps every such id with its probability unchanged, so q equals
// the dense distribution exactly on its support. Ids with probability 0 are
// never included.
func TopKSparse(probs []float32, k int) Sparse {
	live := 0
	for _, v := range probs {
		if v > 0 {
			live++
		}
	}
	var ids []int32
	if k <= 0 || k >= live {
		ids = make([]int32, 0, live)
		for i, v := range probs {
			if v > 0 {
				ids = append(ids, int32(i))
			}
		}
	} else {
		// A min-heap of the k best seen so far: O(V log k).
		h := &worstFirst{p: probs, ids: make([]int32, 0, k)}
		for i, v := range probs {
			if !(v > 0) {
				continue
			}
			if len(h.ids) < k {
				heap.Push(h, int32(i))
				continue
			}
			if better(probs, int32(i), h.ids[0]) {
				h.ids[0] = int32(i)
				heap.Fix(h, 0)
			}
		}
		ids = h.ids
	}
	vals := make([]float32, len(ids))
	for j, i := range ids {
		vals[j] = probs[i]
	}
	return TopKOfCandidates(ids, vals, live, k)
}

// TopKOfCandidates is TopKSparse(probs, k) for a caller that holds only
// candidates: ids with their probabilities vals (any order) that include
// every id TopKSparse can keep — all the live ones (probability > 0) when
// live <= k, else at least every id whose probability is at least the k-th
// largest. live is the number of live ids in the whole row. The result is
// the one TopKSparse gives, to the bit (same order, same sums).
func TopKOfCandidates(ids []int32, vals []float32, live, k int) Sparse {
	type cand struct {
		id int32
		p  float32
	}
	cs := make([]cand, 0, len(ids))
	for j, id := range ids {
		if vals[j] > 0 {
			cs = append(cs, cand{id, vals[j]})
		}
	}
	slices.SortFunc(cs, func(a, b cand) int { // probability, highest first; ties by lower id
		if a.p != b.p {
			if a.p > b.p {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.id, b.id)
	})
	keep := len(cs)
	norm := k > 0 && k < live
	if norm {
		keep = min(k, keep)
	}
	out := Sparse{IDs: make([]int32, keep), Probs: make([]float32, keep)}
	var z float64
	for j := range keep {
		out.IDs[j] = cs[j].id
		z += float64(cs[j].p)
	}
	for j := range keep {
		if norm {
			out.Probs[j] = float32(float64(cs[j].p) / z)
		} else {
			out.Probs[j] = cs[j].p
		}
	}
	out.Kept = float32(z)
	return out
}

// better orders ids by probability, highest first, ties by lower id.
func better(p []float32, a, b int32) bool {
	if p[a] != p[b] {
		return p[a] > p[b]
	}
	return a < b
}

// worstFirst is a container/heap of ids whose root is the least likely one.
type worstFirst struct {
	p   []float32
	ids []int32
}

func (h *worstFirst) Len() int           { return len(h.ids) }
func (h *worstFirst) Less(a, b int) bool { return better(h.p, h.ids[b], h.ids[a]) }
func (h *worstFirst) Swap(a, b int)      { h.ids[a], h.ids[b] = h.ids[b], h.ids[a] }
func (h *worstFirst) Push(x any)         { h.ids = append(h.ids, x.(int32)) }
func (h *worstFirst) Pop() any {
	x := h.ids[len(h.ids)-1]
	h.ids = h.ids[:len(h.ids)-1]
	return x
}
