// Package agent is the worker's host agent (`worker`, `worker agent`) and
// the stage process it runs for each assignment (`worker stage`).
//
// # The agent
//
// An Agent offers the host's devices (Discover: the GPUs NVML reports,
// narrowed by --devices or CUDA_VISIBLE_DEVICES, or N CPU devices sharing the
// host's memory) to the controller. Run subscribes to the worker's own
// subjects, then registers on workers.register (a request, retried with
// backoff from 250ms to 10s until a controller answers) and publishes a
// Heartbeat with the state of every stage on workers.<id>.heartbeat. The
// worker id is a UUID kept for the agent's life, so a controller sees the
// same worker when it registers again: after a NATS reconnect, and when the
// controller answers a heartbeat (heartbeats carry a reply subject) with an
// Ack whose Error starts with UnknownWorker.
//
// # GPU reads
//
// ServeGPUReads answers a GPURead on workers.<id>.gpu_read with a reading of
// the energy counters of the host's monitored GPUs, taken on arrival. The
// controller asks at every phase change: only this host can read its GPUs,
// and the periodic samples leave a phase shorter than their interval with
// one reading or none. The worker starts it with its GPU monitor, before the
// Agent, under the id it then gives Config.WorkerID.
//
// # Stages
//
// An Assignment on workers.<id>.assign starts one stage process: the agent
// writes the assignment, as it came on the wire, to a temporary file and
// runs StageCommand ("<this executable> stage") with the flags that file,
// the NATS URL, the worker id and the subject prefix need, directly, never
// through a shell. The environment is the agent's with CUDA_VISIBLE_DEVICES
// narrowed to the group's GPUs (by UUID; empty for CPU devices) and the NATS
// token, if any, in TokenEnv rather than on the command line. The stage logs
// JSON lines; the agent re-logs them with their levels under its own
// "stage" logger and keeps the last stderr lines for the exit report.
//
// A stage reports itself on workers.<id>.stages (StageEvent, a StageStatus
// plus load time and weight bytes): ready once its step subscription is
// known to the server, or failed with the reason. The agent takes the word
// of the process it started (same pid) while that process is starting, and
// publishes on the same subject what only it can see: starting, and the end
// of the process (exited after being ready, failed if it never was, with the
// exit status or signal and the last stderr lines). So the controller can
// follow every transition on one subject, and the heartbeats repeat the
// latest state of each stage until a release forgets it.
//
// The answer to an assignment is the stage's StageStatus once it is ready or
// has failed; a stage not ready after StartTimeout is killed and reported
// failed. The same assignment sent again (a retried request) is answered by
// the stage already running; another assignment for a running (instance,
// stage) is refused. A Release on workers.<id>.release (for one instance, or
// all) sends SIGTERM, waits StopGrace, sends SIGKILL, and is answered with an
// Ack once the processes are gone. When Run's context ends the agent stops
// every stage the same way. On Linux a stage also gets SIGTERM if the agent
// dies without stopping it.
//
// # Who may assign
//
// An assignment makes the host start a process that reads a model folder
// the assignment names, so workers accept assignments and releases only on
// their own subjects, and only the controller should be able to publish
// there. Token authentication (natsrv.Options.Token) lets every holder of
// the token publish anywhere; on a shared network give the controller and
// the workers NATS accounts (--creds) whose permissions let only the
// controller publish on <prefix>.workers.*.assign and .release, and let each
// worker publish on workers.register, its own heartbeat and stages subjects
// and the stage subjects.
//
// # The stage process
//
// RunStage loads the assignment's layer range on the CPU backend (a GPU
// group in a build without -tags cuda fails with ErrNoCUDA), serves it with
// pkg/stage until SIGTERM or until its NATS connection closes for good, and
// reports ready or failed as above.
package agent
