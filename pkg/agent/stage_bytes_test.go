package agent

import (
	"testing"

	"github.com/draftbench/draftbench/pkg/model"
	"github.com/draftbench/draftbench/pkg/protocol"
)

// shardBytes splits a folder's bytes over a pipeline: the shards add up to
// the whole, and a missing folder gives 0 (the GPU backend then fills its
// devices in order).
func TestShardBytes(t *testing.T) {
	dir := "../../testdata/golden/models/qwen3"
	info, err := model.Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, r := range [][2]int{{0, 1}, {1, 2}, {2, 3}} {
		n := shardBytes(&protocol.Assignment{ModelDir: dir, Layers: r})
		if n <= 0 {
			t.Fatalf("layers %v: %d bytes", r, n)
		}
		sum += n
	}
	if sum != info.Bytes {
		t.Errorf("shards add up to %d bytes, the folder holds %d", sum, info.Bytes)
	}
	// The golden model is f32 on disk: stored as bf16 it takes half.
	whole := &protocol.Assignment{ModelDir: dir, Layers: [2]int{0, 3}, DType: "bf16"}
	if n := shardBytes(whole); n != info.Parameters*2 {
		t.Errorf("all layers in bf16: %d bytes, want %d (2 a parameter)", n, info.Parameters*2)
	}
	if whole.DType = "f32"; shardBytes(whole) != info.Bytes {
		t.Errorf("all layers in f32: %d bytes, want the folder's %d", shardBytes(whole), info.Bytes)
	}
	if n := shardBytes(&protocol.Assignment{ModelDir: t.TempDir(), Layers: [2]int{0, 1}}); n != 0 {
		t.Errorf("no model: %d bytes", n)
	}
}
