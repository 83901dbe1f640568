package jobstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/draftbench/draftbench/pkg/controller"
	"github.com/draftbench/draftbench/pkg/gpumon"
	"github.com/draftbench/draftbench/pkg/jobrun"
	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/protocol"
	"github.com/draftbench/draftbench/pkg/report"
)

// Defaults of Options: a month of results, at most 1 GiB of them.
const (
	DefaultMaxAge   = 30 * 24 * time.Hour
	DefaultMaxBytes = 1 << 30
)

// opTimeout bounds one JetStream call made without a deadline of its own.
const opTimeout = 10 * time.Second

// ErrNotFound is wrapped when the store holds no job with the given id.
var ErrNotFound = errors.New("no such job")

// Options configure Open.
type Options struct {
	Subjects protocol.Subjects
	// MaxAge and MaxBytes bound the results stream when Open creates it
	// (0: DefaultMaxAge, DefaultMaxBytes; negative: unlimited).
	MaxAge   time.Duration
	MaxBytes int64
	// Replicas of the bucket and the stream in a clustered JetStream (0: 1).
	Replicas int
	Log      hclog.Logger // nil: discarded
}

// Store is the job bucket and the results stream.
type Store struct {
	js         jetstream.JetStream
	kv         jetstream.KeyValue
	subj       protocol.Subjects
	log        hclog.Logger
	maxPayload int64
}

// Open finds or creates the bucket and the stream on nc's server, which
// must have JetStream enabled.
func Open(ctx context.Context, nc *nats.Conn, opt Options) (*Store, error) {
	if opt.Log == nil {
		opt.Log = hclog.NewNullLogger()
	}
	switch {
	case opt.MaxAge == 0:
		opt.MaxAge = DefaultMaxAge
	case opt.MaxAge < 0:
		opt.MaxAge = 0 // JetStream's "no limit"
	}
	switch {
	case opt.MaxBytes == 0:
		opt.MaxBytes = DefaultMaxBytes
	case opt.MaxBytes < 0:
		opt.MaxBytes = -1
	}
	if opt.Replicas <= 0 {
		opt.Replicas = 1
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jobstore: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return nil, fmt.Errorf("jobstore: the NATS server at %s has no JetStream (start nats-server with -js): %w", nc.ConnectedUrlRedacted(), err)
		}
		return nil, fmt.Errorf("jobstore: asking %s for JetStream: %w", nc.ConnectedUrlRedacted(), err)
	}
	s := &Store{js: js, subj: opt.Subjects, log: opt.Log.Named("jobstore"), maxPayload: nc.MaxPayload()}

	bucket := BucketName(opt.Subjects)
	s.kv, err = js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		s.kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      bucket,
			Description: "draftbench job states (key: job id, value: protocol.JobStatus JSON)",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    opt.Replicas,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("jobstore: opening the job bucket %s: %w", bucket, err)
	}

	if err := ensureStream(ctx, js, "results", jetstream.StreamConfig{
		Name:        StreamName(opt.Subjects),
		Description: "draftbench results: per-request records, progress and summary of every job",
		Subjects:    []string{opt.Subjects.AllResults()},
		MaxAge:      opt.MaxAge,
		MaxBytes:    opt.MaxBytes,
		Replicas:    opt.Replicas,
	}); err != nil {
		return nil, err
	}
	// The workers' monitor samples (DESIGN §5: published into JetStream),
	// so power over time can be replayed; bounded tighter than the results,
	// since a host of eight GPUs sends about 200 MB a day.
	if err := ensureStream(ctx, js, "GPU samples", jetstream.StreamConfig{
		Name:        GPUStreamName(opt.Subjects),
		Description: "draftbench GPU monitor samples of every worker (gpumon.Sample JSON)",
		Subjects:    []string{opt.Subjects.AllGPU()},
		MaxAge:      GPUMaxAge,
		MaxBytes:    GPUMaxBytes,
		Replicas:    opt.Replicas,
	}); err != nil {
		return nil, err
	}
	return s, nil
}

// The bounds of the GPU samples stream.
const (
	GPUMaxAge   = 7 * 24 * time.Hour
	GPUMaxBytes = 1 << 30
)

