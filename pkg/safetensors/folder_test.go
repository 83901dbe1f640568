package safetensors

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// shardedModel writes a three-shard folder, one tensor family per shard, and
// returns the folder and the weight map.
func shardedModel(t *testing.T) (string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	shards := []struct {
		file    string
		tensors []WriteTensor
	}{
		{"model-00001-of-00003.safetensors", []WriteTensor{
			{Name: "embed.weight", DType: BF16, Shape: []int{2, 2}, Data: u16s(0x3f80, 0xc020, 0x4000, 0x0000)},
			{Name: "layers.0.w", DType: F32, Shape: []int{2}, Data: f32s(0.5, -1)},
		}},
		{"model-00002-of-00003.safetensors", []WriteTensor{
			{Name: "layers.1.w", DType: F16, Shape: []int{3}, Data: u16s(0x3c00, 0x7bff, 0x0001)},
		}},
		{"model-00003-of-00003.safetensors", []WriteTensor{
			{Name: "norm.weight", DType: F32, Shape: []int{1}, Data: f32s(2)},
			{Name: "lm_head.weight", DType: BF16, Shape: []int{1}, Data: u16s(0xbf80)},
		}},
	}
	weightMap := map[string]string{}
	var total int64
	for _, s := range shards {
		if err := Write(filepath.Join(dir, s.file), s.tensors, map[string]string{"format": "pt"}); err != nil {
			t.Fatal(err)
		}
		for _, tensor := range s.tensors {
			weightMap[tensor.Name] = s.file
			total += int64(len(tensor.Data))
		}
	}
	if err := WriteIndex(dir, weightMap, total); err != nil {
		t.Fatal(err)
	}
	return dir, weightMap
}

func TestFolderSharded(t *testing.T) {
	dir, weightMap := shardedModel(t)
	s, err := OpenFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := []string{"embed.weight", "layers.0.w", "layers.1.w", "lm_head.weight", "norm.weight"}
	if got := s.Names(); !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	values := map[string][]float32{
		"embed.weight":   {1, -2.5, 2, 0},
		"layers.0.w":     {0.5, -1},
		"layers.1.w":     {1, 65504, 0x1p-24},
		"norm.weight":    {2},
		"lm_head.weight": {-1},
	}
	for name, wantV := range values {
		t.Run(name, func(t *testing.T) {
			got, err := s.Float32(name)
			if err != nil {
				t.Fatal(err)
			}
			checkFloat32s(t, got, wantV)
			info, ok := s.Info(name)
			if !ok || info.File != filepath.Join(dir, weightMap[name]) || info.NumElements() != len(wantV) {
				t.Errorf("Info = %+v, %v; want it in %s with %d elements", info, ok, weightMap[name], len(wantV))
			}
			raw, err := s.Raw(name)
			if err != nil || int64(len(raw)) != info.Size {
				t.Errorf("Raw: %d bytes, %v; want %d", len(raw), err, info.Size)
			}
		})
	}
	if _, err := s.Raw("absent"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), IndexFileName) {
		t.Errorf("Raw(absent): %v, want ErrNotFound naming the index", err)
	}
}

