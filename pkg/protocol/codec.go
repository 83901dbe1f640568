package protocol

import (
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

// Encode stamps m with Version, validates it and returns its JSON.
func Encode(m Message) ([]byte, error) {
	*m.version() = versionOf(m)
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("protocol: encoding %s: %w: %w", m.kind(), ErrInvalid, err)
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("protocol: encoding %s: %w", m.kind(), err)
	}
	return data, nil
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
	if err := json.Unmarshal(data, &head); err != nil {
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
	if err := json.Unmarshal(data, m); err != nil {
		return fmt.Errorf("protocol: decoding %s: %w", m.kind(), err)
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("protocol: decoding %s: %w: %w", m.kind(), ErrInvalid, err)
	}
	return nil
}
