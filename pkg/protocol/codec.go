package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Version is the major version of every message this build speaks, but the
// step messages (StepVersion). Adding an optional field keeps it (decoders
// ignore fields they do not know); a change an older reader would misread
// bumps it, and readers refuse other versions.
const Version = 1

// StepVersion is the major version of StepRequest and StepReply, which are
// never stored, so their format can change without making a store
// unreadable: 2 packs a sparse q (Sparse) as base64 of little-endian
// binary, where 1 wrote JSON numbers.
const StepVersion = 2

// headKeeper is a message that, in one of another version, keeps what a
// server needs to answer it (StepRequest: session, op, reply).
type headKeeper interface{ keepHead(data []byte) }

// versioned is a message whose major version is not Version.
type versioned interface{ wireVersion() int }

// versionOf is the major version m is written and read at.
func versionOf(m Message) int {
	if v, ok := m.(versioned); ok {
		return v.wireVersion()
	}
	return Version
}

// ErrVersion is wrapped by Decode when a message has another major version.
var ErrVersion = errors.New("unsupported message version")

// ErrInvalid is wrapped by Encode and Decode when a message is well-formed
// JSON but breaks its type's rules (Validate).
var ErrInvalid = errors.New("invalid message")

// Message is implemented by every message type of this package (and only by
// them): each carries its major version in the JSON field "v".
type Message interface {
	// Validate reports the first rule the message breaks.
	Validate() error
	version() *int
	kind() string
}

// leadingVersion reads the version of a message that begins as Encode
// writes it, {"v":N, without a pass over the whole message (a step with
// whole drafter distributions is megabytes); ok is false for any other
// beginning, which a full decode then reads.
func leadingVersion(data []byte) (v int, ok bool) {
	rest, found := bytes.CutPrefix(data, []byte(`{"v":`))
	if !found {
		return 0, false
	}
	n := 0
	for n < len(rest) && n < 9 && rest[n] >= '0' && rest[n] <= '9' {
		v = 10*v + int(rest[n]-'0')
		n++
	}
	if n == 0 || n == len(rest) || (rest[n] != ',' && rest[n] != '}') || (n > 1 && rest[0] == '0') {
		return 0, false
	}
	return v, true
}

// Encode stamps m with Version, validates it and returns its JSON.
func Encode(m Message) ([]byte, error) {
	*m.version() = versionOf(m)
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("protocol: encoding %s: %w: %w", m.kind(), ErrInvalid, err)
	}
	// A step's drafter distributions are written apart and joined to the
	// rest: encoding/json checks every byte a MarshalJSON returns once more,
	// which for whole q's of a large vocabulary (megabytes) cost more than
	// writing them (docs/perf.md).
	var qs []Sparse
	body := m
	if c, ok := m.(qCarrier); ok {
		body, qs = c.withoutQ() // a copy: m is not changed under a reader
	}
	data, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("protocol: encoding %s: %w", m.kind(), err)
	}
	if len(qs) == 0 {
		return data, nil
	}
	out := append(data[:len(data)-1:len(data)-1], `,"q":[`...)
	for i, q := range qs {
		if i > 0 {
			out = append(out, ',')
		}
		if out, err = q.appendJSON(out); err != nil {
			return nil, fmt.Errorf("protocol: encoding %s: q %d: %w", m.kind(), i+1, err)
		}
	}
	return append(out, ']', '}'), nil
}

// decodeBody is json.Unmarshal(data, m), except that the q's Encode wrote
// at the end of a step are read apart, without encoding/json's passes over
// their megabytes; any other form is read by encoding/json whole.
func decodeBody(data []byte, m Message) error {
	c, ok := m.(qCarrier)
	if !ok {
		return json.Unmarshal(data, m)
	}
	i := bytes.LastIndex(data, []byte(`,"q":[{`))
	if i < 0 || !bytes.HasSuffix(data, []byte(`}]}`)) {
		return json.Unmarshal(data, m)
	}
	var qs []Sparse
	for rest := data[i+len(`,"q":[`) : len(data)-1]; ; {
		end := bytes.IndexByte(rest, '}')
		if end < 0 {
			return json.Unmarshal(data, m)
		}
		w, ok := fastSparseWire(rest[:end+1])
		if !ok {
			return json.Unmarshal(data, m)
		}
		var q Sparse
		if err := q.fromWire(w); err != nil {
			return err
		}
		qs = append(qs, q)
		switch rest = rest[end+1:]; {
		case len(rest) == 1 && rest[0] == ']':
			head := append(data[:i:i], '}')
			if err := json.Unmarshal(head, m); err != nil {
				return err
			}
			*c.qField() = qs
			return nil
		case len(rest) > 1 && rest[0] == ',':
			rest = rest[1:]
		default:
			return json.Unmarshal(data, m)
		}
	}
}

// qCarrier is a message with drafter distributions (StepRequest.Q,
// StepReply.Q), which Encode writes apart and decodeBody reads apart.
type qCarrier interface {
	// withoutQ is a copy of the message without its q's, and the q's.
	withoutQ() (Message, []Sparse)
	qField() *[]Sparse
}

// Decode reads a JSON message into m: it checks the version first (so a
// message of another major version is reported as such, not as a field type
// error), then decodes and validates. On a validation error m holds what was
// decoded, and on another version a step request its session, op and reply
// subject, so a server can still answer the sender. It never panics on bad
// input.
func Decode(data []byte, m Message) error {
	var head struct {
		V *int `json:"v"`
	}
	if v, ok := leadingVersion(data); ok {
		head.V = &v
	} else if err := json.Unmarshal(data, &head); err != nil {
		return fmt.Errorf("protocol: decoding %s: %w", m.kind(), err)
	}
	switch {
	case head.V == nil:
		return fmt.Errorf("protocol: decoding %s: no version field \"v\": %w", m.kind(), ErrVersion)
	case *head.V != versionOf(m):
		// Where the sender waits is kept, so a server can answer it at
		// once instead of leaving it to time out; nothing else is read.
		if h, ok := m.(headKeeper); ok {
			h.keepHead(data)
		}
		return fmt.Errorf("protocol: decoding %s: version %d, this build speaks version %d (run one draftbench version on the controller and every worker): %w",
			m.kind(), *head.V, versionOf(m), ErrVersion)
	}
	if err := decodeBody(data, m); err != nil {
		return fmt.Errorf("protocol: decoding %s: %w", m.kind(), err)
	}
	if v := *m.version(); v != versionOf(m) { // a second "v" later in the message
		return fmt.Errorf("protocol: decoding %s: version %d, this build speaks version %d: %w", m.kind(), v, versionOf(m), ErrVersion)
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("protocol: decoding %s: %w: %w", m.kind(), ErrInvalid, err)
	}
	return nil
}
