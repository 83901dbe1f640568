package protocol

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func ramp(n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(i)*0.25 - 3
	}
	return out
}

// wireSize is what nats.go counts against max_payload for m.
func wireSize(m *nats.Msg) int {
	h := map[string]string{}
	for k, v := range m.Header {
		h[k] = v[0]
	}
	return headerSize(h) + len(m.Data)
}

func TestSplitAndAssemble(t *testing.T) {
	cases := []struct {
		name       string
		control    int
		shape      []int
		maxPayload int64
		wantChunks int // 0: more than one, exact count not pinned
	}{
		{"control only", 300, nil, 1 << 20, 1},
		{"empty control", 0, nil, 1 << 20, 1},
		{"small tensor", 200, []int{2, 8}, 1 << 20, 1},
		{"tensor over many chunks", 250, []int{12, 64}, 1024, 0},
		{"control over many chunks", 5000, nil, 512, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			control := []byte(strings.Repeat("c", tc.control))
			var tensor *Tensor
			if tc.shape != nil {
				tensor = &Tensor{Shape: tc.shape, Data: ramp(tc.shape[0] * tc.shape[1])}
			}
			maxPayload := tc.maxPayload
			msgs, err := Split("draftbench.stage.x.1", "sess-1", control, tensor, maxPayload)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantChunks > 0 && len(msgs) != tc.wantChunks || tc.wantChunks == 0 && len(msgs) < 2 {
				t.Fatalf("%d chunks, want %d (0: several)", len(msgs), tc.wantChunks)
			}
			a := NewAssembler(AssemblerOptions{})
			var got *Frame
			for i, m := range msgs {
				if n := wireSize(m); int64(n) > maxPayload {
					t.Errorf("chunk %d is %d bytes with headers, max_payload is %d", i, n, maxPayload)
				}
				f, err := a.Add(m)
				if err != nil {
					t.Fatalf("chunk %d: %v", i, err)
				}
				if (f != nil) != (i == len(msgs)-1) {
					t.Fatalf("chunk %d of %d completed the frame: %v", i, len(msgs), f != nil)
				}
				got = f
			}
			if string(got.Control) != string(control) || got.Session != "sess-1" {
				t.Errorf("control %q (session %q), want %d bytes", got.Control, got.Session, len(control))
			}
			if !reflect.DeepEqual(got.Tensor, tensor) {
				t.Errorf("tensor %+v, want %+v", got.Tensor, tensor)
			}
			if a.Pending() != 0 {
				t.Errorf("%d frames left pending", a.Pending())
			}
		})
	}
}

