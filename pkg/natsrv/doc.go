// Package natsrv runs the NATS server that draftbench embeds (controller run,
// controller serve without --nats, tests) and dials NATS servers with the
// settings every draftbench process shares.
//
// Start gives a server on loopback with JetStream (results and job state live
// there, DESIGN §5), a random port unless one is given, and an optional token.
// It refuses to listen on any other address without authentication: the step
// subjects accept work from anyone who can reach them, and an assignment
// makes a worker start a process.
//
// Authentication is a token (every client alike) or Users: NKey or password
// users, each with a Role whose Permissions keep workers from assigning or
// releasing stages, commanding jobs or using the JetStream API, so that only
// the controller can put a worker to work (docker/nats.conf grants an
// external server the same rights; a test keeps the two equal). TLS makes
// clients connect over tls:// and, with a CA, present certificates. Cluster
// makes the server one member of a NATS cluster whose JetStream keeps
// replicated streams through the loss of a member. Connect speaks all of it:
// a token, a creds file or an NKey seed, a CA and a client certificate, and a
// comma-separated list of servers; Redact hides passwords in URLs for logs.
//
//	srv, err := natsrv.Start(natsrv.Options{StoreDir: "/var/lib/draftbench"})
//	...
//	defer srv.Shutdown()
//	nc, err := natsrv.Connect(srv.ClientURL(), natsrv.ConnectOptions{Name: "controller", Logger: log})
//
// Tests use the same two calls: a real in-process server costs a few
// milliseconds, so nothing in draftbench mocks NATS.
package natsrv
