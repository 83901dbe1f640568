package stage

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/backend/cpu"
	"github.com/draftbench/draftbench/pkg/model"
	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/protocol"
)

// The golden tiny models and the tokens Hugging Face transformers generates
// with them are shared by the whole repository (scripts/golden).
const goldenDir = "../../testdata/golden"

type golden struct {
	Prompts []struct {
		Tokens []int `json:"tokens"`
		Greedy []int `json:"greedy"`
	} `json:"prompts"`
}

func readGolden(t *testing.T) *golden {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(goldenDir, "qwen3.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Prompts) == 0 {
		t.Fatal("qwen3.json holds no prompts")
	}
	return &g
}

// shards caches loaded shards: the weights are read-only, and each stage
// keeps its own per-session caches.
var shards = struct {
	sync.Mutex
	m map[[2]int]*model.Model
}{m: map[[2]int]*model.Model{}}

func shard(t *testing.T, first, last int) *model.Model {
	t.Helper()
	shards.Lock()
	defer shards.Unlock()
	if m, ok := shards.m[[2]int{first, last}]; ok {
		return m
	}
	m, err := model.Load(filepath.Join(goldenDir, "models", "qwen3"), cpu.New(1), model.Options{First: first, Last: last})
	if err != nil {
		t.Fatal(err)
	}
	shards.m[[2]int{first, last}] = m
	return m
}

// cluster is an embedded NATS server with stages on it and a step client.
type cluster struct {
	url    string
	client *protocol.StepClient
	nc     *nats.Conn
}

func newCluster(t *testing.T, maxPayload int32) *cluster {
	t.Helper()
	srv, err := natsrv.Start(natsrv.Options{MaxPayload: maxPayload})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	c := &cluster{url: srv.ClientURL()}
	c.nc = c.connect(t, "driver")
	if c.client, err = protocol.NewStepClient(c.nc); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *cluster) connect(t *testing.T, name string) *nats.Conn {
	t.Helper()
	nc, err := natsrv.Connect(c.url, natsrv.ConnectOptions{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// pipeline starts one stage per layer range of the qwen3 golden model under
// instance and returns them; tweak adjusts each stage's config.
func (c *cluster) pipeline(t *testing.T, instance string, ranges [][2]int, tweak func(*Config)) []*Stage {
	t.Helper()
	stages := make([]*Stage, len(ranges))
	for k, r := range ranges {
		cfg := Config{
			Model:    shard(t, r[0], r[1]),
			Conn:     c.connect(t, fmt.Sprintf("stage %s/%d", instance, k)),
			Instance: instance,
			Index:    k,
			Count:    len(ranges),
		}
		if tweak != nil {
			tweak(&cfg)
		}
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- s.Serve(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-errc; err != nil {
				t.Errorf("stage %d: %v", k, err)
			}
		})
		select {
		case <-s.Ready():
		case err := <-errc:
			t.Fatalf("stage %d stopped before it was ready: %v", k, err)
		}
		stages[k] = s
	}
	return stages
}

func (c *cluster) step(t *testing.T, instance string, req *protocol.StepRequest) (*protocol.StepReply, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.client.Step(ctx, protocol.Subjects{}.Stage(instance, 0), req)
}

func (c *cluster) mustStep(t *testing.T, instance string, req *protocol.StepRequest) *protocol.StepReply {
	t.Helper()
	rep, err := c.step(t, instance, req)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// generate runs prefill and decode steps greedily for n tokens. It does not
// stop the test, so sessions can run on their own goroutines.
func (c *cluster) generate(instance string, session uuid.UUID, prompt []int, n int) ([]int, error) {
	var out []int
	req := &protocol.StepRequest{Session: session, Op: protocol.OpPrefill, Tokens: prompt}
	for len(out) < n {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		rep, err := c.client.Step(ctx, protocol.Subjects{}.Stage(instance, 0), req)
		cancel()
		if err != nil {
			return out, err
		}
		if len(rep.Tokens) != 1 {
			return out, fmt.Errorf("%s step returned %d tokens, want 1", req.Op, len(rep.Tokens))
		}
		if want := len(prompt) + len(out); rep.CacheLen != want {
			return out, fmt.Errorf("after %d tokens the last stage holds %d positions, want %d", len(out), rep.CacheLen, want)
		}
		out = append(out, rep.Tokens[0])
		req = &protocol.StepRequest{Session: session, Op: protocol.OpDecode, CacheLen: rep.CacheLen, Tokens: rep.Tokens}
	}
	return out, nil
}

// mustGenerate is generate for the test goroutine.
func (c *cluster) mustGenerate(t *testing.T, instance string, session uuid.UUID, prompt []int, n int) []int {
	t.Helper()
	out, err := c.generate(instance, session, prompt, n)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPipelineMatchesGoldenGreedy(t *testing.T) {
	g := readGolden(t)
	cases := []struct {
		name   string
		ranges [][2]int
	}{
		{"one stage", [][2]int{{0, 3}}},
		{"two stages", [][2]int{{0, 1}, {1, 3}}},
		{"three stages", [][2]int{{0, 1}, {1, 2}, {2, 3}}},
	}
	c := newCluster(t, 0)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			instance := strings.ReplaceAll(tc.name, " ", "-")
			stages := c.pipeline(t, instance, tc.ranges, nil)
			for i, p := range g.Prompts {
				session := uuid.New()
				got := c.mustGenerate(t, instance, session, p.Tokens, len(p.Greedy))
				if !slices.Equal(got, p.Greedy) {
					t.Errorf("prompt %d: got %v, want %v", i, got, p.Greedy)
				}
				rep := c.mustStep(t, instance, &protocol.StepRequest{Session: session, Op: protocol.OpRelease})
				if rep.Op != protocol.OpRelease || rep.Stage != len(stages)-1 {
					t.Errorf("release answered by stage %d with op %q", rep.Stage, rep.Op)
				}
			}
			for k, s := range stages {
				if n := s.Sessions(); n != 0 {
					t.Errorf("stage %d holds %d sessions after every release", k, n)
				}
			}
		})
	}
}

// TestComputeTimeAccumulates checks that each stage adds its forward time.
func TestComputeTimeAccumulates(t *testing.T) {
	c := newCluster(t, 0)
	var mu sync.Mutex
	var total time.Duration
	c.pipeline(t, "timed", [][2]int{{0, 1}, {1, 3}}, func(cfg *Config) {
		cfg.OnForward = func(f ForwardInfo) {
			mu.Lock()
			total += f.Compute
			mu.Unlock()
		}
	})
	rep := c.mustStep(t, "timed", &protocol.StepRequest{Session: uuid.New(), Op: protocol.OpPrefill, Tokens: []int{1, 2, 3}})
	mu.Lock()
	defer mu.Unlock()
	if rep.Compute() != total || total <= 0 {
		t.Errorf("reply says %v of compute, the two stages measured %v", rep.Compute(), total)
	}
}
