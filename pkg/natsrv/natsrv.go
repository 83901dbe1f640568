package natsrv

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/dirlock"
	"github.com/draftbench/draftbench/pkg/protocol"
)

// DefaultReadyTimeout is how long Start waits for the server to accept clients.
const DefaultReadyTimeout = 10 * time.Second

// Options configure an embedded server. The zero value is a loopback server
// on a random port with JetStream in a temporary folder.
type Options struct {
	// Host is the listen address (default 127.0.0.1). Anything but a loopback
	// address needs Token or Users: a benchmark cluster must not be open to
	// the network, as a step or an assignment makes a host do work.
	Host string
	// Port is the client port; 0 picks a free one.
	Port int
	// StoreDir holds JetStream's data. Empty means a temporary folder,
	// removed by Shutdown.
	StoreDir string
	// Token, when set, is required of every client.
	Token string
	// Users, instead of a token, authenticate each client by NKey or
	// password and give it its Role's permissions under Subjects' prefix,
	// so that only controllers can assign stages to workers.
	Users    []User
	Subjects protocol.Subjects
	// TLS, when set, makes clients connect over TLS (tls:// URLs).
	TLS *TLS
	// Cluster, when set, makes the server a member of a NATS cluster.
	Cluster *Cluster
	// MaxPayload bounds one message, headers included (0: the server's 1 MiB).
	MaxPayload int32
	// ServerName names the server in logs and monitoring (default "draftbench").
	ServerName string
	// ReadyTimeout bounds the wait for the server to accept clients
	// (0: DefaultReadyTimeout).
	ReadyTimeout time.Duration
	// Logger receives the server's log lines (nil: discarded).
	Logger hclog.Logger
}

// Server is a running embedded NATS server.
type Server struct {
	ns       *server.Server
	storeDir string
	tempDir  bool
	lock     *dirlock.Lock // the store's lock, held until cleanup
}

// Start starts a server and waits until it accepts clients.
func Start(opts Options) (*Server, error) {
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if !loopback(opts.Host) && !opts.authenticated() {
		return nil, noAuthError{opts.Host}
	}
	if opts.Token != "" && len(opts.Users) > 0 {
		return nil, errors.New("natsrv: give a token or users, not both")
	}
	if opts.Port < 0 || opts.Port > 65535 {
		return nil, fmt.Errorf("natsrv: port %d is not in [0, 65535]", opts.Port)
	}
	if opts.MaxPayload < 0 {
		return nil, fmt.Errorf("natsrv: max payload %d is negative", opts.MaxPayload)
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}
	if opts.ServerName == "" {
		opts.ServerName = "draftbench"
	}
	sopts := &server.Options{
		ServerName:    opts.ServerName,
		Host:          opts.Host,
		Authorization: opts.Token,
		MaxPayload:    opts.MaxPayload,
		JetStream:     true,
		NoSigs:        true, // the embedding process owns its signals
	}
	if err := opts.secure(sopts); err != nil {
		return nil, fmt.Errorf("natsrv: %w", err)
	}
	s := &Server{storeDir: opts.StoreDir}
	if s.storeDir == "" {
		removeStaleTemps()
		dir, err := os.MkdirTemp("", tempPrefix)
		if err != nil {
			return nil, fmt.Errorf("natsrv: creating a JetStream folder: %w", err)
		}
		s.storeDir, s.tempDir = dir, true
	}
	lock, err := lockStore(s.storeDir)
	if err != nil {
		s.cleanup()
		return nil, fmt.Errorf("natsrv: %w", err)
	}
	s.lock = lock
	if s.tempDir {
		if err := markTemporary(s.storeDir); err != nil {
			s.cleanup()
			return nil, fmt.Errorf("natsrv: %w", err)
		}
	}
	port := opts.Port
	if port == 0 {
		port = server.RANDOM_PORT // the server reads 0 as its default, 4222
	}
	sopts.Port, sopts.StoreDir = port, s.storeDir
	addr := net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port))
	ns, err := server.NewServer(sopts)
	if err != nil {
		s.cleanup()
		return nil, fmt.Errorf("natsrv: configuring the server on %s: %w", addr, err)
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	// The server reports a failed listen through Fatalf and keeps going;
	// catching it ends the wait at once with the server's own reason.
	fatal := make(chan string, 1)
	ns.SetLoggerV2(logger{l: log.Named("nats"), fatal: fatal}, log.IsDebug(), log.IsTrace(), false)
	if !loopback(opts.Host) && opts.TLS == nil {
		log.Warn("clients on other hosts connect without TLS: their credentials and the benchmark's traffic cross the network in clear text",
			"listen", addr, "auth", opts.describeAuth())
	}
	s.ns = ns
	ns.Start()
	ready := make(chan bool, 1)
	go func() { ready <- ns.ReadyForConnections(opts.ReadyTimeout) }()
	var failure string
	select {
	case ok := <-ready:
		if ok {
			return s, nil
		}
		failure = fmt.Sprintf("not ready for clients after %s", opts.ReadyTimeout)
	case failure = <-fatal:
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	s.cleanup()
	return nil, fmt.Errorf("natsrv: starting the server on %s: %s", addr, failure)
}

// secure applies users, TLS and clustering to the server's options.
func (o *Options) secure(sopts *server.Options) error {
	var err error
	if sopts.Nkeys, sopts.Users, err = serverUsers(o.Users, o.Subjects); err != nil {
		return err
	}
	if o.TLS != nil {
		tc, err := o.TLS.config()
		if err != nil {
			return err
		}
		if sopts.TLSConfig, err = server.GenTLSConfig(tc); err != nil {
			return fmt.Errorf("TLS with %s and %s: %w", o.TLS.CertFile, o.TLS.KeyFile, err)
		}
		sopts.TLS, sopts.TLSVerify, sopts.TLSTimeout = true, tc.Verify, tc.Timeout
	}
	if o.Cluster != nil {
		if sopts.Cluster, sopts.Routes, err = o.Cluster.options(); err != nil {
			return err
		}
	}
	return nil
}

// ClientURL is the URL clients connect to (nats://host:port, tls:// with TLS).
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// StoreDir is the JetStream folder in use.
func (s *Server) StoreDir() string { return s.storeDir }

// Shutdown stops the server, waits for it, and removes a temporary store.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	s.cleanup()
}

