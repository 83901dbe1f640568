// Package multihost holds draftbench's multi-host tests (issue 9). They run
// the real binaries as users deploy them: `controller serve` and NATS in the
// root network namespace, and one `worker` host agent per pretend host, each
// in a network namespace of its own joined by a veth pair
// (scripts/multihost/netns.sh). Cutting a host's link is `ip link set ...
// down` on its pair, as pulling its cable would be.
//
// The tests need root (network namespaces, a read-only bind mount of the
// models) and iproute2; without them they fail at once and say so. Run them
// with `make test-multihost`, which also cleans up after a crashed run.
package multihost
