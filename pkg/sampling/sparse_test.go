package sampling

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestTopKSparse(t *testing.T) {
	tests := []struct {
		name      string
		probs     []float32
		k         int
		wantIDs   []int32
		wantProbs []float32
		wantKept  float32 // the mass the ids held before the cut
	}{
		{"keeps the k most likely, renormalised", []float32{0.1, 0.4, 0.2, 0.3}, 2, []int32{1, 3}, []float32{4.0 / 7, 3.0 / 7}, 0.7},
		{"ties go to the lower id", []float32{0.25, 0.25, 0.25, 0.25}, 3, []int32{0, 1, 2}, []float32{1.0 / 3, 1.0 / 3, 1.0 / 3}, 0.75},
		{"k=0 keeps the whole support", []float32{0.5, 0, 0.5}, 0, []int32{0, 2}, []float32{0.5, 0.5}, 1},
		{"k above the support keeps it as is", []float32{0, 0.7, 0.3}, 64, []int32{1, 2}, []float32{0.7, 0.3}, 1},
		{"a point mass stays one id", []float32{0, 0, 1, 0}, 4, []int32{2}, []float32{1}, 1},
		{"zero ids never enter", []float32{0, 0.9, 0, 0.1}, 3, []int32{1, 3}, []float32{0.9, 0.1}, 1},
		{"nothing to keep", []float32{0, 0}, 2, []int32{}, []float32{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := TopKSparse(tt.probs, tt.k)
			if !slices.Equal(got.IDs, tt.wantIDs) {
				t.Fatalf("IDs = %v, want %v", got.IDs, tt.wantIDs)
			}
			if len(got.Probs) != len(tt.wantProbs) {
				t.Fatalf("Probs = %v, want %v", got.Probs, tt.wantProbs)
			}
			for i := range got.Probs {
				if math.Abs(float64(got.Probs[i]-tt.wantProbs[i])) > 1e-7 {
					t.Fatalf("Probs = %v, want %v", got.Probs, tt.wantProbs)
				}
			}
			if math.Abs(float64(got.Kept-tt.wantKept)) > 1e-7 {
				t.Fatalf("Kept = %v, want %v", got.Kept, tt.wantKept)
			}
		})
	}
	kept := func(q Sparse) float32 { return q.Kept }
	if m := MeanKept([]Sparse{{Kept: 0.5}, {}, {Kept: 0.7}}, kept); math.Abs(m-0.6) > 1e-7 {
		t.Errorf("MeanKept = %v, want 0.6 (the q that does not know its mass left out)", m)
	}
	if m := MeanKept(nil, kept); m != 0 {
		t.Errorf("MeanKept(nil) = %v, want 0", m)
	}
}

// TestTopKSparseUntruncatedIsExact: when nothing is cut, q must equal the
// dense distribution bit for bit, so a drafter equal to the target is always
// accepted (p(x)/q(x) == 1).
func TestTopKSparseUntruncatedIsExact(t *testing.T) {
	probs := Probs(benchLogits(1000), Params{Temperature: 0.9, TopK: 40})
	q := TopKSparse(probs, 64)
	if q.Len() < 40 {
		t.Fatalf("support %d, want at least 40", q.Len())
	}
	for j, id := range q.IDs {
		if q.Probs[j] != probs[id] {
			t.Fatalf("q(%d) = %v, dense %v", id, q.Probs[j], probs[id])
		}
	}
}

// TestTopKSparseAgreesWithSort checks the heap selection against a full sort
// on larger inputs with many ties.
func TestTopKSparseAgreesWithSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{10, 200, 5000} {
		probs := make([]float32, n)
		var z float32
		for i := range probs {
			probs[i] = float32(rng.IntN(20))
			z += probs[i]
		}
		for i := range probs {
			probs[i] /= z
		}
		for _, k := range []int{1, 7, 64} {
			ids := make([]int32, n)
			for i := range ids {
				ids[i] = int32(i)
			}
			ids = slices.DeleteFunc(ids, func(i int32) bool { return probs[i] == 0 })
			sortByProb(ids, probs)
			want := ids[:min(k, len(ids))]
			got := TopKSparse(probs, k)
			if !slices.Equal(got.IDs, want) {
				t.Fatalf("n=%d k=%d: IDs %v, want %v", n, k, got.IDs, want)
			}
			var sum float64
			for _, v := range got.Probs {
				sum += float64(v)
			}
			if math.Abs(sum-1) > 1e-6 {
				t.Fatalf("n=%d k=%d: probabilities sum to %v", n, k, sum)
			}
		}
	}
}

