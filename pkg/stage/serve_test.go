package stage

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/protocol"
)

// TestTinyMaxPayload runs hidden states and replies through a server whose
// max_payload (1 KiB, headers included) is smaller than a prefill's hidden
// states (12 positions × 64 × 4 bytes) and than a draft reply with a q over
// the whole vocabulary.
func TestTinyMaxPayload(t *testing.T) {
	g := readGolden(t)
	c := newCluster(t, 1024)
	if got := c.nc.MaxPayload(); got != 1024 {
		t.Fatalf("max payload %d, want 1024", got)
	}
	c.pipeline(t, "target", [][2]int{{0, 1}, {1, 3}}, nil)
	c.pipeline(t, "drafter", [][2]int{{0, 3}}, nil)
	for i, p := range g.Prompts {
		if got := c.mustGenerate(t, "target", uuid.New(), p.Tokens, len(p.Greedy)); !slices.Equal(got, p.Greedy) {
			t.Errorf("prompt %d: got %v, want %v", i, got, p.Greedy)
		}
		out, _ := c.speculate(t, "target", "drafter", p.Tokens, len(p.Greedy), 4, protocol.Sampling{}, nil)
		if got := out[:len(p.Greedy)]; !slices.Equal(got, p.Greedy) {
			t.Errorf("prompt %d, speculative: got %v, want %v", i, got, p.Greedy)
		}
	}
	rep := c.mustStep(t, "drafter", &protocol.StepRequest{Session: uuid.New(), Op: protocol.OpDraft, Tokens: g.Prompts[1].Tokens,
		Gamma: 3, Sampling: protocol.Sampling{Temperature: 1, DraftTopK: -1}, Seed: 1})
	for i, q := range rep.Q {
		if len(q.IDs) != 384 {
			t.Errorf("draft %d: q over %d ids, want the whole vocabulary of 384", i, len(q.IDs))
		}
	}
}

