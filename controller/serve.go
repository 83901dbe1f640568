package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/draftbench/draftbench/pkg/cli"
	"github.com/draftbench/draftbench/pkg/cluster"
	"github.com/draftbench/draftbench/pkg/controller"
	"github.com/draftbench/draftbench/pkg/dataset"
	"github.com/draftbench/draftbench/pkg/jobrun"
	"github.com/draftbench/draftbench/pkg/jobspec"
	"github.com/draftbench/draftbench/pkg/jobstore"
	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/protocol"
)

// defaultListen is where `serve` embeds its NATS server, and so the
// default --nats of the client commands.
const (
	defaultListen = "127.0.0.1:4222"
	defaultNATS   = "nats://" + defaultListen
)

// tokenEnv holds the NATS token when --token is not given, so it stays off
// command lines that any user of the host can read (the worker agent hands
// it to its stages under the same name).
const tokenEnv = natsrv.TokenEnv

type serveOptions struct {
	natsURL, listen, store string
	token, creds           string
	serverCert, serverKey  string
	clientCA               string
	users, nkey            string
	tls                    natsrv.TLSFlags
	workerWait             time.Duration
	replicas               int
	// ready, when set, is called with the NATS URL once jobs are accepted (tests).
	ready func(url string)
}

func serveCmd() *cli.Command {
	var o serveOptions
	return &cli.Command{
		Name:     "serve",
		Synopsis: "long-running controller: queue submitted jobs and run them, one at a time, on the workers that join",
		Usage: `controller serve [--nats URL[,URL...] | --listen 127.0.0.1:4222] [--store DIR] [--token T | --creds FILE]
       [--users FILE] [--nkey FILE] [--server-cert F --server-key F [--client-ca F]] [--worker-wait 5m]
       [--replicas N]

Without --nats it embeds a NATS server with JetStream, listening on --listen,
its data in --store (default $XDG_DATA_HOME/draftbench, else
~/.local/share/draftbench, else ./draftbench-store). Listening anywhere but
loopback needs --token (or $DRAFTBENCH_NATS_TOKEN). With --nats it uses an
existing server, which must have JetStream; on a NATS cluster give every
server's URL, comma-separated, and --replicas 3. Jobs, their states and their
live results are kept there: a restarted controller lists its jobs, and jobs
it was running when it stopped are marked failed. Model and dataset paths of
a submitted job are read on this machine, relative to this folder.`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&o.natsURL, "nats", "", "use this NATS server (with JetStream) instead of embedding one")
			fs.StringVar(&o.listen, "listen", defaultListen, "host:port of the embedded NATS server")
			fs.StringVar(&o.store, "store", "", "folder of the embedded server's JetStream data (see above)")
			fs.StringVar(&o.token, "token", "", "NATS token: required of clients by the embedded server, or sent to --nats (default $"+tokenEnv+")")
			fs.StringVar(&o.creds, "creds", "", "NATS credentials file for --nats")
			fs.StringVar(&o.serverCert, "server-cert", "", "TLS certificate of the embedded server (with --server-key: clients connect over TLS)")
			fs.StringVar(&o.serverKey, "server-key", "", "TLS key of the embedded server")
			fs.StringVar(&o.clientCA, "client-ca", "", "the embedded server requires client certificates signed by this CA")
			fs.StringVar(&o.users, "users", "", "JSON file of the embedded server's users (NKeys or passwords, role controller|worker) instead of --token")
			fs.StringVar(&o.nkey, "nkey", "", "NKey seed file of this controller's own connection (a controller-role user)")
			o.tls.Add(fs)
			fs.DurationVar(&o.workerWait, "worker-wait", 5*time.Minute, "how long a job waits for a first worker before it fails")
			fs.IntVar(&o.replicas, "replicas", 1, "copies JetStream keeps of the jobs and results when it creates them: 3 on a NATS cluster of three or more servers")
		},
		Run: func(env *cli.Env, fs *flag.FlagSet) error {
			set := map[string]bool{}
			fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
			switch {
			case len(env.Args) > 0:
				return cli.Usagef("serve takes no arguments, got %q", env.Args)
			case o.natsURL != "" && set["listen"]:
				return cli.Usagef("--listen configures the embedded server; with --nats there is none")
			case o.natsURL != "" && set["store"]:
				return cli.Usagef("--store holds the embedded server's data; with --nats the server keeps it")
			case o.natsURL == "" && o.creds != "":
				return cli.Usagef("--creds is for --nats; the embedded server takes --token")
			case o.natsURL == "" && o.users != "" && o.nkey == "":
				return cli.Usagef("--users needs --nkey: the seed of the controller-role NKey in it, with which serve logs in to its own server")
			case o.workerWait <= 0:
				return cli.Usagef("--worker-wait %s must be positive", o.workerWait)
			case o.replicas < 1 || o.replicas > 5:
				return cli.Usagef("--replicas %d is not in 1..5 (JetStream's limit)", o.replicas)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, env, o)
		},
	}
}

