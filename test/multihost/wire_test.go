package multihost

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/cluster"
	"github.com/draftbench/draftbench/pkg/jobstore"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/report"
)

// TestBadInputOnTheWire: while a job runs, every subject the controller,
// the host agents and the stages listen on gets malformed, oversized,
// wrong-version and half-framed messages, and the step replies get
// strangers for sessions nobody runs. Everything is dropped: the job
// completes with the one-process tokens and no process dies.
func TestBadInputOnTheWire(t *testing.T) {
	l, url, c, _ := twoHosts(t)
	// Long enough to be running while the bad input comes.
	vars := []string{"models=" + modelsRO, "prompts=100", "tokens=128"}
	oracle := oneProcess(t, vars...)

	// The test listens to replies on their way to the controller to learn
	// its step inbox (a random name) and to keep a real reply to replay.
	nc := clientConn(t, l, url)
	sniffed := make(chan *nats.Msg, 1)
	sniff, err := nc.Subscribe("_INBOX.>", func(m *nats.Msg) {
		if m.Header.Get(protocol.HeaderFrame) != "" {
			select {
			case sniffed <- m:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}

	out := t.TempDir()
	id := submit(t, c, append(vars, "out="+out)...)
	waitRequests(t, filepath.Join(out, report.FileRequests), 2, time.Minute)
	var reply *nats.Msg
	select {
	case reply = <-sniffed:
	case <-time.After(time.Minute):
		t.Fatal("no step reply seen on _INBOX.>")
	}
	_ = sniff.Unsubscribe()

	ws := jobWorkers(t, c, 3)
	var subj protocol.Subjects
	targets := []string{subj.WorkersRegister(), subj.JobsSubmit(), subj.JobStatus(id), subj.JobCancel(id),
		subj.JobCancel("not-a-job"), subj.WorkerHeartbeat("not-a-worker"), subj.GPU("host-a", 0),
		"draftbench.jobs.list", "draftbench.workers.list"}
	stages := map[string]bool{}
	for _, w := range ws {
		targets = append(targets, subj.WorkerHeartbeat(w.ID), subj.WorkerAssign(w.ID), subj.WorkerRelease(w.ID), subj.WorkerStages(w.ID))
		for _, st := range w.Stages {
			stages[subj.Stage(st.Instance, st.Stage)] = true
		}
	}
	for s := range stages {
		targets = append(targets, s)
	}
	inbox := reply.Subject[:strings.LastIndexByte(reply.Subject, '.')]
	targets = append(targets, inbox+".987654321", inbox+".x")

	msgs := garbage(t, nc.MaxPayload())
	var wg sync.WaitGroup
	for _, subject := range targets {
		batch := msgs
		if stages[subject] {
			batch = append(batch, stepShaped()...)
		}
		for _, m := range batch {
			m := *m
			m.Subject = subject
			if err := nc.PublishMsg(&m); err != nil {
				t.Fatalf("publishing on %s: %v", subject, err)
			}
			// Requests too, where an answer is expected: it must come
			// with an error or not at all, never a crash.
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = nc.RequestMsg(&m, 2*time.Second)
			}()
		}
		// A real reply, again, on the inbox of a step nobody waits for.
		replay := nats.NewMsg(inbox + ".123456789")
		replay.Header, replay.Data = reply.Header, reply.Data
		if err := nc.PublishMsg(replay); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	st := follow(t, c, id, 3*time.Minute)
	if st.State != protocol.JobSucceeded {
		t.Fatalf("job %s under bad input: %s", st.State, st.Error)
	}
	sameTokens(t, oracle, readRequests(t, out))
	for _, p := range l.procs {
		if !p.alive() {
			t.Errorf("%s exited: %v", p.name, p.err)
		}
		data, _ := os.ReadFile(p.log)
		if bytes.Contains(data, []byte("panic")) {
			t.Errorf("%s logged a panic", p.name)
		}
	}
	// And the cluster still takes work.
	out2 := t.TempDir()
	if st := follow(t, c, submit(t, c, "models="+modelsRO, "out="+out2), 2*time.Minute); st.State != protocol.JobSucceeded {
		t.Fatalf("next job: %s: %s", st.State, st.Error)
	}
}

// jobWorkers waits until the workers report n stages between them (their
// heartbeats carry them) and returns the workers.
func jobWorkers(t *testing.T, c *jobstore.Client, n int) []cluster.Worker {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ws, err := c.Workers(ctx)
		cancel()
		have := 0
		for _, w := range ws {
			have += len(w.Stages)
		}
		if err == nil && have == n {
			return ws
		}
		if time.Now().After(deadline) {
			t.Fatalf("the workers report %d stages, want %d (%v)", have, n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stepShaped are well-formed steps no driver sent: for sessions no stage
// holds, or with a token outside the vocabulary. Only stage subjects get
// them: on a cancel or release subject any object of version 1 is a valid
// command, not garbage.
func stepShaped() []*nats.Msg {
	return []*nats.Msg{
		{Data: []byte(`{"v":2,"op":"decode","session":"00000000-0000-0000-0000-000000000001","cache_len":5,"tokens":[1]}`)},
		{Data: []byte(`{"v":2,"op":"prefill","session":"00000000-0000-0000-0000-000000000002","tokens":[999999999]}`)},
	}
}

// garbage is the bad input every subject gets: nothing in it is a valid
// message of any type.
func garbage(t *testing.T, maxPayload int64) []*nats.Msg {
	t.Helper()
	random := func(n int) []byte {
		b := make([]byte, n)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	plain := func(data []byte) *nats.Msg { return &nats.Msg{Data: data} }
	framed := func(data []byte, h map[string]string) *nats.Msg {
		m := &nats.Msg{Data: data, Header: nats.Header{}}
		for k, v := range h {
			m.Header.Set(k, v)
		}
		return m
	}
	return []*nats.Msg{
		plain(nil),
		plain([]byte("{nope")),
		plain([]byte(`{"v":99,"op":"decode"}`)),
		plain([]byte(`{"v":"1"}`)),
		plain([]byte(`{"v":1,"reason":7}`)),
		plain([]byte(`[1,2,3]`)),
		plain(random(4096)),
		// As large as the server takes, headers included.
		plain(bytes.Repeat([]byte{'{'}, int(maxPayload)-1024)),
		// Frames that lie about themselves: a first chunk announcing a
		// huge frame, a chunk of a frame never begun, a bad tensor header.
		framed(random(1000), map[string]string{protocol.HeaderFrame: "f1", protocol.HeaderChunk: "0", protocol.HeaderChunks: "1000",
			protocol.HeaderBytes: "999999", protocol.HeaderControl: "7", protocol.HeaderDType: "f32", protocol.HeaderShape: "1,249998"}),
		framed(random(100), map[string]string{protocol.HeaderFrame: "f2", protocol.HeaderChunk: "3", protocol.HeaderChunks: "9"}),
		framed(random(7), map[string]string{protocol.HeaderFrame: "f3", protocol.HeaderChunk: "0", protocol.HeaderChunks: "1",
			protocol.HeaderBytes: "-7", protocol.HeaderControl: "x", protocol.HeaderShape: "a,b"}),
		framed(random(7), map[string]string{protocol.HeaderFrame: "f4", protocol.HeaderChunk: "0", protocol.HeaderChunks: "1",
			protocol.HeaderBytes: "7", protocol.HeaderControl: "7", protocol.HeaderDType: "bf16", protocol.HeaderShape: "1,1"}),
	}
}