func (s *Server) cleanup() {
	if s.tempDir {
		os.RemoveAll(s.storeDir)
	}
	s.lock.Release()
	s.lock = nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// logger sends the server's lines to hclog; the first fatal one also goes
// to fatal.
type logger struct {
	l     hclog.Logger
	fatal chan<- string
}

// Noticef lines (the banner, JetStream's logo, every listen address) are
// the server's chatter at start and stop: debug lines here, since the
// controller logs the URL and store it serves on itself.
func (l logger) Noticef(f string, v ...any) { l.l.Debug(fmt.Sprintf(f, v...)) }
func (l logger) Warnf(f string, v ...any)   { l.l.Warn(fmt.Sprintf(f, v...)) }
func (l logger) Fatalf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	l.l.Debug(msg) // Start returns it as its error
	select {
	case l.fatal <- msg:
	default:
	}
}

func (l logger) Errorf(f string, v ...any) { l.l.Error(fmt.Sprintf(f, v...)) }
func (l logger) Debugf(f string, v ...any) { l.l.Debug(fmt.Sprintf(f, v...)) }
func (l logger) Tracef(f string, v ...any) { l.l.Trace(fmt.Sprintf(f, v...)) }

var _ server.Logger = logger{}

// ConnectOptions configure a client connection.
type ConnectOptions struct {
	// Name identifies the client in the server's monitoring ("controller",
	// "worker host-1", "stage target/0").
	Name string
	// Token, CredsFile (a JWT and NKey seed, for servers in operator mode)
	// or NKeySeedFile (an NKey seed, for servers that list user NKeys, as
	// Options.Users does) authenticate; at most one.
	Token        string
	CredsFile    string
	NKeySeedFile string
	// CAFile verifies a TLS server whose certificate no system CA signed;
	// CertFile and KeyFile are this client's certificate, for servers that
	// verify clients. Any of them turns TLS on (tls:// URLs do too).
	CAFile, CertFile, KeyFile string
	// MaxReconnects is how many times to retry after losing the server;
	// 0 means nats.go's default (60), negative forever.
	MaxReconnects int
	// ReconnectWait is the pause between reconnect attempts (0: 2s).
	ReconnectWait time.Duration
	// Timeout bounds the initial connection (0: 5s).
	Timeout time.Duration
	// Logger receives disconnect, reconnect and asynchronous errors (nil: discarded).
	Logger hclog.Logger
	// Denials, when set, receives the server's permission violations: one
	// that a watcher waits for goes to it (and to the log at debug level
	// only), so a client can fail at once with its own words.
	Denials *Denials
	// InProcess connects to this embedded server in process, without a
	// socket: no TLS (the server accepts it in process even when it
	// requires TLS of network clients), so a server listening on 0.0.0.0
	// with a certificate for its public name, or verifying client
	// certificates, takes its own process's connection. The URL is then
	// only a name; CAFile, CertFile and KeyFile are not used.
	InProcess *Server
}

