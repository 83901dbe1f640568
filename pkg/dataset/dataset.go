// Package dataset loads the prompts a benchmark sends: ShareGPT conversation dumps, inline
// prompts from the job file, and synthetic random-token prompts. It picks a seeded,
// reproducible selection of them, optionally filtered and truncated by token length.
package dataset

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
)

// Tokenizer turns prompt text into token ids. The controller's tokenizer satisfies it.
type Tokenizer interface {
	Encode(text string) ([]int, error)
}

// ErrNoPrompts is returned (wrapped, with the files and counts) when nothing usable is left.
var ErrNoPrompts = errors.New("no usable prompts")

// Prompt is one prompt of a run.
type Prompt struct {
	// ID is the prompt's index in the run (0, 1, ...), in the order Take returned it.
	ID int `json:"id"`
	// Source says where the prompt came from: "file:line", "synthetic" or "inline".
	Source string `json:"source"`
	// Text is the prompt as written in the source; empty for synthetic prompts. It stays
	// whole when Tokens were truncated.
	Text string `json:"text,omitempty"`
	// Tokens are the prompt's token ids (nil when no tokenizer was given).
	Tokens []int `json:"tokens,omitempty"`
	// RefOutputLen is the token length of the assistant reply that followed the prompt in
	// the source conversation (0 when there was none or no tokenizer was given).
	RefOutputLen int `json:"ref_output_len"`
	// Truncated is true when Tokens were cut to TakeOptions.MaxLength.
	Truncated bool `json:"truncated,omitempty"`
}

// Reasons a record is skipped while loading (keys of Stats.Skipped).
const (
	ReasonInvalidJSON    = "invalid_json"     // not parseable JSON, including a truncated last line
	ReasonNotObject      = "not_object"       // valid JSON, but not an object
	ReasonNoConversation = "no_conversation"  // none of conversations, conversation, messages
	ReasonWrongType      = "wrong_type"       // conversation not an array, turn not an object, role or text not a string
	ReasonUnknownRole    = "unknown_role"     // a turn before the prompt has a missing or unknown role
	ReasonNoUserTurn     = "no_user_turn"     // no user turn at all
	ReasonEmptyText      = "empty_text"       // the first user turn is empty or blank
	ReasonRecordTooLarge = "record_too_large" // a JSONL line longer than LoadOptions.MaxRecordBytes
)

// Reasons a usable record is left out by the token-length filters (keys of Stats.Filtered).
const (
	FilterTooShort = "too_short" // fewer prompt tokens than TakeOptions.MinPromptTokens
	FilterTooLong  = "too_long"  // more prompt tokens than TakeOptions.MaxPromptTokens
)

// maxExamples bounds the file:line locations kept per skip reason.
const maxExamples = 5

// Stats counts what happened to the records; the results JSON includes it.
type Stats struct {
	// Source is the dataset kind as the job names it: "sharegpt", "prompts" or "synthetic".
	Source string `json:"source"`
	// Files are the files that were read; MissingFiles those of the list that did not exist.
	Files        []string `json:"files,omitempty"`
	MissingFiles []string `json:"missing_files,omitempty"`
	// Records counts the records seen (non-blank JSONL lines, array elements, inline prompts).
	Records int `json:"records"`
	// Loaded counts the records that parsed into a usable prompt.
	Loaded int `json:"loaded"`
	// Skipped counts the broken records by reason (Reason* constants); SkippedAt holds the
	// file:line of the first few of each reason.
	Skipped   map[string]int      `json:"skipped"`
	SkippedAt map[string][]string `json:"skipped_at,omitempty"`
	// NoReference counts loaded records without an assistant reply after the prompt.
	NoReference int `json:"no_reference"`
	// Examined counts the loaded records tokenized while selecting; selection stops as soon as
	// enough prompts passed the filters, so Filtered only covers examined records.
	Examined int `json:"examined"`
	// Filtered counts examined records left out by the token-length filters, by reason.
	Filtered map[string]int `json:"filtered"`
	// Usable counts the distinct prompts the selection drew from.
	Usable int `json:"usable"`
	// Selected is the number of prompts returned, Repeated how many of them are repeats.
	Selected  int `json:"selected"`
	Repeated  int `json:"repeated"`
	Truncated int `json:"truncated"`
}

func newStats(source string) Stats {
	return Stats{Source: source, Skipped: map[string]int{}, SkippedAt: map[string][]string{}, Filtered: map[string]int{}}
}

