package natsrv

import (
	"slices"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/draftbench/draftbench/pkg/protocol"
)

// shippedConfig is the nats-server configuration docker/compose.yaml runs.
const shippedConfig = "../../docker/nats.conf"

// TestShippedConfigGrantsTheRoles: the users of docker/nats.conf have
// exactly the rights of the roles here, so an external server set up from
// it keeps workers from assigning stages as the embedded one does.
func TestShippedConfigGrantsTheRoles(t *testing.T) {
	t.Setenv("DRAFTBENCH_CONTROLLER_PASSWORD", "controller-secret")
	t.Setenv("DRAFTBENCH_WORKER_PASSWORD", "worker-secret")
	opts, err := server.ProcessConfigFile(shippedConfig)
	if err != nil {
		t.Fatalf("%s: %v", shippedConfig, err)
	}
	if !opts.JetStream {
		t.Errorf("%s does not enable JetStream", shippedConfig)
	}
	roles := map[string]Role{"controller": RoleController, "worker": RoleWorker}
	if len(opts.Users) != len(roles) {
		t.Fatalf("%s has %d users, want %d", shippedConfig, len(opts.Users), len(roles))
	}
	for _, u := range opts.Users {
		role, ok := roles[u.Username]
		if !ok {
			t.Errorf("unexpected user %q", u.Username)
			continue
		}
		if u.Password != u.Username+"-secret" {
			t.Errorf("user %s: the password does not come from $DRAFTBENCH_%s_PASSWORD", u.Username, u.Username)
		}
		want, err := Permissions(role, protocol.Subjects{})
		if err != nil {
			t.Fatal(err)
		}
		if !samePermissions(u.Permissions, want) {
			t.Errorf("user %s has %+v, the role %s has %+v", u.Username, describe(u.Permissions), role, describe(want))
		}
	}
}

func samePermissions(a, b *server.Permissions) bool {
	return slices.Equal(describe(a), describe(b))
}

// describe lists rights as sorted "pub allow x" lines (nil: everything).
func describe(p *server.Permissions) []string {
	if p == nil {
		return nil
	}
	var out []string
	add := func(kind string, sp *server.SubjectPermission) {
		if sp == nil {
			return
		}
		for _, s := range sp.Allow {
			out = append(out, kind+" allow "+s)
		}
		for _, s := range sp.Deny {
			out = append(out, kind+" deny "+s)
		}
	}
	add("pub", p.Publish)
	add("sub", p.Subscribe)
	slices.Sort(out)
	return out
}
