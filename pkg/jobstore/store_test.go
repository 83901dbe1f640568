package jobstore

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/draftbench/draftbench/pkg/controller"
	"github.com/draftbench/draftbench/pkg/jobspec"
	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/report"
)

func TestOpen(t *testing.T) {
	acme, err := protocol.NewSubjects("acme.bench")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name                   string
		subj                   protocol.Subjects
		bucket, stream, filter string
		gpuStream, gpuFilter   string
	}{
		{"default prefix", protocol.Subjects{}, "DRAFTBENCH_JOBS", "DRAFTBENCH_RESULTS", "draftbench.results.>", "DRAFTBENCH_GPU", "draftbench.gpu.>"},
		{"own prefix", acme, "ACME_BENCH_JOBS", "ACME_BENCH_RESULTS", "acme.bench.results.>", "ACME_BENCH_GPU", "acme.bench.gpu.>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc := connect(t, startNATS(t, "").ClientURL())
			ctx := testContext(t)
			if _, err := Open(ctx, nc, Options{Subjects: tc.subj}); err != nil {
				t.Fatal(err)
			}
			if BucketName(tc.subj) != tc.bucket || StreamName(tc.subj) != tc.stream {
				t.Errorf("names = %s, %s; want %s, %s", BucketName(tc.subj), StreamName(tc.subj), tc.bucket, tc.stream)
			}
			js, _ := jetstream.New(nc)
			kv, err := js.KeyValue(ctx, tc.bucket)
			if err != nil {
				t.Fatalf("bucket %s: %v", tc.bucket, err)
			}
			kvs, err := kv.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := kvs.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Storage; got != jetstream.FileStorage {
				t.Errorf("bucket storage = %v, want file", got)
			}
			st, err := js.Stream(ctx, tc.stream)
			if err != nil {
				t.Fatalf("stream %s: %v", tc.stream, err)
			}
			cfg := st.CachedInfo().Config
			if !reflect.DeepEqual(cfg.Subjects, []string{tc.filter}) || cfg.Storage != jetstream.FileStorage ||
				cfg.MaxAge != DefaultMaxAge || cfg.MaxBytes != DefaultMaxBytes || cfg.Discard != jetstream.DiscardOld {
				t.Errorf("stream config: subjects %v, storage %v, max age %v, max bytes %d, discard %v",
					cfg.Subjects, cfg.Storage, cfg.MaxAge, cfg.MaxBytes, cfg.Discard)
			}
			// GPU samples published on the monitor's subjects are kept.
			if GPUStreamName(tc.subj) != tc.gpuStream {
				t.Errorf("GPU stream name %s, want %s", GPUStreamName(tc.subj), tc.gpuStream)
			}
			// Acknowledged by the stream once stored (workers publish without waiting).
			if _, err := js.Publish(ctx, tc.subj.GPU("node-a", 3), []byte(`{"host":"node-a","device":3}`)); err != nil {
				t.Fatal(err)
			}
			gst, err := js.Stream(ctx, tc.gpuStream)
			if err != nil {
				t.Fatalf("stream %s: %v", tc.gpuStream, err)
			}
			if g := gst.CachedInfo().Config; !reflect.DeepEqual(g.Subjects, []string{tc.gpuFilter}) || g.MaxAge != GPUMaxAge || g.MaxBytes != GPUMaxBytes {
				t.Errorf("GPU stream config: subjects %v, max age %v, max bytes %d", g.Subjects, g.MaxAge, g.MaxBytes)
			}
			if _, err := gst.GetLastMsgForSubject(ctx, tc.subj.GPU("node-a", 3)); err != nil {
				t.Errorf("the GPU sample was not kept: %v", err)
			}
		})
	}
}

// An operator's limits on an existing stream stay: Open uses it as it is.
func TestOpenKeepsExistingStream(t *testing.T) {
	nc := connect(t, startNATS(t, "").ClientURL())
	ctx := testContext(t)
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "DRAFTBENCH_RESULTS", Subjects: []string{"draftbench.results.>"},
		MaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, nc, Options{}); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "DRAFTBENCH_RESULTS")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxAge; got != time.Hour {
		t.Errorf("max age = %v, want the operator's 1h", got)
	}
}

func TestOpenErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) *nats.Conn
		want  string
	}{
		{"server without JetStream", func(t *testing.T) *nats.Conn {
			ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true})
			if err != nil {
				t.Fatal(err)
			}
			ns.Start()
			t.Cleanup(ns.Shutdown)
			if !ns.ReadyForConnections(waitLimit) {
				t.Fatal("server not ready")
			}
			return connect(t, ns.ClientURL())
		}, "has no JetStream"},
		{"stream of another name on the subjects", func(t *testing.T) *nats.Conn {
			nc := connect(t, startNATS(t, "").ClientURL())
			js, _ := jetstream.New(nc)
			if _, err := js.CreateStream(testContext(t), jetstream.StreamConfig{Name: "EVERYTHING", Subjects: []string{"draftbench.>"}}); err != nil {
				t.Fatal(err)
			}
			return nc
		}, "opening the results stream DRAFTBENCH_RESULTS on draftbench.results.>"},
		{"our stream on other subjects", func(t *testing.T) *nats.Conn {
			nc := connect(t, startNATS(t, "").ClientURL())
			js, _ := jetstream.New(nc)
			if _, err := js.CreateStream(testContext(t), jetstream.StreamConfig{Name: "DRAFTBENCH_RESULTS", Subjects: []string{"other.>"}}); err != nil {
				t.Fatal(err)
			}
			return nc
		}, "it must capture draftbench.results.>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(testContext(t), tc.setup(t), Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open() error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func status(id string, state protocol.JobState, submitted int) protocol.JobStatus {
	return protocol.JobStatus{JobID: id, Name: "job-" + id[:4], State: state, OutputDir: "/results/" + id[:4],
		Submitted: epoch.Add(time.Duration(submitted) * time.Minute),
		Progress:  []protocol.JobProgress{{Mode: "target", Completed: 1, Failed: 0, Total: 3}}}
}

const (
	idA = "aaaaaaaa-0000-4000-8000-000000000001"
	idB = "bbbbbbbb-0000-4000-8000-000000000002"
	idC = "cccccccc-0000-4000-8000-000000000003"
	idD = "dddddddd-0000-4000-8000-000000000004"
	idE = "eeeeeeee-0000-4000-8000-000000000005"
)

func TestSaveGetList(t *testing.T) {
	store := openStore(t, connect(t, startNATS(t, "").ClientURL()))
	ctx := testContext(t)
	// Saved out of order: List sorts by submission.
	saved := []protocol.JobStatus{status(idB, protocol.JobRunning, 2), status(idA, protocol.JobSucceeded, 1), status(idC, protocol.JobQueued, 3)}
	for i := range saved {
		if err := store.Save(ctx, &saved[i]); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range saved {
		t.Run("get "+want.Name, func(t *testing.T) {
			got, err := store.Get(ctx, want.JobID)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("Get() = %+v, want %+v", *got, want)
			}
		})
	}
	t.Run("get unknown", func(t *testing.T) {
		if _, err := store.Get(ctx, idD); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(unknown) error = %v, want ErrNotFound", err)
		}
	})
	t.Run("list", func(t *testing.T) {
		jobs, err := store.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, j := range jobs {
			ids = append(ids, j.JobID)
		}
		if want := []string{idA, idB, idC}; !reflect.DeepEqual(ids, want) {
			t.Errorf("List() ids = %v, want %v", ids, want)
		}
	})
	t.Run("an invalid status is refused", func(t *testing.T) {
		bad := status(idD, "paused", 4)
		if err := store.Save(ctx, &bad); !errors.Is(err, protocol.ErrInvalid) {
			t.Errorf("Save(state paused) error = %v, want ErrInvalid", err)
		}
	})
}