func TestSparseAccessors(t *testing.T) {
	q := Sparse{IDs: []int32{5, 2, 9}, Probs: []float32{0.5, 0.3, 0.2}}
	t.Run("Prob", func(t *testing.T) {
		for id, want := range map[int]float32{5: 0.5, 2: 0.3, 9: 0.2, 0: 0, 100: 0} {
			if got := q.Prob(id); got != want {
				t.Errorf("Prob(%d) = %v, want %v", id, got, want)
			}
		}
	})
	t.Run("Sample maps back to ids", func(t *testing.T) {
		for _, c := range []struct {
			u    float64
			want int
		}{{0, 5}, {0.49, 5}, {0.5, 2}, {0.79, 2}, {0.81, 9}, {0.999, 9}} {
			if got := q.Sample(c.u); got != c.want {
				t.Errorf("Sample(%v) = %d, want %d", c.u, got, c.want)
			}
		}
		if got := (Sparse{}).Sample(0.5); got != -1 {
			t.Errorf("empty Sample = %d, want -1", got)
		}
	})
	t.Run("Dense drops ids past n", func(t *testing.T) {
		want := []float32{0, 0, 0.3, 0, 0, 0.5, 0}
		if got := q.Dense(7); !slices.Equal(got, want) {
			t.Errorf("Dense(7) = %v, want %v", got, want)
		}
	})
}

func BenchmarkTopKSparse(b *testing.B) {
	probs := Probs(benchLogits(151936), Params{Temperature: 1})
	for b.Loop() {
		TopKSparse(probs, 64)
	}
}

// TestTopKOfCandidates: from the ids at or above the k-th largest
// probability (shuffled, with extra tied ones and zeros mixed in), or from
// all live ids when there are at most k, TopKOfCandidates gives exactly
// TopKSparse of the whole row.
func TestTopKOfCandidates(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for trial := range 300 {
		n := 1 + rng.IntN(400)
		p := make([]float32, n)
		for i := range p {
			switch rng.IntN(5) {
			case 0: // zero
			case 1:
				p[i] = 0.25 // ties
			default:
				p[i] = float32(rng.Float64())
			}
		}
		live := 0
		for _, v := range p {
			if v > 0 {
				live++
			}
		}
		for _, k := range []int{0, 1, 3, 64, n, n + 5} {
			want := TopKSparse(p, k)
			var thr float32
			if k > 0 && k < live {
				sorted := slices.Clone(p)
				slices.Sort(sorted)
				thr = sorted[n-k]
			}
			var ids []int32
			var vals []float32
			for i, v := range p {
				if v > thr || (thr > 0 && v == thr) || (v == 0 && rng.IntN(4) == 0) {
					ids = append(ids, int32(i))
					vals = append(vals, v)
				}
			}
			rng.Shuffle(len(ids), func(a, b int) { ids[a], ids[b] = ids[b], ids[a]; vals[a], vals[b] = vals[b], vals[a] })
			got := TopKOfCandidates(ids, vals, live, k)
			if !slices.Equal(got.IDs, want.IDs) || !slices.Equal(got.Probs, want.Probs) {
				t.Fatalf("trial %d, n %d, k %d: got %v %v, want %v %v", trial, n, k, got.IDs, got.Probs, want.IDs, want.Probs)
			}
		}
	}
}

// sortByProb orders ids by probability, highest first, ties by lower id: the
// reference order of a Sparse.
func sortByProb(ids []int32, p []float32) {
	slices.SortFunc(ids, func(a, b int32) int {
		switch {
		case better(p, a, b):
			return -1
		case better(p, b, a):
			return 1
		}
		return 0
	})
}
