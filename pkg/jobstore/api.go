package jobstore

import (
	"errors"
	"fmt"
	"strings"

	"github.com/draftbench/draftbench/pkg/cluster"
	"github.com/draftbench/draftbench/pkg/protocol"
)

// Names of the bucket and the stream under the default prefix; another
// prefix gets its own ("acme.draftbench" → ACME_DRAFTBENCH_JOBS), so two
// deployments can share a NATS server.
const (
	bucketSuffix    = "_JOBS"
	streamSuffix    = "_RESULTS"
	gpuStreamSuffix = "_GPU"
)

// BucketName is the KV bucket holding the job states.
func BucketName(subj protocol.Subjects) string { return nameBase(subj) + bucketSuffix }

// StreamName is the stream holding the results.
func StreamName(subj protocol.Subjects) string { return nameBase(subj) + streamSuffix }

// GPUStreamName is the stream holding the workers' GPU monitor samples.
func GPUStreamName(subj protocol.Subjects) string { return nameBase(subj) + gpuStreamSuffix }

func nameBase(subj protocol.Subjects) string {
	return strings.ToUpper(strings.ReplaceAll(subj.Prefix(), ".", "_"))
}

// JobsList is the request subject that lists the jobs (any body → JobList).
func JobsList(subj protocol.Subjects) string { return subj.JobsList() }

// WorkersList is the request subject that lists the workers (any body → WorkerList).
func WorkersList(subj protocol.Subjects) string { return subj.WorkersList() }

// listVersion is the "v" of JobList and WorkerList, protocol.Version's twin.
const listVersion = protocol.Version

// JobList answers JobsList: the jobs the controller knows, oldest first.
type JobList struct {
	V    int                  `json:"v"`
	Jobs []protocol.JobStatus `json:"jobs"`
	// Omitted counts the oldest jobs left out so the reply fits the
	// server's max_payload.
	Omitted int    `json:"omitted,omitempty"`
	Error   string `json:"error,omitempty"`
}

// WorkerList answers WorkersList: the registered workers, alive ones first.
type WorkerList struct {
	V       int              `json:"v"`
	Workers []cluster.Worker `json:"workers"`
}

func checkListVersion(v int, what string) error {
	if v != listVersion {
		return fmt.Errorf("%s: version %d, this build speaks version %d: %w", what, v, listVersion, protocol.ErrVersion)
	}
	return nil
}

// jobToken stands for the job id in a subject built by protocol.Subjects,
// so the wildcard of every job's status (or cancel) subject comes from the
// one place that knows the layout instead of being spelled again here.
const jobToken = "JOBID"

// jobWildcard turns a subject built for jobToken into a subscription
// pattern with '*' in its place, and returns the index of that token.
func jobWildcard(subject string) (string, int, error) {
	tokens := strings.Split(subject, ".")
	for i, t := range tokens {
		if t == jobToken {
			tokens[i] = "*"
			return strings.Join(tokens, "."), i, nil
		}
	}
	return "", 0, fmt.Errorf("subject %q has no job token", subject)
}

// jobFromSubject is the job id at token index i of subject.
func jobFromSubject(subject string, i int) (string, error) {
	tokens := strings.Split(subject, ".")
	if i >= len(tokens) {
		return "", errors.New("subject " + subject + " is too short")
	}
	return tokens[i], nil
}

// Final reports whether a job in state s is over.
func Final(s protocol.JobState) bool {
	return s == protocol.JobSucceeded || s == protocol.JobFailed || s == protocol.JobCancelled
}
