package model

import (
	"fmt"
	"slices"
	"testing"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/backend/cpu"
	"github.com/draftbench/draftbench/pkg/kvcache"
)

// preparing is a backend.ProductPreparer over the CPU backend that notes
// the weights it is asked to prepare and the weights products then use.
type preparing struct {
	backend.Backend
	prepared, used map[backend.Tensor]bool
}

func (p *preparing) PrepareProducts(ws []backend.Tensor) (bool, error) {
	for _, w := range ws {
		p.prepared[w] = true
	}
	return true, nil
}

func (p *preparing) MatMul(dst, x, w backend.Tensor) error {
	p.used[w] = true
	return p.Backend.MatMul(dst, x, w)
}

// TestPrepareProducts: Model.PrepareProducts hands a
// backend.ProductPreparer exactly the weights the forward pass multiplies by
// (the CUDA backend tunes their products once a stage has loaded), whole
// model and a layer range without the head.
func TestPrepareProducts(t *testing.T) {
	dir := writeSmallModel(t)
	plain, err := Load(dir, cpu.New(1), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := plain.PrepareProducts(); ok || err != nil {
		t.Fatalf("the CPU backend prepares nothing: got %v, %v", ok, err)
	}
	for _, opts := range []Options{{}, {First: 0, Last: 1}} {
		t.Run(fmt.Sprintf("layers %d-%d", opts.First, opts.Last), func(t *testing.T) {
			b := &preparing{Backend: cpu.New(1), prepared: map[backend.Tensor]bool{}, used: map[backend.Tensor]bool{}}
			m, err := Load(dir, b, opts)
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := m.PrepareProducts(); err != nil || !ok {
				t.Fatalf("PrepareProducts: %v, %v", ok, err)
			}
			if len(b.prepared) == 0 {
				t.Fatal("no products prepared")
			}
			if _, err := m.Forward([]Seq{{Cache: m.NewCache(kvcache.Options{}), Tokens: []int{1, 2, 3}}}, nil); err != nil {
				t.Fatal(err)
			}
			shapes := func(set map[backend.Tensor]bool) (out []string) {
				for w := range set {
					out = append(out, fmt.Sprint(w.Shape()))
				}
				slices.Sort(out)
				return out
			}
			for w := range b.used {
				if !b.prepared[w] {
					t.Errorf("a product used a weight %v that was not prepared (prepared %v)", w.Shape(), shapes(b.prepared))
				}
			}
			for w := range b.prepared {
				if !b.used[w] {
					t.Errorf("a weight %v no product uses was prepared (used %v)", w.Shape(), shapes(b.used))
				}
			}
		})
	}
}
