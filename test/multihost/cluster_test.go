package multihost

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/draftbench/draftbench/pkg/jobstore"
	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/natsrv/testports"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/report"
)

// TestNATSCluster: three NATS servers in a cluster, the controller and the
// workers given every server's URL; the busiest server stops mid-job, the
// job still completes, and its results, kept three times by JetStream, are
// all there.
func TestNATSCluster(t *testing.T) {
	l := newLab(t, 2)
	servers := startNATSCluster(t, l, 3)
	var local, urls [2][]string // [0]: from the root namespace, [1]: from host i
	for _, s := range servers {
		local[0] = append(local[0], fmt.Sprintf("nats://127.0.0.1:%d", s.port))
	}
	ctlURL := strings.Join(local[0], ",")
	l.start("controller", 0, "controller", "serve", "--nats", ctlURL, "--replicas", "3", "--log-level", "debug")
	hosts := []string{"host-a", "host-b"}
	for i, h := range hosts {
		for _, s := range servers {
			urls[i] = append(urls[i], fmt.Sprintf("nats://%s:%d", l.natsAddr(i+1), s.port))
		}
		l.start("worker-"+h, i+1, "worker", "--nats", strings.Join(urls[i], ","), "--cpu-devices", "2", "--name", h,
			"--threads", "1", "--log-level", "debug")
	}
	c := l.client(ctlURL)
	waitWorkers(t, c, time.Minute, hosts...)

	out := t.TempDir()
	const prompts = 40
	id := submit(t, c, "models="+modelsRO, "out="+out, fmt.Sprint("prompts=", prompts), "tokens=48")
	waitRequests(t, filepath.Join(out, report.FileRequests), 4, time.Minute)
	busiest := servers[0]
	for _, s := range servers[1:] {
		if s.srv.Clients() > busiest.srv.Clients() {
			busiest = s
		}
	}
	t.Logf("stopping %s, which holds %d of the clients", busiest.name, busiest.srv.Clients())
	busiest.stop()

	st := follow(t, c, id, 3*time.Minute)
	if st.State != protocol.JobSucceeded {
		t.Fatalf("job %s after losing %s: %s", st.State, busiest.name, st.Error)
	}
	recs := readRequests(t, out)
	for _, r := range recs {
		if r.Failed() {
			t.Errorf("%s request %d failed: %s", r.Mode, r.Index, r.Error)
		}
	}
	if len(recs) != 2*prompts {
		t.Errorf("%d requests recorded, want %d", len(recs), 2*prompts)
	}

	// The results stream kept three copies, and the two left replay the
	// whole job: every request and the summary.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js, err := jetstream.New(clientConn(t, l, ctlURL))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, jobstore.StreamName(protocol.Subjects{}))
	if err != nil {
		t.Fatal(err)
	}
	if n := stream.CachedInfo().Config.Replicas; n != 3 {
		t.Errorf("the results stream has %d replicas, want 3", n)
	}
	var requests, summaries int
	if _, err := jobstore.Follow(ctx, js, protocol.Subjects{}, id, jobstore.FollowOptions{UntilStored: true}, func(ev jobstore.Event) error {
		if ev.Request != nil {
			requests++
		}
		if ev.Summary != nil {
			summaries++
		}
		return nil
	}); err != nil {
		t.Fatalf("replaying the job from the cluster: %v", err)
	}
	if requests != 2*prompts || summaries != 1 {
		t.Errorf("replay holds %d requests and %d summaries, want %d and 1", requests, summaries, 2*prompts)
	}
}

// natsNode is one server of the test's NATS cluster.
type natsNode struct {
	name    string
	port    int
	srv     *natsrv.Server
	stopped bool
}

func (n *natsNode) stop() {
	if !n.stopped {
		n.stopped = true
		n.srv.Shutdown()
	}
}

// startNATSCluster starts n clustered servers with JetStream in this
// process, listening for clients on every address (the hosts reach them
// through their links) with the lab's token, routes on loopback.
func startNATSCluster(t *testing.T, l *lab, n int) []*natsNode {
	t.Helper()
	var routes []string
	routePorts := make([]int, n)
	for i := range routePorts {
		routePorts[i] = testports.Route(t) // dialled by the others before it listens
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", routePorts[i]))
	}
	var nodes []*natsNode
	for i := range n {
		name := fmt.Sprintf("nats-%d", i+1)
		f, err := os.Create(filepath.Join(l.dir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		node := &natsNode{name: name, port: freePort(t)}
		node.srv, err = natsrv.Start(natsrv.Options{ServerName: name, Host: "0.0.0.0", Port: node.port, Token: l.token,
			StoreDir: t.TempDir(), Cluster: &natsrv.Cluster{Name: "draftbench", Port: routePorts[i], Routes: routes},
			Logger: hclog.New(&hclog.LoggerOptions{Output: f, Level: hclog.Info})})
		if err != nil {
			t.Fatalf("starting %s: %v", name, err)
		}
		t.Cleanup(node.stop)
		nodes = append(nodes, node)
	}
	// JetStream answers once the servers have elected a meta leader.
	var all []string
	for _, node := range nodes {
		all = append(all, fmt.Sprintf("nats://127.0.0.1:%d", node.port))
	}
	js, err := jetstream.New(clientConn(t, l, strings.Join(all, ",")))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		// Without a leader a request goes unanswered: each try has its own deadline.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return nodes
		}
		if time.Now().After(deadline) {
			t.Fatalf("the NATS cluster's JetStream did not answer within a minute: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
