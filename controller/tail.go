package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/draftbench/draftbench/pkg/cli"
	"github.com/draftbench/draftbench/pkg/jobstore"
	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/report"
)

func tailCmd() *cli.Command {
	var nf natsFlags
	var fromStart bool
	return &cli.Command{
		Name:     "tail",
		Synopsis: "print a job's requests as they finish, then its summary",
		Usage: `controller tail [JOB_ID] [--from-start] [--nats URL] [--token T]

Prints one line per finished request (mode, index, TTFT, TPOT, E2EL, tokens,
acceptance), then the summary, and exits when the job ends: 0 if it
succeeded, 1 otherwise. Without JOB_ID, the running job, else the newest. A
JOB_ID may be shortened to any unique beginning. --from-start also prints
the requests that finished before tail started (a replay of a finished job).`,
		Flags: func(fs *flag.FlagSet) {
			nf.add(fs)
			fs.BoolVar(&fromStart, "from-start", false, "print every request of the job, not only those finishing from now on")
		},
		Run: func(env *cli.Env, fs *flag.FlagSet) error {
			if len(env.Args) > 1 {
				return cli.Usagef("want at most one job id, got %d arguments", len(env.Args))
			}
			ctx, client, done, err := nf.session(env)
			if err != nil {
				return err
			}
			defer done()
			return tail(ctx, env, client, env.Args, fromStart, &nf)
		},
	}
}

func tail(ctx context.Context, env *cli.Env, client *jobstore.Client, args []string, fromStart bool, nf *natsFlags) error {
	id, err := jobArg(ctx, client, args)
	if err != nil {
		return err
	}
	st, err := client.Status(ctx, id)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		fmt.Fprintf(env.Stderr, "following job %s (%s, %s)\n", st.JobID, st.Name, st.State)
	}
	var printErr error
	final, err := client.Follow(ctx, id, jobstore.FollowOptions{UntilStored: jobstore.Final(st.State)}, func(ev jobstore.Event) error {
		switch {
		case ev.Request != nil && (fromStart || !ev.Stored):
			_, printErr = fmt.Fprintln(env.Stdout, requestLine(*ev.Request))
		case ev.Summary != nil:
			printErr = report.PrintSummary(env.Stdout, *ev.Summary)
		}
		return printErr // a closed pipe ends tail
	})
	if err != nil {
		if ctx.Err() != nil && !jobstore.Final(st.State) {
			return interrupted(id, nf)
		}
		return err
	}
	if final == nil {
		final = st // the stream's limits dropped the job's end; the controller's word stands
	}
	return jobEnd(env, final)
}

// jobArg is the job a command names: the argument (a whole id or a unique
// beginning of one), else the running job, else the newest.
func jobArg(ctx context.Context, client *jobstore.Client, args []string) (string, error) {
	if len(args) > 0 {
		return client.Resolve(ctx, args[0])
	}
	jobs, err := client.Jobs(ctx)
	if err != nil {
		return "", err
	}
	latest, ok := jobstore.Latest(jobs)
	if !ok {
		return "", errors.New("no jobs yet: submit one with `controller submit JOB.hcl`")
	}
	return latest.JobID, nil
}

// requestLine is one finished request for a person reading along:
//
//	speculative #3    ttft 12.31 ms  tpot 3.20 ms  e2el 34.50 ms  tokens 12 in 8 out  acceptance 75.0% (length 2.50)
func requestLine(r metrics.Request) string {
	var b strings.Builder
	label := string(r.Mode)
	if r.Warmup {
		label += " warmup"
	}
	fmt.Fprintf(&b, "%-18s #%-4d", label, r.Index)
	switch {
	case r.Cancelled:
		fmt.Fprintf(&b, " cancelled after %d tokens: %s", r.OutputTokens, r.Error)
		return b.String()
	case r.Failed():
		fmt.Fprintf(&b, " failed after %d tokens: %s", r.OutputTokens, r.Error)
		return b.String()
	}
	m := r.Metrics()
	if m == nil {
		fmt.Fprintf(&b, " no tokens  tokens %d in 0 out", r.InputTokens)
		return b.String()
	}
	tpot := "-"
	if m.TPOT != nil {
		tpot = fmt.Sprintf("%.2f ms", *m.TPOT)
	}
	fmt.Fprintf(&b, " ttft %.2f ms  tpot %s  e2el %.2f ms  tokens %d in %d out", m.TTFT, tpot, m.E2EL, r.InputTokens, r.OutputTokens)
	if m.SpecStats != nil {
		if m.AcceptanceRate != nil && m.MeanAcceptanceLength != nil {
			fmt.Fprintf(&b, "  acceptance %.1f%% (length %.2f)", 100**m.AcceptanceRate, *m.MeanAcceptanceLength)
		}
	}
	return b.String()
}
