package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// Headers of a framed message. A frame is one logical message: a JSON
// control message optionally followed by a tensor, cut into chunks that each
// fit the server's max_payload (headers included).
const (
	HeaderFrame   = "Draftbench-Frame"   // frame id, on every chunk
	HeaderChunk   = "Draftbench-Chunk"   // chunk index, 0-based, on every chunk
	HeaderChunks  = "Draftbench-Chunks"  // chunk count, on every chunk
	HeaderSession = "Draftbench-Session" // session id, on every chunk (for routing and nats sub)
	HeaderBytes   = "Draftbench-Bytes"   // payload bytes of the whole frame, chunk 0
	HeaderControl = "Draftbench-Control" // bytes of JSON at the start of the payload, chunk 0
	HeaderDType   = "Draftbench-DType"   // tensor element type, chunk 0 (only "f32")
	HeaderShape   = "Draftbench-Shape"   // tensor shape, "rows,cols", chunk 0
)

// HeaderVersion carries the protocol version of a record whose body is a
// file's line as the user reads it (a request record is a line of
// requests.jsonl, a summary is benchmark_results.json, a GPU sample is
// gpumon's JSON): those bodies have no "v" field, so the version travels
// beside them and the bytes stay those of the file.
const HeaderVersion = "Draftbench-Version"

// RecordMsg is a record for subject with its version header.
func RecordMsg(subject string, data []byte) *nats.Msg {
	return &nats.Msg{Subject: subject, Data: data, Header: nats.Header{HeaderVersion: []string{strconv.Itoa(Version)}}}
}

// CheckRecordVersion accepts a record without the header (written before
// it existed) or of a version this build reads.
func CheckRecordVersion(h nats.Header) error {
	v := h.Get(HeaderVersion)
	if v == "" {
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > Version {
		return fmt.Errorf("%w: record of version %q, this build reads 1 to %d", ErrVersion, v, Version)
	}
	return nil
}

// DTypeF32 is the only tensor element type on the wire: little-endian IEEE
// float32, what every backend computes activations in.
const DTypeF32 = "f32"

// Tensor is a dense row-major float32 array.
type Tensor struct {
	Shape []int
	Data  []float32
}

// Frame is a reassembled message.
type Frame struct {
	Session string // the HeaderSession value, "" if none
	Reply   string // the NATS reply subject of the first chunk
	Control []byte // the JSON control message
	Tensor  *Tensor
}

// Publisher is what Send needs of a connection (*nats.Conn has it).
type Publisher interface {
	PublishMsg(m *nats.Msg) error
	MaxPayload() int64
}

// Send encodes m, frames it with t (may be nil) under p's max_payload and
// publishes the chunks in order on subject.
func Send(p Publisher, subject, session string, m Message, t *Tensor) error {
	data, err := Encode(m)
	if err != nil {
		return err
	}
	msgs, err := Split(subject, session, data, t, p.MaxPayload())
	if err != nil {
		return err
	}
	for i, msg := range msgs {
		if err := p.PublishMsg(msg); err != nil {
			return fmt.Errorf("protocol: publishing chunk %d of %d on %s: %w", i+1, len(msgs), subject, err)
		}
	}
	return nil
}

// Split frames control and t into messages for subject, each at most
// maxPayload bytes of body and headers together. The payload is the control
// bytes then the tensor as little-endian float32; chunks are consecutive
// slices of it, so the receiver needs them in order (NATS keeps the order of
// one publisher's messages to one subscriber).
func Split(subject, session string, control []byte, t *Tensor, maxPayload int64) ([]*nats.Msg, error) {
	head := map[string]string{
		HeaderFrame:   nuid.Next(),
		HeaderSession: session,
		HeaderControl: strconv.Itoa(len(control)),
	}
	total := len(control)
	if t != nil {
		n, err := elements(t.Shape)
		if err != nil {
			return nil, fmt.Errorf("protocol: framing a tensor: %w", err)
		}
		if n != len(t.Data) {
			return nil, fmt.Errorf("protocol: framing a tensor of shape %v with %d values", t.Shape, len(t.Data))
		}
		head[HeaderDType] = DTypeF32
		head[HeaderShape] = formatShape(t.Shape)
		total += 4 * n
	}
	head[HeaderBytes] = strconv.Itoa(total)
	// Size the chunks for the largest header any chunk can carry: chunk 0's,
	// with index and count at their widest.
	widest := strconv.Itoa(max(total, 1))
	head[HeaderChunk], head[HeaderChunks] = widest, widest
	room := maxPayload - int64(headerSize(head))
	const minRoom = 64
	if room < minRoom {
		return nil, fmt.Errorf("protocol: max_payload %d leaves %d bytes per chunk after headers; need at least %d", maxPayload, room, minRoom)
	}
	payload := make([]byte, total)
	copy(payload, control)
	if t != nil {
		if _, err := binary.Encode(payload[len(control):], binary.LittleEndian, t.Data); err != nil {
			return nil, fmt.Errorf("protocol: encoding a tensor: %w", err)
		}
	}
	n := max(1, int((int64(total)+room-1)/room))
	msgs := make([]*nats.Msg, n)
	for i := range n {
		m := nats.NewMsg(subject)
		m.Header.Set(HeaderFrame, head[HeaderFrame])
		m.Header.Set(HeaderSession, session)
		m.Header.Set(HeaderChunk, strconv.Itoa(i))
		m.Header.Set(HeaderChunks, strconv.Itoa(n))
		if i == 0 {
			for _, k := range []string{HeaderBytes, HeaderControl, HeaderDType, HeaderShape} {
				if v, ok := head[k]; ok {
					m.Header.Set(k, v)
				}
			}
		}
		lo := int64(i) * room
		m.Data = payload[lo:min(lo+room, int64(total))]
		msgs[i] = m
	}
	return msgs, nil
}

// headerSize is the encoded size of a NATS header block, as nats.go counts it
// against max_payload: "NATS/1.0\r\n", "key: value\r\n" per entry, "\r\n".
func headerSize(h map[string]string) int {
	n := len("NATS/1.0\r\n") + 2
	for k, v := range h {
		n += len(k) + len(v) + 4
	}
	return n
}

func formatShape(shape []int) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = strconv.Itoa(d)
	}
	return strings.Join(parts, ",")
}

