package main

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/draftbench/draftbench/pkg/cli"
	"github.com/draftbench/draftbench/pkg/cluster"
	"github.com/draftbench/draftbench/pkg/jobstore"
	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/report"
)

// timeLayout is how the tables show times, in the reader's time zone
// (time.Local; tests pass UTC).
const timeLayout = "2006-01-02 15:04:05"

func statusCmd() *cli.Command {
	var nf natsFlags
	return &cli.Command{
		Name:     "status",
		Synopsis: "list the jobs, show one job, or list the workers (status workers)",
		Usage: `controller status [JOB_ID | workers] [--nats URL] [--token T]

Without an argument, a table of every job; with a job id (or a unique
beginning of one), that job's details; with "workers", the workers table.`,
		Flags: nf.add,
		Run: func(env *cli.Env, fs *flag.FlagSet) error {
			if len(env.Args) > 1 {
				return cli.Usagef("want at most one argument (a job id or \"workers\"), got %d", len(env.Args))
			}
			ctx, client, done, err := nf.session(env)
			if err != nil {
				return err
			}
			defer done()
			now := time.Now()
			switch {
			case len(env.Args) == 0:
				list, err := client.JobList(ctx)
				if err != nil {
					return err
				}
				return printJobs(env.Stdout, list.Jobs, list.Omitted, time.Local)
			case env.Args[0] == "workers":
				workers, err := client.Workers(ctx)
				if err != nil {
					return err
				}
				return printWorkers(env.Stdout, workers, now)
			}
			id, err := client.Resolve(ctx, env.Args[0])
			if err != nil {
				return err
			}
			st, err := client.Status(ctx, id)
			if err != nil {
				return err
			}
			// A job that ended has its headline numbers in the summary the
			// controller published to its results stream; without one (the
			// job ended before it had results, the stream dropped it) the
			// status says what it knows.
			var sum *report.Results
			if jobstore.Final(st.State) {
				if sum, err = client.Summary(ctx, id); err != nil {
					env.Logger.Debug("no summary from the results stream", "job", id, "error", err)
				}
			}
			return printJob(env.Stdout, st, sum, time.Local)
		},
	}
}

func cancelCmd() *cli.Command {
	var nf natsFlags
	var reason string
	return &cli.Command{
		Name:     "cancel",
		Synopsis: "cancel a queued or running job (a running one keeps the results of its finished requests)",
		Usage:    "controller cancel JOB_ID [--reason TEXT] [--nats URL] [--token T]",
		Flags: func(fs *flag.FlagSet) {
			nf.add(fs)
			fs.StringVar(&reason, "reason", "", "why, recorded in the job's status (default: cancelled by a client)")
		},
		Run: func(env *cli.Env, fs *flag.FlagSet) error {
			if len(env.Args) != 1 {
				return cli.Usagef("want exactly one job id, got %d arguments", len(env.Args))
			}
			ctx, client, done, err := nf.session(env)
			if err != nil {
				return err
			}
			defer done()
			id, err := client.Resolve(ctx, env.Args[0])
			if err != nil {
				return err
			}
			if err := client.Cancel(ctx, id, reason); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "job %s: cancel requested\n", id)
			return nil
		},
	}
}

