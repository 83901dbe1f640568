package natsrv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/draftbench/draftbench/pkg/protocol"
)

// Role is what a user of the embedded server may do on the bus.
type Role string

const (
	// RoleController may do everything: serve jobs, use JetStream, assign
	// and release stages. People who submit and tail jobs use it too.
	RoleController Role = "controller"
	// RoleWorker is a host agent and the stage processes it starts: it may
	// register, heartbeat, report stages, serve steps, publish GPU samples
	// and answer GPU reads, but never assign or release stages, submit or
	// cancel jobs, or touch JetStream. Only the controller can make a worker
	// start a process.
	RoleWorker Role = "worker"
)

// User is one client identity of the embedded server: an NKey (preferred:
// the server stores only the public key) or a name and password.
type User struct {
	// NKey is the user's public NKey ("U..."); the client proves it holds
	// the seed (ConnectOptions.NKeySeedFile).
	NKey string
	// Name and Password authenticate a user without an NKey.
	Name, Password string
	Role           Role
}

// inboxPrefix is nats.go's default reply prefix, which every draftbench
// request (assign, register, steps) answers on.
const inboxPrefix = "_INBOX.>"

// Permissions are the publish and subscribe rights of role under subj's
// prefix (nil: everything). They follow the subjects of pkg/protocol; a
// worker's stage subjects, stage reports and heartbeats carry ids only the
// controller hands out, so the rights name them with wildcards.
func Permissions(role Role, subj protocol.Subjects) (*server.Permissions, error) {
	switch role {
	case RoleController:
		return nil, nil
	case RoleWorker:
		return &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{
				subj.WorkersRegister(),
				subj.WorkerHeartbeats(),
				subj.AllWorkerStages(),
				subj.AllStages(),
				subj.AllGPU(),
				inboxPrefix,
			}},
			Subscribe: &server.SubjectPermission{Allow: []string{
				subj.AllWorkerAssigns(),
				subj.AllWorkerReleases(),
				subj.AllWorkerStages(),
				subj.AllWorkerGPUReads(),
				subj.AllStages(),
				inboxPrefix,
			}},
		}, nil
	}
	return nil, fmt.Errorf("role %q is not one of %s, %s", role, RoleController, RoleWorker)
}

// serverUsers turns users into the server's NKey and password users.
func serverUsers(users []User, subj protocol.Subjects) ([]*server.NkeyUser, []*server.User, error) {
	var nk []*server.NkeyUser
	var pw []*server.User
	seen := map[string]bool{}
	for i, u := range users {
		where := fmt.Sprintf("user %d", i+1)
		perms, err := Permissions(u.Role, subj)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", where, err)
		}
		switch {
		case u.NKey != "" && (u.Name != "" || u.Password != ""):
			return nil, nil, fmt.Errorf("%s: give an NKey or a name and password, not both", where)
		case u.NKey != "":
			if !nkeys.IsValidPublicUserKey(u.NKey) {
				return nil, nil, fmt.Errorf("%s: %q is not a public user NKey (it starts with U)", where, u.NKey)
			}
			if seen[u.NKey] {
				return nil, nil, fmt.Errorf("%s: NKey %s is listed twice", where, u.NKey)
			}
			seen[u.NKey] = true
			nk = append(nk, &server.NkeyUser{Nkey: u.NKey, Permissions: perms})
		case u.Name != "" && u.Password != "":
			if seen[u.Name] {
				return nil, nil, fmt.Errorf("%s: name %q is listed twice", where, u.Name)
			}
			seen[u.Name] = true
			pw = append(pw, &server.User{Username: u.Name, Password: u.Password, Permissions: perms})
		default:
			return nil, nil, fmt.Errorf("%s: give an NKey, or a name and a password", where)
		}
	}
	return nk, pw, nil
}

// TLS makes the server require TLS of its clients.
type TLS struct {
	CertFile, KeyFile string // the server's certificate and key (PEM)
	// CAFile verifies client certificates (PEM); with it every client must
	// present a certificate it signed.
	CAFile string
}

func (t *TLS) config() (*server.TLSConfigOpts, error) {
	if t.CertFile == "" || t.KeyFile == "" {
		return nil, errors.New("TLS needs a certificate and a key file")
	}
	return &server.TLSConfigOpts{CertFile: t.CertFile, KeyFile: t.KeyFile, CaFile: t.CAFile, Verify: t.CAFile != "", Timeout: tlsTimeout}, nil
}

// tlsTimeout (seconds) gives a handshake over a slow link room; the server's
// default of half a second is tight across hosts.
const tlsTimeout = 5

// authenticated reports whether opts make clients prove who they are.
func (o *Options) authenticated() bool { return o.Token != "" || len(o.Users) > 0 }

// describeAuth names the authentication in use for the start-up log line.
func (o *Options) describeAuth() string {
	var parts []string
	switch {
	case o.Token != "":
		parts = append(parts, "token")
	case len(o.Users) > 0:
		parts = append(parts, fmt.Sprintf("%d user(s)", len(o.Users)))
	default:
		parts = append(parts, "none")
	}
	if o.TLS != nil {
		parts = append(parts, "TLS")
	}
	return strings.Join(parts, ", ")
}

// usersFile is the JSON of `controller serve --users FILE`.
type usersFile struct {
	Users []struct {
		NKey     string `json:"nkey"`
		Name     string `json:"name"`
		Password string `json:"password"`
		Role     Role   `json:"role"`
	} `json:"users"`
}

// ReadUsers reads a users file: {"users": [{"nkey": "U...", "role":
// "worker"}, {"name": "ctl", "password": "...", "role": "controller"}]}.
// Start checks the users themselves (NKey shape, duplicates, roles).
func ReadUsers(path string) ([]User, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	var f usersFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	if len(f.Users) == 0 {
		return nil, fmt.Errorf("users file %s lists no users", path)
	}
	out := make([]User, 0, len(f.Users))
	for i, u := range f.Users {
		if u.Role != RoleController && u.Role != RoleWorker {
			return nil, fmt.Errorf("users file %s: user %d: role %q is not one of %s, %s", path, i+1, u.Role, RoleController, RoleWorker)
		}
		out = append(out, User{NKey: u.NKey, Name: u.Name, Password: u.Password, Role: u.Role})
	}
	return out, nil
}
