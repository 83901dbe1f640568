// Package kvcache keeps the attention keys and values of one sequence for the
// layers of one model shard. Speculative decoding rolls a cache back after
// rejected drafts with Truncate, which only moves the length: the rows past it
// are overwritten by the next Append, never read (attention reads [0, Len)).
package kvcache

import (
	"fmt"

	"github.com/draftbench/draftbench/pkg/backend"
)

// Seq is the cache of one sequence over a shard's layers.
type Seq struct {
	b      backend.Backend
	width  int // KV heads × head dim
	k, v   []backend.Tensor
	cap    int
	elem   int // bytes per element of the backend's activations
	n      int
	limit  int
	budget *Budget
}

// Budget accounts the bytes held by every cache of a process, so a stage can
// refuse a session instead of running out of memory. A nil *Budget accounts nothing.
type Budget struct {
	Limit int64 // 0 = unlimited
	used  int64
}

// Used is the number of bytes held.
func (b *Budget) Used() int64 {
	if b == nil {
		return 0
	}
	return b.used
}

func (b *Budget) take(n int64) error {
	if b == nil {
		return nil
	}
	if b.Limit > 0 && b.used+n > b.Limit {
		return fmt.Errorf("kvcache: %d more bytes would exceed the budget of %d (%d in use)", n, b.Limit, b.used)
	}
	b.used += n
	return nil
}

func (b *Budget) give(n int64) {
	if b != nil {
		b.used -= n
	}
}

// Options configure a Seq.
type Options struct {
	MaxLen int     // hard limit on positions (the model's context); 0 = none
	Budget *Budget // shared accounting; may be nil
}

// New returns an empty cache for layers layers of the given KV width.
func New(b backend.Backend, layers, width int, opt Options) *Seq {
	return &Seq{b: b, width: width, k: make([]backend.Tensor, layers), v: make([]backend.Tensor, layers), limit: opt.MaxLen, budget: opt.Budget}
}

// Len is the number of cached positions.
func (s *Seq) Len() int { return s.n }

// Layers is the number of layers the cache holds.
func (s *Seq) Layers() int { return len(s.k) }

// Bytes is the memory held (capacity, not length).
func (s *Seq) Bytes() int64 {
	return int64(s.cap) * int64(s.width) * int64(s.elem) * 2 * int64(len(s.k))
}

// Reserve makes room for n more positions, growing by doubling.
func (s *Seq) Reserve(n int) error {
	need := s.n + n
	if s.limit > 0 && need > s.limit {
		return fmt.Errorf("kvcache: %d positions exceed the context limit of %d", need, s.limit)
	}
	if need <= s.cap {
		return nil
	}
	newCap := max(need, 2*s.cap, 16)
	if s.limit > 0 {
		newCap = min(newCap, s.limit)
	}
	if s.elem == 0 { // the backend's activation dtype, learnt once
		probe := s.b.New(1, s.width)
		s.elem = probe.DType().Size()
		s.b.Free(probe)
	}
	extra := int64(newCap-s.cap) * int64(s.width) * int64(s.elem) * 2 * int64(len(s.k))
	if err := s.budget.take(extra); err != nil {
		return err
	}
	for l := range s.k {
		for _, t := range []*backend.Tensor{&s.k[l], &s.v[l]} {
			nt := s.b.New(newCap, s.width)
			if *t != nil {
				if s.n > 0 {
					if err := s.b.CopyRows(nt, 0, *t, 0, s.n); err != nil {
						return err
					}
				}
				s.b.Free(*t)
			}
			*t = nt
		}
	}
	s.cap = newCap
	return nil
}

// Layer returns the key and value tensors of layer l ([capacity, width]).
func (s *Seq) Layer(l int) (k, v backend.Tensor) { return s.k[l], s.v[l] }

// Advance records n positions written past Len by the layers (after Reserve).
func (s *Seq) Advance(n int) error {
	if s.n+n > s.cap {
		return fmt.Errorf("kvcache: advance by %d past capacity %d (len %d)", n, s.cap, s.n)
	}
	s.n += n
	return nil
}

// Truncate keeps the first n positions (speculative rollback).
func (s *Seq) Truncate(n int) error {
	if n < 0 || n > s.n {
		return fmt.Errorf("kvcache: truncate to %d, cache holds %d", n, s.n)
	}
	s.n = n
	return nil
}

// Free releases the memory; the cache is empty afterwards and can be reused.
func (s *Seq) Free() {
	for l := range s.k {
		if s.k[l] != nil {
			s.b.Free(s.k[l])
			s.b.Free(s.v[l])
			s.k[l], s.v[l] = nil, nil
		}
	}
	s.budget.give(s.Bytes())
	s.cap, s.n = 0, 0
}
