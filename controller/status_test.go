package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/draftbench/draftbench/pkg/cluster"
	"github.com/draftbench/draftbench/pkg/jobrun"
	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/report"
)

var (
	t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	t1 = t0.Add(2 * time.Second)
	t2 = t0.Add(75*time.Second + 250*time.Millisecond)
)

const (
	jobA = "aaaaaaaa-0000-4000-8000-000000000001"
	jobB = "bbbbbbbb-0000-4000-8000-000000000002"
)

func TestPrintJobs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		jobs    []protocol.JobStatus
		omitted int
		want    string
	}{
		{"none", nil, 0, "no jobs yet: submit one with `controller submit JOB.hcl`\n"},
		{"older ones omitted", []protocol.JobStatus{{JobID: jobB, Name: "rate", State: protocol.JobRunning, Submitted: t1}}, 3, "" +
			"(3 older jobs not listed: the list must fit in one NATS message)\n" +
			"ID                                    NAME  STATE    SUBMITTED            PROGRESS  OUTPUT\n" +
			"bbbbbbbb-0000-4000-8000-000000000002  rate  running  2026-03-04 05:06:09  -         -\n"},
		{"two", []protocol.JobStatus{
			{JobID: jobA, Name: "quickstart", State: protocol.JobSucceeded, Submitted: t0, OutputDir: "/r/quickstart-aaaaaaaa",
				Progress: []protocol.JobProgress{{Mode: "speculative", Completed: 8, Total: 8}, {Mode: "target", Completed: 7, Failed: 1, Total: 8}}},
			{JobID: jobB, Name: "rate", State: protocol.JobQueued, Submitted: t1, OutputDir: "/r/rate-bbbbbbbb",
				Progress: []protocol.JobProgress{{Mode: "target"}}},
		}, 0, "" +
			"ID                                    NAME        STATE      SUBMITTED            PROGRESS                                OUTPUT\n" +
			"aaaaaaaa-0000-4000-8000-000000000001  quickstart  succeeded  2026-03-04 05:06:07  speculative 8/8, target 7/8 (1 failed)  /r/quickstart-aaaaaaaa\n" +
			"bbbbbbbb-0000-4000-8000-000000000002  rate        queued     2026-03-04 05:06:09  target 0                                /r/rate-bbbbbbbb\n"},
		{"cancelled requests and a waiting job", []protocol.JobStatus{
			{JobID: jobA, Name: "quickstart", State: protocol.JobCancelled, Submitted: t0, OutputDir: "/r/q",
				Progress: []protocol.JobProgress{{Mode: "speculative", Completed: 5, Failed: 1, Cancelled: 2, Total: 30}, {Mode: "target", Total: 30}}},
			{JobID: jobB, Name: "rate", State: protocol.JobRunning, Submitted: t1, OutputDir: "/r/rate", Waiting: "a worker to join",
				Progress: []protocol.JobProgress{{Mode: "target"}}},
		}, 0, "" +
			"ID                                    NAME        STATE              SUBMITTED            PROGRESS                                               OUTPUT\n" +
			"aaaaaaaa-0000-4000-8000-000000000001  quickstart  cancelled          2026-03-04 05:06:07  speculative 5/30 (1 failed, 2 cancelled), target 0/30  /r/q\n" +
			"bbbbbbbb-0000-4000-8000-000000000002  rate        running (waiting)  2026-03-04 05:06:09  target 0                                               /r/rate\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := printJobs(&b, tc.jobs, tc.omitted, time.UTC); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want {
				t.Errorf("printJobs():\n%s\nwant:\n%s", b.String(), tc.want)
			}
		})
	}
}