func TestRecover(t *testing.T) {
	nc := connect(t, startNATS(t, "").ClientURL())
	store := openStore(t, nc)
	ctx := testContext(t)
	before := map[string]protocol.JobStatus{
		idA: status(idA, protocol.JobQueued, 1),
		idB: status(idB, protocol.JobRunning, 2),
		idC: status(idC, protocol.JobSucceeded, 3),
		idD: status(idD, protocol.JobCancelled, 4),
	}
	// A running job that had written records: the error says where they are.
	wrote := status(idE, protocol.JobRunning, 5)
	wrote.OutputDir, wrote.Started = t.TempDir(), &epoch
	if err := os.WriteFile(filepath.Join(wrote.OutputDir, report.FileRequests), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before[idE] = wrote
	for _, st := range before {
		if err := store.Save(ctx, &st); err != nil {
			t.Fatal(err)
		}
	}
	now := epoch.Add(time.Hour)
	ended, err := store.Recover(ctx, now, "the controller restarted")
	if err != nil {
		t.Fatal(err)
	}
	if len(ended) != 3 {
		t.Errorf("Recover() ended %d jobs, want the queued and the two running ones", len(ended))
	}
	client := NewClient(nc, protocol.Subjects{}, 0)
	for _, tc := range []struct {
		id        string
		state     protocol.JobState
		errorText string
	}{
		{idA, protocol.JobFailed, "the controller restarted while the job was queued"},
		{idB, protocol.JobFailed, "the controller restarted while the job was running"},
		{idC, protocol.JobSucceeded, ""},
		{idD, protocol.JobCancelled, ""},
		{idE, protocol.JobFailed, "the controller restarted while the job was running; the finished requests are in " +
			filepath.Join(wrote.OutputDir, report.FileRequests) + " (no summary: the controller stopped before writing it)"},
	} {
		t.Run(tc.id[:1]+" "+string(before[tc.id].State), func(t *testing.T) {
			got, err := store.Get(ctx, tc.id)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != tc.state || got.Error != tc.errorText {
				t.Errorf("state %s, error %q; want %s, %q", got.State, got.Error, tc.state, tc.errorText)
			}
			if tc.errorText == "" {
				return
			}
			if got.Finished == nil || !got.Finished.Equal(now) {
				t.Errorf("finished = %v, want %v", got.Finished, now)
			}
			// A follower waiting for the job's end is told.
			final, err := client.Follow(ctx, tc.id, FollowOptions{}, func(Event) error { return nil })
			if err != nil {
				t.Fatal(err)
			}
			if final == nil || final.State != protocol.JobFailed {
				t.Errorf("Follow() final = %+v, want the failed state", final)
			}
		})
	}
}

// A record on the stream is byte for byte the line requests.jsonl holds,
// "<" and ">" included, and anyone subscribed to results.> sees it.
func TestPublishRequestIsTheRequestsLine(t *testing.T) {
	nc := connect(t, startNATS(t, "").ClientURL())
	store := openStore(t, nc)
	ctx := testContext(t)
	sub, err := nc.SubscribeSync(protocol.Subjects{}.AllResults())
	if err != nil {
		t.Fatal(err)
	}
	failed := record(metrics.ModeTarget, 2, 1, false)
	failed.Error = "stage target-1/0: cache <empty> for session > 0"
	recs := []metrics.Request{record(metrics.ModeSpeculative, 0, -1, true), record(metrics.ModeSpeculative, 1, 0, false), failed}
	path := filepath.Join(t.TempDir(), report.FileRequests)
	app, err := report.OpenAppender(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := app.Append(r); err != nil {
			t.Fatal(err)
		}
		if err := store.PublishRequest(ctx, idA, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := bufio.NewScanner(f)
	for i := range recs {
		if !lines.Scan() {
			t.Fatalf("requests.jsonl has %d lines, want %d", i, len(recs))
		}
		msg, err := sub.NextMsg(waitLimit)
		if err != nil {
			t.Fatal(err)
		}
		if msg.Subject != "draftbench.results."+idA+".requests" {
			t.Errorf("record %d on %s", i, msg.Subject)
		}
		if string(msg.Data) != lines.Text() {
			t.Errorf("record %d:\n stream %s\n file   %s", i, msg.Data, lines.Text())
		}
		if v := msg.Header.Get(protocol.HeaderVersion); v != "1" {
			t.Errorf("record %d: version header %q, want 1", i, v)
		}
	}
}

func TestPublishSummary(t *testing.T) {
	job := &controller.Job{ID: idA, Spec: &jobspec.Job{Name: "summary"}, Out: "/results/summary"}
	for _, tc := range []struct {
		name       string
		maxPayload int32
		warnings   int
		want       string // error text; "" = published
	}{
		{"fits", 0, 1, ""},
		{"over max_payload", 8 << 10, 400, "over the server's max_payload (8192); it is only in the output folder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := natsrv.Start(natsrv.Options{MaxPayload: tc.maxPayload})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(srv.Shutdown)
			store := openStore(t, connect(t, srv.ClientURL()))
			res := results(job, []metrics.Request{record(metrics.ModeTarget, 0, 0, false)})
			for i := range tc.warnings {
				res.Warnings = append(res.Warnings, strings.Repeat("x", 40)+string(rune('a'+i%26)))
			}
			err = store.PublishSummary(testContext(t), idA, res)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("PublishSummary() error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
