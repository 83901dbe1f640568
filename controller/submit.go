package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/draftbench/draftbench/pkg/cli"
	"github.com/draftbench/draftbench/pkg/jobstore"
	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/report"
)

func submitCmd() *cli.Command {
	var jf jobFlags
	var nf natsFlags
	var wait bool
	return &cli.Command{
		Name:     "submit",
		Synopsis: "send a job to `controller serve` and print its id",
		Usage: `controller submit JOB.hcl [-var k=v]... [-var-file F] [--nats URL] [--token T] [--wait]

The job is parsed here with the variables and the environment values it
reads, then parsed again and checked by the controller, which reads model
and dataset paths on its own machine. With --wait, follows the job until it
ends and exits non-zero unless it succeeded.`,
		Flags: func(fs *flag.FlagSet) {
			jf.add(fs)
			nf.add(fs)
			fs.BoolVar(&wait, "wait", false, "wait until the job ends; exit 1 unless it succeeded")
		},
		Run: func(env *cli.Env, fs *flag.FlagSet) error {
			job, err := jf.parse(env)
			if err != nil {
				return err
			}
			ctx, client, done, err := nf.session(env)
			if err != nil {
				return err
			}
			defer done()
			reply, err := client.Submit(ctx, job.Source)
			if err != nil {
				return err
			}
			if len(reply.Errors) > 0 {
				// One problem per line, each with its file:line, as validate prints them.
				return errors.New(strings.Join(reply.Errors, "\n"))
			}
			for _, w := range reply.Warnings {
				fmt.Fprintf(env.Stderr, "warning: %s\n", w)
			}
			fmt.Fprintln(env.Stdout, reply.JobID)
			if !wait {
				return nil
			}
			last := protocol.JobQueued
			bars := newModeBars(env.Stderr, isTerminal(os.Stderr))
			defer bars.close()
			final, err := client.Follow(ctx, reply.JobID, jobstore.FollowOptions{}, func(ev jobstore.Event) error {
				if p := ev.Progress; p != nil && p.State != last && !jobstore.Final(p.State) {
					last = p.State
					fmt.Fprintf(env.Stderr, "job %s %s\n", short(p.JobID), p.State)
				}
				if p := ev.Progress; p != nil {
					bars.update(p.Progress)
				}
				return nil
			})
			bars.close()
			if err != nil {
				if ctx.Err() != nil {
					return interrupted(reply.JobID, &nf)
				}
				return err
			}
			return jobEnd(env, final)
		},
	}
}

// modeBars shows a waiting submit the progress of each mode of its job, as
// `controller run` shows its own: on a terminal a bar with counts and ETA
// per mode (nothing elsewhere: logs get the state lines).
type modeBars struct {
	w        io.Writer
	terminal bool
	bars     map[string]*report.Progress
	seen     map[string][2]int // completed, failed + cancelled
	current  string
}

func newModeBars(w io.Writer, terminal bool) *modeBars {
	return &modeBars{w: w, terminal: terminal, bars: map[string]*report.Progress{}, seen: map[string][2]int{}}
}

// update moves the bars to the job's counts; a mode's bar starts with its
// first finished request and the one before it is closed.
func (m *modeBars) update(progress []protocol.JobProgress) {
	if !m.terminal {
		return
	}
	for _, p := range progress {
		bad := p.Failed + p.Cancelled
		seen := m.seen[p.Mode]
		if p.Completed == seen[0] && bad == seen[1] {
			continue
		}
		b := m.bars[p.Mode]
		if b == nil {
			if cur := m.bars[m.current]; cur != nil {
				cur.Close()
			}
			b = report.NewProgress(p.Total, report.ProgressOptions{Writer: m.w, IsTerminal: true, Label: p.Mode})
			m.bars[p.Mode], m.current = b, p.Mode
		}
		for ; seen[0] < p.Completed; seen[0]++ {
			b.Done(false)
		}
		for ; seen[1] < bad; seen[1]++ {
			b.Done(true)
		}
		m.seen[p.Mode] = seen
	}
}

func (m *modeBars) close() {
	for _, b := range m.bars {
		b.Close()
	}
}