// maxElements bounds a tensor's element count so sizes never overflow.
const maxElements = 1 << 40

func elements(shape []int) (int, error) {
	if len(shape) == 0 {
		return 0, errors.New("tensor has no shape")
	}
	n := 1
	for _, d := range shape {
		if d <= 0 || n > maxElements/d {
			return 0, fmt.Errorf("tensor shape %v is not positive and bounded", shape)
		}
		n *= d
	}
	return n, nil
}

func parseShape(s string) ([]int, error) {
	parts := strings.Split(s, ",")
	if len(parts) > 8 {
		return nil, fmt.Errorf("shape %q has more than 8 dimensions", s)
	}
	shape := make([]int, len(parts))
	for i, p := range parts {
		d, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("shape %q: %w", s, err)
		}
		shape[i] = d
	}
	if _, err := elements(shape); err != nil {
		return nil, err
	}
	return shape, nil
}

// AssemblerOptions bound what an Assembler holds.
type AssemblerOptions struct {
	// MaxBytes bounds the payload bytes of the frames being assembled, the
	// one in progress included (0: 1 GiB).
	MaxBytes int64
	// TTL drops frames whose first chunk is older, so a sender that died
	// mid-frame leaves nothing behind (0: one minute).
	TTL time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Assembler puts framed messages back together. Chunks of different frames
// may interleave (many sessions, many senders); chunks of one frame must
// come in order. It is safe for concurrent use.
type Assembler struct {
	opts    AssemblerOptions
	mu      sync.Mutex
	pending map[string]*partial
	bytes   int64
}

type partial struct {
	session, reply string
	chunks, next   int
	total, control int
	shape          []int
	buf            []byte
	started        time.Time
}

// NewAssembler returns an empty Assembler.
func NewAssembler(opts AssemblerOptions) *Assembler {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 1 << 30
	}
	if opts.TTL <= 0 {
		opts.TTL = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Assembler{opts: opts, pending: map[string]*partial{}}
}

// Pending is the number of frames waiting for chunks.
func (a *Assembler) Pending() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.pending)
}

