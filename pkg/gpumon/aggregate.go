package gpumon

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Role is what a device runs.
type Role string

const (
	RoleTarget  Role = "target"
	RoleDrafter Role = "drafter"
	RoleShared  Role = "shared" // target and drafter on one device (placement "same")
)

// Phase is a stretch of the run. The mode phases carry the mode names of DESIGN §7.
type Phase string

const (
	PhaseIdle        Phase = "idle" // before the first mode, between modes, cool-downs
	PhaseSpeculative Phase = "speculative"
	PhaseTarget      Phase = "target" // autoregressive decoding of the target
)

// totalKey is the energy_j key that sums the phases.
const totalKey = "total"

type devKey struct {
	host  string
	index int
}

type mark struct {
	phase Phase
	t     time.Time
	// at holds, per device, the time of the reading taken at this mark (SampleAtMarks): for
	// that device the phase changes there, so the reading is the exact edge of both phases.
	at map[devKey]time.Time
}

// Aggregator collects the samples of every host in the controller, with the role of each
// device and the timeline of phases, and turns them into the GPU results. It is safe for
// concurrent use: samples arrive from subscriptions while the session driver marks phases.
type Aggregator struct {
	mu          sync.Mutex
	interval    time.Duration
	clock       Clock
	log         hclog.Logger
	roles       map[devKey]Role
	samples     map[devKey][]Sample
	marks       []mark
	unavailable map[string]string
	coolDowns   []CoolDownRecord
	atMark      func() []Sample
}

// NewAggregator returns an empty aggregator for samples taken every interval.
func NewAggregator(interval time.Duration, opts ...Option) *Aggregator {
	o := buildOptions(opts)
	return &Aggregator{
		interval:    interval,
		clock:       o.clock,
		log:         o.logger,
		roles:       map[devKey]Role{},
		samples:     map[devKey][]Sample{},
		unavailable: map[string]string{},
	}
}

// SetRole records what device runs on host.
func (a *Aggregator) SetRole(host string, device int, r Role) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.roles[devKey{host, device}] = r
}

// Add records a sample. Samples may arrive late, out of order or twice (a redelivery); the
// result sorts them and keeps one per device and time.
func (a *Aggregator) Add(s Sample) {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := devKey{s.Host, s.Device}
	a.samples[k] = append(a.samples[k], s)
}

// NoteUnavailable records that host's monitor did not start, and why.
func (a *Aggregator) NoteUnavailable(host, reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.unavailable[host] = reason
}

// SampleAtMarks makes every Mark take a reading through sample (EdgeSampler.Sample) and add
// it, so that each phase, however short, begins and ends on a reading of the energy counter
// (or of the power, where there is no counter) of the devices sample reads. Mark calls sample
// without holding the aggregator's lock.
func (a *Aggregator) SampleAtMarks(sample func() []Sample) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.atMark = sample
}