func TestBadMessagesGetErrors(t *testing.T) {
	g := readGolden(t)
	c := newCluster(t, 0)
	c.pipeline(t, "target", [][2]int{{0, 1}, {1, 3}}, nil)
	subj := protocol.Subjects{}
	stage0, stage1 := subj.Stage("target", 0), subj.Stage("target", 1)

	known := uuid.New()
	c.mustStep(t, "target", &protocol.StepRequest{Session: known, Op: protocol.OpPrefill, Tokens: []int{1, 2, 3}})

	// Each message is built for the inbox the answer must reach: the NATS
	// reply subject, or the request's own reply field when it has one.
	plain := func(subject, body string) func(string) *nats.Msg {
		return func(string) *nats.Msg { return &nats.Msg{Subject: subject, Data: []byte(body)} }
	}
	request := func(subject, fields string) func(string) *nats.Msg {
		return func(inbox string) *nats.Msg {
			body := `{"v":2,"session":"` + uuid.NewString() + `","reply":"` + inbox + `",` + fields + `}`
			return &nats.Msg{Subject: subject, Data: []byte(body)}
		}
	}
	framed := func(subject string, header map[string]string, body string) func(string) *nats.Msg {
		return func(string) *nats.Msg {
			m := nats.NewMsg(subject)
			for k, v := range header {
				m.Header.Set(k, v)
			}
			m.Data = []byte(body)
			return m
		}
	}
	withTensor := func(subject string, shape []int) func(string) *nats.Msg {
		return func(inbox string) *nats.Msg {
			req := &protocol.StepRequest{Session: uuid.New(), Op: protocol.OpDecode, Tokens: []int{1}, Reply: inbox}
			data, err := protocol.Encode(req)
			if err != nil {
				t.Fatal(err)
			}
			msgs, err := protocol.Split(subject, req.Session.String(), data, &protocol.Tensor{Shape: shape, Data: make([]float32, shape[0]*shape[1])}, 1<<20)
			if err != nil || len(msgs) != 1 {
				t.Fatalf("framing: %v (%d chunks)", err, len(msgs))
			}
			return msgs[0]
		}
	}
	chunk := func(h ...string) map[string]string {
		m := map[string]string{protocol.HeaderFrame: "f"}
		for i := 0; i+1 < len(h); i += 2 {
			m[h[i]] = h[i+1]
		}
		return m
	}

	cases := []struct {
		name  string
		build func(inbox string) *nats.Msg
		want  string
	}{
		{"not JSON", plain(stage0, "\x00\x01garbage"), "decoding step request"},
		{"no version", plain(stage0, `{}`), `no version field "v"`},
		{"newer version", plain(stage0, `{"v":3,"op":"teleport"}`), "version 3"},
		{"wrong field type", plain(stage0, `{"v":2,"tokens":"many"}`), "cannot unmarshal"},
		{"nil session", plain(stage0, `{"v":2,"session":"00000000-0000-0000-0000-000000000000","op":"decode","tokens":[1]}`), "nil UUID"},
		{"unknown op", request(stage0, `"op":"teleport","tokens":[1]`), `op "teleport"`},
		{"negative temperature", request(stage0, `"op":"decode","tokens":[1],"sampling":{"temperature":-1}`), "temperature -1"},
		{"verify without q when sampling", request(stage0, `"op":"verify","tokens":[1],"drafts":[2],"sampling":{"temperature":1}`), "0 draft distributions for 1 drafts"},
		{"bad chunk count", framed(stage0, chunk(protocol.HeaderChunks, "many", protocol.HeaderChunk, "0"), "{}"), "not a non-negative integer"},
		{"chunk of an unknown frame", framed(stage0, chunk(protocol.HeaderChunks, "2", protocol.HeaderChunk, "1"), "{}"), "no such frame"},
		{"tensor shorter than its shape", framed(stage1, chunk(protocol.HeaderChunks, "1", protocol.HeaderChunk, "0", protocol.HeaderBytes, "10",
			protocol.HeaderControl, "2", protocol.HeaderDType, "f32", protocol.HeaderShape, "4,64"), "{}12345678"), "tensor bytes for shape"},
		{"hidden states sent to stage 0", withTensor(stage0, []int{1, 64}), "takes token ids"},
		{"no hidden states on stage 1", request(stage1, `"op":"decode","tokens":[1]`), "hidden states of shape [], want [1 64]"},
		{"hidden states of the wrong width", withTensor(stage1, []int{1, 63}), "hidden states of shape [1 63], want [1 64]"},
		{"token outside the vocabulary", request(stage0, `"op":"prefill","tokens":[1,999]`), "forward pass: token id 999 outside the vocabulary"},
		{"draft on a split model", request(stage0, `"op":"draft","tokens":[1],"gamma":2`), "draft needs the whole drafter in one stage"},
		{"unknown session with a cache length", request(stage0, `"op":"decode","cache_len":5,"tokens":[1]`), "has no cache here"},
		{"past the context", request(stage0, `"op":"prefill","tokens":[`+strings.Repeat("1,", 299)+`1]`), "the model's context is 256"},
		{"cache shorter than cache_len", func(inbox string) *nats.Msg {
			return &nats.Msg{Subject: stage0, Data: []byte(`{"v":2,"session":"` + known.String() + `","reply":"` + inbox + `","op":"decode","cache_len":10,"tokens":[1]}`)}
		}, "the cache holds 3 positions, the step needs 10"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inbox := nats.NewInbox()
			sub, err := c.nc.SubscribeSync(inbox)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			msg := tc.build(inbox)
			msg.Reply = inbox
			if err := c.nc.PublishMsg(msg); err != nil {
				t.Fatal(err)
			}
			resp, err := sub.NextMsg(10 * time.Second)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			checkErrorReply(t, replyOf(t, resp), tc.want)
		})
	}

	// The stage still serves, and the known session is intact.
	p := g.Prompts[0]
	if got := c.mustGenerate(t, "target", uuid.New(), p.Tokens, len(p.Greedy)); !slices.Equal(got, p.Greedy) {
		t.Errorf("after the bad messages: got %v, want %v", got, p.Greedy)
	}
	if rep := c.mustStep(t, "target", &protocol.StepRequest{Session: known, Op: protocol.OpDecode, CacheLen: 3, Tokens: []int{4}}); rep.CacheLen != 4 {
		t.Errorf("the known session holds %d positions, want 4", rep.CacheLen)
	}
}

// replyOf decodes a stage's answer.
func replyOf(t *testing.T, m *nats.Msg) *protocol.StepReply {
	t.Helper()
	f, err := protocol.NewAssembler(protocol.AssemblerOptions{}).Add(m)
	if err != nil || f == nil {
		t.Fatalf("reassembling the answer: %v", err)
	}
	var rep protocol.StepReply
	if err := protocol.Decode(f.Control, &rep); err != nil {
		t.Fatalf("decoding the answer %q: %v", f.Control, err)
	}
	return &rep
}

func checkErrorReply(t *testing.T, rep *protocol.StepReply, want string) {
	t.Helper()
	if rep.Error == "" {
		t.Fatalf("no error in the reply %+v", rep)
	}
	if !strings.HasPrefix(rep.Error, "stage target/") || !strings.Contains(rep.Error, want) {
		t.Errorf("error %q does not name the stage or %q", rep.Error, want)
	}
}

