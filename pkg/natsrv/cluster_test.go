package natsrv

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/draftbench/draftbench/pkg/natsrv/testports"
)

// startCluster starts n members on loopback, each given every route URL,
// as a configuration file for a real cluster would list them.
func startCluster(t *testing.T, n int) []*Server {
	t.Helper()
	ports := make([]int, n)
	var routes []string
	for i := range ports {
		ports[i] = testports.Route(t) // dialled by the others before it listens
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	var members []*Server
	for i := range n {
		c := &Cluster{Name: "bench", Port: ports[i], Routes: routes}
		members = append(members, start(t, Options{ServerName: fmt.Sprintf("n%d", i+1), Cluster: c}))
	}
	return members
}

// waitJetStream polls until the cluster's JetStream answers through url:
// its members elect a meta leader once enough of them see each other.
func waitJetStream(t *testing.T, ctx context.Context, url string) jetstream.JetStream {
	t.Helper()
	nc, err := Connect(url, ConnectOptions{Name: "test", MaxReconnects: -1, ReconnectWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for {
		// A member without a meta leader yet leaves the request unanswered,
		// so each try gets a deadline of its own.
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.AccountInfo(actx)
		cancel()
		if err == nil {
			return js
		} else if ctx.Err() != nil {
			t.Fatalf("JetStream of the cluster never answered: %v", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// retry calls f, each time with a short deadline, until it succeeds or ctx ends.
func retry(ctx context.Context, f func(context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := f(actx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestClusterKeepsReplicatedStreams: three members, a stream with three
// replicas; one member stops and the other two still store and serve it.
func TestClusterKeepsReplicatedStreams(t *testing.T) {
	members := startCluster(t, 3)
	for i, m := range members {
		if m.ClusterURL() == "" || !strings.HasPrefix(m.ClusterURL(), "nats://127.0.0.1:") {
			t.Errorf("member %d route URL %q", i+1, m.ClusterURL())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	urls := members[0].ClientURL() + "," + members[1].ClientURL() + "," + members[2].ClientURL()
	js := waitJetStream(t, ctx, urls)
	var stream jetstream.Stream
	err := retry(ctx, func(ctx context.Context) (err error) {
		stream, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3})
		return err
	})
	if err != nil {
		t.Fatalf("creating an R3 stream: %v", err)
	}
	if got := stream.CachedInfo().Config.Replicas; got != 3 {
		t.Fatalf("stream has %d replicas, want 3", got)
	}
	for i := range 5 {
		if _, err := js.Publish(ctx, "r3.a", fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	members[2].Shutdown()

	js2 := waitJetStream(t, ctx, members[0].ClientURL()+","+members[1].ClientURL())
	// The streams whose leader stopped elect another first.
	if err := retry(ctx, func(ctx context.Context) error {
		_, err := js2.Publish(ctx, "r3.a", []byte("after"))
		return err
	}); err != nil {
		t.Fatalf("publishing with one member down: %v", err)
	}
	s, err := js2.Stream(ctx, "R3")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 6 {
		t.Errorf("the stream holds %d messages after losing a member, want 6", info.State.Msgs)
	}
	if members[0].Routes() == 0 {
		t.Error("the first member has no route left to the second")
	}
}