// TestSplitFitsExactly pins the header accounting: a payload that fits one
// chunk with not a byte to spare stays one chunk, one byte less splits it.
func TestSplitFitsExactly(t *testing.T) {
	control := []byte(strings.Repeat("c", 996)) // 1000 payload bytes with the tensor
	tensor := &Tensor{Shape: []int{1}, Data: []float32{1}}
	probe, err := Split("s", "sess", control, tensor, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	// Split reserves room for a chunk index and count as wide as the
	// payload size (4 digits); a single chunk writes 1 digit of each.
	exact := int64(wireSize(probe[0]) + 2*3)
	for _, tc := range []struct {
		maxPayload int64
		chunks     int
	}{{exact, 1}, {exact - 1, 2}} {
		msgs, err := Split("s", "sess", control, tensor, tc.maxPayload)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != tc.chunks {
			t.Errorf("max_payload %d: %d chunks, want %d", tc.maxPayload, len(msgs), tc.chunks)
		}
	}
}

func TestSplitRejects(t *testing.T) {
	cases := []struct {
		name       string
		tensor     *Tensor
		maxPayload int64
		want       string
	}{
		{"no room after headers", nil, 200, "leaves"},
		{"shape and data disagree", &Tensor{Shape: []int{2, 3}, Data: make([]float32, 5)}, 1 << 20, "shape [2 3] with 5 values"},
		{"zero dimension", &Tensor{Shape: []int{0, 3}}, 1 << 20, "not positive"},
		{"no shape", &Tensor{Data: make([]float32, 1)}, 1 << 20, "no shape"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Split("s", "x", []byte("{}"), tc.tensor, tc.maxPayload)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// TestAssembleInterleaved mixes the chunks of three frames, as a stage sees
// them when several sessions' hidden states arrive at once.
func TestAssembleInterleaved(t *testing.T) {
	var frames [][]*nats.Msg
	for i := range 3 {
		msgs, err := Split("s", "session-"+strconv.Itoa(i), []byte(`{"i":`+strconv.Itoa(i)+`}`), &Tensor{Shape: []int{4 + i, 16}, Data: ramp((4 + i) * 16)}, 512)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, msgs)
	}
	a := NewAssembler(AssemblerOptions{})
	done := map[string]*Frame{}
	for round := 0; len(done) < len(frames); round++ {
		for _, msgs := range frames {
			if round >= len(msgs) {
				continue
			}
			f, err := a.Add(msgs[round])
			if err != nil {
				t.Fatal(err)
			}
			if f != nil {
				done[f.Session] = f
			}
		}
	}
	for i := range frames {
		f := done["session-"+strconv.Itoa(i)]
		if string(f.Control) != `{"i":`+strconv.Itoa(i)+`}` || !reflect.DeepEqual(f.Tensor.Data, ramp((4+i)*16)) {
			t.Errorf("frame %d came back wrong: %s %v", i, f.Control, f.Tensor)
		}
	}
}

func TestAssemblerRejects(t *testing.T) {
	msgs, err := Split("s", "x", []byte(`{"v":1}`), &Tensor{Shape: []int{8, 16}, Data: ramp(128)}, 400)
	if err != nil || len(msgs) < 3 {
		t.Fatalf("%d chunks: %v", len(msgs), err)
	}
	with := func(m *nats.Msg, kv ...string) *nats.Msg {
		c := nats.NewMsg(m.Subject)
		for k, v := range m.Header {
			c.Header[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				c.Header.Del(kv[i])
			} else {
				c.Header.Set(kv[i], kv[i+1])
			}
		}
		c.Data = m.Data
		return c
	}
	cases := []struct {
		name string
		seq  []*nats.Msg
		want string
	}{
		{"chunk 1 first", []*nats.Msg{msgs[1]}, "no such frame"},
		{"skipped chunk", []*nats.Msg{msgs[0], msgs[2]}, "out of order: want chunk 1"},
		{"same frame twice", []*nats.Msg{msgs[0], msgs[0]}, "already in progress"},
		{"index past count", []*nats.Msg{with(msgs[0], HeaderChunk, "9")}, "chunk index 9 of"},
		{"no frame id", []*nats.Msg{with(msgs[0], HeaderFrame, "")}, "no frame id"},
		{"negative count", []*nats.Msg{with(msgs[0], HeaderChunks, "-1")}, "not a non-negative integer"},
		{"control past payload", []*nats.Msg{with(msgs[0], HeaderControl, "100000")}, "control of 100000 bytes"},
		{"more chunks than bytes", []*nats.Msg{with(msgs[0], HeaderChunks, "100000")}, "chunks for"},
		{"other dtype", []*nats.Msg{with(msgs[0], HeaderDType, "bf16")}, `dtype "bf16"`},
		{"shape of letters", []*nats.Msg{with(msgs[0], HeaderShape, "a,b")}, "shape"},
		{"shape too large", []*nats.Msg{with(msgs[0], HeaderShape, "9223372036854775807,2")}, "not positive and bounded"},
		{"shape disagrees with bytes", []*nats.Msg{with(msgs[0], HeaderShape, "8,15")}, "tensor bytes for shape [8 15]"},
		{"over the memory bound", []*nats.Msg{with(msgs[0], HeaderBytes, "2000000000")}, "exceed"},
		{"chunk 0 too small for the count", []*nats.Msg{with(msgs[0], HeaderChunks, strconv.Itoa(len(msgs)-1))}, "cannot hold"},
		{"chunk 0 too large for the count", []*nats.Msg{with(msgs[0], HeaderChunks, strconv.Itoa(len(msgs)+2))}, "cannot hold"},
		{"chunk count changes", []*nats.Msg{msgs[0], with(msgs[1], HeaderChunks, strconv.Itoa(len(msgs)+1))}, "out of order"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAssembler(AssemblerOptions{MaxBytes: 1 << 20})
			var err error
			for _, m := range tc.seq {
				if _, err = a.Add(m); err != nil {
					break
				}
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
			if a.Pending() != 0 {
				t.Errorf("a rejected frame stays pending")
			}
		})
	}
}

func TestAssemblerExpires(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := NewAssembler(AssemblerOptions{TTL: time.Minute, Now: func() time.Time { return now }})
	old, _ := Split("s", "old", []byte("{}"), &Tensor{Shape: []int{64}, Data: ramp(64)}, 400)
	fresh, _ := Split("s", "fresh", []byte("{}"), &Tensor{Shape: []int{64}, Data: ramp(64)}, 400)
	if len(old) < 2 || len(fresh) < 2 {
		t.Fatalf("%d and %d chunks, want several", len(old), len(fresh))
	}
	if _, err := a.Add(old[0]); err != nil {
		t.Fatal(err)
	}
	now = now.Add(59 * time.Second)
	if _, err := a.Add(fresh[0]); err != nil {
		t.Fatal(err)
	}
	if a.Pending() != 2 {
		t.Fatalf("%d pending, want 2", a.Pending())
	}
	now = now.Add(2 * time.Second)
	if _, err := a.Add(old[1]); err == nil || !strings.Contains(err.Error(), "no such frame") {
		t.Errorf("a chunk of an expired frame: %v", err)
	}
	for _, m := range fresh[1:] {
		if _, err := a.Add(m); err != nil {
			t.Fatalf("the fresh frame: %v", err)
		}
	}
	if a.Pending() != 0 {
		t.Errorf("%d pending, want 0", a.Pending())
	}
}

func TestAssemblerBoundsMemory(t *testing.T) {
	a := NewAssembler(AssemblerOptions{MaxBytes: 600})
	big := func() []*nats.Msg {
		msgs, err := Split("s", "x", nil, &Tensor{Shape: []int{100}, Data: ramp(100)}, 400)
		if err != nil {
			t.Fatal(err)
		}
		return msgs
	}
	first, second := big(), big()
	if _, err := a.Add(first[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Add(second[0]); err == nil || !strings.Contains(err.Error(), "exceed the 200 left") {
		t.Errorf("a second 400-byte frame in 600 bytes: %v", err)
	}
	for _, m := range first[1:] {
		if _, err := a.Add(m); err != nil {
			t.Fatal(err)
		}
	}
	// The first frame's bytes are given back.
	third := big()
	for _, m := range third {
		if _, err := a.Add(m); err != nil {
			t.Fatalf("after the first frame completed: %v", err)
		}
	}
}

func TestPlainMessageIsAFrame(t *testing.T) {
	f, err := NewAssembler(AssemblerOptions{}).Add(&nats.Msg{Subject: "s", Reply: "_INBOX.r", Data: []byte(`{"v":1}`)})
	if err != nil || f == nil {
		t.Fatalf("%v %v", f, err)
	}
	if string(f.Control) != `{"v":1}` || f.Reply != "_INBOX.r" || f.Tensor != nil {
		t.Errorf("frame %+v", f)
	}
}

// TestSparseProbsRoundTripExactly checks that JSON keeps every bit of a
// float32 probability, which the acceptance rule divides by.
func TestSparseProbsRoundTripExactly(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	q := Sparse{}
	for i := range 2000 {
		q.IDs = append(q.IDs, int32(i))
		p := rng.Float32()
		if i%7 == 0 {
			p = math.Float32frombits(rng.Uint32() & 0x3f7fffff) // also tiny and subnormal values
		}
		q.Probs = append(q.Probs, p)
	}
	q.Probs = append(q.Probs[:len(q.Probs)-1], math.SmallestNonzeroFloat32)
	req := &StepRequest{Session: sessionID, Op: OpVerify, Tokens: []int{1}, Drafts: []int{0}, Q: []Sparse{q}, Reply: "r"}
	data, err := Encode(req)
	if err != nil {
		t.Fatal(err)
	}
	var back StepRequest
	if err := Decode(data, &back); err != nil {
		t.Fatal(err)
	}
	for i, p := range back.Q[0].Probs {
		if math.Float32bits(p) != math.Float32bits(q.Probs[i]) {
			t.Fatalf("prob %d: %v came back as %v", i, q.Probs[i], p)
		}
	}
}

func TestRecordVersion(t *testing.T) {
	m := RecordMsg("draftbench.results.x.requests", []byte("{}\n"))
	if m.Header.Get(HeaderVersion) != "1" || string(m.Data) != "{}\n" {
		t.Errorf("record message %+v", m)
	}
	for _, tc := range []struct {
		v  string
		ok bool
	}{{"", true}, {"1", true}, {"2", false}, {"0", false}, {"x", false}} {
		h := nats.Header{}
		if tc.v != "" {
			h.Set(HeaderVersion, tc.v)
		}
		err := CheckRecordVersion(h)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrVersion)) {
			t.Errorf("version %q: %v, want ok=%v", tc.v, err, tc.ok)
		}
	}
}
