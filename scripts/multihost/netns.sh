#!/usr/bin/env bash
# netns.sh — pretend this machine is several hosts: one network namespace per
# host, joined to the root namespace (where NATS and the controller run) by a
# veth pair on a /30 of its own. Needs root and iproute2. The multi-host test
# (test/multihost, `make test-multihost`) uses it; so can you:
#
#   sudo scripts/multihost/netns.sh up lab 2            # lab-h1, lab-h2
#   sudo scripts/multihost/netns.sh addr lab 1          # 10.213.0.1: NATS as host 1 sees it
#   sudo ip netns exec lab-h1 bin/worker --nats nats://10.213.0.1:4222 --name host-1 ...
#   sudo scripts/multihost/netns.sh cut lab 2           # pull host 2's cable
#   sudo scripts/multihost/netns.sh restore lab 2
#   sudo scripts/multihost/netns.sh down lab            # kill what runs inside, remove it all
#
# Host i's root-side address is NET.(4i-3), its own NET.(4i-2); NET defaults
# to 10.213.0 (the third argument of `up`, or $DRAFTBENCH_NETNS_NET).
set -euo pipefail

usage() {
	cat >&2 <<'USAGE'
usage: netns.sh up PREFIX N [NET]   create hosts PREFIX-h1..PREFIX-hN (N <= 63, PREFIX <= 10 characters)
       netns.sh down PREFIX         stop the processes inside the hosts and delete them
       netns.sh cut PREFIX I        take host I's link down (its processes keep running)
       netns.sh restore PREFIX I    bring host I's link back
       netns.sh addr PREFIX I       print the root-side address host I reaches NATS on
       netns.sh hosts PREFIX        list the namespaces of PREFIX
USAGE
	exit 2
}

die() {
	echo "netns.sh: $*" >&2
	exit 1
}

need_root() {
	[[ $(id -u) == 0 ]] || die "needs root (network namespaces and veth pairs): run it with sudo"
	command -v ip >/dev/null || die "needs iproute2's ip: apt-get install iproute2"
}

check_prefix() {
	[[ $1 =~ ^[a-z][a-z0-9]{0,9}$ ]] || die "prefix \"$1\" must be 1 to 10 lower-case letters and digits, starting with a letter"
}

check_index() {
	if ! [[ $1 =~ ^[0-9]+$ ]] || (($1 < 1 || $1 > 63)); then
		die "host index \"$1\" is not in 1..63"
	fi
}

ns_name() { echo "$1-h$2"; }
veth_name() { echo "$1v$2"; }

# State of each lab: its NET, so addr/cut need only the prefix.
state_file() { echo "/run/draftbench-netns-$1"; }

net_of() {
	local f
	f=$(state_file "$1")
	[[ -r $f ]] || die "no lab \"$1\" (run: netns.sh up $1 N)"
	cat "$f"
}

up() {
	local prefix=$1 n=$2 net=${3:-${DRAFTBENCH_NETNS_NET:-10.213.0}}
	check_prefix "$prefix"
	if ! [[ $n =~ ^[0-9]+$ ]] || ((n < 1 || n > 63)); then
		die "host count \"$n\" is not in 1..63"
	fi
	[[ $net =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "NET \"$net\" is not three octets such as 10.213.0"
	[[ -e $(state_file "$prefix") ]] && die "lab \"$prefix\" exists: netns.sh down $prefix first"
	echo "$net" >"$(state_file "$prefix")"
	local i ns veth
	for ((i = 1; i <= n; i++)); do
		ns=$(ns_name "$prefix" "$i")
		veth=$(veth_name "$prefix" "$i")
		ip netns add "$ns"
		ip link add "$veth" type veth peer name eth0 netns "$ns"
		ip addr add "$net.$((4 * i - 3))/30" dev "$veth"
		ip link set "$veth" up
		ip -n "$ns" addr add "$net.$((4 * i - 2))/30" dev eth0
		ip -n "$ns" link set eth0 up
		ip -n "$ns" link set lo up
		echo "host $i: namespace $ns, address $net.$((4 * i - 2)), NATS side $net.$((4 * i - 3))"
	done
}

hosts() {
	# `ip netns list` prints "name (id: N)" once a namespace has an id.
	ip netns list | awk '{print $1}' | grep -E "^$1-h[0-9]+$" || true
}

down() {
	local prefix=$1 ns pids
	check_prefix "$prefix"
	for ns in $(hosts "$prefix"); do
		pids=$(ip netns pids "$ns" || true)
		if [[ -n $pids ]]; then
			# shellcheck disable=SC2086 # one pid per word
			kill -TERM $pids 2>/dev/null || true
			for _ in 1 2 3 4 5 6 7 8 9 10; do
				[[ -z $(ip netns pids "$ns" || true) ]] && break
				sleep 0.5
			done
			pids=$(ip netns pids "$ns" || true)
			if [[ -n $pids ]]; then
				# shellcheck disable=SC2086
				kill -KILL $pids 2>/dev/null || true
			fi
		fi
		# Deleting the namespace takes the veth pair with it, but the kernel
		# frees it later; deleting the pair now lets `up` reuse the names at once.
		ip link del "$(veth_name "$prefix" "${ns##*-h}")" 2>/dev/null || true
		ip netns del "$ns"
	done
	rm -f "$(state_file "$prefix")"
}

link() {
	local prefix=$1 i=$2 state=$3
	check_prefix "$prefix"
	check_index "$i"
	# The root side: the host's processes see their carrier go, as when a
	# cable is pulled, and nothing they sent or receive gets through.
	ip link set "$(veth_name "$prefix" "$i")" "$state"
}

[[ $# -ge 2 ]] || usage
cmd=$1
shift
case $cmd in
up) [[ $# -ge 2 && $# -le 3 ]] || usage; need_root; up "$@" ;;
down) [[ $# -eq 1 ]] || usage; need_root; down "$1" ;;
cut) [[ $# -eq 2 ]] || usage; need_root; link "$1" "$2" down ;;
restore) [[ $# -eq 2 ]] || usage; need_root; link "$1" "$2" up ;;
addr) [[ $# -eq 2 ]] || usage; check_prefix "$1"; check_index "$2"; echo "$(net_of "$1").$((4 * $2 - 3))" ;;
hosts) [[ $# -eq 1 ]] || usage; check_prefix "$1"; hosts "$1" ;;
*) usage ;;
esac
