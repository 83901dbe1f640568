package report

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/draftbench/draftbench/pkg/metrics"
)

// lineWidth is the width of vLLM's benchmark_serving banners.
const lineWidth = 50

// maxMismatchLines bounds the mismatches listed on the console; the JSON has them all.
const maxMismatchLines = 10

// PrintSummary writes the console summary in the layout of vLLM's benchmark_serving, so its
// users read it at a glance: a result block per enabled mode, the speculative acceptance block,
// the comparison block and, when GPU results are available, the GPU block.
//
// Nothing unmeasured is printed as a number: a mode that sent no request says it did not run,
// one where no request completed gives its counts and says so, and a figure without a sample
// (a null in the JSON) reads "n/a".
func PrintSummary(w io.Writer, r Results) error {
	var c console
	if r.Speculative != nil {
		c.mode("speculative", r.Speculative)
	}
	if r.Target != nil {
		c.mode("target", r.Target)
	}
	if s := r.Speculative; s != nil && s.SpecStats != nil && s.Completed > 0 {
		c.speculative(s.SpecStats)
	}
	if r.Comparison != nil {
		c.comparison(r.Comparison)
	}
	c.gpu(r.gpu())
	for _, warning := range r.Warnings {
		c.line("Warning: " + warning)
	}
	if _, err := io.WriteString(w, c.String()); err != nil {
		return fmt.Errorf("writing the summary: %w", err)
	}
	return nil
}

type console struct{ strings.Builder }

// banner centres title in a line of fill, as Python's "{s:{c}^{n}}".format does (the odd
// character goes to the right).
func (c *console) banner(title string, fill byte) {
	pad := max(lineWidth-len(title), 0)
	c.line(strings.Repeat(string(fill), pad/2) + title + strings.Repeat(string(fill), pad-pad/2))
}

func (c *console) end() { c.line(strings.Repeat("=", lineWidth)) }

func (c *console) line(s string) {
	c.WriteString(strings.TrimRight(s, " "))
	c.WriteByte('\n')
}

// notMeasured stands for a figure without a sample (null in the JSON).
const notMeasured = "n/a"

// kv writes one "{:<40} {:<10}" row; trailing blanks are trimmed. A nil *float64 is a figure
// that was not measured.
func (c *console) kv(label string, value any) {
	switch v := value.(type) {
	case float64:
		value = fmt.Sprintf("%.2f", v)
	case *float64:
		value = notMeasured
		if v != nil {
			value = fmt.Sprintf("%.2f", *v)
		}
	}
	c.line(fmt.Sprintf("%-40s %v", label, value))
}

func (c *console) mode(name string, s *metrics.Summary) {
	c.banner(" Serving Benchmark Result ("+name+") ", '=')
	if s.NumRequests == 0 {
		c.line("Did not run: no " + name + " request was sent.")
		c.end()
		return
	}
	c.kv("Successful requests:", s.Completed)
	c.kv("Failed requests:", s.Failed)
	if s.Cancelled > 0 {
		c.kv("Cancelled requests:", s.Cancelled)
	}
	c.load(s.Load)
	c.kv("Benchmark duration (s):", s.DurationS)
	c.kv("Total input tokens:", s.TotalInputTokens)
	c.kv("Total generated tokens:", s.TotalOutputTokens)
	if s.Completed == 0 {
		c.line("No request completed: there is no throughput or latency to report.")
		c.end()
		return
	}
	c.kv("Request throughput (req/s):", s.RequestThroughput)
	c.kv("Output token throughput (tok/s):", s.OutputThroughput)
	c.kv("Total Token throughput (tok/s):", s.TotalTokenThroughput)
	c.distribution("Time to First Token", "TTFT", s.TTFT)
	c.distribution("Time per Output Token (excl. 1st token)", "TPOT", s.TPOT)
	c.distribution("Inter-token Latency", "ITL", s.ITL)
	c.distribution("End-to-end Latency", "E2EL", s.E2EL)
	c.end()
}

// load is how the mode was sent, in vLLM's words where it has them.
func (c *console) load(l *metrics.Load) {
	if l == nil {
		return
	}
	rate := l.Mode == "rate"
	if rate {
		c.kv("Traffic request rate (req/s):", l.RequestRate)
		if l.Burstiness != nil {
			b := fmt.Sprintf("%.2f", *l.Burstiness)
			if l.Arrival != nil {
				b += " (" + *l.Arrival + " arrivals)"
			}
			c.kv("Burstiness factor:", b)
		}
		// The drawn arrival times hold their own rate (a Poisson draw of a
		// short run is not exactly the asked rate); the sends, theirs.
		c.kv("Scheduled request rate (req/s):", l.ScheduledRate)
		c.kv("Achieved request rate (req/s):", l.AchievedRate)
	}
	if l.MaxConcurrency != nil {
		c.kv("Maximum request concurrency:", *l.MaxConcurrency)
	}
	if rate || l.MaxConcurrency != nil {
		c.kv("Peak requests in flight:", l.PeakInFlight)
	}
}

func (c *console) distribution(title, short string, d *metrics.Distribution) {
	c.banner(title, '-')
	if d == nil {
		c.kv("Mean "+short+" (ms):", notMeasured)
		c.kv("Median "+short+" (ms):", notMeasured)
		c.kv("P99 "+short+" (ms):", notMeasured)
		return
	}
	c.kv("Mean "+short+" (ms):", d.Mean)
	c.kv("Median "+short+" (ms):", d.Median)
	c.kv("P99 "+short+" (ms):", d.P99)
}

