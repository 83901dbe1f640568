package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	ctlcluster "github.com/draftbench/draftbench/pkg/cluster"
	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/protocol"
)

// holder registers a worker on host with the controller's registry by hand
// and, while beat is true, heartbeats for it every 50 ms until the test ends.
func holder(t *testing.T, url string, host string, beat bool) string {
	t.Helper()
	nc := connect(t, url, "holder", "")
	var subj protocol.Subjects
	id := uuid.NewString()
	data, err := protocol.Encode(&protocol.Registration{WorkerID: id, Host: host, BuildVersion: "test", StepVersion: protocol.StepVersion, Devices: CPUDevices(1, 1<<30)})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := nc.Request(subj.WorkersRegister(), data, wait)
	if err != nil {
		t.Fatal(err)
	}
	var rep protocol.RegisterReply
	if err := protocol.Decode(msg.Data, &rep); err != nil || rep.Error != "" {
		t.Fatalf("registering the holder: %+v %v", rep, err)
	}
	if !beat {
		return id
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			hb, _ := protocol.Encode(&protocol.Heartbeat{WorkerID: id, Host: host, Sent: time.Now()})
			_ = nc.Publish(subj.WorkerHeartbeat(id), hb)
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return id
}

// registry runs the controller's worker registry, heartbeats every 100 ms.
func registry(t *testing.T, url string) *ctlcluster.Registry {
	t.Helper()
	reg, err := ctlcluster.NewRegistry(connect(t, url, "controller", ""), protocol.Subjects{}, ctlcluster.Options{Heartbeat: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go reg.Watch(ctx)
	t.Cleanup(func() { cancel(); reg.Close() })
	return reg
}

// TestHostNameTakenEndsTheAgent: a second worker started under the host
// name of a live one ends with the controller's reason instead of retrying
// for ever; one that takes over from a crashed worker (silent, not yet
// lost) waits until the controller has lost it and gets in.
func TestHostNameTakenEndsTheAgent(t *testing.T) {
	if HostTaken != ctlcluster.HostTaken {
		t.Fatalf("agent.HostTaken %q differs from cluster.HostTaken %q", HostTaken, ctlcluster.HostTaken)
	}
	t.Run("the holder is alive", func(t *testing.T) {
		url := startServer(t, natsrv.Options{}).ClientURL()
		registry(t, url)
		first := holder(t, url, "hostA", true)
		err := refusedAgent(t, url, "hostA")
		want := `the controller refused the registration: host name taken: "hostA" belongs to worker ` + first + `, which is alive`
		if !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Run() = %v, want an error starting %q", err, want)
		}
	})
	t.Run("the holder crashed", func(t *testing.T) {
		url := startServer(t, natsrv.Options{}).ClientURL()
		reg := registry(t, url)
		crashed := holder(t, url, "hostA", false)
		log, _ := testLogger(t)
		a, err := New(Config{Conn: connect(t, url, "restarted", ""), Name: "hostA", Devices: CPUDevices(1, 1<<30), Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		runAgent(t, a)
		deadline := time.Now().Add(10 * time.Second)
		for {
			alive := reg.Alive()
			if len(alive) == 1 && alive[0].ID == a.ID() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the restarted worker did not get hostA; workers %+v", reg.Workers())
			}
			time.Sleep(20 * time.Millisecond)
		}
		// The crashed worker it replaced is no longer listed (status workers).
		for _, w := range reg.Workers() {
			if w.ID == crashed {
				t.Errorf("the replaced worker %s is still listed: %+v", crashed, w)
			}
		}
	})
}

// TestAnotherVersionEndsTheAgent: a worker of a build whose step protocol
// the controller does not speak (here: one that says nothing of it, as the
// builds before step_version did) is refused at registration with both
// versions named, and the agent stops with that reason instead of retrying;
// without the check it would register and every step would fail later.
func TestAnotherVersionEndsTheAgent(t *testing.T) {
	url := startServer(t, natsrv.Options{}).ClientURL()
	registry(t, url)
	nc := connect(t, url, "old worker", "")
	data, err := protocol.Encode(&protocol.Registration{WorkerID: uuid.NewString(), Host: "old", BuildVersion: "9cb2b1b",
		Devices: CPUDevices(1, 1<<30)})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := nc.Request(protocol.Subjects{}.WorkersRegister(), data, wait)
	if err != nil {
		t.Fatal(err)
	}
	var rep protocol.RegisterReply
	if err := protocol.Decode(msg.Data, &rep); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("another draftbench version: this worker (draftbench 9cb2b1b) speaks step protocol version 1 and this controller (draftbench ) version %d", protocol.StepVersion)
	if !strings.HasPrefix(rep.Error, want) {
		t.Errorf("registration reply %q, want it to start %q", rep.Error, want)
	}

	// An agent a controller refuses so ends at once with the reason (a
	// controller of another version, played here by a plain responder).
	url2 := startServer(t, natsrv.Options{}).ClientURL()
	ctl := connect(t, url2, "newer controller", "")
	refusal := protocol.VersionRefused + ": this worker (draftbench x) speaks step protocol version 2 and this controller (draftbench y) version 3"
	if _, err := ctl.Subscribe(protocol.Subjects{}.WorkersRegister(), func(m *nats.Msg) {
		data, _ := protocol.Encode(&protocol.RegisterReply{Error: refusal})
		_ = m.Respond(data)
	}); err != nil {
		t.Fatal(err)
	}
	if err := refusedAgent(t, url2, "old"); !strings.Contains(err.Error(), refusal) {
		t.Errorf("Run() = %v, want the refusal %q", err, refusal)
	}
}

// refusedAgent runs an agent named host against url and returns the error
// it stops with; an agent still running after 10 s, or stopping without an
// error, fails the test.
func refusedAgent(t *testing.T, url, host string) error {
	t.Helper()
	log, _ := testLogger(t)
	a, err := New(Config{Conn: connect(t, url, "agent "+host, ""), Name: host, Devices: CPUDevices(1, 1<<30), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(context.Background()) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run() = nil, want the controller's refusal")
		}
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("the agent on %s still runs after 10 s", host)
	}
	return nil
}
