package placement

import (
	"fmt"
	"math/bits"
	"sort"
	"strings"
)

// stageGroups splits a model's devices (positions into devs) into pipeline
// stages. A stage is one process, so it never spans hosts. By default each
// host is one stage, hosts in order of first appearance. A forced count
// gives every host one stage and hands the rest out one at a time to the
// host with the most devices per stage (the D'Hondt rule), then cuts each
// host's devices into that many contiguous groups of near-equal size.
func stageGroups(m ModelReq, devs []Device) ([][]int, error) {
	var hosts []string
	byHost := map[string][]int{}
	for i, d := range devs {
		if _, ok := byHost[d.Host]; !ok {
			hosts = append(hosts, d.Host)
		}
		byHost[d.Host] = append(byHost[d.Host], i)
	}
	if m.Stages == 0 {
		groups := make([][]int, len(hosts))
		for h, host := range hosts {
			groups[h] = byHost[host]
		}
		return groups, nil
	}
	stages := "model." + m.Role + ".stages"
	if m.Stages > len(devs) {
		return nil, &FieldError{Field: stages, Err: fmt.Errorf("%s = %d but %s has %s (%s); a stage needs at least one device",
			stages, m.Stages, m.Role, devices(len(devs)), list(devs))}
	}
	if m.Stages < len(hosts) {
		return nil, &FieldError{Field: stages, Err: fmt.Errorf("%s = %d but its devices sit on %d hosts (%s); a stage runs on one host, so use at least %d",
			stages, m.Stages, len(hosts), strings.Join(hosts, ", "), len(hosts))}
	}

	perHost := make([]int, len(hosts))
	for h := range perHost {
		perHost[h] = 1
	}
	for extra := m.Stages - len(hosts); extra > 0; extra-- {
		best := -1
		for h, host := range hosts {
			n := len(byHost[host])
			if perHost[h] >= n {
				continue
			}
			// n/perHost[h] > bestN/perHost[best], compared without division.
			if best < 0 || n*perHost[best] > len(byHost[hosts[best]])*perHost[h] {
				best = h
			}
		}
		perHost[best]++ // Stages <= len(devs) guarantees a host with room
	}

	var groups [][]int
	for h, host := range hosts {
		ds := byHost[host]
		k := perHost[h]
		start := 0
		for g := 0; g < k; g++ {
			size := len(ds) / k
			if g < len(ds)%k {
				size++
			}
			groups = append(groups, ds[start:start+size])
			start += size
		}
	}
	return groups, nil
}

// apportion splits total into len(weights) parts in proportion to weights,
// with part i at least mins[i] and, when caps is not nil, at most caps[i].
// It is the largest remainder (Hamilton) method: every part first takes its
// minimum, the rest is shared by the exact integer quotas, and the units
// left by rounding down go to the largest remainders (ties to the earlier
// part), skipping parts at their cap. All-zero weights share equally. The
// caller guarantees sum(mins) <= total <= sum(caps).
func apportion(total int, weights []uint64, mins, caps []int) []int {
	n := len(weights)
	out := make([]int, n)
	rest := total
	for i := range out {
		out[i] = mins[i]
		rest -= mins[i]
	}
	w := append([]uint64(nil), weights...)
	var sum uint64
	for _, x := range w {
		sum += x
	}
	if sum == 0 {
		for i := range w {
			w[i] = 1
		}
		sum = uint64(n)
	}
	room := func(i int) bool { return caps == nil || out[i] < caps[i] }

	rems := make([]uint64, n)
	given := 0
	for i := range w {
		// rest*w[i]/sum exactly: the 128-bit product cannot overflow and
		// the quotient is at most rest, so Div64 cannot panic.
		hi, lo := bits.Mul64(uint64(rest), w[i])
		q, r := bits.Div64(hi, lo, sum)
		add := int(q)
		if caps != nil && out[i]+add > caps[i] {
			add = caps[i] - out[i]
			r = 0
		}
		out[i] += add
		rems[i] = r
		given += add
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return rems[order[a]] > rems[order[b]] })
	for left := rest - given; left > 0; {
		progress := false
		for _, i := range order {
			if left == 0 {
				break
			}
			if room(i) {
				out[i]++
				left--
				progress = true
			}
		}
		if !progress {
			break // sum(caps) < total: the caller's guarantee was broken
		}
	}
	return out
}