func (s *Stats) skip(reason, where string) {
	s.Skipped[reason]++
	if len(s.SkippedAt[reason]) < maxExamples {
		s.SkippedAt[reason] = append(s.SkippedAt[reason], where)
	}
}

// SkippedTotal is the number of records skipped for any reason.
func (s Stats) SkippedTotal() int {
	n := 0
	for _, c := range s.Skipped {
		n += c
	}
	return n
}

// clone deep-copies the maps and slices so a Selection's Stats can't alias the Dataset's.
func (s Stats) clone() Stats {
	c := s
	c.Files = slices.Clone(s.Files)
	c.MissingFiles = slices.Clone(s.MissingFiles)
	c.Skipped = maps.Clone(s.Skipped)
	c.Filtered = maps.Clone(s.Filtered)
	c.SkippedAt = make(map[string][]string, len(s.SkippedAt))
	for k, v := range s.SkippedAt {
		c.SkippedAt[k] = slices.Clone(v)
	}
	return c
}

// skippedSummary renders the skip counts as "invalid_json=2 (a.jsonl:3, ...), ..." in a
// stable order, for warnings and errors.
func (s Stats) skippedSummary() string {
	if len(s.Skipped) == 0 {
		return "none skipped"
	}
	parts := make([]string, 0, len(s.Skipped))
	for _, r := range slices.Sorted(maps.Keys(s.Skipped)) {
		parts = append(parts, fmt.Sprintf("%s=%d (first at %s)", r, s.Skipped[r], strings.Join(s.SkippedAt[r], ", ")))
	}
	return strings.Join(parts, "; ")
}

// record is a loaded conversation reduced to what the benchmark uses.
type record struct {
	source    string
	prompt    string
	reference string
}

// Dataset holds the usable records of a text source (ShareGPT files or inline prompts).
type Dataset struct {
	records  []record
	stats    Stats
	warnings []string
	probe    bool // LoadOptions.Probe: reading stops at the first usable record
}

// Len is the number of usable records loaded.
func (d *Dataset) Len() int { return len(d.records) }

// Stats returns the load-time counts.
func (d *Dataset) Stats() Stats { return d.stats.clone() }

// Warnings are the load-time warnings (missing files, skipped records), one line each.
func (d *Dataset) Warnings() []string { return slices.Clone(d.warnings) }

// Inline makes a dataset from prompts written in the job file. Blank prompts are skipped and
// counted like broken records; it fails only when none is left.
func Inline(prompts []string) (*Dataset, error) {
	d := &Dataset{stats: newStats("prompts")}
	for i, p := range prompts {
		d.stats.Records++
		if strings.TrimSpace(p) == "" {
			d.stats.skip(ReasonEmptyText, fmt.Sprintf("prompts[%d]", i))
			continue
		}
		d.records = append(d.records, record{source: "inline", prompt: p})
		d.stats.Loaded++
		d.stats.NoReference++
	}
	if len(d.records) == 0 {
		return nil, fmt.Errorf("dataset \"prompts\": %w among %d inline prompts (%s)", ErrNoPrompts, len(prompts), d.stats.skippedSummary())
	}
	if n := d.stats.SkippedTotal(); n > 0 {
		d.warnings = append(d.warnings, fmt.Sprintf("dataset \"prompts\": skipped %d blank inline prompts (%s)", n, d.stats.skippedSummary()))
	}
	return d, nil
}

// TakeOptions control the selection.
type TakeOptions struct {
	// Seed is the job seed; the same seed and files give the same selection.
	Seed uint64
	// Tokenizer is needed for Tokens, RefOutputLen and every length option below.
	Tokenizer Tokenizer
	// MinPromptTokens and MaxPromptTokens skip prompts outside [min, max] tokens (0: no bound).
	MinPromptTokens int
	MaxPromptTokens int
	// MaxLength truncates prompt tokens to this many (batch mode's max_length; 0: off).
	MaxLength int
}

func (o TakeOptions) validate() error {
	if o.MinPromptTokens < 0 || o.MaxPromptTokens < 0 || o.MaxLength < 0 {
		return fmt.Errorf("dataset: token limits must not be negative (min %d, max %d, max_length %d)", o.MinPromptTokens, o.MaxPromptTokens, o.MaxLength)
	}
	if o.MaxPromptTokens > 0 && o.MinPromptTokens > o.MaxPromptTokens {
		return fmt.Errorf("dataset: min prompt tokens %d is above max prompt tokens %d", o.MinPromptTokens, o.MaxPromptTokens)
	}
	if o.Tokenizer == nil && (o.MinPromptTokens > 0 || o.MaxPromptTokens > 0 || o.MaxLength > 0) {
		return errors.New("dataset: token-length limits need a tokenizer")
	}
	return nil
}

