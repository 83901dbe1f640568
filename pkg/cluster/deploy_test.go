package cluster

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/natsrv"
	"github.com/draftbench/draftbench/pkg/natsrv/natstest"
	"github.com/draftbench/draftbench/pkg/placement"
	"github.com/draftbench/draftbench/pkg/protocol"
)

// TestFailedDeploymentReleasesFailedStages: when a stage fails to start, the
// deployment releases it as well as the ones that started, so its worker
// forgets it instead of reporting it (and counting it in `status workers`)
// for as long as it runs.
func TestFailedDeploymentReleasesFailedStages(t *testing.T) {
	_, nc := natstest.Start(t, natsrv.Options{})
	var subj protocol.Subjects
	w := Worker{ID: uuid.NewString(), Host: "gpu-a", Devices: []protocol.Device{{Index: 0, Name: "cpu", Kind: protocol.DeviceCPU}}}

	var mu sync.Mutex
	var released []string
	assigned := map[string]protocol.Assignment{}
	answer := func(m *nats.Msg, msg protocol.Message) {
		data, err := protocol.Encode(msg)
		if err != nil {
			t.Error(err)
			return
		}
		_ = m.Respond(data)
	}
	// The worker starts the target's stage and fails the drafter's.
	if _, err := nc.Subscribe(subj.WorkerAssign(w.ID), func(m *nats.Msg) {
		var a protocol.Assignment
		if err := protocol.Decode(m.Data, &a); err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		assigned[a.Role] = a
		mu.Unlock()
		st := &protocol.StageStatus{WorkerID: w.ID, Instance: a.Instance, Stage: a.Stage, Stages: a.Stages, State: protocol.StageReady}
		if a.Role == placement.RoleDrafter {
			st.State, st.Error = protocol.StageFailed, "out of memory"
		}
		answer(m, st)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe(subj.WorkerRelease(w.ID), func(m *nats.Msg) {
		var r protocol.Release
		if err := protocol.Decode(m.Data, &r); err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		released = append(released, r.Instance)
		mu.Unlock()
		answer(m, &protocol.Ack{})
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	plan := &placement.ModelPlan{Devices: []int{0}, Stages: []placement.Stage{{Devices: []int{0}, Layers: [2]int{0, 2}}}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := Deploy(ctx, nc, subj, []Worker{w}, []ModelSpec{
		{Role: placement.RoleTarget, Dir: "/models/target", DType: "f32", Plan: plan},
		{Role: placement.RoleDrafter, Dir: "/models/drafter", DType: "auto", Plan: plan},
	}, DeployOptions{LoadTimeout: 10 * time.Second, GPUInterval: 250 * time.Millisecond})
	if err == nil {
		t.Fatal("a deployment with a failed stage succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	var roles []string
	for _, inst := range released {
		switch {
		case len(inst) > 6 && inst[:6] == "target":
			roles = append(roles, placement.RoleTarget)
		case len(inst) > 7 && inst[:7] == "drafter":
			roles = append(roles, placement.RoleDrafter)
		}
	}
	// The job's settings reach the workers with each stage.
	if a := assigned[placement.RoleTarget]; a.DType != "f32" || a.GPUIntervalMS != 250 {
		t.Errorf("target assignment: dtype %q, gpu interval %d ms; want f32, 250", a.DType, a.GPUIntervalMS)
	}
	if a := assigned[placement.RoleDrafter]; a.DType != "" {
		t.Errorf("drafter assignment: dtype %q; want none for auto", a.DType)
	}
	slices.Sort(roles)
	if want := []string{placement.RoleDrafter, placement.RoleTarget}; !slices.Equal(roles, want) {
		t.Errorf("released %v, want both the started and the failed instance", released)
	}
}

// TestUnansweredStageReleased: a stage whose assignment got no answer (a
// cancel or a timeout during a long load) is released with the rest, and the
// failed deployment owns nothing, so a stage that starts after all is an
// orphan the registry releases.
func TestUnansweredStageReleased(t *testing.T) {
	_, nc := natstest.Start(t, natsrv.Options{})
	var subj protocol.Subjects
	reg, err := NewRegistry(nc, subj, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	w := Worker{ID: uuid.NewString(), Host: "gpu-a", Devices: []protocol.Device{{Index: 0, Name: "cpu", Kind: protocol.DeviceCPU}}}
	var mu sync.Mutex
	released := map[string]bool{}
	if _, err := nc.Subscribe(subj.WorkerAssign(w.ID), func(m *nats.Msg) {
		var a protocol.Assignment
		if protocol.Decode(m.Data, &a) != nil || a.Role == placement.RoleDrafter {
			return // still loading: no answer
		}
		data, _ := protocol.Encode(&protocol.StageStatus{WorkerID: w.ID, Instance: a.Instance, Stage: a.Stage, Stages: a.Stages, State: protocol.StageReady})
		_ = m.Respond(data)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe(subj.WorkerRelease(w.ID), func(m *nats.Msg) {
		var r protocol.Release
		if protocol.Decode(m.Data, &r) == nil {
			mu.Lock()
			released[strings.SplitN(r.Instance, "-", 2)[0]] = true
			mu.Unlock()
		}
		data, _ := protocol.Encode(&protocol.Ack{})
		_ = m.Respond(data)
	}); err != nil {
		t.Fatal(err)
	}
	plan := &placement.ModelPlan{Devices: []int{0}, Stages: []placement.Stage{{Devices: []int{0}, Layers: [2]int{0, 2}}}}
	_, err = Deploy(context.Background(), nc, subj, []Worker{w}, []ModelSpec{
		{Role: placement.RoleTarget, Dir: "/models/target", Plan: plan},
		{Role: placement.RoleDrafter, Dir: "/models/drafter", Plan: plan},
	}, DeployOptions{LoadTimeout: 300 * time.Millisecond, Registry: reg})
	if err == nil {
		t.Fatal("a deployment with an unanswered stage succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	if !released[placement.RoleTarget] || !released[placement.RoleDrafter] {
		t.Errorf("released %v, want the target and the unanswered drafter", released)
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if len(reg.owned) != 0 {
		t.Errorf("the failed deployment still owns %v", reg.owned)
	}
}
