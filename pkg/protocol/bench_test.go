package protocol

import (
	"math/rand/v2"
	"testing"

	"github.com/google/uuid"
)

// BenchmarkWholeQ encodes and decodes a draft step's reply carrying gamma 4
// whole drafter distributions over Qwen3's 151,936 ids (draft_top_k = -1):
// the messaging cost of one hop of such a q (docs/perf.md).
func BenchmarkWholeQ(b *testing.B) {
	const vocab, gamma = 151936, 4
	r := rand.New(rand.NewPCG(1, 2))
	rep := &StepReply{Session: uuid.New(), Op: OpDraft, CacheLen: 100}
	for range gamma {
		q := Sparse{IDs: make([]int32, vocab), Probs: make([]float32, vocab), Kept: 1}
		for i := range q.IDs {
			q.IDs[i], q.Probs[i] = int32(i), r.Float32()/vocab
		}
		rep.Tokens = append(rep.Tokens, 7)
		rep.Q = append(rep.Q, q)
	}
	data, err := Encode(rep)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encode", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := Encode(rep); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var back StepReply
			if err := Decode(data, &back); err != nil {
				b.Fatal(err)
			}
		}
	})
}