// serve runs the controller until ctx ends (SIGINT, SIGTERM): the running
// job is then stopped with its partial results written and published.
func serve(ctx context.Context, env *cli.Env, o serveOptions) error {
	log := env.Logger.Named("serve")
	token := o.token
	if token == "" && o.creds == "" {
		token = env.Getenv(tokenEnv)
	}
	url := o.natsURL
	var embedded *natsrv.Server
	if url == "" {
		host, port, err := splitListen(o.listen)
		if err != nil {
			return err
		}
		dir := o.store
		if dir == "" {
			dir = defaultStore(env.Getenv)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("creating the store folder: %w", err)
		}
		sopts := natsrv.Options{Host: host, Port: port, StoreDir: dir, Token: token, Logger: env.Logger}
		if o.users != "" {
			users, err := natsrv.ReadUsers(o.users)
			if err != nil {
				return err
			}
			sopts.Users, sopts.Token, token = users, "", ""
		}
		if o.serverCert != "" || o.serverKey != "" || o.clientCA != "" {
			sopts.TLS = &natsrv.TLS{CertFile: o.serverCert, KeyFile: o.serverKey, CAFile: o.clientCA}
		}
		srv, err := natsrv.Start(sopts)
		if err != nil {
			if errors.Is(err, natsrv.ErrNoAuth) {
				return fmt.Errorf("%w (--listen %s, --token)", err, o.listen)
			}
			return err
		}
		defer srv.Shutdown()
		embedded = srv
		url = srv.ClientURL()
		log.Info("embedded NATS server with JetStream", "url", url, "store", dir)
	}
	// A daemon keeps trying to reach its server rather than exit.
	copts := natsrv.ConnectOptions{Name: "controller", Token: token, CredsFile: o.creds, NKeySeedFile: o.nkey, MaxReconnects: -1, Logger: env.Logger}
	if o.nkey != "" {
		copts.Token = ""
	}
	o.tls.Apply(&copts)
	// Its own server is reached in process: through the listen address
	// (0.0.0.0, which no certificate names) TLS would refuse it.
	copts.InProcess = embedded
	nc, err := natsrv.Connect(url, copts)
	if err != nil {
		return err
	}
	defer nc.Close()
	var subj protocol.Subjects
	store, err := jobstore.Open(ctx, nc, jobstore.Options{Subjects: subj, Replicas: o.replicas, Log: env.Logger})
	if err != nil {
		return err
	}
	reg, stopRegistry, err := watchWorkers(ctx, nc, subj, env.Logger)
	if err != nil {
		return err
	}
	defer stopRegistry()

	run := func(ctx context.Context, job *controller.Job, onRequest func(metrics.Request)) (*jobrun.Result, error) {
		if err := waitForWorker(ctx, reg, o.workerWait, natsrv.Redact(url), log.With("job", job.ID)); err != nil {
			return nil, err
		}
		return controller.Run(ctx, controller.Config{
			NC: nc, Subjects: subj, Registry: reg, Log: env.Logger,
			// A daemon's output is a log: the summary of each job, and
			// progress as plain lines rather than a bar.
			Console: env.Stdout, Progress: env.Stderr, Terminal: false,
			OnRequest: func(_ string, r metrics.Request) { onRequest(r) },
		}, job)
	}
	here := controllerFS{}
	if here.host, err = os.Hostname(); err != nil || here.host == "" {
		here.host = "(unnamed)"
	}
	if here.dir, err = os.Getwd(); err != nil {
		here.dir = "(unknown: " + err.Error() + ")"
	}
	server, err := jobstore.NewServer(jobstore.ServerConfig{
		Conn: nc, Store: store, Run: run, Workers: reg.Workers, Log: env.Logger,
		Check: func(j *jobspec.Job) error { return checkSubmitted(j, here) },
	})
	if err != nil {
		return err
	}
	go func() {
		select {
		case <-server.Ready():
			shown := natsrv.Redact(url) // a URL may carry a password
			hint := "controller submit JOB.hcl --nats " + reachable(shown)
			if token != "" {
				hint += " --token …"
			}
			fmt.Fprintf(env.Stdout, "controller serving on %s (submit with: %s)\n", shown, hint)
			if o.ready != nil {
				o.ready(url)
			}
		case <-ctx.Done():
		}
	}()
	if err := server.Serve(ctx); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// controllerFS is this host's file system as serve checks a submitted job's
// paths with: its notes say where it looked, since the person who submitted
// the job may be on another host, and relative paths are read from serve's
// working folder.
type controllerFS struct{ host, dir string }

func (controllerFS) Stat(name string) (fs.FileInfo, error) { return os.Stat(name) }

func (c controllerFS) Note(path string) string {
	if filepath.IsAbs(path) {
		return "checked on the controller host " + c.host
	}
	return fmt.Sprintf("checked on the controller host %s, relative to serve's working folder %s", c.host, c.dir)
}

// checkSubmitted is what serve checks of a job before it accepts it, on
// this host: the model folders, the tokenizers, and that a ShareGPT
// dataset holds a usable prompt (read up to the first one, so a dump of
// hundreds of MB does not hold the submission up), as validate does.
func checkSubmitted(j *jobspec.Job, here controllerFS) error {
	if err := j.CheckPaths(here); err != nil {
		return err
	}
	if err := jobrun.CheckTokenizers(j); err != nil {
		return err
	}
	if j.Dataset.Kind == jobspec.DatasetShareGPT {
		if _, err := loadShareGPT(j, dataset.LoadOptions{Probe: true}, here.Note(j.Dataset.Dir)); err != nil {
			return err
		}
	}
	return nil
}

// reachable is url with an unspecified listen address (0.0.0.0, [::])
// replaced by this host's name, which other hosts can dial.
func reachable(url string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		return url
	}
	for _, unspec := range []string{"://0.0.0.0:", "://[::]:"} {
		url = strings.Replace(url, unspec, "://"+host+":", 1)
	}
	return url
}

