package cluster

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/natsrv/natstest"
	"github.com/draftbench/draftbench/pkg/protocol"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestRegistryLiveness(t *testing.T) {
	_, nc := natstest.Start(t, natsrv.Options{})
	var subj protocol.Subjects
	clock := &fakeClock{t: time.Unix(1000, 0)}
	reg, err := NewRegistry(nc, subj, Options{Heartbeat: time.Second, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	var lost []string
	reg.OnLost(func(w Worker) { lost = append(lost, w.Host) })

	id := uuid.NewString()
	data, _ := protocol.Encode(&protocol.Registration{WorkerID: id, Host: "gpu-a", BuildVersion: "test", StepVersion: protocol.StepVersion,
		Devices: []protocol.Device{{Index: 0, Name: "cpu", MemoryBytes: 1 << 30, Kind: protocol.DeviceCPU}}})
	msg, err := nc.Request(subj.WorkersRegister(), data, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var reply protocol.RegisterReply
	if err := protocol.Decode(msg.Data, &reply); err != nil || reply.HeartbeatInterval() != time.Second {
		t.Fatalf("reply %+v, %v", reply, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, err := reg.Wait(ctx, 1)
	if err != nil || len(ws) != 1 || ws[0].Host != "gpu-a" {
		t.Fatalf("workers %+v, %v", ws, err)
	}
	if d := Devices(ws); len(d) != 1 || d[0].Host != "gpu-a" || d[0].MemoryBytes != 1<<30 {
		t.Fatalf("devices %+v", d)
	}

	beat := func() {
		hb, _ := protocol.Encode(&protocol.Heartbeat{WorkerID: id, Host: "gpu-a", Sent: clock.Now()})
		if err := nc.Publish(subj.WorkerHeartbeat(id), hb); err != nil {
			t.Fatal(err)
		}
		nc.Flush()
		time.Sleep(20 * time.Millisecond) // let the subscriber run
	}
	for i := 0; i < 5; i++ { // beating every interval keeps it alive
		clock.Add(time.Second)
		beat()
		reg.Check()
	}
	if len(lost) != 0 {
		t.Fatalf("lost %v while beating", lost)
	}
	clock.Add(2900 * time.Millisecond)
	reg.Check()
	if len(lost) != 0 {
		t.Fatal("lost before three intervals")
	}
	clock.Add(200 * time.Millisecond)
	reg.Check()
	reg.Check()
	if len(lost) != 1 || lost[0] != "gpu-a" || len(reg.Alive()) != 0 {
		t.Fatalf("after 3.1 silent intervals: lost %v alive %d", lost, len(reg.Alive()))
	}
	beat()
	if len(reg.Alive()) != 1 {
		t.Fatal("a heartbeat after loss should bring the worker back")
	}
	// Garbage is dropped, never a crash.
	nc.Publish(subj.WorkersRegister(), []byte("{nope"))
	nc.Publish(subj.WorkerHeartbeat(id), []byte(`{"v":99}`))
	nc.Flush()
}

// TestNoLossWhileTheControllerIsDisconnected: when the controller's own NATS
// connection drops (a cluster node dies), heartbeats cannot reach it; that
// must not count against the workers.
func TestNoLossWhileTheControllerIsDisconnected(t *testing.T) {
	_, nc := natstest.Start(t, natsrv.Options{})
	var subj protocol.Subjects
	clock := &fakeClock{t: time.Unix(1000, 0)}
	connected := true
	reg, err := NewRegistry(nc, subj, Options{Heartbeat: time.Second, Now: clock.Now, Connected: func() bool { return connected }})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	id := uuid.NewString()
	data, _ := protocol.Encode(&protocol.Registration{WorkerID: id, Host: "gpu-a", StepVersion: protocol.StepVersion,
		Devices: []protocol.Device{{Index: 0, Name: "cpu", MemoryBytes: 1, Kind: protocol.DeviceCPU}}})
	if _, err := nc.Request(subj.WorkersRegister(), data, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	connected = false
	clock.Add(10 * time.Second)
	reg.Check()
	connected = true
	reg.Check()
	if len(reg.Alive()) != 1 {
		t.Fatal("a worker was lost while the controller itself was disconnected")
	}
	clock.Add(2 * time.Second)
	reg.Check()
	if len(reg.Alive()) != 1 {
		t.Fatal("lost within three intervals of the controller's reconnect")
	}
	clock.Add(1500 * time.Millisecond)
	reg.Check()
	if len(reg.Alive()) != 0 {
		t.Fatal("a worker silent for 3.5 intervals after the reconnect must be lost")
	}
}