func TestPrintJob(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	spec := &metrics.Summary{NumRequests: 8, Completed: 8, SpecStats: &metrics.SpecStats{AcceptanceRate: f(0.725), MeanAcceptanceLength: f(3.9)}}
	target := &metrics.Summary{NumRequests: 8, Completed: 7, Failed: 1}
	for _, tc := range []struct {
		name string
		st   protocol.JobStatus
		sum  *report.Results
		want string
	}{
		{"succeeded, with its summary", protocol.JobStatus{JobID: jobA, Name: "quickstart", State: protocol.JobSucceeded,
			Submitted: t0, Started: &t1, Finished: &t2, OutputDir: "/r/q",
			Progress: []protocol.JobProgress{{Mode: "speculative", Completed: 8, Total: 8}, {Mode: "target", Completed: 7, Failed: 1, Total: 8}}},
			&report.Results{Speculative: spec, Target: target,
				Comparison: &metrics.Comparison{SpeedupTPOT: f(1.853), SpeedupE2EL: f(1.7), Lossless: metrics.Lossless{Checked: 7}}}, "" +
				"Job:       aaaaaaaa-0000-4000-8000-000000000001\n" +
				"Name:      quickstart\n" +
				"State:     succeeded\n" +
				"Submitted: 2026-03-04 05:06:07\n" +
				"Started:   2026-03-04 05:06:09\n" +
				"Finished:  2026-03-04 05:07:22\n" +
				"Duration:  1m13.25s\n" +
				"Progress:  speculative 8/8, target 7/8 (1 failed)\n" +
				"Output:    /r/q\n" +
				"Requests:  speculative 8 completed, 0 failed; target 7 completed, 1 failed\n" +
				"Speedup:   TPOT 1.85x (E2EL 1.70x, output throughput n/a)\n" +
				"Accepted:  72.5% of the drafted tokens (mean acceptance length 3.90)\n" +
				"Lossless:  7 checked, 0 mismatched\n"},
		{"one mode, sampled", protocol.JobStatus{JobID: jobA, Name: "t", State: protocol.JobSucceeded, Submitted: t0, OutputDir: "/r/t"},
			&report.Results{Target: target}, "" +
				"Job:       aaaaaaaa-0000-4000-8000-000000000001\n" +
				"Name:      t\n" +
				"State:     succeeded\n" +
				"Submitted: 2026-03-04 05:06:07\n" +
				"Output:    /r/t\n" +
				"Requests:  target 7 completed, 1 failed\n"},
		{"lossless check skipped", protocol.JobStatus{JobID: jobA, Name: "t", State: protocol.JobSucceeded, Submitted: t0},
			&report.Results{Speculative: &metrics.Summary{Completed: 2, Cancelled: 1}, Target: &metrics.Summary{Completed: 2},
				Comparison: &metrics.Comparison{Lossless: metrics.Lossless{Skipped: "sampling at temperature 0.8"}}}, "" +
				"Job:       aaaaaaaa-0000-4000-8000-000000000001\n" +
				"Name:      t\n" +
				"State:     succeeded\n" +
				"Submitted: 2026-03-04 05:06:07\n" +
				"Requests:  speculative 2 completed, 0 failed, 1 cancelled; target 2 completed, 0 failed\n" +
				"Speedup:   TPOT n/a (E2EL n/a, output throughput n/a)\n" +
				"Lossless:  not checked: sampling at temperature 0.8\n"},
		{"queued", protocol.JobStatus{JobID: jobB, Name: "rate", State: protocol.JobQueued, Submitted: t0, OutputDir: "/r/rate"}, nil, "" +
			"Job:       bbbbbbbb-0000-4000-8000-000000000002\n" +
			"Name:      rate\n" +
			"State:     queued\n" +
			"Submitted: 2026-03-04 05:06:07\n" +
			"Output:    /r/rate\n"},
		{"cancelled", protocol.JobStatus{JobID: jobA, Name: "quickstart", State: protocol.JobCancelled, Error: "operator asked",
			Submitted: t0, Started: &t1, Finished: &t2, OutputDir: "/r/q",
			Progress: []protocol.JobProgress{{Mode: "speculative", Completed: 3, Total: 8}}}, nil, "" +
			"Job:       aaaaaaaa-0000-4000-8000-000000000001\n" +
			"Name:      quickstart\n" +
			"State:     cancelled\n" +
			"Error:     operator asked\n" +
			"Submitted: 2026-03-04 05:06:07\n" +
			"Started:   2026-03-04 05:06:09\n" +
			"Finished:  2026-03-04 05:07:22\n" +
			"Duration:  1m13.25s\n" +
			"Progress:  speculative 3/8\n" +
			"Output:    /r/q\n"},
		{"waiting for a worker", protocol.JobStatus{JobID: jobB, Name: "rate", State: protocol.JobRunning, Submitted: t0, Started: &t1,
			Waiting: "a worker to join (the job fails if none joins within 5m0s of its start)", OutputDir: "/r/rate",
			Progress: []protocol.JobProgress{{Mode: "target", Total: 8}}}, nil, "" +
			"Job:       bbbbbbbb-0000-4000-8000-000000000002\n" +
			"Name:      rate\n" +
			"State:     running, waiting for a worker to join (the job fails if none joins within 5m0s of its start)\n" +
			"Submitted: 2026-03-04 05:06:07\n" +
			"Started:   2026-03-04 05:06:09\n" +
			"Progress:  target 0/8\n" +
			"Output:    /r/rate\n"},
		{"failed before writing anything", protocol.JobStatus{JobID: jobA, Name: "quickstart", State: protocol.JobFailed,
			Error: "deploying the models: no worker", Submitted: t0, Started: &t1, Finished: &t2,
			Progress: []protocol.JobProgress{{Mode: "speculative", Total: 8}}}, nil, "" +
			"Job:       aaaaaaaa-0000-4000-8000-000000000001\n" +
			"Name:      quickstart\n" +
			"State:     failed\n" +
			"Error:     deploying the models: no worker\n" +
			"Submitted: 2026-03-04 05:06:07\n" +
			"Started:   2026-03-04 05:06:09\n" +
			"Finished:  2026-03-04 05:07:22\n" +
			"Duration:  1m13.25s\n" +
			"Progress:  speculative 0/8\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := printJob(&b, &tc.st, tc.sum, time.UTC); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want {
				t.Errorf("printJob():\n%s\nwant:\n%s", b.String(), tc.want)
			}
		})
	}
}

