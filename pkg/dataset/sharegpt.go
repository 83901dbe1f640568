package dataset

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultMaxRecordBytes bounds one JSONL line: real dumps hold records of several MB.
const DefaultMaxRecordBytes = 64 << 20

// LoadOptions control reading ShareGPT files.
type LoadOptions struct {
	// MaxRecordBytes bounds one JSONL line; longer lines are skipped as record_too_large.
	// 0 means DefaultMaxRecordBytes.
	MaxRecordBytes int
	// Probe stops reading at the first usable record (each later file is
	// still opened, and its first bytes read): enough to tell whether the
	// files hold prompts at all, without reading a dump of hundreds of MB.
	// The errors are those of a full load when nothing usable is found;
	// the Dataset it returns holds the records read so far, and Stats and
	// Warnings describe only what was read.
	Probe bool
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// LoadShareGPT reads the listed ShareGPT files from dir (absolute names are used as they are).
// Each file is either JSONL (one conversation per line) or one JSON array of conversations,
// told apart by its first non-space byte. A missing file is a warning; broken records are
// skipped and counted (Stats.Skipped). It fails when no file exists, when a file can't be
// read, or when no usable record is left.
func LoadShareGPT(dir string, files []string, opts LoadOptions) (*Dataset, error) {
	if len(files) == 0 {
		return nil, errors.New(`dataset "sharegpt": no files listed`)
	}
	maxRec := opts.MaxRecordBytes
	if maxRec <= 0 {
		maxRec = DefaultMaxRecordBytes
	}
	d := &Dataset{stats: newStats("sharegpt"), probe: opts.Probe}
	var tried []string
	for _, name := range files {
		path := name
		if !filepath.IsAbs(name) {
			path = filepath.Join(dir, name)
		}
		tried = append(tried, path)
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			d.stats.MissingFiles = append(d.stats.MissingFiles, path)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf(`dataset "sharegpt": %w`, err)
		}
		err = d.readShareGPT(f, name, maxRec)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf(`dataset "sharegpt": reading %s: %w`, path, err)
		}
		d.stats.Files = append(d.stats.Files, path)
	}
	if len(d.stats.Files) == 0 {
		return nil, fmt.Errorf(`dataset "sharegpt": none of the listed files exists (%s; set dataset.dir or SHAREGPT_DIR): %w`,
			strings.Join(tried, ", "), fs.ErrNotExist)
	}
	if len(d.stats.MissingFiles) > 0 {
		// One line for all of them: most users have one or two of the seed's three files.
		d.warnings = append(d.warnings, fmt.Sprintf(`dataset "sharegpt": read %s; not there: %s`,
			strings.Join(d.stats.Files, ", "), strings.Join(d.stats.MissingFiles, ", ")))
	}
	if len(d.records) == 0 {
		return nil, fmt.Errorf(`dataset "sharegpt": %w in %s: %d records, %s`,
			ErrNoPrompts, strings.Join(d.stats.Files, ", "), d.stats.Records, d.stats.skippedSummary())
	}
	if n := d.stats.SkippedTotal(); n > 0 {
		d.warnings = append(d.warnings, fmt.Sprintf(`dataset "sharegpt": skipped %d of %d records: %s`, n, d.stats.Records, d.stats.skippedSummary()))
	}
	return d, nil
}

// probed reports that a probe (LoadOptions.Probe) has found what it looks for.
func (d *Dataset) probed() bool { return d.probe && len(d.records) > 0 }

// readShareGPT reads one file; name is how sources and locations refer to it.
func (d *Dataset) readShareGPT(r io.Reader, name string, maxRec int) error {
	br := bufio.NewReaderSize(r, 1<<20)
	if b, err := br.Peek(len(utf8BOM)); err == nil && bytes.Equal(b, utf8BOM) {
		br.Discard(len(utf8BOM))
	}
	// Find the first non-space byte to tell a JSON array from JSONL, counting the lines
	// passed so locations stay right.
	line := 1
	for {
		c, err := br.ReadByte()
		if err == io.EOF {
			return nil // an empty file holds no records
		}
		if err != nil {
			return err
		}
		switch c {
		case '\n':
			line++
			continue
		case ' ', '\t', '\r':
			continue
		}
		br.UnreadByte()
		if c == '[' {
			return d.readArray(br, name, line)
		}
		return d.readJSONL(br, name, line, maxRec)
	}
}

