package natsrv

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/nats-io/nats.go"
)

// Why says, for a person, why Connect failed with err when it was called
// with url and opts: what the server refused or what TLS did not trust, and
// which flag fixes it. who names the connecting program ("this client",
// "this worker"); tokenFrom says where opts.Token came from ("--token",
// "$DRAFTBENCH_NATS_TOKEN"; "" when there is none). It returns "" for an
// error it has no better words for (no server answered), and permanent
// reports that trying again with the same options cannot succeed.
func Why(err error, url, who, tokenFrom string, opts ConnectOptions) (reason string, permanent bool) {
	if err == nil {
		return "", false
	}
	shown := Redact(url)
	if Refused(err) {
		switch {
		case opts.NKeySeedFile != "":
			return fmt.Sprintf("the NATS server at %s refused the NKey of %s: is its public key in serve's --users file (or the server's authorization block)?", shown, opts.NKeySeedFile), true
		case opts.CredsFile != "":
			return fmt.Sprintf("the NATS server at %s refused the credentials in %s", shown, opts.CredsFile), true
		case opts.Token != "" && tokenFrom != "":
			return fmt.Sprintf("the NATS server at %s refused the token given by %s: it is not the token the server was started with", shown, tokenFrom), true
		case opts.Token != "":
			return fmt.Sprintf("the NATS server at %s refused the token: it is not the token the server was started with", shown), true
		case urlHasUser(url):
			return fmt.Sprintf("the NATS server at %s refused the user and password in the URL", shown), true
		}
		return fmt.Sprintf("the NATS server at %s refused %s: give its --token (or $%s), --nkey or --creds", shown, who, TokenEnv), true
	}
	if reason := whyTLS(err, shown, opts); reason != "" {
		return reason, true
	}
	return "", false
}

// TokenEnv is the environment variable every draftbench command reads a
// NATS token from when --token is not given.
const TokenEnv = "DRAFTBENCH_NATS_TOKEN"

func urlHasUser(urls string) bool {
	for _, p := range strings.Split(urls, ",") {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			return true
		}
	}
	return false
}

// whyTLS explains a failed TLS handshake with the server, or returns "".
func whyTLS(err error, shown string, opts ConnectOptions) string {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	text := err.Error()
	switch {
	case errors.As(err, &unknown):
		if opts.CAFile != "" {
			return fmt.Sprintf("TLS: the certificate of the NATS server at %s is not trusted: --tls-ca %s did not sign it; give the CA that did", shown, opts.CAFile)
		}
		return fmt.Sprintf("TLS: the certificate of the NATS server at %s is not trusted: give --tls-ca with the CA that signed it", shown)
	case errors.As(err, &host):
		return fmt.Sprintf("TLS: the certificate of the NATS server at %s is not for that address: connect with a name or address the certificate holds", shown)
	case errors.As(err, &invalid):
		return fmt.Sprintf("TLS: the certificate of the NATS server at %s is not valid", shown)
	case errors.Is(err, nats.ErrSecureConnWanted):
		return fmt.Sprintf("the NATS server at %s does not use TLS: leave out --tls-ca, --tls-cert and --tls-key (and tls:// URLs)", shown)
	case !errors.Is(err, nats.ErrTLS) && !strings.Contains(text, "remote error: tls:"):
		return ""
	}
	// The server ended the handshake, or closed the connection right after
	// it: what a server that verifies client certificates does to a client
	// without one (TLS 1.3 reports it after the handshake, as an alert or
	// as a closed connection, depending on timing).
	closed := strings.Contains(text, "connection closed by remote after TLS handshake")
	switch {
	case opts.CertFile == "" && (closed || strings.Contains(text, "certificate required")):
		return fmt.Sprintf("the NATS server at %s asks for a client certificate: give --tls-cert and --tls-key", shown)
	case opts.CertFile != "" && (closed || strings.Contains(text, "remote error: tls:")):
		return fmt.Sprintf("TLS: the NATS server at %s refused the client certificate %s: is it signed by the CA the server checks clients with (serve's --client-ca)?", shown, opts.CertFile)
	}
	return ""
}