// printJobs prints the jobs table; omitted counts older jobs the
// controller left out of its reply.
func printJobs(w io.Writer, jobs []protocol.JobStatus, omitted int, loc *time.Location) error {
	if len(jobs) == 0 && omitted == 0 {
		_, err := fmt.Fprintln(w, "no jobs yet: submit one with `controller submit JOB.hcl`")
		return err
	}
	if omitted > 0 {
		fmt.Fprintf(w, "(%d older jobs not listed: the list must fit in one NATS message)\n", omitted)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSTATE\tSUBMITTED\tPROGRESS\tOUTPUT")
	for _, j := range jobs {
		state := string(j.State)
		if j.Waiting != "" && !jobstore.Final(j.State) {
			state += " (waiting)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", j.JobID, j.Name, state, j.Submitted.In(loc).Format(timeLayout),
			orDash(progress(j.Progress)), orDash(j.OutputDir))
	}
	return tw.Flush()
}

// printJob prints one job's details; sum, when not nil, is the summary
// its results stream holds, whose headline numbers follow.
func printJob(w io.Writer, st *protocol.JobStatus, sum *report.Results, loc *time.Location) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	row := func(label, value string) {
		if value != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", label, value)
		}
	}
	row("Job", st.JobID)
	row("Name", st.Name)
	state := string(st.State)
	if st.Waiting != "" && !jobstore.Final(st.State) {
		state += ", waiting for " + st.Waiting
	}
	row("State", state)
	row("Error", st.Error)
	row("Submitted", st.Submitted.In(loc).Format(timeLayout))
	if st.Started != nil {
		row("Started", st.Started.In(loc).Format(timeLayout))
	}
	if st.Finished != nil {
		row("Finished", st.Finished.In(loc).Format(timeLayout))
		if st.Started != nil {
			row("Duration", st.Finished.Sub(*st.Started).Round(time.Millisecond).String())
		}
	}
	row("Progress", progress(st.Progress))
	row("Output", st.OutputDir)
	if sum != nil {
		row("Requests", requestCounts(sum))
		if c := sum.Comparison; c != nil {
			row("Speedup", fmt.Sprintf("TPOT %s (E2EL %s, output throughput %s)", times(c.SpeedupTPOT), times(c.SpeedupE2EL), times(c.SpeedupOutputThroughput)))
		}
		if s := sum.Speculative; s != nil && s.SpecStats != nil && s.AcceptanceRate != nil {
			v := fmt.Sprintf("%.1f%% of the drafted tokens", 100**s.AcceptanceRate)
			if s.MeanAcceptanceLength != nil {
				v += fmt.Sprintf(" (mean acceptance length %.2f)", *s.MeanAcceptanceLength)
			}
			row("Accepted", v)
		}
		if c := sum.Comparison; c != nil {
			row("Lossless", lossless(c.Lossless))
		}
	}
	return tw.Flush()
}

// requestCounts reads "speculative 8 completed, 0 failed; target 7
// completed, 1 failed" from a summary (cancelled requests when there are).
func requestCounts(sum *report.Results) string {
	var parts []string
	for _, m := range []struct {
		name string
		s    *metrics.Summary
	}{{"speculative", sum.Speculative}, {"target", sum.Target}} {
		if m.s == nil {
			continue
		}
		p := fmt.Sprintf("%s %d completed, %d failed", m.name, m.s.Completed, m.s.Failed)
		if m.s.Cancelled > 0 {
			p += fmt.Sprintf(", %d cancelled", m.s.Cancelled)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

// times is a speedup ("1.85x"), or "n/a" when it was not measured.
func times(v *float64) string {
	if v == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", *v)
}

// lossless reads "8 checked, 0 mismatched", or why nothing was checked.
func lossless(l metrics.Lossless) string {
	if l.Skipped != "" {
		return "not checked: " + l.Skipped
	}
	s := fmt.Sprintf("%d checked, %d mismatched", l.Checked, l.Mismatched)
	if l.Mismatched > 0 {
		s += fmt.Sprintf(" (%d near-ties)", l.NearTies)
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// progress reads "speculative 4/8, target 0/8": finished (completed)
// requests of the total (count mode), failed and cancelled ones besides
// ("speculative 5/30 (1 failed, 2 cancelled)"), as the summaries count them.
func progress(ps []protocol.JobProgress) string {
	parts := make([]string, 0, len(ps))
	for _, p := range ps {
		s := fmt.Sprintf("%s %d", p.Mode, p.Completed)
		if p.Total > 0 {
			s += fmt.Sprintf("/%d", p.Total)
		}
		var apart []string
		if p.Failed > 0 {
			apart = append(apart, fmt.Sprintf("%d failed", p.Failed))
		}
		if p.Cancelled > 0 {
			apart = append(apart, fmt.Sprintf("%d cancelled", p.Cancelled))
		}
		if len(apart) > 0 {
			s += " (" + strings.Join(apart, ", ") + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

func printWorkers(w io.Writer, workers []cluster.Worker, now time.Time) error {
	if len(workers) == 0 {
		_, err := fmt.Fprintln(w, "no workers have registered: start `worker --nats URL` on each host")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tID\tDEVICES\tLAST HEARTBEAT\tLOST\tSTAGES")
	for _, wk := range workers {
		lost := "no"
		if wk.Lost {
			lost = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s ago\t%s\t%d\n", wk.Host, wk.ID, devices(wk.Devices),
			now.Sub(wk.LastSeen).Round(100*time.Millisecond), lost, wk.RunningStages())
	}
	return tw.Flush()
}

// devices summarises a worker's devices: "2 cpu" or "8 gpu NVIDIA H100 80GB HBM3".
func devices(ds []protocol.Device) string {
	counts := map[string]int{}
	for _, d := range ds {
		key := string(d.Kind)
		if d.Kind == protocol.DeviceGPU && d.Name != "" {
			key += " " + d.Name
		}
		counts[key]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
