package protocol

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// connect starts an in-process NATS server (not through pkg/natsrv, which
// imports this package) and connects to it.
func connect(t *testing.T, maxPayload int32) *nats.Conn {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, MaxPayload: maxPayload, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL(), nats.Name("protocol test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// echoStage answers each step with its tokens reversed and a q per token,
// or with an error for sessions in fail; it sends the reply through frames
// as a stage does.
func echoStage(t *testing.T, nc *nats.Conn, subject string, fail uuid.UUID) {
	t.Helper()
	a := NewAssembler(AssemblerOptions{})
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		f, err := a.Add(m)
		if err != nil || f == nil {
			return
		}
		var req StepRequest
		if err := Decode(f.Control, &req); err != nil {
			t.Errorf("echo stage: %v", err)
			return
		}
		rep := &StepReply{Session: req.Session, Op: req.Op, Tokens: slices.Clone(req.Tokens), CacheLen: req.CacheLen + len(req.Tokens)}
		slices.Reverse(rep.Tokens)
		for _, tok := range rep.Tokens {
			rep.Q = append(rep.Q, Sparse{IDs: []int32{int32(tok), 1, 2, 3, 4, 5, 6, 7}, Probs: []float32{0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1}})
		}
		if req.Session == fail {
			rep = &StepReply{Session: req.Session, Stage: 1, Error: "stage echo/1: out of memory"}
		}
		if err := Send(nc, req.Reply, req.Session.String(), rep, nil); err != nil {
			t.Errorf("echo stage: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestStepClient(t *testing.T) {
	// A max_payload of 1 KiB makes the larger requests and replies travel in
	// several chunks.
	nc := connect(t, 1024)
	failing := uuid.New()
	echoStage(t, nc, "draftbench.stage.echo.0", failing)
	c, err := NewStepClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	long := make([]int, 300)
	for i := range long {
		long[i] = i
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tokens := []int{i, i + 1, i + 2}
			if i%4 == 0 {
				tokens = long
			}
			req := &StepRequest{Session: uuid.New(), Op: OpDecode, CacheLen: i, Tokens: tokens}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			rep, err := c.Step(ctx, "draftbench.stage.echo.0", req)
			if err != nil {
				t.Errorf("step %d: %v", i, err)
				return
			}
			want := slices.Clone(tokens)
			slices.Reverse(want)
			if rep.Session != req.Session || !slices.Equal(rep.Tokens, want) || rep.CacheLen != i+len(tokens) || len(rep.Q) != len(tokens) {
				t.Errorf("step %d: reply %v for %v", i, rep.Tokens, tokens)
			}
		}()
	}
	wg.Wait()

	t.Run("error reply", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rep, err := c.Step(ctx, "draftbench.stage.echo.0", &StepRequest{Session: failing, Op: OpDecode, Tokens: []int{1}})
		if err == nil || !strings.Contains(err.Error(), "stage echo/1: out of memory") || rep == nil || rep.Stage != 1 {
			t.Errorf("got %+v, %v", rep, err)
		}
	})
	t.Run("nobody answers", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := c.Step(ctx, "draftbench.stage.nobody.0", &StepRequest{Session: uuid.New(), Op: OpDecode, Tokens: []int{1}})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v, want the context's deadline", err)
		}
	})
	t.Run("invalid request", func(t *testing.T) {
		_, err := c.Step(context.Background(), "draftbench.stage.echo.0", &StepRequest{Op: OpDecode, Tokens: []int{1}})
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("got %v, want ErrInvalid", err)
		}
	})
}

// TestFramesPassARealServer publishes frames through a server whose
// max_payload is small, so nats.go's own size check judges the chunking.
func TestFramesPassARealServer(t *testing.T) {
	nc := connect(t, 512)
	sub, err := nc.SubscribeSync("frames")
	if err != nil {
		t.Fatal(err)
	}
	tensor := &Tensor{Shape: []int{7, 33}, Data: ramp(7 * 33)}
	msgs, err := Split("frames", "s", []byte(strings.Repeat("{", 700)), tensor, nc.MaxPayload())
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		if err := nc.PublishMsg(m); err != nil {
			t.Fatalf("chunk %d of %d: %v", i, len(msgs), err)
		}
	}
	a := NewAssembler(AssemblerOptions{})
	for i := range msgs {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		f, err := a.Add(m)
		if err != nil {
			t.Fatal(err)
		}
		if i == len(msgs)-1 && (f == nil || len(f.Control) != 700 || !slices.Equal(f.Tensor.Data, tensor.Data)) {
			t.Fatalf("frame came back as %+v", f)
		}
	}
}