// interrupted is what a client following a job says when it is stopped:
// the job itself goes on. The commands it suggests carry the connection
// flags this one was given.
func interrupted(jobID string, nf *natsFlags) error {
	flags := nf.hint()
	return fmt.Errorf("interrupted; job %s goes on running: follow it with `controller tail %s%s`, stop it with `controller cancel %s%s`",
		short(jobID), short(jobID), flags, short(jobID), flags)
}

// hint gives back the connection flags that differ from the defaults, for
// the commands a message suggests: the URL with its password hidden, "…"
// for a token given on the command line (one from $DRAFTBENCH_NATS_TOKEN
// is found there again), and the files as they were named.
func (f *natsFlags) hint() string {
	var b strings.Builder
	if f.url != defaultNATS {
		fmt.Fprintf(&b, " --nats %s", natsrv.Redact(f.url))
	}
	if f.token != "" {
		b.WriteString(" --token …")
	}
	for _, kv := range [][2]string{{"--creds", f.creds}, {"--nkey", f.nkey}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, " %s %s", kv[0], kv[1])
		}
	}
	for _, a := range f.tls.Args() {
		b.WriteString(" " + a)
	}
	return b.String()
}

// natsFlags are the connection flags of every client command.
type natsFlags struct {
	url, token, creds string
	nkey              string
	tls               natsrv.TLSFlags
}

func (f *natsFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&f.url, "nats", defaultNATS, "NATS URL of the controller")
	fs.StringVar(&f.token, "token", "", "NATS token (default $"+tokenEnv+")")
	fs.StringVar(&f.creds, "creds", "", "NATS credentials file")
	fs.StringVar(&f.nkey, "nkey", "", "NKey seed file (servers with NKey users)")
	f.tls.Add(fs)
}

// client connects to the controller's NATS server.
// session is what every client command starts with: a context ended by
// SIGINT/SIGTERM and a connected client; done releases both.
func (f *natsFlags) session(env *cli.Env) (context.Context, *jobstore.Client, func(), error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	client, closeConn, err := f.client(env)
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	return ctx, client, func() { closeConn(); stop() }, nil
}

func (f *natsFlags) client(env *cli.Env) (*jobstore.Client, func(), error) {
	if f.token != "" && f.creds != "" {
		return nil, nil, cli.Usagef("give --token or --creds, not both")
	}
	token, tokenFrom := f.token, "--token"
	if token == "" && f.creds == "" {
		token, tokenFrom = env.Getenv(tokenEnv), "$"+tokenEnv
	}
	if f.nkey != "" {
		token = ""
	}
	// The server refuses a request subject to a user without the rights
	// only asynchronously: the client watches for it to fail at once.
	denials := &natsrv.Denials{}
	opts := natsrv.ConnectOptions{Name: "controller client", Token: token, CredsFile: f.creds, NKeySeedFile: f.nkey, Logger: env.Logger, Denials: denials}
	f.tls.Apply(&opts)
	nc, err := natsrv.Connect(f.url, opts)
	if err != nil {
		if cause := errors.Unwrap(err); cause != nil {
			err = cause // natsrv's prefix repeats the URL
		}
		if why, _ := natsrv.Why(err, f.url, "this client", tokenFrom, opts); why != "" {
			return nil, nil, fmt.Errorf("%s (%w)", why, err)
		}
		return nil, nil, fmt.Errorf("no NATS server answered at %s: is `controller serve` running? (%w)", natsrv.Redact(f.url), err)
	}
	return jobstore.NewClient(nc, protocol.Subjects{}, 0).WithDenials(denials), nc.Close, nil
}

// jobEnd reports how a job ended: nothing when it succeeded, else an error
// with the reason (the command exits 1).
func jobEnd(env *cli.Env, st *protocol.JobStatus) error {
	switch st.State {
	case protocol.JobSucceeded:
		fmt.Fprintf(env.Stderr, "job %s succeeded: results in %s\n", short(st.JobID), st.OutputDir)
		return nil
	case protocol.JobFailed:
		return fmt.Errorf("job %s failed: %s", st.JobID, st.Error)
	case protocol.JobCancelled:
		return fmt.Errorf("job %s was cancelled: %s", st.JobID, st.Error)
	}
	return fmt.Errorf("job %s is still %s", st.JobID, st.State)
}

// short is the first 8 characters of an id, enough for `status` and logs.
func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
