// Package tokenizer loads a Hugging Face tokenizer (tokenizer.json, plus
// tokenizer_config.json and generation_config.json when present) from a model
// folder and turns text into token ids and back.
//
// The heavy lifting is done by the Rust `tokenizers` crate through
// github.com/daulet/tokenizers (cgo, static libtokenizers.a that `make` builds);
// this package adds what a benchmark needs on top: the size of the id space the
// tokenizer can produce (for vocab masking), end-of-sequence ids, and a
// fingerprint to refuse a drafter whose tokenizer differs from the target's.
package tokenizer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/daulet/tokenizers"

	"github.com/draftbench/draftbench/pkg/safetensors"
)

// Tokenizer encodes and decodes text for one model folder. It is safe for
// concurrent use.
type Tokenizer struct {
	tk          *tokenizers.Tokenizer
	path        string
	size        int
	special     map[string]int
	eos         []int
	bos         int
	fingerprint string
}

// Load reads the tokenizer of a Hugging Face model folder.
func Load(dir string) (*Tokenizer, error) {
	t, err := FromFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		return nil, err
	}
	if err := t.readConfigs(dir); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// tokenizerFile is the part of tokenizer.json this package reads itself.
type tokenizerFile struct {
	AddedTokens []struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
		Special bool   `json:"special"`
	} `json:"added_tokens"`
	Model struct {
		Type   string          `json:"type"`
		Vocab  json.RawMessage `json:"vocab"`
		Merges json.RawMessage `json:"merges"`
	} `json:"model"`
}

// FromFile loads a tokenizer.json file. EOS ids are guessed from the special
// tokens; Load refines them from the folder's configuration files.
func FromFile(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err == nil && bytes.HasPrefix(data, []byte(safetensors.LFSPointerPrefix)) {
		return nil, fmt.Errorf("tokenizer: %s is a Git LFS pointer (%d bytes), not the tokenizer: fetch it (git lfs pull, or huggingface-cli download)", path, len(data))
	}
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	var tf tokenizerFile
	if err := json.Unmarshal(data, &tf); err != nil {
		return nil, fmt.Errorf("tokenizer: %s is not a valid tokenizer.json: %w", path, err)
	}
	if len(tf.Model.Vocab) == 0 {
		return nil, fmt.Errorf("tokenizer: %s has no model.vocab", path)
	}
	tk, err := tokenizers.FromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: loading %s: %w", path, err)
	}
	t := &Tokenizer{tk: tk, path: path, special: map[string]int{}, bos: -1}

	// The id space: the largest id of the vocabulary or of an added token, plus one.
	var vocab map[string]int
	if err := json.Unmarshal(tf.Model.Vocab, &vocab); err == nil {
		for _, id := range vocab {
			t.size = max(t.size, id+1)
		}
	} else {
		// Unigram models list the vocabulary as [piece, score] pairs, ids by position.
		var pieces []json.RawMessage
		if err := json.Unmarshal(tf.Model.Vocab, &pieces); err != nil {
			tk.Close()
			return nil, fmt.Errorf("tokenizer: %s: model.vocab is neither a map nor a list", path)
		}
		t.size = len(pieces)
	}
	for _, at := range tf.AddedTokens {
		t.size = max(t.size, at.ID+1)
		if at.Special {
			t.special[at.Content] = at.ID
		}
	}
	t.size = max(t.size, int(tk.VocabSize()))

	h := sha256.New()
	h.Write([]byte(tf.Model.Type))
	h.Write(canonical(tf.Model.Vocab))
	h.Write(canonical(tf.Model.Merges))
	added := make([]string, 0, len(tf.AddedTokens))
	for _, at := range tf.AddedTokens {
		added = append(added, fmt.Sprintf("%d=%s", at.ID, at.Content))
	}
	sort.Strings(added)
	for _, a := range added {
		h.Write([]byte(a))
	}
	t.fingerprint = hex.EncodeToString(h.Sum(nil))

	for _, name := range []string{"<|endoftext|>", "</s>", "<|end_of_text|>", "<|eot_id|>"} {
		if id, ok := t.special[name]; ok {
			t.eos = append(t.eos, id)
			break
		}
	}
	return t, nil
}

// canonical re-encodes a JSON value so that key order and spacing do not
// change the fingerprint of two equal vocabularies.
func canonical(raw json.RawMessage) []byte {
	if len(raw) == 0 {
		return nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return raw
	}
	out, err := json.Marshal(v) // maps are marshalled with sorted keys
	if err != nil {
		return raw
	}
	return out
}

