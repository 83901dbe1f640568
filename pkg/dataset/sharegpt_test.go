package dataset

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// seedFiles are the seed's default files (jobspec owns the list); testdata/seed holds
// small files under these names: JSONL English, a JSON array, and JSONL Chinese.
var seedFiles = []string{"sharegpt_gpt4.jsonl", "sharegpt_V3_format.jsonl", "sharegpt_zh_38K_format.jsonl"}

// The fixtures in testdata/ reproduce what real ShareGPT dumps contain; awkward.jsonl starts
// with a BOM, mixes CRLF and LF, has a blank line inside and two at the end.
func TestLoadShareGPTFixtures(t *testing.T) {
	tests := []struct {
		name         string
		files        []string
		wantRecords  []record
		wantSkipped  map[string][]string // reason -> locations
		wantRecCount int
		wantWarning  string // substring of one warning
	}{
		{
			name:  "awkward jsonl",
			files: []string{"awkward.jsonl"},
			wantRecords: []record{
				{"awkward.jsonl:1", "What is the capital of France?", "Paris is the capital of France."},
				{"awkward.jsonl:2", "Name a prime number.", "Seven."},
				{"awkward.jsonl:4", "Tell me a joke.", "Why did the chicken cross the road?"},
				{"awkward.jsonl:9", "Summarise Hamlet.", "A prince avenges his father."},
				{"awkward.jsonl:10", "用一句话介绍长城。", "长城是中国古代修建的军事防御工程。"},
				{"awkward.jsonl:15", "first question", ""},
				{"awkward.jsonl:16", "Pair-style question?", "Pair-style answer."},
				{"awkward.jsonl:17", "Reply is broken", ""},
				{"awkward.jsonl:21", "Upper-case role", "still recognised"},
			},
			wantSkipped: map[string][]string{
				ReasonEmptyText:      {"awkward.jsonl:5"},
				ReasonUnknownRole:    {"awkward.jsonl:6", "awkward.jsonl:18"},
				ReasonWrongType:      {"awkward.jsonl:7", "awkward.jsonl:8", "awkward.jsonl:22"},
				ReasonInvalidJSON:    {"awkward.jsonl:11"},
				ReasonNotObject:      {"awkward.jsonl:12", "awkward.jsonl:19"},
				ReasonNoConversation: {"awkward.jsonl:13"},
				ReasonNoUserTurn:     {"awkward.jsonl:14", "awkward.jsonl:20"},
			},
			wantRecCount: 21,
			wantWarning:  "skipped 12 of 21 records",
		},
		{
			name:  "truncated last line",
			files: []string{"truncated.jsonl"},
			wantRecords: []record{
				{"truncated.jsonl:1", "Good record one", "Reply one"},
				{"truncated.jsonl:2", "Good record two", "Reply two"},
			},
			wantSkipped:  map[string][]string{ReasonInvalidJSON: {"truncated.jsonl:3"}},
			wantRecCount: 3,
		},
		{
			name:  "json array with BOM and leading blank lines",
			files: []string{"array.json"},
			wantRecords: []record{
				{"array.json:4", "Explain recursion.", "A function calling itself."},
				{"array.json:17", "什么是递归？", "函数调用自身。"},
				{"array.json:40", "Last one", ""},
			},
			wantSkipped: map[string][]string{
				ReasonNoUserTurn: {"array.json:30"},
				ReasonNotObject:  {"array.json:39"},
			},
			wantRecCount: 5,
		},
		{
			name:  "json array cut inside an element",
			files: []string{"array_truncated.json"},
			wantRecords: []record{
				{"array_truncated.json:2", "Explain recursion.", "A function calling itself."},
				{"array_truncated.json:15", "什么是递归？", "函数调用自身。"},
			},
			wantSkipped:  map[string][]string{ReasonInvalidJSON: {"array_truncated.json:28"}},
			wantRecCount: 3,
		},
		{
			name:  "json array never closed",
			files: []string{"array_unclosed.json"},
			wantRecords: []record{
				{"array_unclosed.json:1", "Explain recursion.", "A function calling itself."},
				{"array_unclosed.json:2", "什么是递归？", "函数调用自身。"},
			},
			wantSkipped:  map[string][]string{},
			wantRecCount: 2,
			wantWarning:  "does not end properly",
		},
		{
			name:  "files are read in order and an empty file adds nothing",
			files: []string{"empty.jsonl", "truncated.jsonl", "array_unclosed.json"},
			wantRecords: []record{
				{"truncated.jsonl:1", "Good record one", "Reply one"},
				{"truncated.jsonl:2", "Good record two", "Reply two"},
				{"array_unclosed.json:1", "Explain recursion.", "A function calling itself."},
				{"array_unclosed.json:2", "什么是递归？", "函数调用自身。"},
			},
			wantSkipped:  map[string][]string{ReasonInvalidJSON: {"truncated.jsonl:3"}},
			wantRecCount: 5,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := LoadShareGPT("testdata", tt.files, LoadOptions{})
			if err != nil {
				t.Fatalf("LoadShareGPT: %v", err)
			}
			if !slices.Equal(d.records, tt.wantRecords) {
				t.Errorf("records:\n got %q\nwant %q", d.records, tt.wantRecords)
			}
			st := d.Stats()
			if !maps.EqualFunc(st.SkippedAt, tt.wantSkipped, slices.Equal) {
				t.Errorf("skipped at:\n got %v\nwant %v", st.SkippedAt, tt.wantSkipped)
			}
			for reason, locs := range tt.wantSkipped {
				if st.Skipped[reason] != len(locs) {
					t.Errorf("Skipped[%s] = %d, want %d", reason, st.Skipped[reason], len(locs))
				}
			}
			if st.Records != tt.wantRecCount || st.Loaded != len(tt.wantRecords) {
				t.Errorf("records=%d loaded=%d, want %d and %d", st.Records, st.Loaded, tt.wantRecCount, len(tt.wantRecords))
			}
			if st.Records != st.Loaded+st.SkippedTotal() {
				t.Errorf("records %d != loaded %d + skipped %d", st.Records, st.Loaded, st.SkippedTotal())
			}
			wantNoRef := 0
			for _, r := range tt.wantRecords {
				if r.reference == "" {
					wantNoRef++
				}
			}
			if st.NoReference != wantNoRef {
				t.Errorf("NoReference = %d, want %d", st.NoReference, wantNoRef)
			}
			if tt.wantWarning != "" && !slices.ContainsFunc(d.Warnings(), func(w string) bool { return strings.Contains(w, tt.wantWarning) }) {
				t.Errorf("warnings %q lack %q", d.Warnings(), tt.wantWarning)
			}
			if tt.wantWarning == "" && len(tt.wantSkipped) == 0 && len(d.Warnings()) > 0 {
				t.Errorf("unexpected warnings %q", d.Warnings())
			}
		})
	}
}