// readJSONL streams one record per line; line is the number of the first line in br.
func (d *Dataset) readJSONL(br *bufio.Reader, name string, line, maxRec int) error {
	var buf []byte
	for ; ; line++ {
		if d.probed() {
			return nil
		}
		rec, tooLong, err := readLine(br, maxRec, buf[:0])
		buf = rec
		if tooLong {
			d.stats.Records++
			d.stats.skip(ReasonRecordTooLarge, fmt.Sprintf("%s:%d", name, line))
		} else if rec = bytes.TrimSpace(bytes.TrimPrefix(rec, utf8BOM)); len(rec) > 0 {
			d.stats.Records++
			d.addRecord(rec, fmt.Sprintf("%s:%d", name, line))
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
	}
}

// readLine appends the next line (with its newline) to buf. A line longer than limit (plus
// a CRLF) is drained but not kept, and reported as tooLong.
func readLine(br *bufio.Reader, limit int, buf []byte) (line []byte, tooLong bool, err error) {
	for {
		frag, err := br.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(frag) > limit+2 {
				tooLong, buf = true, buf[:0]
			} else {
				buf = append(buf, frag...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if !tooLong && len(bytes.TrimRight(buf, "\r\n")) > limit {
			tooLong, buf = true, buf[:0]
		}
		return buf, tooLong, err
	}
}

// readArray streams the elements of one JSON array; line is the line where the array starts.
// A syntax error can't be resynchronised inside an array, so it ends the file: the element
// it hit is counted as invalid_json and the elements before it are kept.
func (d *Dataset) readArray(br *bufio.Reader, name string, line int) error {
	lc := &lineCounter{r: br, line: line}
	dec := json.NewDecoder(lc)
	if _, err := dec.Token(); err != nil { // the '['
		return err
	}
	for dec.More() {
		if d.probed() {
			return nil
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			var se *json.SyntaxError
			if !errors.As(err, &se) && !errors.Is(err, io.ErrUnexpectedEOF) {
				return err
			}
			d.stats.Records++
			d.stats.skip(ReasonInvalidJSON, fmt.Sprintf("%s:%d", name, lc.lineAt(elementStart(dec))))
			return nil
		}
		start := dec.InputOffset() - int64(len(raw))
		d.stats.Records++
		d.addRecord(raw, fmt.Sprintf("%s:%d", name, lc.lineAt(start)))
	}
	if _, err := dec.Token(); err != nil { // the ']'
		var se *json.SyntaxError
		if errors.As(err, &se) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			d.warnings = append(d.warnings, fmt.Sprintf(`dataset "sharegpt": %s: the JSON array does not end properly near line %d (truncated file?); kept the records before it`,
				name, lc.lineAt(dec.InputOffset())))
			return nil
		}
		return err
	}
	return nil
}

// elementStart is the offset of the array element a failed Decode stopped on: Decode has
// consumed the comma but not the element, so it begins after the buffered whitespace.
func elementStart(dec *json.Decoder) int64 {
	off := dec.InputOffset()
	br := bufio.NewReader(dec.Buffered())
	for {
		c, err := br.ReadByte()
		if err != nil || (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
			return off
		}
		off++
	}
}

// lineCounter maps byte offsets of the stream it passes on to line numbers. The JSON decoder
// reads ahead, so it keeps the offsets of newlines read but not yet asked about; queries come
// in increasing offset order, so that queue holds no more than the decoder's buffer.
type lineCounter struct {
	r        io.Reader
	off      int64   // bytes passed on so far
	line     int     // line number at the front of the queue
	newlines []int64 // offsets of newlines not yet passed by a query
}

func (c *lineCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	for i := 0; ; {
		j := bytes.IndexByte(p[i:n], '\n')
		if j < 0 {
			break
		}
		c.newlines = append(c.newlines, c.off+int64(i+j))
		i += j + 1
	}
	c.off += int64(n)
	return n, err
}

// lineAt is the line holding byte offset off; off must not decrease between calls.
func (c *lineCounter) lineAt(off int64) int {
	i := 0
	for i < len(c.newlines) && c.newlines[i] < off {
		i++
	}
	c.line += i
	c.newlines = append(c.newlines[:0], c.newlines[i:]...)
	return c.line
}

// rawRecord holds the keys the known ShareGPT variants use for the turn list.
type rawRecord struct {
	Conversations json.RawMessage `json:"conversations"`
	Conversation  json.RawMessage `json:"conversation"`
	Messages      json.RawMessage `json:"messages"`
}

// rawTurn covers {"from","value"} (ShareGPT), {"role","content"} (OpenAI messages) and
// {"human","assistant"} pairs (the Firefly-style "conversation" lists).
type rawTurn struct {
	From      json.RawMessage `json:"from"`
	Role      json.RawMessage `json:"role"`
	Value     json.RawMessage `json:"value"`
	Content   json.RawMessage `json:"content"`
	Human     json.RawMessage `json:"human"`
	Assistant json.RawMessage `json:"assistant"`
}

type role int

const (
	roleUser role = iota
	roleAssistant
	roleSystem
)

var roles = map[string]role{
	"human": roleUser, "user": roleUser,
	"gpt": roleAssistant, "assistant": roleAssistant, "chatgpt": roleAssistant,
	"bard": roleAssistant, "bing": roleAssistant, "model": roleAssistant,
	"system": roleSystem,
}

type turn struct {
	role role
	text string
}

// addRecord parses one record and keeps it, or counts why it was skipped.
func (d *Dataset) addRecord(raw []byte, where string) {
	prompt, reference, reason := parseRecord(raw)
	if reason != "" {
		d.stats.skip(reason, where)
		return
	}
	d.records = append(d.records, record{source: where, prompt: prompt, reference: reference})
	d.stats.Loaded++
	if reference == "" {
		d.stats.NoReference++
	}
}

// parseRecord returns the first user turn and the assistant turn right after it (empty when
// there is none), or the reason the record is unusable. Turns after those two are not
// inspected: damage there does not matter to the benchmark.
func parseRecord(raw []byte) (prompt, reference, reason string) {
	var rec rawRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return "", "", ReasonInvalidJSON
		}
		return "", "", ReasonNotObject
	}
	if raw[0] != '{' { // null decodes into a struct without complaint
		return "", "", ReasonNotObject
	}
	conv := firstPresent(rec.Conversations, rec.Conversation, rec.Messages)
	if conv == nil {
		return "", "", ReasonNoConversation
	}
	var turns []json.RawMessage
	if err := json.Unmarshal(conv, &turns); err != nil {
		return "", "", ReasonWrongType
	}
	havePrompt := false
	for _, rt := range turns {
		ts, reason := parseTurn(rt)
		if reason != "" {
			if !havePrompt {
				return "", "", reason
			}
			return prompt, "", "" // the reply is damaged: keep the prompt without it
		}
		for _, t := range ts {
			switch {
			case t.role == roleSystem:
			case !havePrompt && t.role == roleUser:
				if strings.TrimSpace(t.text) == "" {
					return "", "", ReasonEmptyText
				}
				prompt, havePrompt = t.text, true
			case !havePrompt:
				// An assistant turn before any user turn (dumps that start with the
				// model's greeting): the prompt is still the first user turn.
			case t.role == roleAssistant:
				return prompt, t.text, ""
			default:
				return prompt, "", "" // two user turns in a row: no reply to the prompt
			}
		}
	}
	if !havePrompt {
		return "", "", ReasonNoUserTurn
	}
	return prompt, "", ""
}