// Mark starts phase p at t; it lasts until the next mark. Time before the first mark is idle.
// Marks may be given in any order; of two marks at the same instant the later call wins.
// With SampleAtMarks, the phase changes for each device read at the mark at the time of that
// reading instead of at t.
func (a *Aggregator) Mark(p Phase, t time.Time) {
	a.mu.Lock()
	sample := a.atMark
	a.mu.Unlock()
	var edge []Sample
	if sample != nil {
		edge = sample()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	m := mark{phase: p, t: t}
	for _, s := range edge {
		k := devKey{s.Host, s.Device}
		a.samples[k] = append(a.samples[k], s)
		if s.EnergyMJ != nil || s.PowerW != nil {
			if m.at == nil {
				m.at = map[devKey]time.Time{}
			}
			m.at[k] = s.T
		}
	}
	a.marks = append(a.marks, m)
}

// timeline answers which phase holds at a time.
type timeline []mark

func newTimeline(marks []mark) timeline {
	tl := slices.Clone(marks)
	slices.SortStableFunc(tl, func(x, y mark) int { return x.t.Compare(y.t) })
	return tl
}

// forDevice is the timeline as device k lived it: a mark that read k moves to the time of
// that reading. The order of the marks is kept (so that of two marks at one instant the later
// call still wins); a mark that would fall before the one ahead of it is put at its time.
func (tl timeline) forDevice(k devKey) timeline {
	out := slices.Clone(tl)
	for i := range out {
		if at, ok := out[i].at[k]; ok {
			out[i].t = at
		}
		if i > 0 && out[i].t.Before(out[i-1].t) {
			out[i].t = out[i-1].t
		}
	}
	return out
}

func (tl timeline) at(t time.Time) Phase {
	p := PhaseIdle
	for _, m := range tl {
		if m.t.After(t) {
			break
		}
		p = m.phase
	}
	return p
}

// firstMode is the start of the first non-idle phase; ok is false when no mode was marked.
func (tl timeline) firstMode() (t time.Time, ok bool) {
	for _, m := range tl {
		if m.phase != PhaseIdle {
			return m.t, true
		}
	}
	return time.Time{}, false
}

// split cuts [from, to] at the marks inside it and calls fn for each piece of non-zero length.
func (tl timeline) split(from, to time.Time, fn func(p Phase, a, b time.Time)) {
	cur, p := from, tl.at(from)
	for _, m := range tl {
		if !m.t.After(from) {
			continue
		}
		if !m.t.Before(to) {
			break
		}
		if m.t.After(cur) {
			fn(p, cur, m.t)
		}
		cur, p = m.t, m.phase
	}
	if to.After(cur) {
		fn(p, cur, to)
	}
}

// Result computes the GPU results. outputTokens gives the output tokens of each mode, for
// joules_per_output_token; a mode without tokens or without energy is left out.
func (a *Aggregator) Result(outputTokens map[Phase]int) Result {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.samples) == 0 {
		return Unavailable(a.noSamplesReason())
	}
	tl := newTimeline(a.marks)
	res := Result{
		Available:            true,
		JoulesPerOutputToken: map[Phase]float64{},
		IntervalS:            a.interval.Seconds(),
		CoolDowns:            slices.Clone(a.coolDowns),
	}
	if len(a.unavailable) > 0 {
		res.UnavailableHosts = make(map[string]string, len(a.unavailable))
		for h, r := range a.unavailable {
			res.UnavailableHosts[h] = r
		}
	}
	phaseEnergy := map[Phase]float64{}
	phaseMeasured := map[Phase]bool{}
	byRole := map[Role]map[string]float64{}
	var idleSum float64
	idleSeen := false
	for _, k := range a.sortedKeys() {
		ss := dedupe(a.samples[k])
		res.Samples += len(ss)
		d, energy := a.device(k, ss, tl.forDevice(k))
		for p, j := range energy {
			phaseEnergy[p] += j
			phaseMeasured[p] = true
		}
		if d.Role != "" && energy != nil {
			if byRole[d.Role] == nil {
				byRole[d.Role] = map[string]float64{}
			}
			for key, j := range d.EnergyJ {
				byRole[d.Role][key] = round3(byRole[d.Role][key] + j)
			}
		}
		if d.IdleBaselineW != nil {
			idleSum += *d.IdleBaselineW
			idleSeen = true
		}
		res.Devices = append(res.Devices, d)
	}
	if len(byRole) > 0 {
		res.EnergyByRoleJ = byRole
	}
	if idleSeen {
		v := round3(idleSum)
		res.IdleBaselineW = &v
	}
	for p, n := range outputTokens {
		if n > 0 && phaseMeasured[p] {
			res.JoulesPerOutputToken[p] = round3(phaseEnergy[p] / float64(n))
		}
	}
	return res
}

func (a *Aggregator) noSamplesReason() string {
	if len(a.unavailable) == 0 {
		return "no GPU samples were received"
	}
	hosts := make([]string, 0, len(a.unavailable))
	for h := range a.unavailable {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	parts := make([]string, len(hosts))
	for i, h := range hosts {
		parts[i] = h + ": " + a.unavailable[h]
	}
	if len(parts) == 1 {
		return a.unavailable[hosts[0]]
	}
	return strings.Join(parts, "; ")
}

func (a *Aggregator) sortedKeys() []devKey {
	keys := make([]devKey, 0, len(a.samples))
	for k := range a.samples {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y devKey) int {
		return cmp.Or(cmp.Compare(x.host, y.host), cmp.Compare(x.index, y.index))
	})
	return keys
}

// dedupe sorts a device's samples by time and keeps the first of any with the same time.
func dedupe(in []Sample) []Sample {
	ss := slices.Clone(in)
	slices.SortStableFunc(ss, func(x, y Sample) int { return x.T.Compare(y.T) })
	return slices.CompactFunc(ss, func(x, y Sample) bool { return x.T.Equal(y.T) })
}

// acc gathers an average and a peak.
type acc struct {
	sum, peak float64
	n         int
}

func (s *acc) add(v float64) {
	if s.n == 0 || v > s.peak {
		s.peak = v
	}
	s.sum += v
	s.n++
}

func (s *acc) stat() *Stat {
	if s.n == 0 {
		return nil
	}
	return &Stat{Avg: round3(s.sum / float64(s.n)), Peak: round3(s.peak)}
}