func TestFolderSingleFile(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile(hfFixture)
	if err != nil {
		t.Fatal(err)
	}
	writeBytes(t, dir, SingleFileName, data)
	// An index beside model.safetensors is ignored, as transformers does.
	writeBytes(t, dir, IndexFileName, []byte("not json"))
	s, err := OpenFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Names(); len(got) != 7 || got[0] != "bf16" {
		t.Errorf("Names() = %v", got)
	}
	got, err := s.Float32("f32")
	if err != nil {
		t.Fatal(err)
	}
	checkFloat32s(t, got, []float32{1, -2.5, 3.4028235e38})
	if info, ok := s.Info("u8"); !ok || info.File != filepath.Join(dir, SingleFileName) {
		t.Errorf("Info(u8) = %+v, %v", info, ok)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Raw("u8"); !errors.Is(err, ErrClosed) {
		t.Errorf("Raw after Close: %v, want ErrClosed", err)
	}
}

// TestFolderLazy corrupts a shard nobody asks for: the others still load,
// only the shards asked for get opened, and asking for the corrupt one names
// it and the tensor.
func TestFolderLazy(t *testing.T) {
	dir, _ := shardedModel(t)
	corrupt := "model-00002-of-00003.safetensors"
	writeBytes(t, dir, corrupt, []byte("this is not a safetensors file"))
	s, err := OpenFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, name := range []string{"embed.weight", "layers.0.w"} {
		if _, err := s.Float32(name); err != nil {
			t.Errorf("Float32(%s): %v", name, err)
		}
	}
	if len(s.shards) != 1 {
		t.Errorf("%d shards opened for tensors of one shard", len(s.shards))
	}
	if _, err := s.Float32("norm.weight"); err != nil {
		t.Errorf("Float32(norm.weight): %v", err)
	}
	if len(s.shards) != 2 {
		t.Errorf("%d shards opened, want 2", len(s.shards))
	}

	_, err = s.Lookup("layers.1.w")
	checkFormatError(t, err, filepath.Join(dir, corrupt), "", "header")
	for _, want := range []string{corrupt, `"layers.1.w"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if _, ok := s.Info("layers.1.w"); ok {
		t.Error("Info reported a tensor of a corrupt shard")
	}
	if _, err2 := s.Raw("layers.1.w"); err2 == nil || err2.Error() != err.Error() {
		t.Errorf("second try: %v, want the same error again", err2)
	}
}

func TestFolderRejects(t *testing.T) {
	okShard := func(t *testing.T, dir string) {
		t.Helper()
		if err := Write(filepath.Join(dir, "a.safetensors"), []WriteTensor{{Name: "a", DType: U8, Shape: []int{1}, Data: []byte{1}}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		index  string // "" writes no index
		tensor string // tensor the error must name
		reason string
	}{
		{"not json", `{"weight_map":`, "", "not JSON"},
		{"not an object", `[]`, "", "not a JSON object"},
		{"no weight_map", `{"metadata":{"total_size":1}}`, "", "no weight_map"},
		{"weight_map not object", `{"weight_map":["a"]}`, "", "weight_map: not a JSON object"},
		{"shard not a string", `{"weight_map":{"a":1}}`, "a", "not a shard file name"},
		{"shard escapes folder", `{"weight_map":{"a":"../a.safetensors"}}`, "a", "not a path inside the folder"},
		{"absolute shard", `{"weight_map":{"a":"/etc/a.safetensors"}}`, "a", "not a path inside the folder"},
		{"duplicate tensor", `{"weight_map":{"a":"a.safetensors","a":"a.safetensors"}}`, "a", "more than once in weight_map"},
		{"duplicate weight_map", `{"weight_map":{},"weight_map":{}}`, "", `"weight_map" appears more than once`},
		{"missing shard", `{"weight_map":{"a":"a.safetensors","z":"gone.safetensors","y":"gone.safetensors"}}`, "y", "shard gone.safetensors (holding 2 tensors) is missing"},
		{"shard is a folder", `{"weight_map":{"a":"sub"}}`, "a", "shard sub (holding 1 tensors) is not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			okShard(t, dir)
			if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			index := writeBytes(t, dir, IndexFileName, []byte(tt.index))
			s, err := OpenFolder(dir)
			if err == nil {
				s.Close()
			}
			checkFormatError(t, err, index, tt.tensor, tt.reason)
		})
	}
	t.Run("empty folder", func(t *testing.T) {
		dir := t.TempDir()
		_, err := OpenFolder(dir)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), IndexFileName) {
			t.Errorf("OpenFolder: %v, want ErrNotExist naming the folder and both layouts", err)
		}
	})
	t.Run("corrupt single file", func(t *testing.T) {
		dir := t.TempDir()
		path := writeBytes(t, dir, SingleFileName, []byte{1, 2})
		_, err := OpenFolder(dir)
		checkFormatError(t, err, path, "", "shorter than the 8-byte header length")
	})
	t.Run("tensor missing from its shard", func(t *testing.T) {
		dir := t.TempDir()
		okShard(t, dir)
		writeBytes(t, dir, IndexFileName, []byte(`{"weight_map":{"a":"a.safetensors","b":"a.safetensors"}}`))
		s, err := OpenFolder(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Raw("a"); err != nil {
			t.Errorf("Raw(a): %v", err)
		}
		_, err = s.Float32("b")
		checkFormatError(t, err, filepath.Join(dir, "a.safetensors"), "b", "places the tensor in shard a.safetensors, which does not hold it")
	})
}

func TestFolderClose(t *testing.T) {
	dir, _ := shardedModel(t)
	s, err := OpenFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.Raw("embed.weight")
	if err != nil || len(raw) != 8 {
		t.Fatalf("Raw: %d bytes, %v", len(raw), err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"embed.weight", "norm.weight"} {
		if _, err := s.Raw(name); !errors.Is(err, ErrClosed) {
			t.Errorf("Raw(%s) after Close: %v, want ErrClosed", name, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestWriteIndex(t *testing.T) {
	dir := t.TempDir()
	weightMap := map[string]string{
		"model.norm.weight":         "model-00002-of-00002.safetensors",
		"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
		"lm_head.weight":            "model-00002-of-00002.safetensors",
	}
	if err := WriteIndex(dir, weightMap, 123456); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, IndexFileName))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/index.golden.json")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("index:\n%s\nwant (testdata/index.golden.json):\n%s", got, want)
	}

	t.Run("rejects", func(t *testing.T) {
		tests := []struct {
			name      string
			weightMap map[string]string
			total     int64
			reason    string
		}{
			{"negative total", map[string]string{}, -1, "total size -1 is negative"},
			{"escaping shard", map[string]string{"w": "../x.safetensors"}, 0, `tensor "w": shard "../x.safetensors" is not a path inside the folder`},
			{"empty shard", map[string]string{"w": ""}, 0, "not a path inside"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := WriteIndex(t.TempDir(), tt.weightMap, tt.total)
				if err == nil || !strings.Contains(err.Error(), tt.reason) || !strings.Contains(err.Error(), IndexFileName) {
					t.Errorf("WriteIndex: %v, want an error naming the index and containing %q", err, tt.reason)
				}
			})
		}
	})
}

// TestFolderConcurrent reads every tensor from several goroutines at once, so
// shards are opened lazily under contention; run with -race to check locking.
func TestFolderConcurrent(t *testing.T) {
	dir, weightMap := shardedModel(t)
	s, err := OpenFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	errs := make(chan error, 8*len(weightMap))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for name := range weightMap {
				v, err := s.Float32(name)
				if err == nil && len(v) == 0 {
					err = fmt.Errorf("%s: no values", name)
				}
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if len(s.shards) != 3 {
		t.Errorf("%d shards opened, want each of the 3 once", len(s.shards))
	}
}