// ensureStream opens the stream cfg names, creating it (file storage,
// oldest dropped at the limits) when it does not exist; an existing stream
// must capture cfg's subject.
func ensureStream(ctx context.Context, js jetstream.JetStream, what string, cfg jetstream.StreamConfig) error {
	want := cfg.Subjects[0]
	stream, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		cfg.Storage, cfg.Retention, cfg.Discard = jetstream.FileStorage, jetstream.LimitsPolicy, jetstream.DiscardOld
		stream, err = js.CreateStream(ctx, cfg)
	}
	if err != nil {
		return fmt.Errorf("jobstore: opening the %s stream %s on %s: %w", what, cfg.Name, want, err)
	}
	if subjects := stream.CachedInfo().Config.Subjects; !slices.Contains(subjects, want) {
		return fmt.Errorf("jobstore: stream %s exists with subjects %v; it must capture %s", cfg.Name, subjects, want)
	}
	return nil
}

// Subjects are the subjects the store publishes on.
func (s *Store) Subjects() protocol.Subjects { return s.subj }

// Save records st in the bucket and publishes it on the job's progress
// subject, so a follower learns of every change.
func (s *Store) Save(ctx context.Context, st *protocol.JobStatus) error {
	data, err := protocol.Encode(st)
	if err != nil {
		return fmt.Errorf("jobstore: saving job %s: %w", st.JobID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if _, err := s.kv.Put(ctx, st.JobID, data); err != nil {
		return fmt.Errorf("jobstore: saving job %s in %s: %w", st.JobID, s.kv.Bucket(), err)
	}
	subject := s.subj.ResultsProgress(st.JobID)
	if _, err := s.js.Publish(ctx, subject, data); err != nil {
		return fmt.Errorf("jobstore: publishing job %s on %s: %w", st.JobID, subject, err)
	}
	return nil
}

// Get returns the stored state of job id (ErrNotFound when there is none).
func (s *Store) Get(ctx context.Context, id string) (*protocol.JobStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	e, err := s.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return nil, fmt.Errorf("job %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("jobstore: reading job %s from %s: %w", id, s.kv.Bucket(), err)
	}
	st := &protocol.JobStatus{}
	if err := protocol.Decode(e.Value(), st); err != nil {
		return nil, fmt.Errorf("jobstore: job %s in %s: %w", id, s.kv.Bucket(), err)
	}
	return st, nil
}

// List returns every stored job, oldest submission first. An entry that
// does not decode is logged and left out: one bad value must not hide the
// other jobs.
func (s *Store) List(ctx context.Context) ([]protocol.JobStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	w, err := s.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("jobstore: listing %s: %w", s.kv.Bucket(), err)
	}
	defer w.Stop()
	var out []protocol.JobStatus
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("jobstore: listing %s: the watcher stopped", s.kv.Bucket())
			}
			if e == nil { // the initial values are all there
				sort.SliceStable(out, func(i, j int) bool { return out[i].Submitted.Before(out[j].Submitted) })
				return out, nil
			}
			var st protocol.JobStatus
			if err := protocol.Decode(e.Value(), &st); err != nil {
				s.log.Warn("skipping a job entry that does not decode", "key", e.Key(), "error", err)
				continue
			}
			out = append(out, st)
		case <-ctx.Done():
			return nil, fmt.Errorf("jobstore: listing %s: %w", s.kv.Bucket(), ctx.Err())
		}
	}
}

// Recover ends the jobs a previous controller left queued or running: it
// died (or was stopped) with them, so they become failed with reason, and
// followers waiting for their end are told. It returns the jobs it ended.
func (s *Store) Recover(ctx context.Context, now time.Time, reason string) ([]protocol.JobStatus, error) {
	jobs, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	var ended []protocol.JobStatus
	for _, st := range jobs {
		if Final(st.State) {
			continue
		}
		st.Error = fmt.Sprintf("%s while the job was %s", reason, st.State)
		st.State, st.Finished, st.Waiting = protocol.JobFailed, &now, ""
		if st.Started == nil || !wroteRecords(st.OutputDir, *st.Started) {
			st.OutputDir = "" // it wrote nothing there
		} else if ok, err := jobrun.Rebuild(st.OutputDir, st.JobID, st.Error, now,
			jobrun.RebuildOptions{GPU: controller.RebuildGPU(ctx, s.GPUSamples), Written: func(res report.Results) {
				// tail --from-start replays it as any finished job's summary
				if err := s.PublishSummary(ctx, st.JobID, res); err != nil {
					s.log.Warn("publishing the rebuilt results", "job", st.JobID, "error", err)
				}
			}}); ok {
			st.Error += "; the results of the finished requests are in " + st.OutputDir
		} else {
			if err != nil {
				s.log.Warn("writing the results of a job left unfinished", "job", st.JobID, "dir", st.OutputDir, "error", err)
			}
			st.Error += fmt.Sprintf("; the finished requests are in %s (no summary: the controller stopped before writing it)",
				filepath.Join(st.OutputDir, report.FileRequests))
		}
		if err := s.Save(ctx, &st); err != nil {
			return ended, err
		}
		ended = append(ended, st)
	}
	return ended, nil
}

