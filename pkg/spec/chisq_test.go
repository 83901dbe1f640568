package spec

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

// alpha is the significance level of every distribution test here: a test
// fails when its p-value is below it. With fixed seeds the outcome is fixed;
// the level says how unlikely the observed counts would be if the code were
// right. The negative controls show that a real bug lands far below it.
const alpha = 1e-3

// gofPValue is Pearson's chi-square goodness-of-fit test of counts against
// the distribution p (summing to 1); cells with p == 0 must be empty. Cells
// with an expected count below 5 are pooled, as the chi-square approximation
// asks.
func gofPValue(counts []int, p []float64) (float64, error) {
	n := 0
	for _, c := range counts {
		n += c
	}
	if n == 0 {
		return 0, fmt.Errorf("no observations")
	}
	var stat, poolE float64
	poolO, cells := 0, 0
	for i, c := range counts {
		e := p[i] * float64(n)
		switch {
		case p[i] == 0:
			if c != 0 {
				return 0, fmt.Errorf("cell %d has probability 0 but %d observations", i, c)
			}
		case e < 5:
			poolE += e
			poolO += c
		default:
			d := float64(c) - e
			stat += d * d / e
			cells++
		}
	}
	if poolE > 0 {
		d := float64(poolO) - poolE
		stat += d * d / poolE
		cells++
	}
	if cells < 2 {
		return 1, nil // a point mass: the zero cells were checked above
	}
	return distuv.ChiSquared{K: float64(cells - 1)}.Survival(stat), nil
}

// twoSamplePValue is the chi-square test of homogeneity of two count vectors
// over the same cells (a 2×k contingency table). Cells with fewer than 10
// observations in both samples together are pooled into one.
func twoSamplePValue(a, b []int) float64 {
	var na, nb int
	for i := range a {
		na += a[i]
		nb += b[i]
	}
	type cell struct{ a, b int }
	var cells []cell
	var pool cell
	for i := range a {
		if a[i]+b[i] < 10 {
			pool.a += a[i]
			pool.b += b[i]
			continue
		}
		cells = append(cells, cell{a[i], b[i]})
	}
	if pool.a+pool.b > 0 {
		cells = append(cells, pool)
	}
	if len(cells) < 2 {
		return 1
	}
	n := float64(na + nb)
	var stat float64
	for _, c := range cells {
		col := float64(c.a + c.b)
		for _, o := range []struct{ obs, row int }{{c.a, na}, {c.b, nb}} {
			e := float64(o.row) * col / n
			d := float64(o.obs) - e
			stat += d * d / e
		}
	}
	return distuv.ChiSquared{K: float64(len(cells) - 1)}.Survival(stat)
}

// TestChiSquareHelpers pins the helpers on hand-computed statistics.
func TestChiSquareHelpers(t *testing.T) {
	t.Run("gof", func(t *testing.T) {
		tests := []struct {
			name    string
			counts  []int
			p       []float64
			want    float64
			wantErr bool
		}{
			// stat = (60-50)²/50 + (40-50)²/50 = 4, df 1.
			{"two cells", []int{60, 40}, []float64{0.5, 0.5}, distuv.ChiSquared{K: 1}.Survival(4), false},
			{"exact fit", []int{25, 50, 25}, []float64{0.25, 0.5, 0.25}, 1, false},
			{"point mass", []int{0, 9}, []float64{0, 1}, 1, false},
			{"mass on a zero cell", []int{1, 9}, []float64{0, 1}, 0, true},
			// Expected 2 and 2 pool into one cell of 4: stat = 0 + (4-4)²/4.
			{"small cells pool", []int{96, 1, 3}, []float64{0.96, 0.02, 0.02}, 1, false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := gofPValue(tt.counts, tt.p)
				if (err != nil) != tt.wantErr {
					t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
				}
				if err == nil && math.Abs(got-tt.want) > 1e-12 {
					t.Fatalf("p-value = %v, want %v", got, tt.want)
				}
			})
		}
	})
	t.Run("two sample", func(t *testing.T) {
		// 2×2 table [[30,70],[50,50]]: expected 40/60 per row, stat = 2·(100/40 + 100/60).
		want := distuv.ChiSquared{K: 1}.Survival(2 * (100.0/40 + 100.0/60))
		if got := twoSamplePValue([]int{30, 70}, []int{50, 50}); math.Abs(got-want) > 1e-12 {
			t.Fatalf("p-value = %v, want %v", got, want)
		}
		same := []int{40, 30, 20, 10}
		if got := twoSamplePValue(same, slices.Clone(same)); got != 1 {
			t.Fatalf("identical samples: p-value %v, want 1", got)
		}
	})
}