func (c *console) speculative(s *metrics.SpecStats) {
	c.banner(" Speculative Decoding ", '=')
	c.kv("Drafts:", s.NumDrafts)
	c.kv("Draft tokens:", s.NumDraftTokens)
	c.kv("Accepted tokens:", s.NumAcceptedTokens)
	c.kv("Acceptance rate (%):", percent(s.AcceptanceRate))
	c.kv("Mean acceptance length:", s.MeanAcceptanceLength)
	if s.DraftQMass != nil {
		c.kv("Drafter mass kept by q (%):", percent(s.DraftQMass))
	}
	c.kv("Draft cost per token / target step:", s.DraftCostRatio)
	if t := s.RoundTime; t != nil {
		c.kv("Mean round (ms):", t.Wall)
		c.kv("  drafter / target / overhead (ms):", fmt.Sprintf("%.2f / %.2f / %.2f", t.Drafter, t.Target, t.Overhead))
	}
	for i, rate := range s.AcceptanceByPosition {
		c.kv(fmt.Sprintf("Acceptance at position %d (%%):", i+1), percent(rate))
	}
	c.distribution("Coordination Overhead", "overhead", s.CoordinationOverhead)
	c.end()
}

func (c *console) comparison(cmp *metrics.Comparison) {
	c.banner(" Speculative vs Target ", '=')
	c.kv("Speedup, median TPOT:", speedup(cmp.SpeedupTPOT))
	c.kv("Speedup, median E2EL:", speedup(cmp.SpeedupE2EL))
	c.kv("Speedup, output throughput:", speedup(cmp.SpeedupOutputThroughput))
	l := cmp.Lossless
	if l.Skipped != "" {
		c.kv("Lossless check:", "skipped ("+l.Skipped+")")
	} else {
		c.kv("Lossless check, requests compared:", l.Checked)
		c.kv("Lossless check, outputs differing:", l.Mismatched)
		if l.Mismatched > 0 {
			c.kv("Lossless check, differing at a near-tie:", l.NearTies)
		}
		for i, m := range l.Mismatches {
			if i == maxMismatchLines {
				c.line(fmt.Sprintf("  ... and %d more in %s", len(l.Mismatches)-i, FileResults))
				break
			}
			v := fmt.Sprint(m.Position)
			if m.SpeculativeMargin != nil && m.TargetMargin != nil {
				what := "not a near-tie"
				if m.NearTie {
					what = "near-tie"
				}
				v += fmt.Sprintf(" (%s: margins %.2g, %.2g)", what, *m.SpeculativeMargin, *m.TargetMargin)
			}
			c.kv(fmt.Sprintf("  Prompt %d, first differing token:", m.Index), v)
		}
	}
	c.end()
}

func speedup(v *float64) string {
	if v == nil {
		return notMeasured
	}
	return fmt.Sprintf("%.2fx", *v)
}

// gpuView reads the GPU results by their DESIGN §7 keys, whichever type gpumon gives them.
// energy_j may be one number or an object per mode phase; both are shown.
type gpuView struct {
	Available *bool  `json:"available"`
	Reason    string `json:"reason"`
	Devices   []struct {
		Index  int    `json:"index"`
		Name   string `json:"name"`
		Host   string `json:"host"`
		Role   string `json:"role"`
		PowerW struct {
			Avg  float64 `json:"avg"`
			Peak float64 `json:"peak"`
		} `json:"power_w"`
		EnergyJ json.RawMessage `json:"energy_j"`
	} `json:"devices"`
	JoulesPerOutputToken map[string]float64 `json:"joules_per_output_token"`
}

func (c *console) gpu(v any) {
	data, err := json.Marshal(v)
	if err != nil {
		return
	}
	var g gpuView
	if err := json.Unmarshal(data, &g); err != nil {
		return // not the shape of DESIGN §7: nothing sensible to print
	}
	if g.Available != nil && !*g.Available {
		c.banner(" GPU ", '=')
		c.kv("GPU monitor:", "not available ("+g.Reason+")")
		c.end()
		return
	}
	if len(g.Devices) == 0 && len(g.JoulesPerOutputToken) == 0 {
		return
	}
	c.banner(" GPU ", '=')
	for _, d := range g.Devices {
		head := fmt.Sprintf("GPU %d: %s", d.Index, d.Name)
		if where := nonEmpty(d.Host, d.Role); len(where) > 0 {
			head += " (" + strings.Join(where, ", ") + ")"
		}
		c.line(head)
		c.kv("  Power avg / peak (W):", fmt.Sprintf("%.2f / %.2f", d.PowerW.Avg, d.PowerW.Peak))
		c.energy(d.EnergyJ)
	}
	for _, mode := range sortedKeys(g.JoulesPerOutputToken) {
		c.kv("Energy per token, "+mode+" (J):", g.JoulesPerOutputToken[mode])
	}
	c.end()
}

func (c *console) energy(raw json.RawMessage) {
	var total float64
	if err := json.Unmarshal(raw, &total); err == nil {
		c.kv("  Energy (J):", total)
		return
	}
	var byPhase map[string]float64
	if err := json.Unmarshal(raw, &byPhase); err == nil {
		for _, phase := range sortedKeys(byPhase) {
			c.kv("  Energy, "+phase+" (J):", byPhase[phase])
		}
	}
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// percent is a rate as a percentage; nil (not measured) stays nil.
func percent(rate *float64) *float64 {
	if rate == nil {
		return nil
	}
	v := 100 * *rate
	return &v
}
