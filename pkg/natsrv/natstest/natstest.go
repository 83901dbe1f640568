// Package natstest starts an embedded NATS server (with JetStream) for a
// test and connects to it, both closed when the test ends.
package natstest

import (
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/draftbench/draftbench/pkg/natsrv"
)

// Start starts a loopback server with opts and returns it and a connection.
func Start(t testing.TB, opts natsrv.Options) (*natsrv.Server, *nats.Conn) {
	t.Helper()
	srv, err := natsrv.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := natsrv.Connect(srv.ClientURL(), natsrv.ConnectOptions{Name: t.Name(), Token: opts.Token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return srv, nc
}