// waitForWorker holds a job until a worker is alive, so a job submitted
// before the workers joined runs once they do instead of failing at once.
func waitForWorker(ctx context.Context, reg *cluster.Registry, limit time.Duration, url string, log interface {
	Info(string, ...any)
}) error {
	if len(reg.Alive()) > 0 {
		return nil
	}
	log.Info("waiting for a worker", "limit", limit)
	// status shows it: a job waiting here is running but has nothing to run on.
	jobstore.SetWaiting(ctx, fmt.Sprintf("a worker to join (the job fails if none joins within %s of its start)", limit))
	defer jobstore.SetWaiting(ctx, "")
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if _, err := reg.Wait(wctx, 1); err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return fmt.Errorf("no worker joined within %s: start `worker --nats %s` on the hosts", limit, url)
	}
	return nil
}

func splitListen(listen string) (string, int, error) {
	host, p, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, cli.Usagef("--listen %q: %v", listen, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, cli.Usagef("--listen %q: port %q is not a number in [0, 65535]", listen, p)
	}
	if host == "" {
		return "", 0, cli.Usagef("--listen %q: give a host (127.0.0.1 keeps the server local)", listen)
	}
	return host, port, nil
}

// defaultStore follows the XDG base directories: $XDG_DATA_HOME/draftbench,
// else ~/.local/share/draftbench; without a home, ./draftbench-store.
func defaultStore(getenv func(string) string) string {
	if d := getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "draftbench")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".local", "share", "draftbench")
	}
	return "draftbench-store"
}