// Add takes one message. It returns the frame the message completes, nil
// while chunks are missing, or an error for a message that cannot belong to
// a valid frame (the frame it claims is dropped). A message without framing
// headers is a whole frame whose body is the control message, so a plain
// `nats req` reaches a stage.
func (a *Assembler) Add(m *nats.Msg) (*Frame, error) {
	if m.Header.Get(HeaderChunks) == "" {
		return &Frame{Reply: m.Reply, Control: m.Data}, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expire()
	id := m.Header.Get(HeaderFrame)
	f, err := a.add(id, m)
	if err != nil {
		a.drop(id)
		return nil, fmt.Errorf("protocol: frame %q chunk %s/%s: %w", id, m.Header.Get(HeaderChunk), m.Header.Get(HeaderChunks), err)
	}
	return f, nil
}

func (a *Assembler) add(id string, m *nats.Msg) (*Frame, error) {
	chunks, err := headerInt(m.Header, HeaderChunks)
	if err != nil {
		return nil, err
	}
	idx, err := headerInt(m.Header, HeaderChunk)
	if err != nil {
		return nil, err
	}
	if chunks < 1 || idx >= chunks {
		return nil, fmt.Errorf("chunk index %d of %d", idx, chunks)
	}
	if id == "" {
		return nil, errors.New("no frame id")
	}
	if idx > 0 {
		p, ok := a.pending[id]
		switch {
		case !ok:
			return nil, errors.New("no such frame in progress (its first chunk was lost, rejected or expired)")
		case p.chunks != chunks || p.next != idx:
			return nil, fmt.Errorf("out of order: want chunk %d of %d", p.next, p.chunks)
		case len(p.buf)+len(m.Data) > p.total:
			return nil, fmt.Errorf("%d bytes past the %d announced", len(p.buf)+len(m.Data)-p.total, p.total)
		}
		p.buf = append(p.buf, m.Data...)
		p.next++
		if p.next < p.chunks {
			return nil, nil
		}
		a.drop(id)
		return p.frame()
	}

	if _, dup := a.pending[id]; dup {
		return nil, errors.New("a frame with this id is already in progress")
	}
	p := &partial{session: m.Header.Get(HeaderSession), reply: m.Reply, chunks: chunks, next: 1, started: a.opts.Now()}
	if p.total, err = headerInt(m.Header, HeaderBytes); err != nil {
		return nil, err
	}
	if p.control, err = headerInt(m.Header, HeaderControl); err != nil {
		return nil, err
	}
	switch {
	case int64(p.total) > a.opts.MaxBytes-a.bytes:
		return nil, fmt.Errorf("%d bytes exceed the %d left of the assembler's %d", p.total, a.opts.MaxBytes-a.bytes, a.opts.MaxBytes)
	case p.control > p.total:
		return nil, fmt.Errorf("control of %d bytes in a payload of %d", p.control, p.total)
	case chunks > max(1, p.total):
		return nil, fmt.Errorf("%d chunks for %d bytes", chunks, p.total)
	case len(m.Data) > p.total:
		return nil, fmt.Errorf("chunk of %d bytes in a payload of %d", len(m.Data), p.total)
	}
	if dt := m.Header.Get(HeaderDType); dt != "" || m.Header.Get(HeaderShape) != "" {
		if dt != DTypeF32 {
			return nil, fmt.Errorf("tensor dtype %q; only %s travels", dt, DTypeF32)
		}
		if p.shape, err = parseShape(m.Header.Get(HeaderShape)); err != nil {
			return nil, err
		}
	}
	n := 0
	if p.shape != nil {
		n, _ = elements(p.shape)
	}
	if p.total-p.control != 4*n {
		return nil, fmt.Errorf("%d tensor bytes for shape %v", p.total-p.control, p.shape)
	}
	if chunks == 1 {
		p.buf = m.Data
		return p.frame()
	}
	// Split fills every chunk but the last, so chunk 0 gives the chunk size.
	if size := len(m.Data); (chunks-1)*size >= p.total || chunks*size < p.total {
		return nil, fmt.Errorf("%d chunks of %d bytes cannot hold %d", chunks, size, p.total)
	}
	p.buf = append(make([]byte, 0, p.total), m.Data...)
	a.pending[id] = p
	a.bytes += int64(p.total)
	return nil, nil
}

// frame checks that the payload is complete and splits it.
func (p *partial) frame() (*Frame, error) {
	if len(p.buf) != p.total {
		return nil, fmt.Errorf("payload of %d bytes, %d announced", len(p.buf), p.total)
	}
	f := &Frame{Session: p.session, Reply: p.reply, Control: p.buf[:p.control]}
	if p.shape != nil {
		data := make([]float32, (p.total-p.control)/4)
		if _, err := binary.Decode(p.buf[p.control:], binary.LittleEndian, data); err != nil {
			return nil, fmt.Errorf("decoding the tensor: %w", err)
		}
		f.Tensor = &Tensor{Shape: p.shape, Data: data}
	}
	return f, nil
}

func (a *Assembler) drop(id string) {
	if p, ok := a.pending[id]; ok {
		a.bytes -= int64(p.total)
		delete(a.pending, id)
	}
}

func (a *Assembler) expire() {
	cut := a.opts.Now().Add(-a.opts.TTL)
	for id, p := range a.pending {
		if p.started.Before(cut) {
			a.drop(id)
		}
	}
}

func headerInt(h nats.Header, key string) (int, error) {
	v := h.Get(key)
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("header %s %q is not a non-negative integer", key, v)
	}
	return n, nil
}
