package stage

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/draftbench/draftbench/pkg/backend/cpu"
	"github.com/draftbench/draftbench/pkg/model"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/safetensors"
	"github.com/draftbench/draftbench/pkg/tinymodel"
)

// poisonedModel writes a small model whose final norm is NaN, as a broken
// checkpoint or an overflow in the pass would leave it: every logit is NaN.
func poisonedModel(t *testing.T) *model.Model {
	t.Helper()
	dir := t.TempDir()
	spec := tinymodel.Spec{Arch: "Qwen3ForCausalLM", Hidden: 32, Intermediate: 64, Layers: 2, Heads: 4, KVHeads: 2,
		TokVocab: 300, DType: "F32", Seed: 7}
	if err := tinymodel.Write(dir, spec); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "model.safetensors")
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	info, ok := f.Info("model.norm.weight")
	f.Close()
	if !ok || info.DType != "F32" {
		t.Fatalf("model.norm.weight: %+v", info)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := info.Offset; i < info.Offset+info.Size; i += 4 {
		binary.LittleEndian.PutUint32(data[i:], math.Float32bits(float32(math.NaN())))
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(dir, cpu.New(1), model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestNaNLogitsFailTheStep: steps over logits that are all NaN fail with
// the reason instead of answering token 0 as if it had been chosen or
// drawn: greedy (prefill, decode's pick, each position of a verify step) and
// sampled (a prefill's draw, a drafter's draws from its q, the acceptance
// rule).
func TestNaNLogitsFailTheStep(t *testing.T) {
	c := newCluster(t, 0)
	m := poisonedModel(t)
	s, err := New(Config{Model: m, Conn: c.connect(t, "poisoned stage"), Instance: "poisoned", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("stage: %v", err)
		}
	}()
	<-s.Ready()
	hot := protocol.Sampling{Temperature: 0.8, TopK: 20}
	for _, req := range []*protocol.StepRequest{
		{Session: uuid.New(), Op: protocol.OpPrefill, Tokens: []int{5, 6, 7}},
		{Session: uuid.New(), Op: protocol.OpVerify, Tokens: []int{5, 6, 7}, Drafts: []int{8, 9}},
		{Session: uuid.New(), Op: protocol.OpPrefill, Tokens: []int{5, 6, 7}, Sampling: hot, Seed: 3},
		{Session: uuid.New(), Op: protocol.OpDraft, Tokens: []int{5, 6, 7}, Gamma: 2, Sampling: hot, Seed: 3},
		{Session: uuid.New(), Op: protocol.OpVerify, Tokens: []int{5, 6, 7}, Drafts: []int{8, 9}, Sampling: hot, Seed: 3,
			Q: []protocol.Sparse{{IDs: []int32{8}, Probs: []float32{1}}, {IDs: []int32{9}, Probs: []float32{1}}}},
	} {
		rep, err := c.step(t, "poisoned", req)
		if err == nil {
			t.Errorf("%s (temperature %g) over NaN logits answered %v (margins %v), want an error", req.Op,
				req.Sampling.Temperature, rep.Tokens, rep.Margins)
			continue
		}
		if !strings.Contains(err.Error(), "every logit is NaN or -inf") {
			t.Errorf("%s (temperature %g): %v, want the no-usable-logit reason", req.Op, req.Sampling.Temperature, err)
		}
	}
}
