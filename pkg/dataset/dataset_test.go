package dataset

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// byteTokenizer makes one token per byte, like a byte-level BPE without merges, so token
// lengths in the tests are byte lengths.
type byteTokenizer struct{}

func (byteTokenizer) Encode(text string) ([]int, error) {
	ids := make([]int, len(text))
	for i := range len(text) {
		ids[i] = int(text[i])
	}
	return ids, nil
}

type failingTokenizer struct{}

func (failingTokenizer) Encode(string) ([]int, error) { return nil, errors.New("tokenizer closed") }

var _ Tokenizer = byteTokenizer{}

func loadSeed(t *testing.T) *Dataset {
	t.Helper()
	d, err := LoadShareGPT(filepath.Join("testdata", "seed"), seedFiles, LoadOptions{})
	if err != nil {
		t.Fatalf("LoadShareGPT: %v", err)
	}
	return d
}

func sources(ps []Prompt) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Source
	}
	return out
}

func TestTakeSeededOrder(t *testing.T) {
	d := loadSeed(t)
	tests := []struct {
		name       string
		seedA      uint64
		seedB      uint64
		wantSameAs bool
	}{
		{"same seed gives the same selection", 42, 42, true},
		{"another seed gives another order", 42, 43, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := d.Take(9, TakeOptions{Seed: tt.seedA})
			if err != nil {
				t.Fatal(err)
			}
			b, err := d.Take(9, TakeOptions{Seed: tt.seedB})
			if err != nil {
				t.Fatal(err)
			}
			if same := slices.Equal(sources(a.Prompts), sources(b.Prompts)); same != tt.wantSameAs {
				t.Errorf("seeds %d and %d: same order = %v, want %v\n%q\n%q", tt.seedA, tt.seedB, same, tt.wantSameAs, sources(a.Prompts), sources(b.Prompts))
			}
			// Either way each selection is a permutation of all nine records.
			sa, sb := sources(a.Prompts), sources(b.Prompts)
			slices.Sort(sa)
			slices.Sort(sb)
			if !slices.Equal(sa, sb) || len(slices.Compact(sa)) != 9 {
				t.Errorf("selections are not permutations of the same 9 records: %q %q", sa, sb)
			}
		})
	}
}

func TestTakeRepeats(t *testing.T) {
	d := loadSeed(t)
	tests := []struct {
		name         string
		n            int
		wantRepeated int
		wantPasses   string
	}{
		{"fewer than loaded", 4, 0, ""},
		{"exactly loaded", 9, 0, ""},
		{"one more", 10, 1, "1 further seeded shuffle"},
		{"more than twice", 25, 16, "2 further seeded shuffle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := d.Take(tt.n, TakeOptions{Seed: 7})
			if err != nil {
				t.Fatal(err)
			}
			if len(sel.Prompts) != tt.n || sel.Stats.Selected != tt.n {
				t.Fatalf("got %d prompts (Selected %d), want %d", len(sel.Prompts), sel.Stats.Selected, tt.n)
			}
			if sel.Stats.Repeated != tt.wantRepeated {
				t.Errorf("Repeated = %d, want %d", sel.Stats.Repeated, tt.wantRepeated)
			}
			if (sel.Warning == "") != (tt.wantPasses == "") || !strings.Contains(sel.Warning, tt.wantPasses) {
				t.Errorf("warning %q, want one containing %q", sel.Warning, tt.wantPasses)
			}
			counts := map[string]int{}
			for i, p := range sel.Prompts {
				if p.ID != i {
					t.Errorf("prompt %d has ID %d", i, p.ID)
				}
				counts[p.Source]++
			}
			// Whole shuffles come before repeats: no record is used k+1 times before every
			// record was used k times.
			lo, hi := tt.n, 0
			for _, c := range counts {
				lo, hi = min(lo, c), max(hi, c)
			}
			if tt.n >= 9 && (len(counts) != 9 || hi-lo > 1) {
				t.Errorf("uneven repeats: %v", counts)
			}
			if tt.n < 9 && hi != 1 {
				t.Errorf("a record repeats although enough were usable: %v", counts)
			}
		})
	}
}

