package natsrv

import (
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
)

func TestWhy(t *testing.T) {
	const url = "nats://head:4222"
	refused := fmt.Errorf("%w", nats.ErrAuthorization)
	for _, tc := range []struct {
		name      string
		err       error
		url       string
		tokenFrom string
		opts      ConnectOptions
		want      string
		permanent bool
	}{
		{"no answer", errors.New("nats: no servers available for connection"), url, "", ConnectOptions{}, "", false},
		{"no credentials", refused, url, "", ConnectOptions{}, "the NATS server at nats://head:4222 refused this client: give its --token (or $DRAFTBENCH_NATS_TOKEN), --nkey or --creds", true},
		{"a token from the flag", refused, url, "--token", ConnectOptions{Token: "x"},
			"the NATS server at nats://head:4222 refused the token given by --token: it is not the token the server was started with", true},
		{"a token from the environment", refused, url, "$DRAFTBENCH_NATS_TOKEN", ConnectOptions{Token: "x"},
			"the NATS server at nats://head:4222 refused the token given by $DRAFTBENCH_NATS_TOKEN: it is not the token the server was started with", true},
		{"an NKey", refused, url, "", ConnectOptions{NKeySeedFile: "w.seed"},
			"the NATS server at nats://head:4222 refused the NKey of w.seed: is its public key in serve's --users file (or the server's authorization block)?", true},
		{"creds", refused, url, "", ConnectOptions{CredsFile: "u.creds"}, "the NATS server at nats://head:4222 refused the credentials in u.creds", true},
		{"a password in the URL", refused, "nats://u:pw@head:4222", "", ConnectOptions{},
			"the NATS server at nats://u:xxxxx@head:4222 refused the user and password in the URL", true},
		{"TLS asked of a plain server", fmt.Errorf("x: %w", nats.ErrSecureConnWanted), url, "", ConnectOptions{CAFile: "ca.pem"},
			"the NATS server at nats://head:4222 does not use TLS: leave out --tls-ca, --tls-cert and --tls-key (and tls:// URLs)", true},
		{"a client certificate refused", fmt.Errorf("%w: remote error: tls: bad certificate", nats.ErrTLS), url, "", ConnectOptions{CertFile: "c.pem", KeyFile: "c.key"},
			"TLS: the NATS server at nats://head:4222 refused the client certificate c.pem: is it signed by the CA the server checks clients with (serve's --client-ca)?", true},
		{"a client certificate asked for", errors.New("remote error: tls: certificate required"), url, "", ConnectOptions{CAFile: "ca.pem"},
			"the NATS server at nats://head:4222 asks for a client certificate: give --tls-cert and --tls-key", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, permanent := Why(tc.err, tc.url, "this client", tc.tokenFrom, tc.opts)
			if got != tc.want || permanent != tc.permanent {
				t.Errorf("Why() = %q, %t\nwant     %q, %t", got, permanent, tc.want, tc.permanent)
			}
		})
	}
}

func TestParsePermissionError(t *testing.T) {
	err := fmt.Errorf("%w: %s", nats.ErrPermissionViolation, `Permissions Violation for Publish to "draftbench.jobs.submit"`)
	pe := ParsePermissionError(err)
	if pe == nil || pe.Op != "publish" || pe.Subject != "draftbench.jobs.submit" || !errors.Is(pe, nats.ErrPermissionViolation) {
		t.Fatalf("ParsePermissionError() = %+v", pe)
	}
	if want := "the NATS server does not let these credentials publish to draftbench.jobs.submit (permissions violation)"; pe.Error() != want {
		t.Errorf("%q, want %q", pe.Error(), want)
	}
	sub := ParsePermissionError(fmt.Errorf("%w: %s", nats.ErrPermissionViolation, `Permissions Violation for Subscription to "_INBOX.x.*"`))
	if sub == nil || sub.Op != "subscribe" || sub.Subject != "_INBOX.x.*" {
		t.Errorf("subscription: %+v", sub)
	}
	if ParsePermissionError(errors.New(`Permissions Violation for Publish to "x"`)) != nil || ParsePermissionError(nil) != nil {
		t.Error("only nats.go's permissions violations are parsed")
	}
	var d Denials
	ch, stop := d.Watch("draftbench.jobs.submit")
	if d.deliver(&PermissionError{Op: "publish", Subject: "draftbench.jobs.list"}) {
		t.Error("a violation on another subject was delivered")
	}
	if !d.deliver(pe) || <-ch != pe {
		t.Error("the watched subject's violation was not delivered")
	}
	stop()
	if d.deliver(pe) {
		t.Error("delivered after the watch stopped")
	}
}