// Redact hides the passwords of a NATS URL list ("nats://user:pass@host:4222,
// nats://host2:4222"), for logs and messages.
func Redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			if _, has := u.User.Password(); has {
				parts[i] = u.Redacted()
			} else {
				// A lone user part is a token (nats://TOKEN@host).
				u.User = url.User("xxxxx")
				parts[i] = u.String()
			}
		}
	}
	return strings.Join(parts, ",")
}

// Connect dials a NATS server with reconnects and logging set up.
func Connect(url string, opts ConnectOptions) (*nats.Conn, error) {
	n := 0
	for _, set := range []bool{opts.Token != "", opts.CredsFile != "", opts.NKeySeedFile != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return nil, errors.New("natsrv: give at most one of a token, a creds file and an NKey seed file")
	}
	if (opts.CertFile == "") != (opts.KeyFile == "") {
		return nil, errors.New("natsrv: a client certificate needs its key file, and the other way round")
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	log = log.With("nats", Redact(url))
	nopts := []nats.Option{
		nats.Name(opts.Name),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from NATS", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("reconnected to NATS", "server", nc.ConnectedUrlRedacted()) }),
		nats.ClosedHandler(func(*nats.Conn) { log.Debug("NATS connection closed") }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if pe := ParsePermissionError(err); pe != nil && opts.Denials != nil && opts.Denials.deliver(pe) {
				log.Debug("NATS permissions violation", "op", pe.Op, "subject", pe.Subject)
				return
			}
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Error("NATS error", "subject", subject, "error", err)
		}),
	}
	if opts.Token != "" {
		nopts = append(nopts, nats.Token(opts.Token))
	}
	if opts.CredsFile != "" {
		nopts = append(nopts, nats.UserCredentials(opts.CredsFile))
	}
	if opts.NKeySeedFile != "" {
		o, err := nats.NkeyOptionFromSeed(opts.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("natsrv: reading the NKey seed %s: %w", opts.NKeySeedFile, err)
		}
		nopts = append(nopts, o)
	}
	if opts.InProcess != nil {
		nopts = append(nopts, nats.InProcessServer(opts.InProcess.ns))
		// A tls:// URL would ask for a handshake on the pipe.
		url = "nats://" + strings.TrimPrefix(strings.TrimPrefix(url, "tls://"), "nats://")
	} else {
		if opts.CAFile != "" {
			nopts = append(nopts, nats.RootCAs(opts.CAFile))
		}
		if opts.CertFile != "" {
			nopts = append(nopts, nats.ClientCert(opts.CertFile, opts.KeyFile))
		}
	}
	if opts.MaxReconnects != 0 {
		nopts = append(nopts, nats.MaxReconnects(opts.MaxReconnects))
	}
	if opts.ReconnectWait > 0 {
		nopts = append(nopts, nats.ReconnectWait(opts.ReconnectWait))
	}
	if opts.Timeout > 0 {
		nopts = append(nopts, nats.Timeout(opts.Timeout))
	}
	if strings.Contains(url, ",") {
		// The caller named the cluster's servers: failing over must not try
		// the addresses the servers advertise, which may not be reachable
		// from this host (another network namespace, a private interface)
		// and would each cost a dial timeout, longer than three missed
		// heartbeats.
		nopts = append(nopts, nats.IgnoreDiscoveredServers())
	}
	nc, err := nats.Connect(url, nopts...)
	if err != nil {
		return nil, fmt.Errorf("natsrv: connecting to %s as %q: %w", Redact(url), opts.Name, err)
	}
	return nc, nil
}

// ErrNoAuth is Start's refusal to listen beyond loopback without
// authentication (errors.Is).
var ErrNoAuth = errors.New("natsrv: refusing to listen beyond loopback without authentication")

type noAuthError struct{ host string }

func (e noAuthError) Error() string {
	return fmt.Sprintf("natsrv: refusing to listen on %s without authentication: set a token, or listen on 127.0.0.1", e.host)
}

func (noAuthError) Is(target error) bool { return target == ErrNoAuth }

// Refused reports whether err is a server refusing the client's credentials.
// nats.go reports a refused token as the server's text, not always as
// nats.ErrAuthorization.
func Refused(err error) bool {
	return err != nil && (errors.Is(err, nats.ErrAuthorization) || strings.Contains(strings.ToLower(err.Error()), "authorization violation"))
}