func TestLoadShareGPTSeedFiles(t *testing.T) {
	tests := []struct {
		name        string
		files       []string
		wantLoaded  int
		wantMissing []string
	}{
		{"the three default files", seedFiles, 9, nil},
		{"a missing file is a warning", append(slices.Clone(seedFiles), "sharegpt_extra.jsonl"), 9,
			[]string{filepath.Join("testdata", "seed", "sharegpt_extra.jsonl")}},
		{"only one file present", []string{"nope.jsonl", "sharegpt_zh_38K_format.jsonl"}, 4,
			[]string{filepath.Join("testdata", "seed", "nope.jsonl")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := LoadShareGPT(filepath.Join("testdata", "seed"), tt.files, LoadOptions{})
			if err != nil {
				t.Fatalf("LoadShareGPT: %v", err)
			}
			st := d.Stats()
			if st.Loaded != tt.wantLoaded || d.Len() != tt.wantLoaded {
				t.Errorf("loaded %d (Len %d), want %d", st.Loaded, d.Len(), tt.wantLoaded)
			}
			if !slices.Equal(st.MissingFiles, tt.wantMissing) {
				t.Errorf("missing files %q, want %q", st.MissingFiles, tt.wantMissing)
			}
			if len(st.Files)+len(st.MissingFiles) != len(tt.files) {
				t.Errorf("files %q + missing %q do not cover the list %q", st.Files, st.MissingFiles, tt.files)
			}
			for _, m := range tt.wantMissing {
				if !slices.ContainsFunc(d.Warnings(), func(w string) bool { return strings.Contains(w, m) }) {
					t.Errorf("no warning names %s: %q", m, d.Warnings())
				}
			}
		})
	}
}

