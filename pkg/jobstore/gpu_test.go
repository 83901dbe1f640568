package jobstore

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/draftbench/draftbench/pkg/gpumon"
	"github.com/draftbench/draftbench/pkg/jobrun"
	"github.com/draftbench/draftbench/pkg/jobspec"
	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/report"
)

// publishSample publishes s as a worker's monitor does.
func publishSample(t *testing.T, nc *nats.Conn, s gpumon.Sample) {
	t.Helper()
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.PublishMsg(protocol.RecordMsg(protocol.Subjects{}.GPU(s.Host, s.Device), data)); err != nil {
		t.Fatal(err)
	}
}

// storedBy waits until the GPU stream holds n messages.
func storedBy(t *testing.T, nc *nats.Conn, n uint64) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	for {
		st, err := js.Stream(ctx, GPUStreamName(protocol.Subjects{}))
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs >= n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the GPU stream holds %d messages, want %d", info.State.Msgs, n)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// pause lets the clock move on, so stream times before and after it differ.
func pause() { time.Sleep(20 * time.Millisecond) }

// TestGPUSamples: the samples of a job's window are those stored from the monitor's start on
// and taken no later than until; records of another version or that do not decode are left
// out, as the live monitor leaves them out. A stream whose limits dropped samples of the
// window is an error, and a window after every stored sample holds none.
func TestGPUSamples(t *testing.T) {
	nc := connect(t, startNATS(t, "").ClientURL())
	store := openStore(t, nc)
	ctx := testContext(t)
	watts := 250.0
	sample := func(dev int, at time.Time) gpumon.Sample {
		return gpumon.Sample{Host: "gpu-a", Device: dev, UUID: "GPU-x", T: at.Round(0).UTC(), PowerW: &watts}
	}
	beforeStart := time.Now()
	publishSample(t, nc, sample(0, time.Now())) // before the monitor started
	storedBy(t, nc, 1)
	pause()
	since := time.Now()
	pause()
	in := []gpumon.Sample{sample(0, time.Now()), sample(1, time.Now())}
	for _, s := range in {
		publishSample(t, nc, s)
	}
	until := time.Now()
	publishSample(t, nc, sample(0, until.Add(time.Second))) // taken after until
	newer := protocol.RecordMsg(protocol.Subjects{}.GPU("gpu-a", 0), []byte(`{"host":"gpu-a"}`))
	newer.Header.Set(protocol.HeaderVersion, "999")
	if err := nc.PublishMsg(newer); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(protocol.Subjects{}.GPU("gpu-a", 0), []byte("not json")); err != nil {
		t.Fatal(err)
	}
	storedBy(t, nc, 6)

	got, err := store.GPUSamples(ctx, since, until)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in) {
		t.Fatalf("%d samples, want %d: %+v", len(got), len(in), got)
	}
	for i := range in {
		if got[i].Device != in[i].Device || !got[i].T.Equal(in[i].T) {
			t.Errorf("sample %d: %+v, want %+v", i, got[i], in[i])
		}
	}
	if got, err := store.GPUSamples(ctx, time.Now().Add(time.Minute), time.Now().Add(2*time.Minute)); err != nil || len(got) != 0 {
		t.Errorf("a window after every sample: %v, %v", got, err)
	}

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, GPUStreamName(protocol.Subjects{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSequence(3)); err != nil { // as the limits drop the oldest
		t.Fatal(err)
	}
	if _, err := store.GPUSamples(ctx, beforeStart, until); err == nil || !strings.Contains(err.Error(), "its limits dropped the older ones") {
		t.Errorf("samples of the window dropped: %v", err)
	}
}

// TestRecoverRebuildsTheGPUSection: a job a controller left running had its monitor's samples
// kept in the GPU stream; the restarted controller's Recover writes the job's results with the
// GPU section rebuilt from them, on the monitor setup and phase marks the job kept, and with
// the environment and dataset sections the job kept.
func TestRecoverRebuildsTheGPUSection(t *testing.T) {
	nc := connect(t, startNATS(t, "").ClientURL())
	store := openStore(t, nc)
	ctx := testContext(t)
	spec, err := jobspec.Parse("job.hcl", []byte(`job "cut" {
  model "target" { path = "/m" }
  dataset "prompts" { prompts = ["a"] }
  modes { speculative = false }
  gpu_monitor { interval = "100ms" }
}
`), jobspec.Config{})
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now().Round(0)
	pause()
	// The worker's samples: the energy counter rises by 1 J every 10 ms.
	var mj uint64
	var at []time.Time
	for i := range 6 {
		w := 100.0
		mj += 1000 * uint64(i)
		s := gpumon.Sample{Host: "gpu-a", Device: 0, UUID: "GPU-a0", T: time.Now().Round(0).UTC(), PowerW: &w, EnergyMJ: &mj}
		at = append(at, s.T)
		publishSample(t, nc, s)
		pause()
	}
	storedBy(t, nc, 6)
	dir := t.TempDir()
	sent := at[1]
	rec := metrics.Request{ID: "00000000-0000-4000-8000-000000000001", Mode: metrics.ModeTarget, InputTokens: 1, OutputTokens: 2,
		SentAt: sent, FinishedAt: at[4], OutputIDs: []int32{5, 6},
		Emissions: []metrics.Emission{{At: at[2], Tokens: 1}, {At: at[4], Tokens: 1}}}
	app, err := report.OpenAppender(filepath.Join(dir, report.FileRequests))
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Append(rec); err != nil {
		t.Fatal(err)
	}
	app.Close()
	setup := `{"interval_ns":100000000,"since":"` + started.UTC().Format(time.RFC3339Nano) + `","roles":[{"host":"gpu-a","device":0,"role":"target"}]}`
	kept, err := json.Marshal(jobrun.Kept{ID: idE, Started: started, Spec: spec, Planned: 1,
		Environment: json.RawMessage(`{"controller_host":"ctl-1"}`), Dataset: json.RawMessage(`{"source":"prompts","records":1}`),
		GPU: json.RawMessage(setup), Marks: []jobrun.Mark{{Phase: "target", T: sent}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, report.FileJob), kept, 0o644); err != nil {
		t.Fatal(err)
	}
	st := status(idE, protocol.JobRunning, 1)
	st.OutputDir, st.Started = dir, &started
	if err := store.Save(ctx, &st); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Recover(ctx, time.Now(), "the controller restarted"); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, report.FileResults))
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Job         report.Job
		Environment map[string]any
		Dataset     map[string]any
		GPU         gpumon.Result
		Warnings    []string
	}
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	if res.Job.Outcome != report.OutcomeFailed || res.Environment["controller_host"] != "ctl-1" || res.Dataset["records"] != 1.0 {
		t.Errorf("rebuilt results: job %+v, environment %v, dataset %v", res.Job, res.Environment, res.Dataset)
	}
	g := res.GPU
	if !g.Available || len(g.Devices) != 1 || g.Devices[0].Role != gpumon.RoleTarget || g.Devices[0].Samples != 5 {
		t.Fatalf("rebuilt GPU section %+v, want gpu-a/0 as target with the 5 samples up to the last request", g)
	}
	// The counter's rise from the mark (sample 1) to the last request (sample 4): 2+3+4 J.
	if e := g.Devices[0].EnergyJ; e["target"] != 9 || e["idle"] != 1 {
		t.Errorf("energy %v, want 9 J target and 1 J idle before it", e)
	}
	if j := g.JoulesPerOutputToken[gpumon.PhaseTarget]; j != 4.5 {
		t.Errorf("J/token %v, want 4.5", j)
	}
	if w := strings.Join(res.Warnings, "\n"); !strings.Contains(w, "the GPU figures were rebuilt after the controller stopped from the 5 samples") {
		t.Errorf("warnings %q", res.Warnings)
	}
}