func TestPrintWorkers(t *testing.T) {
	gpu := func(i int) protocol.Device {
		return protocol.Device{Index: i, Name: "NVIDIA H100 80GB HBM3", Kind: protocol.DeviceGPU, MemoryBytes: 80 << 30}
	}
	for _, tc := range []struct {
		name    string
		workers []cluster.Worker
		want    string
	}{
		{"none", nil, "no workers have registered: start `worker --nats URL` on each host\n"},
		{"alive and lost", []cluster.Worker{
			{ID: jobA, Host: "dgx-1", LastSeen: t1, Devices: []protocol.Device{gpu(0), gpu(1)},
				Stages: []protocol.StageStatus{{Instance: "target-1", Stages: 1, State: protocol.StageReady}}},
			{ID: jobB, Host: "laptop", LastSeen: t0, Lost: true, Devices: []protocol.Device{{Index: 0, Name: "cpu0", Kind: protocol.DeviceCPU}}},
		}, "" +
			"HOST    ID                                    DEVICES                      LAST HEARTBEAT  LOST  STAGES\n" +
			"dgx-1   aaaaaaaa-0000-4000-8000-000000000001  2 gpu NVIDIA H100 80GB HBM3  1m13.3s ago     no    1\n" +
			"laptop  bbbbbbbb-0000-4000-8000-000000000002  1 cpu                        1m15.3s ago     yes   0\n"},
		// STAGES counts what runs: not the failed and exited stages a worker
		// still reports, nor what a lost worker last reported.
		{"failed, exited and lost stages", []cluster.Worker{
			{ID: jobA, Host: "dgx-1", LastSeen: t1, Devices: []protocol.Device{gpu(0), gpu(1)},
				Stages: []protocol.StageStatus{
					{Instance: "target-1", Stages: 2, State: protocol.StageFailed, Error: "out of memory"},
					{Instance: "target-1", Stage: 1, Stages: 2, State: protocol.StageExited, Error: "released"},
					{Instance: "target-2", Stages: 2, State: protocol.StageReady},
					{Instance: "target-2", Stage: 1, Stages: 2, State: protocol.StageStarting}}},
			{ID: jobB, Host: "dgx-2", LastSeen: t0, Lost: true, Devices: []protocol.Device{gpu(0)},
				Stages: []protocol.StageStatus{{Instance: "drafter-1", Stages: 1, State: protocol.StageReady}}},
		}, "" +
			"HOST   ID                                    DEVICES                      LAST HEARTBEAT  LOST  STAGES\n" +
			"dgx-1  aaaaaaaa-0000-4000-8000-000000000001  2 gpu NVIDIA H100 80GB HBM3  1m13.3s ago     no    2\n" +
			"dgx-2  bbbbbbbb-0000-4000-8000-000000000002  1 gpu NVIDIA H100 80GB HBM3  1m15.3s ago     yes   0\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := printWorkers(&b, tc.workers, t2); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want {
				t.Errorf("printWorkers():\n%s\nwant:\n%s", b.String(), tc.want)
			}
		})
	}
}