// Selection is the outcome of Take.
type Selection struct {
	Prompts []Prompt
	// Stats are the dataset's load counts plus the selection's.
	Stats Stats
	// Warning is non-empty when prompts had to repeat.
	Warning string
}

// Streams of the PCG generator, so that the shuffle and the synthetic tokens drawn from the
// same job seed are independent of each other (and of loadgen's arrival times).
const (
	streamShuffle   = 0x73687566666c65 // "shuffle"
	streamSynthetic = 0x73796e7468     // "synth"
)

// Take returns n prompts in a seeded random order. Records are visited in a shuffled order
// and tokenized lazily (as vLLM's benchmark samples ShareGPT), so a large dump is not
// tokenized beyond what the selection needs. When fewer than n prompts pass the filters, the
// usable ones repeat in further seeded shuffles and Selection.Warning says so.
func (d *Dataset) Take(n int, opts TakeOptions) (Selection, error) {
	if n <= 0 {
		return Selection{}, fmt.Errorf("dataset: number of prompts must be positive, got %d", n)
	}
	if err := opts.validate(); err != nil {
		return Selection{}, err
	}
	if len(d.records) == 0 {
		return Selection{}, fmt.Errorf("dataset: %w: the dataset is empty", ErrNoPrompts)
	}
	st := d.stats.clone()
	rng := rand.New(rand.NewPCG(opts.Seed, streamShuffle))

	usable := make([]Prompt, 0, min(n, len(d.records)))
	for _, i := range rng.Perm(len(d.records)) {
		if len(usable) == n {
			break
		}
		p, reason, err := d.prepare(d.records[i], opts)
		if err != nil {
			return Selection{}, err
		}
		if opts.Tokenizer != nil {
			st.Examined++
		}
		if reason != "" {
			st.Filtered[reason]++
			continue
		}
		usable = append(usable, p)
	}
	st.Usable = len(usable)
	if len(usable) == 0 {
		return Selection{}, fmt.Errorf("dataset %q: %w: all %d examined records fall outside the prompt length limits [%d, %d] tokens (too_short=%d, too_long=%d)",
			st.Source, ErrNoPrompts, st.Examined, opts.MinPromptTokens, opts.MaxPromptTokens, st.Filtered[FilterTooShort], st.Filtered[FilterTooLong])
	}

	out := usable
	passes := 0
	for len(out) < n {
		passes++
		for _, i := range rng.Perm(len(usable)) {
			if len(out) == n {
				break
			}
			p := usable[i]
			p.Tokens = slices.Clone(p.Tokens)
			out = append(out, p)
		}
	}
	for i := range out {
		out[i].ID = i
		if out[i].Truncated {
			st.Truncated++
		}
	}
	st.Selected = len(out)
	st.Repeated = len(out) - len(usable)

	sel := Selection{Prompts: out, Stats: st}
	if passes > 0 {
		sel.Warning = fmt.Sprintf("dataset %q has %d usable prompts but %d were requested: prompts repeat in %d further seeded shuffle(s) (%d repeats)",
			st.Source, len(usable), n, passes, st.Repeated)
	}
	return sel, nil
}

// prepare tokenizes a record and applies the length options; a non-empty reason means the
// record is filtered out.
func (d *Dataset) prepare(r record, opts TakeOptions) (Prompt, string, error) {
	p := Prompt{Source: r.source, Text: r.prompt}
	if opts.Tokenizer == nil {
		return p, "", nil
	}
	toks, err := opts.Tokenizer.Encode(r.prompt)
	if err != nil {
		return Prompt{}, "", fmt.Errorf("dataset: tokenizing the prompt at %s: %w", r.source, err)
	}
	switch {
	case len(toks) < opts.MinPromptTokens:
		return Prompt{}, FilterTooShort, nil
	case opts.MaxPromptTokens > 0 && len(toks) > opts.MaxPromptTokens:
		return Prompt{}, FilterTooLong, nil
	}
	if opts.MaxLength > 0 && len(toks) > opts.MaxLength {
		toks = toks[:opts.MaxLength:opts.MaxLength]
		p.Truncated = true
	}
	p.Tokens = toks
	if r.reference != "" {
		ref, err := opts.Tokenizer.Encode(r.reference)
		if err != nil {
			return Prompt{}, "", fmt.Errorf("dataset: tokenizing the reply at %s: %w", r.source, err)
		}
		p.RefOutputLen = len(ref)
	}
	return p, "", nil
}
