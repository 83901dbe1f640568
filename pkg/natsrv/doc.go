// Package natsrv runs the NATS server that draftbench embeds (controller run,
// controller serve without --nats, tests) and dials NATS servers with the
// settings every draftbench process shares.
//
// Start gives a server on loopback with JetStream (results and job state live
// there, DESIGN §5), a random port unless one is given, and an optional token.
// It refuses to listen on any other address without a token: the step
// subjects accept work from anyone who can reach them.
//
//	srv, err := natsrv.Start(natsrv.Options{StoreDir: "/var/lib/draftbench"})
//	...
//	defer srv.Shutdown()
//	nc, err := natsrv.Connect(srv.ClientURL(), natsrv.ConnectOptions{Name: "controller", Logger: log})
//
// Tests use the same two calls: a real in-process server costs a few
// milliseconds, so nothing in draftbench mocks NATS.
package natsrv