func TestDevices(t *testing.T) {
	for _, tc := range []struct {
		name string
		ds   []protocol.Device
		want string
	}{
		{"none", nil, "none"},
		{"cpu", []protocol.Device{{Index: 0, Name: "cpu0", Kind: protocol.DeviceCPU}, {Index: 1, Name: "cpu1", Kind: protocol.DeviceCPU}}, "2 cpu"},
		{"mixed gpus", []protocol.Device{
			{Index: 0, Name: "NVIDIA A100", Kind: protocol.DeviceGPU},
			{Index: 1, Name: "NVIDIA H100", Kind: protocol.DeviceGPU},
			{Index: 2, Name: "NVIDIA H100", Kind: protocol.DeviceGPU},
		}, "1 gpu NVIDIA A100, 2 gpu NVIDIA H100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := devices(tc.ds); got != tc.want {
				t.Errorf("devices() = %q, want %q", got, tc.want)
			}
		})
	}
}

// Argument mistakes are usage errors (exit 2) found before any connection.
func TestClientUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "a", "b"}, "controller status: want at most one argument"},
		{[]string{"cancel"}, "controller cancel: want exactly one job id, got 0 arguments"},
		{[]string{"tail", "a", "b"}, "controller tail: want at most one job id, got 2 arguments"},
		{[]string{"status", "--token", "t", "--creds", "c"}, "controller status: give --token or --creds, not both"},
		{[]string{"submit"}, "controller submit: want exactly one job file, got 0 arguments"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			res := invoke(tc.args...)
			if res.code != 2 || !strings.HasPrefix(res.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", res.code, res.stderr, tc.want)
			}
		})
	}
}

func TestNothingMeasured(t *testing.T) {
	ok := &metrics.Summary{NumRequests: 4, Completed: 4}
	none := &metrics.Summary{NumRequests: 2, Failed: 2}
	res := &jobrun.Result{Results: report.Results{Speculative: none, Target: ok},
		Requests: []metrics.Request{{Mode: metrics.ModeTarget}, {Mode: metrics.ModeSpeculative, Error: "token id 1025 outside the vocabulary"}}}
	err := res.NothingMeasured()
	if want := "no speculative request completed: 2 failed, 0 cancelled (the first: token id 1025 outside the vocabulary)"; err == nil || err.Error() != want {
		t.Errorf("%v, want %q", err, want)
	}
	res.Results.Speculative = ok
	if err := res.NothingMeasured(); err != nil {
		t.Errorf("both modes measured: %v", err)
	}
	res.Results.Target = &metrics.Summary{} // a mode that sent nothing (cut before it) is said by the warnings
	if err := res.NothingMeasured(); err != nil {
		t.Errorf("a mode without requests: %v", err)
	}
}

// TestConnectionHint: the commands a message suggests carry the
// connection flags that differ from the defaults, a token as a placeholder.
func TestConnectionHint(t *testing.T) {
	for _, tc := range []struct {
		name string
		nf   natsFlags
		want string
	}{
		{"defaults", natsFlags{url: defaultNATS}, ""},
		{"another server and a token", natsFlags{url: "nats://head:4222", token: "s3cret"}, " --nats nats://head:4222 --token …"},
		{"a password in the URL", natsFlags{url: "nats://ctl:pw@head:4222"}, " --nats nats://ctl:xxxxx@head:4222"},
		{"files", natsFlags{url: defaultNATS, nkey: "ctl.seed", tls: natsrv.TLSFlags{CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "c.key"}},
			" --nkey ctl.seed --tls-ca ca.pem --tls-cert c.pem --tls-key c.key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.nf.hint(); got != tc.want {
				t.Errorf("hint() = %q, want %q", got, tc.want)
			}
		})
	}
	want := "interrupted; job 67e31249 goes on running: follow it with `controller tail 67e31249 --nats nats://head:4222 --token …`, " +
		"stop it with `controller cancel 67e31249 --nats nats://head:4222 --token …`"
	if err := interrupted("67e31249-0000-4000-8000-000000000000", &natsFlags{url: "nats://head:4222", token: "t"}); err.Error() != want {
		t.Errorf("interrupted():\n%s\nwant\n%s", err, want)
	}
}