// device sums up one device. ss is sorted by time. It returns the unrounded energy per phase
// too, so that sums over devices do not add up rounding.
func (a *Aggregator) device(k devKey, ss []Sample, tl timeline) (DeviceResult, map[Phase]float64) {
	d := DeviceResult{Index: k.index, Host: k.host, Role: a.roles[k], Samples: len(ss)}
	for _, s := range ss {
		if s.UUID != "" {
			d.UUID = s.UUID
		}
		if s.Name != "" {
			d.Name = s.Name
		}
	}

	// Averages and peaks cover the mode phases, so that an idle baseline taken before the run
	// or a cool-down does not dilute them; with no mode marked, they cover every sample.
	firstMode, marked := tl.firstMode()
	inStats := func(s Sample) bool { return !marked || tl.at(s.T) != PhaseIdle }
	if !slices.ContainsFunc(ss, inStats) {
		inStats = func(Sample) bool { return true }
	}
	var power, util, mem, idle acc
	var temp acc
	for _, s := range ss {
		if marked && s.T.Before(firstMode) && s.PowerW != nil {
			idle.add(*s.PowerW)
		}
		if !inStats(s) {
			continue
		}
		if s.PowerW != nil {
			power.add(*s.PowerW)
		}
		if s.GPUUtil != nil {
			util.add(float64(*s.GPUUtil))
		}
		if s.MemUsedBytes != nil && s.MemTotalBytes != nil && *s.MemTotalBytes > 0 {
			mem.add(100 * float64(*s.MemUsedBytes) / float64(*s.MemTotalBytes))
		}
		if s.TempC != nil {
			temp.add(float64(*s.TempC))
		}
	}
	d.PowerW, d.UtilizationPct, d.MemoryUsedPct = power.stat(), util.stat(), mem.stat()
	if temp.n > 0 {
		d.TemperatureC = &Peak{Peak: temp.peak}
	}
	if idle.n > 0 {
		v := round3(idle.sum / float64(idle.n))
		d.IdleBaselineW = &v
	}

	energy, method := a.energy(k, ss, tl)
	if energy != nil {
		d.EnergyMethod = method
		d.EnergyJ = map[string]float64{}
		var total float64
		for p, j := range energy {
			d.EnergyJ[string(p)] = round3(j)
			total += j
		}
		d.EnergyJ[totalKey] = round3(total)
	}
	return d, energy
}

// energy splits a device's energy over the phases. With the driver's counter on every sample,
// each interval's counter delta is shared among the phases it spans in proportion to time
// (power taken as constant within one interval). Otherwise power is integrated with the
// trapezoid rule over the linear interpolation of the readings, cut at the phase marks, which
// is exact for power that changes linearly between samples. An interval whose counter went
// backwards (the driver was reloaded) is left out. nil means nothing could be measured.
// With readings at the marks (SampleAtMarks, which tl.forDevice has placed the marks on), no
// interval spans two phases: each phase gets exactly the counter's rise from its first
// reading to its last, or the integral of the power over exactly its own span.
func (a *Aggregator) energy(k devKey, ss []Sample, tl timeline) (map[Phase]float64, EnergyMethod) {
	method := EnergyCounter
	for _, s := range ss {
		if s.EnergyMJ == nil {
			method = EnergyPowerIntegral
			break
		}
	}
	out := map[Phase]float64{}
	measured := false
	for i := 0; i+1 < len(ss); i++ {
		s0, s1 := ss[i], ss[i+1]
		dt := s1.T.Sub(s0.T).Seconds()
		switch method {
		case EnergyCounter:
			if *s1.EnergyMJ < *s0.EnergyMJ {
				a.log.Warn("energy counter went backwards; interval left out",
					"host", k.host, "device", k.index, "at", s1.T, "from_mj", *s0.EnergyMJ, "to_mj", *s1.EnergyMJ)
				continue
			}
			joules := float64(*s1.EnergyMJ-*s0.EnergyMJ) / 1000
			tl.split(s0.T, s1.T, func(p Phase, from, to time.Time) {
				out[p] += joules * (to.Sub(from).Seconds() / dt)
			})
			measured = true
		case EnergyPowerIntegral:
			if s0.PowerW == nil || s1.PowerW == nil {
				continue
			}
			p0, p1 := *s0.PowerW, *s1.PowerW
			watts := func(t time.Time) float64 { return p0 + (p1-p0)*(t.Sub(s0.T).Seconds()/dt) }
			tl.split(s0.T, s1.T, func(p Phase, from, to time.Time) {
				out[p] += (watts(from) + watts(to)) / 2 * to.Sub(from).Seconds()
			})
			measured = true
		}
	}
	if !measured {
		return nil, ""
	}
	return out, method
}

// String names a device in logs and plot legends, as "host/GPU 3".
func (k devKey) String() string { return fmt.Sprintf("%s/GPU %d", k.host, k.index) }
