package natsrv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadUsers(t *testing.T) {
	write := func(body string) string {
		p := filepath.Join(t.TempDir(), "users.json")
		os.WriteFile(p, []byte(body), 0o600)
		return p
	}
	users, err := ReadUsers(write(`{"users": [{"nkey": "UABC", "role": "worker"}, {"name": "ctl", "password": "pw", "role": "controller"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || users[0].NKey != "UABC" || users[0].Role != RoleWorker || users[1].Name != "ctl" || users[1].Role != RoleController {
		t.Errorf("users %+v", users)
	}
	for body, want := range map[string]string{
		`{"users": []}`: "lists no users",
		`{"users": [{"nkey": "UABC", "role": "admin"}]}`:              `role "admin" is not one of controller, worker`,
		`{"users": [{"nkey": "UABC", "role": "worker", "extra": 1}]}`: "unknown field",
		`{`: "users file",
	} {
		if _, err := ReadUsers(write(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want it to mention %q", body, err, want)
		}
	}
	if _, err := ReadUsers(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("a missing file must be an error")
	}
}
