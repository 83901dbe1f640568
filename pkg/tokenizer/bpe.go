package tokenizer

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// byteToRune is GPT-2's reversible byte → printable rune map used by
// byte-level BPE (Radford et al. 2019, encoder.py bytes_to_unicode): printable
// Latin-1 bytes stand for themselves, the others are shifted past 255.
func byteToRune() [256]rune {
	var m [256]rune
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			m[b] = rune(b)
		} else {
			m[b] = rune(256 + n)
			n++
		}
	}
	return m
}

// pretokenize approximates the GPT-2 split pattern (Go's regexp has no
// look-ahead); it only decides which pairs training sees, the Rust tokenizer
// applies the exact pattern when encoding.
var pretokenize = regexp.MustCompile(`'(?:s|t|re|ve|m|ll|d)| ?\pL+| ?\pN+| ?[^\s\pL\pN]+|\s+`)

// TrainByteLevelBPE learns a byte-level BPE tokenizer from a corpus and
// returns the tokenizer.json text (the Hugging Face tokenizers format). Ids
// 0..255 are the bytes, then one id per merge up to vocabSize, then the
// special tokens. Training is deterministic: ties between equally frequent
// pairs go to the lexicographically smallest pair.
func TrainByteLevelBPE(corpus []string, vocabSize int, special []string) ([]byte, error) {
	if vocabSize < 256 {
		return nil, fmt.Errorf("tokenizer: a byte-level vocabulary needs at least 256 ids, asked for %d", vocabSize)
	}
	b2r := byteToRune()
	words := map[string]int{}
	for _, text := range corpus {
		for _, w := range pretokenize.FindAllString(text, -1) {
			words[w]++
		}
	}
	type word struct {
		syms  []string
		count int
	}
	keys := make([]string, 0, len(words))
	for w := range words {
		keys = append(keys, w)
	}
	sort.Strings(keys)
	ws := make([]word, 0, len(keys))
	for _, w := range keys {
		syms := make([]string, 0, len(w))
		for _, b := range []byte(w) {
			syms = append(syms, string(b2r[b]))
		}
		ws = append(ws, word{syms, words[w]})
	}

	vocab := make(map[string]int, vocabSize+len(special))
	for b := 0; b < 256; b++ {
		vocab[string(b2r[b])] = b
	}
	var merges []string
	for len(vocab) < vocabSize {
		pairs := map[[2]string]int{}
		for _, w := range ws {
			for i := 0; i+1 < len(w.syms); i++ {
				pairs[[2]string{w.syms[i], w.syms[i+1]}] += w.count
			}
		}
		var best [2]string
		bestN := 0
		for p, n := range pairs {
			if n > bestN || (n == bestN && (p[0] < best[0] || (p[0] == best[0] && p[1] < best[1]))) {
				best, bestN = p, n
			}
		}
		if bestN == 0 {
			break // every word is a single symbol: nothing left to merge
		}
		merged := best[0] + best[1]
		if _, ok := vocab[merged]; !ok {
			vocab[merged] = len(vocab)
		}
		merges = append(merges, best[0]+" "+best[1])
		for wi := range ws {
			syms := ws[wi].syms
			out := syms[:0]
			for i := 0; i < len(syms); i++ {
				if i+1 < len(syms) && syms[i] == best[0] && syms[i+1] == best[1] {
					out = append(out, merged)
					i++
				} else {
					out = append(out, syms[i])
				}
			}
			ws[wi].syms = out
		}
	}

	type addedToken struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		SingleWord bool   `json:"single_word"`
		LStrip     bool   `json:"lstrip"`
		RStrip     bool   `json:"rstrip"`
		Normalized bool   `json:"normalized"`
		Special    bool   `json:"special"`
	}
	added := make([]addedToken, 0, len(special))
	next := len(vocab)
	for _, s := range special {
		if strings.TrimSpace(s) == "" {
			return nil, fmt.Errorf("tokenizer: empty special token")
		}
		added = append(added, addedToken{ID: next, Content: s, Special: true})
		next++
	}
	byteLevel := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
	doc := map[string]any{
		"version":        "1.0",
		"truncation":     nil,
		"padding":        nil,
		"added_tokens":   added,
		"normalizer":     nil,
		"pre_tokenizer":  byteLevel,
		"post_processor": byteLevel,
		"decoder":        byteLevel,
		"model": map[string]any{
			"type":                      "BPE",
			"dropout":                   nil,
			"unk_token":                 nil,
			"continuing_subword_prefix": nil,
			"end_of_word_suffix":        nil,
			"fuse_unk":                  false,
			"byte_fallback":             false,
			"ignore_merges":             false,
			"vocab":                     vocab,
			"merges":                    merges,
		},
	}
	return json.MarshalIndent(doc, "", " ")
}