func TestLoadShareGPTErrors(t *testing.T) {
	abs, err := filepath.Abs(filepath.Join("testdata", "broken.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		dir      string
		files    []string
		wantIs   error
		wantText []string
	}{
		{"no file listed", "testdata", nil, nil, []string{"no files listed"}},
		{"none of the files exists", "testdata", []string{"a.jsonl", "b.jsonl"}, fs.ErrNotExist,
			[]string{filepath.Join("testdata", "a.jsonl"), filepath.Join("testdata", "b.jsonl"), "SHAREGPT_DIR"}},
		{"nothing usable", "testdata", []string{"broken.jsonl", "empty.jsonl"}, ErrNoPrompts,
			[]string{"broken.jsonl", "empty.jsonl", "3 records", "invalid_json=1 (first at broken.jsonl:1)", "no_conversation=1", "empty_text=1 (first at broken.jsonl:3)"}},
		{"an absolute name ignores dir", "/nonexistent", []string{abs}, ErrNoPrompts, []string{abs}},
		{"a directory in the list", ".", []string{"testdata"}, nil, []string{"reading testdata"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := LoadShareGPT(tt.dir, tt.files, LoadOptions{})
			if err == nil {
				t.Fatalf("LoadShareGPT returned %d records and no error", d.Len())
			}
			// A probe fails with the same words.
			if _, perr := LoadShareGPT(tt.dir, tt.files, LoadOptions{Probe: true}); perr == nil || perr.Error() != err.Error() {
				t.Errorf("probe: %v\nwant the full load's %v", perr, err)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
			for _, s := range tt.wantText {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
}

// A record of several MB must load with the default limit, and a limit below it skips only
// that line.
func TestLoadShareGPTLargeRecord(t *testing.T) {
	dir := t.TempDir()
	big := strings.Repeat("token ", 2<<20/6) // ~2 MB of prompt
	lines := []string{
		`{"conversations":[{"from":"human","value":"small before"},{"from":"gpt","value":"ok"}]}`,
		`{"conversations":[{"from":"human","value":"` + big + `"},{"from":"gpt","value":"long reply"}]}`,
		`{"conversations":[{"from":"human","value":"small after"},{"from":"gpt","value":"ok"}]}`,
	}
	if err := os.WriteFile(filepath.Join(dir, "big.jsonl"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		limit      int
		wantPrompt []string
		wantTooBig []string
	}{
		{"default limit keeps it", 0, []string{"small before", big, "small after"}, nil},
		{"1 MB limit skips it", 1 << 20, []string{"small before", "small after"}, []string{"big.jsonl:2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := LoadShareGPT(dir, []string{"big.jsonl"}, LoadOptions{MaxRecordBytes: tt.limit})
			if err != nil {
				t.Fatalf("LoadShareGPT: %v", err)
			}
			var got []string
			for _, r := range d.records {
				got = append(got, r.prompt)
			}
			if !slices.Equal(got, tt.wantPrompt) {
				t.Errorf("got %d prompts of lengths %v, want %d", len(got), lens(got), len(tt.wantPrompt))
			}
			if at := d.Stats().SkippedAt[ReasonRecordTooLarge]; !slices.Equal(at, tt.wantTooBig) {
				t.Errorf("record_too_large at %q, want %q", at, tt.wantTooBig)
			}
		})
	}
}

func lens(ss []string) []int {
	out := make([]int, len(ss))
	for i, s := range ss {
		out[i] = len(s)
	}
	return out
}

func TestParseRecord(t *testing.T) {
	tests := []struct {
		name                string
		in                  string
		wantPrompt, wantRef string
		wantReason          string
	}{
		{"sharegpt", `{"conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"a"}]}`, "q", "a", ""},
		{"openai messages", `{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}`, "q", "a", ""},
		{"bard and bing are assistants", `{"conversations":[{"from":"human","value":"q"},{"from":"bard","value":"a"}]}`, "q", "a", ""},
		{"model role", `{"messages":[{"role":"user","content":"q"},{"role":"model","content":"a"}]}`, "q", "a", ""},
		{"null key falls through to the next", `{"conversations":null,"messages":[{"role":"user","content":"q"}]}`, "q", "", ""},
		{"missing text on the reply", `{"conversations":[{"from":"human","value":"q"},{"from":"gpt"}]}`, "q", "", ""},
		{"missing text on the prompt", `{"conversations":[{"from":"human"},{"from":"gpt","value":"a"}]}`, "", "", ReasonEmptyText},
		{"content parts are not text", `{"messages":[{"role":"user","content":[{"type":"text","text":"q"}]}]}`, "", "", ReasonWrongType},
		{"role is a number", `{"conversations":[{"from":1,"value":"q"}]}`, "", "", ReasonWrongType},
		{"turn is an array", `{"conversations":[["human","q"]]}`, "", "", ReasonWrongType},
		{"pair with a numeric reply", `{"conversation":[{"human":"q","assistant":5}]}`, "", "", ReasonWrongType},
		{"only system", `{"conversations":[{"from":"system","value":"s"}]}`, "", "", ReasonNoUserTurn},
		{"string", `"hello"`, "", "", ReasonNotObject},
		{"trailing garbage", `{"conversations":[]} x`, "", "", ReasonInvalidJSON},
		{"empty", ``, "", "", ReasonInvalidJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, r, reason := parseRecord([]byte(tt.in))
			if p != tt.wantPrompt || r != tt.wantRef || reason != tt.wantReason {
				t.Errorf("parseRecord = (%q, %q, %q), want (%q, %q, %q)", p, r, reason, tt.wantPrompt, tt.wantRef, tt.wantReason)
			}
		})
	}
}

func FuzzParseRecord(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("testdata", "awkward.jsonl"))
	if err != nil {
		f.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f.Add([]byte(line))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		p, r, reason := parseRecord(in)
		if reason == "" && strings.TrimSpace(p) == "" {
			t.Errorf("accepted a record with a blank prompt: %q", in)
		}
		if reason != "" && (p != "" || r != "") {
			t.Errorf("skipped record %q (%s) still returned text", in, reason)
		}
		if reason == "" && !json.Valid(in) {
			t.Errorf("accepted invalid JSON %q", in)
		}
	})
}

// readLine at the limit's edges, through a 16-byte buffer so that long lines arrive in pieces.
func TestReadLine(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		limit int
		want  []string // lines kept, "!" for one too long
	}{
		{"exactly the limit", "0123456789012345678901234\nab\n", 25, []string{"0123456789012345678901234\n", "ab\n"}},
		{"exactly the limit with CRLF", "0123456789012345678901234\r\nab", 25, []string{"0123456789012345678901234\r\n", "ab"}},
		{"one over", "01234567890123456789012345\nab\n", 25, []string{"!", "ab\n"}},
		{"far over, then more", strings.Repeat("x", 100) + "\n" + strings.Repeat("y", 40) + "\nok", 40, []string{"!", strings.Repeat("y", 40) + "\n", "ok"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tt.in), 16)
			var got []string
			for {
				line, tooLong, err := readLine(br, tt.limit, nil)
				switch {
				case tooLong:
					got = append(got, "!")
				case len(line) > 0:
					got = append(got, string(line))
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("lines %q, want %q", got, tt.want)
			}
		})
	}
}

// TestLoadShareGPTProbe: a probe stops at the first usable record, yet
// still opens every file listed.
func TestLoadShareGPTProbe(t *testing.T) {
	d, err := LoadShareGPT("testdata", []string{"broken.jsonl", "array.json", "awkward.jsonl"}, LoadOptions{Probe: true})
	if err != nil {
		t.Fatal(err)
	}
	full, err := LoadShareGPT("testdata", []string{"broken.jsonl", "array.json", "awkward.jsonl"}, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 1 || full.Len() <= 1 {
		t.Errorf("probe read %d records, the full load %d; want 1 and more", d.Len(), full.Len())
	}
	if _, err := LoadShareGPT(".", []string{filepath.Join("testdata", "array.json"), "testdata"}, LoadOptions{Probe: true}); err == nil || !strings.Contains(err.Error(), "reading testdata") {
		t.Errorf("probe with a folder listed after a good file: %v, want the folder's read error", err)
	}
}
