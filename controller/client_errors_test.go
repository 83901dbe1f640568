package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/draftbench/draftbench/pkg/natsrv/testcerts"
)

// TestClientWithWorkerRole: a client command run with a worker-role NKey
// fails at once, saying which subject the server refused and which role the
// credentials need, instead of waiting for the request's timeout and
// blaming a missing controller.
func TestClientWithWorkerRole(t *testing.T) {
	dir := t.TempDir()
	ctlKey, ctlSeed := testcerts.WriteNKey(t, dir, "ctl")
	wrkKey, wrkSeed := testcerts.WriteNKey(t, dir, "worker")
	users, err := json.Marshal(map[string]any{"users": []map[string]string{
		{"nkey": ctlKey, "role": "controller"}, {"nkey": wrkKey, "role": "worker"}}})
	if err != nil {
		t.Fatal(err)
	}
	usersFile := filepath.Join(dir, "users.json")
	if err := os.WriteFile(usersFile, users, 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServeWith(t, serveOptions{listen: "127.0.0.1:0", store: t.TempDir(), users: usersFile, nkey: ctlSeed})

	if res := invoke("status", "--nats", s.url, "--nkey", ctlSeed); res.code != 0 {
		t.Fatalf("status with the controller's key: exit %d: %s", res.code, res.stderr)
	}
	const need = `: these credentials lack the controller role, which the client commands (submit, tail, status, cancel) need: ` +
		`connect as a user whose entry in serve's --users file has "role": "controller" (with docker/nats.conf, the controller user)` + "\n"
	for _, tc := range []struct {
		args    []string
		subject string
	}{
		{[]string{"submit", "testdata/serve-job.hcl", "-var", "target=/t", "-var", "drafter=/d", "-var", "out=/o"}, "draftbench.jobs.submit"},
		{[]string{"status"}, "draftbench.jobs.list"},
		{[]string{"status", jobA}, "draftbench.jobs." + jobA + ".status"},
		{[]string{"cancel", jobA}, "draftbench.jobs." + jobA + ".cancel"},
	} {
		t.Run(strings.Join(tc.args[:min(2, len(tc.args))], " "), func(t *testing.T) {
			start := time.Now()
			res := invoke(append(tc.args, "--nats", s.url, "--nkey", wrkSeed)...)
			took := time.Since(start)
			want := "controller " + tc.args[0] + ": error: the NATS server does not let these credentials publish to " + tc.subject + " (permissions violation)" + need
			if res.code != 1 || res.stderr != want || res.stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant 1 and:\n%s", res.code, res.stdout, res.stderr, want)
			}
			if took > 5*time.Second {
				t.Errorf("the refusal took %s: it should not wait for the request's timeout", took)
			}
		})
	}
}

// TestClientTLSProblems: a client that does not trust the server's
// certificate, or has none of its own for a server that asks for one, is
// told which flag to give rather than that no server answered.
func TestClientTLSProblems(t *testing.T) {
	c := testcerts.Write(t, t.TempDir())
	s := startServeWith(t, serveOptions{listen: "127.0.0.1:0", store: t.TempDir(), token: "t0k",
		serverCert: c.Cert, serverKey: c.Key, clientCA: c.CA})
	url := "tls://127.0.0.1:" + s.url[strings.LastIndex(s.url, ":")+1:]
	other := testcerts.Write(t, t.TempDir()).CA // a CA that signed none of c's certificates
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no CA", nil, "TLS: the certificate of the NATS server at " + url + " is not trusted: give --tls-ca with the CA that signed it ("},
		{"another CA", []string{"--tls-ca", other}, "TLS: the certificate of the NATS server at " + url + " is not trusted: --tls-ca " + other + " did not sign it; give the CA that did ("},
		{"no client certificate", []string{"--tls-ca", c.CA}, "the NATS server at " + url + " asks for a client certificate: give --tls-cert and --tls-key ("},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := invoke(append([]string{"status", "--nats", url, "--token", "t0k"}, tc.args...)...)
			want := "controller status: error: " + tc.want
			if res.code != 1 || !strings.HasPrefix(res.stderr, want) || strings.Count(res.stderr, "\n") != 1 {
				t.Errorf("exit %d, stderr %q; want 1 and one line starting %q", res.code, res.stderr, want)
			}
		})
	}
}
