package natsrv

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func start(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func TestStartDefaults(t *testing.T) {
	s := start(t, Options{})
	if u := s.ClientURL(); !strings.HasPrefix(u, "nats://127.0.0.1:") || strings.HasSuffix(u, ":4222") || strings.HasSuffix(u, ":-1") {
		t.Errorf("client URL %q: want loopback on a random port", u)
	}
	nc, err := Connect(s.ClientURL(), ConnectOptions{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if got := nc.MaxPayload(); got != 1<<20 {
		t.Errorf("max payload %d, want the server default of 1 MiB", got)
	}
	resp, err := func() (*nats.Msg, error) {
		sub, err := nc.Subscribe("echo", func(m *nats.Msg) { m.Respond(m.Data) })
		if err != nil {
			return nil, err
		}
		defer sub.Unsubscribe()
		return nc.Request("echo", []byte("ping"), 5*time.Second)
	}()
	if err != nil || string(resp.Data) != "ping" {
		t.Fatalf("request/reply: %v %v", resp, err)
	}

	// JetStream is on: a stream takes a message and keeps it.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RESULTS", Subjects: []string{"draftbench.results.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "draftbench.results.j.requests", []byte("r1")); err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, "RESULTS")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := stream.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Errorf("stream holds %v messages (%v), want 1", info.State.Msgs, err)
	}
}

func TestMaxPayload(t *testing.T) {
	s := start(t, Options{MaxPayload: 1024})
	nc, err := Connect(s.ClientURL(), ConnectOptions{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if got := nc.MaxPayload(); got != 1024 {
		t.Errorf("max payload %d, want 1024", got)
	}
	if err := nc.Publish("x", make([]byte, 1025)); !errors.Is(err, nats.ErrMaxPayload) {
		t.Errorf("publishing 1025 bytes: %v, want ErrMaxPayload", err)
	}
}

func TestTokenAuth(t *testing.T) {
	s := start(t, Options{Token: "s3cret"})
	cases := []struct {
		name  string
		token string
		ok    bool
	}{
		{"right token", "s3cret", true},
		{"wrong token", "guess", false},
		{"no token", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := Connect(s.ClientURL(), ConnectOptions{Name: "test", Token: tc.token, MaxReconnects: -1})
			if tc.ok != (err == nil) {
				t.Errorf("connect: %v, want success %v", err, tc.ok)
			}
			if err == nil {
				nc.Close()
			} else if !strings.Contains(err.Error(), s.ClientURL()) {
				t.Errorf("the error %q does not name the server", err)
			}
		})
	}
}

func TestStartRefuses(t *testing.T) {
	cases := []struct {
		name string
		opts Options
		want string
	}{
		{"all interfaces without a token", Options{Host: "0.0.0.0"}, "refusing to listen on 0.0.0.0 without authentication"},
		{"a LAN address without a token", Options{Host: "192.168.1.10"}, "refusing to listen on 192.168.1.10"},
		{"IPv6 any without a token", Options{Host: "::"}, "refusing to listen on ::"},
		{"negative port", Options{Port: -5}, "port -5"},
		{"negative max payload", Options{MaxPayload: -1}, "max payload -1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Start(tc.opts)
			if err == nil {
				s.Shutdown()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q, want %q", err, tc.want)
			}
		})
	}
}

func TestLoopbackNames(t *testing.T) {
	cases := []struct {
		host string
		want bool
	}{
		{"127.0.0.1", true}, {"127.1.2.3", true}, {"::1", true}, {"localhost", true},
		{"0.0.0.0", false}, {"", false}, {"10.0.0.1", false}, {"example.com", false},
	}
	for _, tc := range cases {
		t.Run(tc.host, func(t *testing.T) {
			if got := loopback(tc.host); got != tc.want {
				t.Errorf("loopback(%q) = %v, want %v", tc.host, got, tc.want)
			}
		})
	}
}

func TestPortInUse(t *testing.T) {
	s := start(t, Options{})
	u, err := url.Parse(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	_, err = Start(Options{Port: port})
	if err == nil {
		t.Fatal("a second server started on a port in use")
	}
	if !strings.Contains(err.Error(), "starting the server on "+u.Host) || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("the error %q does not say what went wrong where", err)
	}
}

func TestStoreDir(t *testing.T) {
	t.Run("temporary store is removed", func(t *testing.T) {
		s, err := Start(Options{})
		if err != nil {
			t.Fatal(err)
		}
		dir := s.StoreDir()
		if _, err := os.Stat(dir); err != nil {
			t.Fatalf("store %s: %v", dir, err)
		}
		s.Shutdown()
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("store %s left after shutdown: %v", dir, err)
		}
	})
	t.Run("given store is kept", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "js")
		s, err := Start(Options{StoreDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		s.Shutdown()
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("store %s: %v", dir, err)
		}
	})
}

func TestLogsGoToHclog(t *testing.T) {
	var buf bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Debug})
	s := start(t, Options{Logger: log, ServerName: "logged"})
	nc, err := Connect(s.ClientURL(), ConnectOptions{Name: "test", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	s.Shutdown() // the server's goroutines write to buf until then
	if out := buf.String(); !strings.Contains(out, "nats: ") || !strings.Contains(out, "Server is ready") {
		t.Errorf("server log lines not in hclog output:\n%s", out)
	}
}

func TestConnectRejectsTwoCredentials(t *testing.T) {
	if _, err := Connect("nats://127.0.0.1:1", ConnectOptions{Token: "a", CredsFile: "b"}); err == nil || !strings.Contains(err.Error(), "at most one of") {
		t.Errorf("got %v", err)
	}
}