func TestTakeTokenOptions(t *testing.T) {
	d := loadSeed(t)
	// Prompt byte lengths in testdata/seed: gpt4 27 20 30, V3 13 15, zh 21 21 27 18 (3 bytes a rune).
	tests := []struct {
		name          string
		opts          TakeOptions
		wantUsable    int
		wantShort     int
		wantLong      int
		wantTruncated int
		check         func(t *testing.T, p Prompt)
	}{
		{
			name:       "tokens and reference lengths",
			opts:       TakeOptions{Tokenizer: byteTokenizer{}},
			wantUsable: 9,
			check: func(t *testing.T, p Prompt) {
				if len(p.Tokens) != len(p.Text) || p.Truncated || p.RefOutputLen == 0 {
					t.Errorf("%s: %d tokens for %d bytes, truncated %v, ref %d", p.Source, len(p.Tokens), len(p.Text), p.Truncated, p.RefOutputLen)
				}
			},
		},
		{
			name:       "min and max prompt tokens",
			opts:       TakeOptions{Tokenizer: byteTokenizer{}, MinPromptTokens: 15, MaxPromptTokens: 20},
			wantUsable: 3, wantShort: 1, wantLong: 5,
			check: func(t *testing.T, p Prompt) {
				if len(p.Tokens) < 15 || len(p.Tokens) > 20 {
					t.Errorf("%s: %d tokens outside [15, 20]", p.Source, len(p.Tokens))
				}
			},
		},
		{
			name:       "truncate to max_length",
			opts:       TakeOptions{Tokenizer: byteTokenizer{}, MaxLength: 18},
			wantUsable: 9, wantTruncated: 6,
			check: func(t *testing.T, p Prompt) {
				want := min(len(p.Text), 18)
				if len(p.Tokens) != want || p.Truncated != (len(p.Text) > 18) {
					t.Errorf("%s: %d tokens truncated=%v for %d bytes", p.Source, len(p.Tokens), p.Truncated, len(p.Text))
				}
				if !strings.HasPrefix(p.Text, string(bytesOf(p.Tokens))) {
					t.Errorf("%s: tokens are not a prefix of the text", p.Source)
				}
			},
		},
		{
			name:       "no tokenizer leaves tokens empty",
			opts:       TakeOptions{},
			wantUsable: 9,
			check: func(t *testing.T, p Prompt) {
				if p.Tokens != nil || p.RefOutputLen != 0 || p.Text == "" {
					t.Errorf("%s: tokens %v ref %d text %q", p.Source, p.Tokens, p.RefOutputLen, p.Text)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Seed = 1
			sel, err := d.Take(9, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			st := sel.Stats
			if st.Usable != tt.wantUsable || st.Filtered[FilterTooShort] != tt.wantShort || st.Filtered[FilterTooLong] != tt.wantLong {
				t.Errorf("usable %d short %d long %d, want %d %d %d", st.Usable, st.Filtered[FilterTooShort], st.Filtered[FilterTooLong], tt.wantUsable, tt.wantShort, tt.wantLong)
			}
			if st.Truncated != tt.wantTruncated {
				t.Errorf("Truncated = %d, want %d", st.Truncated, tt.wantTruncated)
			}
			for _, p := range sel.Prompts {
				tt.check(t, p)
			}
		})
	}
}

func bytesOf(ids []int) []byte {
	b := make([]byte, len(ids))
	for i, id := range ids {
		b[i] = byte(id)
	}
	return b
}

// Repeated prompts must not share token slices: a caller appending to one would corrupt another.
func TestTakeRepeatsDoNotAlias(t *testing.T) {
	d, err := Inline([]string{"only prompt"})
	if err != nil {
		t.Fatal(err)
	}
	sel, err := d.Take(3, TakeOptions{Tokenizer: byteTokenizer{}})
	if err != nil {
		t.Fatal(err)
	}
	sel.Prompts[0].Tokens[0] = -1
	for _, p := range sel.Prompts[1:] {
		if p.Tokens[0] == -1 {
			t.Fatalf("prompt %d shares its tokens with prompt 0", p.ID)
		}
	}
}

func TestTakeErrors(t *testing.T) {
	d := loadSeed(t)
	tests := []struct {
		name     string
		n        int
		opts     TakeOptions
		wantIs   error
		wantText string
	}{
		{"zero prompts", 0, TakeOptions{}, nil, "must be positive"},
		{"limits without tokenizer", 3, TakeOptions{MaxLength: 10}, nil, "need a tokenizer"},
		{"min above max", 3, TakeOptions{Tokenizer: byteTokenizer{}, MinPromptTokens: 9, MaxPromptTokens: 5}, nil, "above max"},
		{"negative limit", 3, TakeOptions{Tokenizer: byteTokenizer{}, MinPromptTokens: -1}, nil, "negative"},
		{"everything filtered", 3, TakeOptions{Tokenizer: byteTokenizer{}, MinPromptTokens: 1000}, ErrNoPrompts, "too_short=9"},
		{"tokenizer failure names the record", 3, TakeOptions{Tokenizer: failingTokenizer{}}, nil, "tokenizer closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.Take(tt.n, tt.opts)
			if err == nil {
				t.Fatal("Take succeeded")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q lacks %q", err, tt.wantText)
			}
		})
	}
	if _, err := (&Dataset{}).Take(1, TakeOptions{}); !errors.Is(err, ErrNoPrompts) {
		t.Errorf("empty dataset: error %v, want ErrNoPrompts", err)
	}
}

// Take must not change what the dataset reports, so the controller can take twice (one
// selection per mode) and get the same prompts.
func TestTakeLeavesDatasetStats(t *testing.T) {
	d := loadSeed(t)
	before, _ := json.Marshal(d.Stats())
	if _, err := d.Take(30, TakeOptions{Tokenizer: byteTokenizer{}, MinPromptTokens: 15}); err != nil {
		t.Fatal(err)
	}
	after, _ := json.Marshal(d.Stats())
	if string(before) != string(after) {
		t.Errorf("dataset stats changed:\n%s\n%s", before, after)
	}
}

func TestInline(t *testing.T) {
	tests := []struct {
		name        string
		prompts     []string
		wantLoaded  int
		wantSkipped []string
		wantErr     bool
	}{
		{"all good", []string{"a", "b"}, 2, nil, false},
		{"blank skipped", []string{"a", " ", "", "b"}, 2, []string{"prompts[1]", "prompts[2]"}, false},
		{"all blank", []string{"", "\t"}, 0, nil, true},
		{"none", nil, 0, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Inline(tt.prompts)
			if tt.wantErr {
				if !errors.Is(err, ErrNoPrompts) {
					t.Fatalf("error %v, want ErrNoPrompts", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			st := d.Stats()
			if st.Loaded != tt.wantLoaded || !slices.Equal(st.SkippedAt[ReasonEmptyText], tt.wantSkipped) {
				t.Errorf("loaded %d skipped at %q, want %d %q", st.Loaded, st.SkippedAt[ReasonEmptyText], tt.wantLoaded, tt.wantSkipped)
			}
			if (len(d.Warnings()) > 0) != (len(tt.wantSkipped) > 0) {
				t.Errorf("warnings %q", d.Warnings())
			}
			sel, err := d.Take(tt.wantLoaded, TakeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range sel.Prompts {
				if p.Source != "inline" {
					t.Errorf("source %q, want inline", p.Source)
				}
			}
		})
	}
}

func TestStatsJSONKeys(t *testing.T) {
	d := loadSeed(t)
	sel, err := d.Take(12, TakeOptions{Tokenizer: byteTokenizer{}, MaxLength: 16})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(sel.Stats)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"source", "files", "records", "loaded", "skipped", "no_reference", "examined", "filtered", "usable", "selected", "repeated", "truncated"} {
		if _, ok := got[k]; !ok {
			t.Errorf("stats JSON lacks %q: %s", k, b)
		}
	}
	pb, err := json.Marshal(sel.Prompts[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"id":`, `"source":`, `"tokens":`, `"ref_output_len":`} {
		if !strings.Contains(string(pb), k) {
			t.Errorf("prompt JSON lacks %s: %s", k, pb)
		}
	}
}

func ExampleDataset_Take() {
	d, err := Inline([]string{"Hello there", "What is 2+2?"})
	if err != nil {
		fmt.Println(err)
		return
	}
	sel, err := d.Take(3, TakeOptions{Seed: 42})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(sel.Prompts), sel.Stats.Repeated)
	fmt.Println(sel.Warning)
	// Output:
	// 3 1
	// dataset "prompts" has 2 usable prompts but 3 were requested: prompts repeat in 1 further seeded shuffle(s) (1 repeats)
}