// readConfigs takes the eos/bos ids from generation_config.json (what
// generate() stops on) and tokenizer_config.json, when present.
func (t *Tokenizer) readConfigs(dir string) error {
	var eos []int
	if data, err := os.ReadFile(filepath.Join(dir, "generation_config.json")); err == nil {
		var gc struct {
			EOS json.RawMessage `json:"eos_token_id"`
			BOS *int            `json:"bos_token_id"`
		}
		if err := json.Unmarshal(data, &gc); err != nil {
			return fmt.Errorf("tokenizer: %s: %w", filepath.Join(dir, "generation_config.json"), err)
		}
		eos = intOrList(gc.EOS)
		if gc.BOS != nil {
			t.bos = *gc.BOS
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("tokenizer: %w", err)
	}
	if len(eos) == 0 {
		eos = t.eos // no generation_config.json: keep the guess from the special tokens
	}
	if data, err := os.ReadFile(filepath.Join(dir, "tokenizer_config.json")); err == nil {
		var tc struct {
			EOS json.RawMessage `json:"eos_token"`
		}
		if err := json.Unmarshal(data, &tc); err != nil {
			return fmt.Errorf("tokenizer: %s: %w", filepath.Join(dir, "tokenizer_config.json"), err)
		}
		if name := tokenName(tc.EOS); name != "" {
			if id, ok := t.special[name]; ok && !contains(eos, id) {
				eos = append(eos, id)
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("tokenizer: %w", err)
	}
	t.eos = eos
	return nil
}

func intOrList(raw json.RawMessage) []int {
	// null is "not set" (json.Unmarshal would leave one at 0: id 0 would
	// end every generation that produced it).
	if t := bytes.TrimSpace(raw); len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return nil
	}
	var one int
	if json.Unmarshal(raw, &one) == nil {
		return []int{one}
	}
	var many []*int
	if json.Unmarshal(raw, &many) != nil {
		return nil
	}
	var ids []int
	for _, id := range many {
		if id != nil {
			ids = append(ids, *id)
		}
	}
	return ids
}

// tokenName reads "eos_token" which is either a string or an AddedToken object.
func tokenName(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var obj struct {
		Content string `json:"content"`
	}
	if json.Unmarshal(raw, &obj) == nil {
		return obj.Content
	}
	return ""
}

func contains(ids []int, id int) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// Encode turns text into token ids, without adding BOS/EOS (the benchmark
// sends exactly the prompt's tokens). Special tokens written in the text, such
// as <|im_start|>, are recognised as such, as Hugging Face does by default.
func (t *Tokenizer) Encode(text string) ([]int, error) {
	ids, _ := t.tk.Encode(text, false)
	out := make([]int, len(ids))
	for i, id := range ids {
		out[i] = int(id)
	}
	return out, nil
}

// Decode turns token ids into text, keeping special tokens.
func (t *Tokenizer) Decode(ids []int) (string, error) {
	u := make([]uint32, len(ids))
	for i, id := range ids {
		if id < 0 || id >= t.size {
			return "", fmt.Errorf("tokenizer: id %d is outside the vocabulary [0,%d)", id, t.size)
		}
		u[i] = uint32(id)
	}
	return t.tk.Decode(u, false), nil
}

// VocabSize is the number of ids the tokenizer can produce (vocabulary plus
// added tokens). Model embedding tables may have more rows (padding).
func (t *Tokenizer) VocabSize() int { return t.size }

// EOS returns the end-of-sequence ids (several for chat models).
func (t *Tokenizer) EOS() []int { return append([]int(nil), t.eos...) }

// BOS returns the beginning-of-sequence id, or -1 when the model has none.
func (t *Tokenizer) BOS() int { return t.bos }

// SpecialTokens maps special token text to id.
func (t *Tokenizer) SpecialTokens() map[string]int {
	m := make(map[string]int, len(t.special))
	for k, v := range t.special {
		m[k] = v
	}
	return m
}

// Fingerprint identifies the vocabulary, merges and added tokens: two models
// can only be paired for speculative decoding when their fingerprints match.
func (t *Tokenizer) Fingerprint() string { return t.fingerprint }

// Path is the tokenizer.json this tokenizer was read from.
func (t *Tokenizer) Path() string { return t.path }

// Close frees the native tokenizer.
func (t *Tokenizer) Close() error {
	if t.tk == nil {
		return nil
	}
	err := t.tk.Close()
	t.tk = nil
	return err
}

// Compatible reports whether a drafter's tokenizer can be used with a target's;
// the error says why not.
func Compatible(target, drafter *Tokenizer) error {
	if target.Fingerprint() != drafter.Fingerprint() {
		return fmt.Errorf("tokenizers differ: target %s and drafter %s have different vocabularies or merges (speculative decoding needs the same tokenizer)", target.Path(), drafter.Path())
	}
	return nil
}
