// Package testports hands tests the TCP ports of NATS cluster routes.
package testports

import (
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
)

// Route returns a port in [lo, hi) that nothing listens on now, for a
// cluster route. It lies below Linux's ephemeral range (32768 and up by
// default), which matters for routes: the servers of a test cluster start
// one at a time and dial each other's route ports at once, and a dial to a
// port of the ephemeral range that is not listening yet can take that very
// port as its source and connect to itself (TCP simultaneous open), so the
// server meant to listen there finds it in use. A port the kernel hands out
// for :0 is always in that range.
func Route(t testing.TB) int {
	t.Helper()
	const lo, hi = 20000, 32000
	for range 500 {
		p := lo + rand.IntN(hi-lo)
		ln, err := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		return p
	}
	t.Fatalf("no free port in [%d, %d)", lo, hi)
	return 0
}
