package main

import (
	"net"
	"testing"
	"time"

	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/natsrv"
)

func TestRequestLine(t *testing.T) {
	ms := func(k float64) time.Time { return t0.Add(time.Duration(k * float64(time.Millisecond))) }
	spec := metrics.Request{Index: 3, Mode: metrics.ModeSpeculative, InputTokens: 12, OutputTokens: 4, SentAt: t0,
		Emissions: []metrics.Emission{{At: ms(10), Tokens: 1}, {At: ms(16), Tokens: 3}},
		OutputIDs: []int32{1, 2, 3, 4},
		Rounds:    []metrics.Round{{Gamma: 4, Drafted: 4, Accepted: 2, Emitted: 3, AcceptedByPosition: []bool{true, true, false, false}}}}
	target := metrics.Request{Index: 12, Mode: metrics.ModeTarget, InputTokens: 5, OutputTokens: 1, SentAt: t0,
		Emissions: []metrics.Emission{{At: ms(2.5), Tokens: 1}}, OutputIDs: []int32{9}}
	warmup := target
	warmup.Warmup, warmup.Index = true, 0
	failed := metrics.Request{Index: 7, Mode: metrics.ModeTarget, InputTokens: 5, SentAt: t0, Error: "stage target-1/0: lost"}
	silent := metrics.Request{Index: 1, Mode: metrics.ModeTarget, InputTokens: 5, SentAt: t0}
	cancelled := spec
	cancelled.Error, cancelled.Cancelled = "round 2: verify step of session s on draftbench.stage.target-1.0: context canceled (cancelled by the user)", true
	for _, tc := range []struct {
		name string
		r    metrics.Request
		want string
	}{
		{"speculative", spec, "speculative        #3    ttft 10.00 ms  tpot 2.00 ms  e2el 16.00 ms  tokens 12 in 4 out  acceptance 50.0% (length 3.00)"},
		{"one token has no tpot", target, "target             #12   ttft 2.50 ms  tpot -  e2el 2.50 ms  tokens 5 in 1 out"},
		{"warmup", warmup, "target warmup      #0    ttft 2.50 ms  tpot -  e2el 2.50 ms  tokens 5 in 1 out"},
		{"failed", failed, "target             #7    failed after 0 tokens: stage target-1/0: lost"},
		{"no token", silent, "target             #1    no tokens  tokens 5 in 0 out"},
		{"cancelled", cancelled, "speculative        #3    cancelled after 4 tokens: round 2: verify step of session s on draftbench.stage.target-1.0: context canceled (cancelled by the user)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := requestLine(tc.r); got != tc.want {
				t.Errorf("requestLine():\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

// Without a server, and with a server but no controller, every client
// command ends with one line that says what to start.
func TestClientWithoutController(t *testing.T) {
	// A port that was free a moment ago: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "nats://" + l.Addr().String()
	l.Close()
	srv, err := natsrv.Start(natsrv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	bare := srv.ClientURL()

	for _, args := range [][]string{
		{"status"},
		{"status", "workers"},
		{"status", jobA},
		{"tail"},
		{"tail", jobA, "--from-start"},
		{"cancel", jobA},
		{"submit", "testdata/serve-job.hcl", "-var", "target=/t", "-var", "drafter=/d", "-var", "out=/o"},
	} {
		for _, tc := range []struct {
			name, url, want string
		}{
			{"no server", closed, "no NATS server answered at " + closed + ": is `controller serve` running? (nats: no servers available for connection)"},
			{"no controller", bare, "no controller answered on " + bare + ": is `controller serve` running?"},
		} {
			t.Run(args[0]+" "+tc.name, func(t *testing.T) {
				res := invoke(append(args, "--nats", tc.url)...)
				want := "controller " + args[0] + ": error: " + tc.want + "\n"
				if res.code != 1 || res.stderr != want || res.stdout != "" {
					t.Errorf("%v: exit %d, stdout %q, stderr %q; want 1 and %q", args, res.code, res.stdout, res.stderr, want)
				}
			})
		}
	}
}

// A job that does not parse is refused before anything is sent, one
// problem per line with file:line, as validate prints them.
func TestSubmitParseError(t *testing.T) {
	res := invoke("submit", "testdata/serve-bad-job.hcl", "--nats", "nats://127.0.0.1:1")
	want := "controller submit: error: " +
		`testdata/serve-bad-job.hcl:1,1: modes.speculative is on but the job has no model "drafter" block; add one or set modes { speculative = false }` + "\n" +
		`testdata/serve-bad-job.hcl:7,5: placement.strategy "ratio" is not one of multi_gpu_ratio, separate, same, auto` + "\n"
	if res.code != 1 || res.stderr != want {
		t.Errorf("exit %d, stderr:\n%s\nwant 1 and:\n%s", res.code, res.stderr, want)
	}
}