func TestReleaseAndIdleTimeout(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	c := newCluster(t, 0)
	stages := c.pipeline(t, "target", [][2]int{{0, 1}, {1, 3}}, func(cfg *Config) {
		cfg.Clock = clock
		cfg.IdleTimeout = time.Minute
	})
	sessions := func(want int, when string) {
		t.Helper()
		for k, s := range stages {
			if got := s.Sessions(); got != want {
				t.Errorf("%s: stage %d holds %d sessions, want %d", when, k, got, want)
			}
		}
	}
	prefill := func(id uuid.UUID) {
		t.Helper()
		c.mustStep(t, "target", &protocol.StepRequest{Session: id, Op: protocol.OpPrefill, Tokens: []int{1, 2, 3}})
	}
	goneErr := func(id uuid.UUID, when string) {
		t.Helper()
		_, err := c.step(t, "target", &protocol.StepRequest{Session: id, Op: protocol.OpDecode, CacheLen: 3, Tokens: []int{4}})
		if err == nil || !strings.Contains(err.Error(), "has no cache here") {
			t.Errorf("%s: decoding a freed session gave %v", when, err)
		}
	}

	t.Run("release", func(t *testing.T) {
		id := uuid.New()
		prefill(id)
		sessions(1, "after prefill")
		rep := c.mustStep(t, "target", &protocol.StepRequest{Session: id, Op: protocol.OpRelease})
		if rep.Op != protocol.OpRelease || rep.CacheLen != 0 {
			t.Errorf("release reply %+v", rep)
		}
		sessions(0, "after release")
		goneErr(id, "after release")
		sessions(0, "after the failed decode")
		// Releasing what is not held is not an error: a driver may release
		// after a failure without knowing how far the session got.
		c.mustStep(t, "target", &protocol.StepRequest{Session: id, Op: protocol.OpRelease})
	})

	t.Run("idle timeout", func(t *testing.T) {
		a, b, d := uuid.New(), uuid.New(), uuid.New()
		prefill(a)
		clock.advance(59 * time.Second)
		prefill(b)
		sessions(2, "a idle for 59s")
		clock.advance(2 * time.Second)
		prefill(d) // every stage sweeps before it runs the step
		sessions(2, "a idle for 61s")
		goneErr(a, "after the idle timeout")
		for _, id := range []uuid.UUID{b, d} {
			if rep := c.mustStep(t, "target", &protocol.StepRequest{Session: id, Op: protocol.OpDecode, CacheLen: 3, Tokens: []int{4}}); rep.CacheLen != 4 {
				t.Errorf("session %s holds %d positions, want 4", id, rep.CacheLen)
			}
		}
	})
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestServeStopsAndFrees checks that cancelling Serve frees the caches.
func TestServeStopsAndFrees(t *testing.T) {
	c := newCluster(t, 0)
	s, err := New(Config{Model: shard(t, 0, 3), Conn: c.connect(t, "stage"), Instance: "solo", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx) }()
	<-s.Ready()
	c.mustStep(t, "solo", &protocol.StepRequest{Session: uuid.New(), Op: protocol.OpPrefill, Tokens: []int{1, 2}})
	if s.Sessions() != 1 {
		t.Fatalf("%d sessions, want 1", s.Sessions())
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if s.Sessions() != 0 {
		t.Errorf("%d sessions after Serve returned, want 0", s.Sessions())
	}
	if err := s.Serve(context.Background()); err == nil {
		t.Error("a second Serve succeeded")
	}
}

func TestNewRejectsBadConfigs(t *testing.T) {
	c := newCluster(t, 0)
	nc := c.connect(t, "stage")
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no connection", Config{Model: shard(t, 0, 3), Instance: "x", Count: 1}, "no NATS connection"},
		{"no instance", Config{Model: shard(t, 0, 3), Conn: nc, Count: 1}, "no model instance id"},
		{"index past count", Config{Model: shard(t, 0, 3), Conn: nc, Instance: "x", Index: 2, Count: 2}, "stage 2 of 2"},
		{"first shard as stage 1", Config{Model: shard(t, 0, 1), Conn: nc, Instance: "x", Index: 1, Count: 2}, "must start at layer 0"},
		{"last shard not last", Config{Model: shard(t, 1, 3), Conn: nc, Instance: "x", Index: 1, Count: 3}, "only the last may end"},
		{"nothing to load", Config{Conn: nc, Instance: "x", Count: 1}, "give a model"},
		{"missing folder", Config{ModelDir: "testdata/missing", Backend: shard(t, 0, 3).Backend(), Conn: nc, Instance: "x", Count: 1}, "loading layers [0,0) of testdata/missing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestOtherVersionAnsweredAtOnce: a step of another protocol version (a
// driver of another draftbench build) is answered on the reply subject its
// body names, with both versions, rather than left to time out (it took the
// driver's two-minute step timeout per request).
func TestOtherVersionAnsweredAtOnce(t *testing.T) {
	c := newCluster(t, 0)
	c.pipeline(t, "target", [][2]int{{0, 3}}, nil)
	inbox := nats.NewInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	// The q of version 1 (JSON numbers) comes before the reply subject and
	// does not decode as version 2's: the reply must be found all the same.
	body := `{"v":1,"session":"` + uuid.NewString() + `","op":"verify","cache_len":0,"tokens":[1],"drafts":[2],"q":[{"ids":[2],"probs":[1]}],"reply":"` + inbox + `"}`
	if err := c.nc.Publish(protocol.Subjects{}.Stage("target", 0), []byte(body)); err != nil {
		t.Fatal(err)
	}
	resp, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no answer to a step of version 1: %v", err)
	}
	checkErrorReply(t, replyOf(t, resp), "version 1, this build speaks version 2 (run one draftbench version on the controller and every worker)")
}