// parseTurn returns the one turn a {"from"/"role", ...} object holds, or the two turns of a
// {"human", "assistant"} pair.
func parseTurn(raw json.RawMessage) ([]turn, string) {
	var rt rawTurn
	if err := json.Unmarshal(raw, &rt); err != nil {
		return nil, ReasonWrongType
	}
	roleRaw := firstPresent(rt.From, rt.Role)
	if roleRaw == nil && (rt.Human != nil || rt.Assistant != nil) {
		human, ok1 := jsonText(rt.Human)
		reply, ok2 := jsonText(rt.Assistant)
		if !ok1 || !ok2 {
			return nil, ReasonWrongType
		}
		return []turn{{roleUser, human}, {roleAssistant, reply}}, ""
	}
	if roleRaw == nil {
		return nil, ReasonUnknownRole
	}
	var name string
	if err := json.Unmarshal(roleRaw, &name); err != nil {
		return nil, ReasonWrongType
	}
	r, ok := roles[strings.ToLower(strings.TrimSpace(name))]
	if !ok {
		return nil, ReasonUnknownRole
	}
	text, ok := jsonText(firstPresent(rt.Value, rt.Content))
	if !ok {
		return nil, ReasonWrongType
	}
	return []turn{{r, text}}, ""
}

// firstPresent returns the first value that is present and not JSON null.
func firstPresent(vals ...json.RawMessage) json.RawMessage {
	for _, v := range vals {
		if len(v) > 0 && string(v) != "null" {
			return v
		}
	}
	return nil
}

// jsonText decodes a JSON string; an absent value is the empty text.
func jsonText(v json.RawMessage) (string, bool) {
	if v == nil || string(v) == "null" {
		return "", true
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}