// gpuLate bounds how long after it was taken a GPU sample is stored: GPUSamples reads no
// further than until+gpuLate (a worker publishes each sample when it takes it).
const gpuLate = time.Minute

// GPUSamples returns the GPU monitor samples the GPU stream stored from since on that were
// taken no later than until, in the order stored. A stream whose limits dropped samples
// stored after since is an error: the figures would lack their start. since is a time of
// the controller's clock and is compared with the server's storing times: one clock with
// the embedded server of `serve`, two that should agree with an external one.
func (s *Store) GPUSamples(ctx context.Context, since, until time.Time) ([]gpumon.Sample, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*opTimeout)
	defer cancel()
	name := GPUStreamName(s.subj)
	stream, err := s.js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("opening the GPU stream %s: %w", name, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the GPU stream %s: %w", name, err)
	}
	st := info.State
	if st.Msgs == 0 || st.LastTime.Before(since) {
		return nil, nil
	}
	if st.FirstTime.After(since) && st.FirstSeq > 1 {
		return nil, fmt.Errorf("the GPU stream %s keeps samples from %s on only (its limits dropped the older ones), and the job's monitor started at %s",
			name, st.FirstTime.UTC().Format(time.RFC3339), since.UTC().Format(time.RFC3339))
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{s.subj.AllGPU()},
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since})
	if err != nil {
		return nil, fmt.Errorf("reading the GPU stream %s: %w", name, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("reading the GPU stream %s: %w", name, err)
	}
	defer it.Stop()
	var out []gpumon.Sample
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("reading the GPU stream %s: %w", name, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return nil, fmt.Errorf("reading the GPU stream %s: %w", name, err)
		}
		if meta.Timestamp.After(until.Add(gpuLate)) {
			return out, nil
		}
		var smp gpumon.Sample
		// As the live monitor: a sample of another version, or one that does not decode, is left out.
		if protocol.CheckRecordVersion(msg.Headers()) == nil && json.Unmarshal(msg.Data(), &smp) == nil && !smp.T.After(until) {
			out = append(out, smp)
		}
		if meta.Sequence.Stream >= st.LastSeq || meta.NumPending == 0 {
			return out, nil
		}
	}
}

// PublishRequest publishes one finished request of job on its requests
// subject, encoded exactly as requests.jsonl holds it.
func (s *Store) PublishRequest(ctx context.Context, job string, r metrics.Request) error {
	data, err := report.MarshalLine(r)
	if err != nil {
		return fmt.Errorf("jobstore: encoding request %d of job %s: %w", r.Index, job, err)
	}
	return s.publish(ctx, s.subj.ResultsRequests(job), data)
}

// PublishSummary publishes the job's benchmark_results.json object.
func (s *Store) PublishSummary(ctx context.Context, job string, res report.Results) error {
	data, err := report.MarshalLine(res)
	if err != nil {
		return fmt.Errorf("jobstore: encoding the summary of job %s: %w", job, err)
	}
	// Headers and framing take a few hundred bytes of max_payload.
	if limit := s.maxPayload - 1024; int64(len(data)) > limit {
		return fmt.Errorf("jobstore: the summary of job %s is %d bytes, over the server's max_payload (%d); it is only in the output folder", job, len(data), s.maxPayload)
	}
	return s.publish(ctx, s.subj.ResultsSummary(job), data)
}

func (s *Store) publish(ctx context.Context, subject string, data []byte) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if _, err := s.js.PublishMsg(ctx, protocol.RecordMsg(subject, data)); err != nil {
		return fmt.Errorf("jobstore: publishing on %s: %w", subject, err)
	}
	return nil
}
