package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/draftbench/draftbench/pkg/cli"
	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/natsrv/testcerts"
)

// TestAgentRefusedCredentials: a server that refuses the worker's token
// ends the worker with one clear error, instead of retrying for ever.
func TestAgentRefusedCredentials(t *testing.T) {
	srv, err := natsrv.Start(natsrv.Options{Token: "right"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	for _, tc := range []struct{ name, token, want string }{
		{"wrong token", "wrong", " refused the token given by --token: it is not the token the server was started with (nats: Authorization Violation)"},
		{"no token", "", " refused this worker: give its --token (or $DRAFTBENCH_NATS_TOKEN), --nkey or --creds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &cli.Program{Name: "worker", Commands: []*cli.Command{agentCmd()}}
			var out, errb bytes.Buffer
			done := make(chan int, 1)
			go func() {
				done <- p.Run([]string{"agent", "--nats", srv.ClientURL(), "--token", tc.token, "--cpu-devices", "1", "--name", "refused"},
					&out, &errb, func(string) string { return "" })
			}()
			select {
			case code := <-done:
				want := "worker agent: error: the NATS server at " + srv.ClientURL() + tc.want
				if code != 1 || !strings.Contains(errb.String(), want) {
					t.Errorf("exit %d, stderr:\n%s\nwant 1 and %q", code, errb.String(), want)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the worker still runs 30 s after the server refused it")
			}
		})
	}
}

// TestAgentTLSNotTrusted: a server whose certificate the worker cannot
// verify will not be trusted at the next try either: the worker ends at
// once, saying which flag it needs.
func TestAgentTLSNotTrusted(t *testing.T) {
	c := testcerts.Write(t, t.TempDir())
	srv, err := natsrv.Start(natsrv.Options{Token: "t", TLS: &natsrv.TLS{CertFile: c.Cert, KeyFile: c.Key}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	p := &cli.Program{Name: "worker", Commands: []*cli.Command{agentCmd()}}
	var out, errb bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- p.Run([]string{"agent", "--nats", srv.ClientURL(), "--token", "t", "--cpu-devices", "1", "--name", "untrusting"},
			&out, &errb, func(string) string { return "" })
	}()
	select {
	case code := <-done:
		want := "worker agent: error: TLS: the certificate of the NATS server at " + srv.ClientURL() + " is not trusted: give --tls-ca with the CA that signed it ("
		if code != 1 || !strings.Contains(errb.String(), want) {
			t.Errorf("exit %d, stderr:\n%s\nwant 1 and %q", code, errb.String(), want)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the worker still runs 30 s after the server's certificate was not trusted")
	}
}
