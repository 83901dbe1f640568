package natsrv

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/natsrv/testcerts"
	"github.com/draftbench/draftbench/pkg/protocol"
)

// delivered publishes each subject on pub, then a sentinel that sub is
// allowed to get, and reports which subjects sub received before the
// sentinel. The server keeps one publisher's order towards one subscriber,
// so whatever was not received by then was dropped.
func delivered(t *testing.T, pub, sub *nats.Conn, subjects []string) map[string]bool {
	t.Helper()
	const sentinel = "draftbench.stage.sentinel.0"
	// One channel for every subscription: the connection's reader fills it
	// in the order the server sent, which per-subscription handlers would not keep.
	got := make(chan *nats.Msg, len(subjects)+1)
	for _, s := range append(subjects, sentinel) {
		sb, err := sub.ChanSubscribe(s, got)
		if err != nil {
			t.Fatal(err)
		}
		defer sb.Unsubscribe()
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, s := range subjects {
		if err := pub.Publish(s, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Publish(sentinel, []byte("end")); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-got:
			if m.Subject == sentinel {
				return out
			}
			out[m.Subject] = true
		case <-timeout:
			t.Fatal("the sentinel never arrived")
		}
	}
}

func TestRolePermissions(t *testing.T) {
	dir := t.TempDir()
	ctlKey, ctlSeed := testcerts.WriteNKey(t, dir, "controller")
	wrkKey, wrkSeed := testcerts.WriteNKey(t, dir, "worker")
	s := start(t, Options{Users: []User{
		{NKey: ctlKey, Role: RoleController},
		{NKey: wrkKey, Role: RoleWorker},
		{Name: "agent-2", Password: "pw", Role: RoleWorker},
	}})
	connect := func(o ConnectOptions) *nats.Conn {
		t.Helper()
		o.Name = "test"
		nc, err := Connect(s.ClientURL(), o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	ctl := connect(ConnectOptions{NKeySeedFile: ctlSeed})
	wrk := connect(ConnectOptions{NKeySeedFile: wrkSeed})
	var subj protocol.Subjects
	w := "0b7c2f7e-5b7e-4c3a-9d41-3c1c6a0f1d2e"
	mayPublish := map[string]bool{
		subj.WorkersRegister():                 true,
		subj.WorkerHeartbeat(w):                true,
		subj.WorkerStages(w):                   true,
		subj.Stage("target-1", 1):              true,
		subj.GPU("host-a", 0):                  true,
		"_INBOX.abc.1":                         true,
		subj.WorkerAssign(w):                   false,
		subj.WorkerRelease(w):                  false,
		subj.JobsSubmit():                      false,
		subj.JobCancel(w):                      false,
		subj.ResultsRequests(w):                false,
		"$JS.API.STREAM.DELETE.DRAFTBENCH_RES": false,
	}
	var subjects []string
	for s := range mayPublish {
		subjects = append(subjects, s)
	}
	t.Run("worker publishes", func(t *testing.T) {
		got := delivered(t, wrk, ctl, subjects)
		for _, s := range subjects {
			if got[s] != mayPublish[s] {
				t.Errorf("a worker publishing on %s: delivered %v, want %v", s, got[s], mayPublish[s])
			}
		}
	})
	t.Run("controller publishes", func(t *testing.T) {
		got := delivered(t, ctl, connect(ConnectOptions{NKeySeedFile: ctlSeed}), subjects)
		for _, s := range subjects {
			if !got[s] {
				t.Errorf("the controller could not publish on %s", s)
			}
		}
	})
	t.Run("worker subscribes", func(t *testing.T) {
		want := map[string]bool{subj.WorkerAssign(w): true, subj.WorkerRelease(w): true, subj.Stage("x", 0): true,
			subj.WorkerGPURead(w): true, subj.JobsSubmit(): false, subj.ResultsRequests(w): false, subj.WorkerHeartbeat(w): false}
		var list []string
		for s := range want {
			list = append(list, s)
		}
		got := delivered(t, ctl, wrk, list)
		for _, s := range list {
			if got[s] != want[s] {
				t.Errorf("a worker subscribed to %s: received %v, want %v", s, got[s], want[s])
			}
		}
	})
	t.Run("password user has its role", func(t *testing.T) {
		pw, err := nats.Connect(s.ClientURL(), nats.UserInfo("agent-2", "pw"))
		if err != nil {
			t.Fatal(err)
		}
		defer pw.Close()
		got := delivered(t, pw, ctl, []string{subj.WorkerAssign(w), subj.WorkersRegister()})
		if got[subj.WorkerAssign(w)] || !got[subj.WorkersRegister()] {
			t.Errorf("password worker delivered %v; want register only", got)
		}
	})
	t.Run("unknown keys are refused", func(t *testing.T) {
		_, stranger := testcerts.WriteNKey(t, dir, "stranger")
		if nc, err := Connect(s.ClientURL(), ConnectOptions{Name: "stranger", NKeySeedFile: stranger}); err == nil {
			nc.Close()
			t.Fatal("a client with an unlisted NKey connected")
		}
		if nc, err := Connect(s.ClientURL(), ConnectOptions{Name: "anonymous"}); err == nil {
			nc.Close()
			t.Fatal("a client without credentials connected")
		}
	})
}

func TestPermissionsFollowThePrefix(t *testing.T) {
	subj, err := protocol.NewSubjects("acme.bench")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Permissions(RoleWorker, subj)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range append(p.Publish.Allow, p.Subscribe.Allow...) {
		if !strings.HasPrefix(s, "acme.bench.") && s != inboxPrefix {
			t.Errorf("worker permission %q is outside the prefix acme.bench", s)
		}
	}
	if p, err := Permissions(RoleController, subj); err != nil || p != nil {
		t.Errorf("controller permissions %+v, %v: want unrestricted", p, err)
	}
	if _, err := Permissions("admin", subj); err == nil || !strings.Contains(err.Error(), `"admin"`) {
		t.Errorf("an unknown role: %v", err)
	}
}

// writeCerts writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all signed by the CA, as PEM files in dir.
func writeCerts(t *testing.T, dir string) (ca, cert, key, clientCert, clientKey string) {
	c := testcerts.Write(t, dir)
	return c.CA, c.Cert, c.Key, c.ClientCert, c.ClientKey
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key, ccert, ckey := writeCerts(t, dir)
	t.Run("server TLS", func(t *testing.T) {
		s := start(t, Options{Token: "t", TLS: &TLS{CertFile: cert, KeyFile: key}})
		if !strings.HasPrefix(s.ClientURL(), "tls://") {
			t.Errorf("client URL %q: want tls://", s.ClientURL())
		}
		cases := []struct {
			name string
			opts ConnectOptions
			ok   bool
		}{
			{"trusted CA", ConnectOptions{Token: "t", CAFile: ca}, true},
			{"unknown CA", ConnectOptions{Token: "t"}, false},
			{"trusted CA, wrong token", ConnectOptions{Token: "u", CAFile: ca}, false},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				nc, err := Connect(s.ClientURL(), tc.opts)
				if (err == nil) != tc.ok {
					t.Fatalf("connect: %v, want success %v", err, tc.ok)
				}
				if err == nil {
					if !nc.TLSRequired() {
						t.Error("connected without TLS")
					}
					nc.Close()
				}
			})
		}
	})
	t.Run("client certificates", func(t *testing.T) {
		s := start(t, Options{Token: "t", TLS: &TLS{CertFile: cert, KeyFile: key, CAFile: ca}})
		if nc, err := Connect(s.ClientURL(), ConnectOptions{Token: "t", CAFile: ca}); err == nil {
			nc.Close()
			t.Fatal("a client without a certificate connected to a server that verifies clients")
		}
		nc, err := Connect(s.ClientURL(), ConnectOptions{Token: "t", CAFile: ca, CertFile: ccert, KeyFile: ckey})
		if err != nil {
			t.Fatal(err)
		}
		nc.Close()
	})
	// controller serve's own connection: on all interfaces with a
	// certificate that names 127.0.0.1 only, verifying client certificates,
	// the embedding process still connects (in process, with its token),
	// as it could not through tls://0.0.0.0.
	t.Run("in process", func(t *testing.T) {
		s := start(t, Options{Host: "0.0.0.0", Token: "t", TLS: &TLS{CertFile: cert, KeyFile: key, CAFile: ca}})
		if nc, err := Connect(s.ClientURL(), ConnectOptions{Token: "t", CAFile: ca, CertFile: ccert, KeyFile: ckey}); err == nil {
			nc.Close()
			t.Fatalf("%s verified for a certificate naming 127.0.0.1 only: the case this test stands for is gone", s.ClientURL())
		}
		nc, err := Connect(s.ClientURL(), ConnectOptions{Token: "t", InProcess: s})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Request("$SYS.NOPE", nil, 50*time.Millisecond); err == nil || strings.Contains(err.Error(), "tls") {
			t.Errorf("a request on the in-process connection: %v, want no responders", err)
		}
		nc.Close()
	})
}

func TestSecureOptionsRefused(t *testing.T) {
	dir := t.TempDir()
	pub, _ := testcerts.WriteNKey(t, dir, "u")
	cases := []struct {
		name string
		opts Options
		want string
	}{
		{"token and users", Options{Token: "t", Users: []User{{NKey: pub, Role: RoleWorker}}}, "a token or users, not both"},
		{"seed instead of public key", Options{Users: []User{{NKey: "SUAM", Role: RoleWorker}}}, "not a public user NKey"},
		{"nkey and password", Options{Users: []User{{NKey: pub, Name: "a", Password: "b", Role: RoleWorker}}}, "not both"},
		{"user without credentials", Options{Users: []User{{Name: "a", Role: RoleWorker}}}, "give an NKey, or a name and a password"},
		{"unknown role", Options{Users: []User{{NKey: pub, Role: "root"}}}, `role "root"`},
		{"same key twice", Options{Users: []User{{NKey: pub, Role: RoleWorker}, {NKey: pub, Role: RoleController}}}, "listed twice"},
		{"TLS without a key", Options{TLS: &TLS{CertFile: "c.pem"}}, "certificate and a key"},
		{"TLS with missing files", Options{TLS: &TLS{CertFile: filepath.Join(dir, "no.pem"), KeyFile: filepath.Join(dir, "no-key.pem")}}, "no.pem"},
		{"cluster without a name", Options{Cluster: &Cluster{}}, "give the cluster a name"},
		{"cluster without routes", Options{Cluster: &Cluster{Name: "c"}}, "list the members' route URLs"},
		{"routes on all interfaces without auth", Options{Cluster: &Cluster{Name: "c", Host: "0.0.0.0", Routes: []string{"nats://10.0.0.2:6222"}}}, "refusing to listen for routes on 0.0.0.0"},
		{"route password without a user", Options{Cluster: &Cluster{Name: "c", Password: "p", Routes: []string{"nats://10.0.0.2:6222"}}}, "both a route username and a password"},
		{"bad route", Options{Cluster: &Cluster{Name: "c", Routes: []string{"::nope"}}}, `route "::nope"`},
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
	t.Run("users allow other addresses", func(t *testing.T) {
		s := start(t, Options{Host: "0.0.0.0", Users: []User{{NKey: pub, Role: RoleController}}})
		if !strings.HasPrefix(s.ClientURL(), "nats://0.0.0.0:") {
			t.Errorf("client URL %q", s.ClientURL())
		}
	})
}

func TestConnectRefusesMixedCredentials(t *testing.T) {
	cases := []struct {
		name string
		opts ConnectOptions
		want string
	}{
		{"token and nkey", ConnectOptions{Token: "t", NKeySeedFile: "u.nk"}, "at most one of"},
		{"creds and nkey", ConnectOptions{CredsFile: "c", NKeySeedFile: "u.nk"}, "at most one of"},
		{"cert without key", ConnectOptions{CertFile: "c.pem"}, "needs its key file"},
		{"missing seed file", ConnectOptions{NKeySeedFile: "/nonexistent/u.nk"}, "/nonexistent/u.nk"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := Connect("nats://127.0.0.1:1", tc.opts)
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q, want %q", err, tc.want)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	cases := []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://worker:s3cret@nats:4222", "nats://worker:xxxxx@nats:4222"},
		{"nats://s3cret@nats:4222", "nats://xxxxx@nats:4222"},
		{"nats://a:p1@h1:4222,nats://h2:4222, tls://b:p2@h3:4222", "nats://a:xxxxx@h1:4222,nats://h2:4222,tls://b:xxxxx@h3:4222"},
		{"not a url", "not a url"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			if got := Redact(tc.in); got != tc.want {
				t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
