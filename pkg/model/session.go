package model

import (
	"github.com/draftbench/draftbench/pkg/kvcache"
)

// Session is one sequence over a whole model in this process: the language
// model interface of pkg/spec's generation loops (worker generate, tests).
type Session struct {
	m     *Model
	cache *kvcache.Seq
	// OnLogits, when set, sees the logits of the last position of every Feed.
	OnLogits func(row []float32)
}

// NewSession starts an empty sequence. The model must not be a shard.
func (m *Model) NewSession() *Session {
	return &Session{m: m, cache: m.NewCache(kvcache.Options{})}
}

// Feed appends tokens and returns logits: for every fed position when all
// is set (a verify step), else only for the last one (prefill, decode).
func (s *Session) Feed(tokens []int, all bool) ([][]float32, error) {
	res, err := s.m.Forward([]Seq{{Cache: s.cache, Tokens: tokens, AllLogits: all}}, nil)
	if err != nil {
		return nil, err
	}
	rows := res.Logits[0]
	if s.OnLogits != nil {
		s.OnLogits(rows[len(rows)-1])
	}
	return rows, nil
}

// Len is the number of cached positions.
func (s *Session) Len() int { return s.cache.Len() }

// Truncate keeps the first n positions.
func (s *Session) Truncate(n int) error { return s.cache.Truncate(n) }

// Cache exposes the KV cache (tests compare caches bitwise).
func (s *Session) Cache() *kvcache.Seq { return s.cache }

// Close frees the cache.
func (s *Session) Close() { s.cache.Free() }
