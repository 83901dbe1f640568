package jobrun

import (
	"context"
	"time"

	"github.com/draftbench/draftbench/pkg/metrics"
	"github.com/draftbench/draftbench/pkg/model"
	"github.com/draftbench/draftbench/pkg/sampling"
	"github.com/draftbench/draftbench/pkg/spec"
)

// Local runs requests on models loaded in this process, one session per
// request (no cross-request batching, no coordination: a round's compute time
// is its wall time). Tests and single-process tools use it; the cluster uses
// the NATS session drivers.
type Local struct {
	Target, Drafter *model.Model
	DraftTopK       int
}

var _ Engine = (*Local)(nil)

// Generate implements Engine.
func (l *Local) Generate(ctx context.Context, mode metrics.Mode, g Gen) (GenResult, error) {
	cfg := spec.Config{MaxNewTokens: g.MaxNewTokens, Gamma: g.Gamma, Params: g.Params, DraftTopK: l.DraftTopK,
		StopTokens: g.StopTokens, IgnoreEOS: g.IgnoreEOS}
	var emits []time.Time
	cfg.OnEmit = func(tokens []int) {
		emits = append(emits, time.Now())
		if g.OnEmit != nil {
			g.OnEmit(tokens)
		}
	}
	if err := ctx.Err(); err != nil {
		return GenResult{}, err
	}
	rng := sampling.NewRNG(g.Seed)
	ts := l.Target.NewSession()
	defer ts.Close()
	start := time.Now()
	if mode == metrics.ModeTarget {
		out, err := spec.GenerateAR(ts, g.Prompt, cfg, rng)
		return GenResult{Tokens: out.Tokens, Margins: out.Margins}, err
	}
	ds := l.Drafter.NewSession()
	defer ds.Close()
	out, err := spec.GenerateSpeculative(ts, ds, g.Prompt, cfg, rng)
	res := GenResult{Tokens: out.Tokens, Margins: out.Margins}
	// emits[0] is the prefill's token; emits[i] ends round i.
	for i, r := range out.Rounds {
		mr := ToMetricsRound(r)
		if i+1 < len(emits) {
			prev := start
			if i < len(emits) {
				prev = emits[i]
			}
			mr.Wall = emits[i+1].Sub(prev)
			// The loop's own times of the passes; the rest of the round
			// (the rule, host sampling, bookkeeping) is its overhead.
			mr.Compute = min(r.DraftTime+r.VerifyTime, mr.Wall)
			mr.DraftCompute = min(r.DraftTime, mr.Compute)
		}
		res.Rounds = append(res.Rounds, mr)
	}
	return res, err
}

// ToMetricsRound converts a round of pkg/spec into the record of pkg/metrics.
func ToMetricsRound(r spec.Round) metrics.Round {
	return metrics.Round{Gamma: r.Gamma, Drafted: len(r.Drafted), Accepted: r.Accepted, Emitted: len(r.Emitted),
		AcceptedByPosition: r.AcceptedByPosition, QMass: r.QMass}
}
