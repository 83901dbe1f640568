package report

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/draftbench/draftbench/pkg/metrics"
)

// The plots, written under DirPlots.
const (
	PlotTTFTCDF    = "ttft_cdf.png"
	PlotE2ELCDF    = "e2el_cdf.png"
	PlotTPOT       = "tpot.png"
	PlotAcceptance = "acceptance_by_position.png"
	PlotPower      = "power.png"
)

const plotWidth, plotHeight = 8 * vg.Inch, 5 * vg.Inch

// PlotData is what the plots are drawn from.
type PlotData struct {
	// Speculative and Target are the samples of each mode, nil when the mode did not run.
	// Acceptance by position is computed from Speculative.Rounds.
	Speculative *metrics.Samples
	Target      *metrics.Samples
	// Power holds one series per GPU; empty without a GPU monitor.
	Power []PowerSeries
}

// PowerSeries is the power draw of one device over the run.
type PowerSeries struct {
	Device string    // label, e.g. "host-a/GPU 3"
	T      []float64 // seconds since the start of the run
	Watts  []float64 // len(Watts) == len(T)
}

// Skipped names a plot (or a part of one) that was not drawn and why.
type Skipped struct {
	Plot   string `json:"plot"`
	Reason string `json:"reason"`
}

// WritePlots draws the plots into dir/plots and returns the paths written and what was skipped.
// It never fails: a plot without data, or one that cannot be drawn or written, is skipped with
// its reason, since a missing picture must not cost the run its results.
func WritePlots(dir string, d PlotData) (written []string, skipped []Skipped) {
	out := filepath.Join(dir, DirPlots)
	if err := os.MkdirAll(out, 0o755); err != nil {
		for _, name := range []string{PlotTTFTCDF, PlotE2ELCDF, PlotTPOT, PlotAcceptance, PlotPower} {
			skipped = append(skipped, Skipped{name, fmt.Sprintf("creating %s: %v", out, err)})
		}
		return nil, skipped
	}
	modes := d.modes()
	builders := []struct {
		name  string
		build func() (*plot.Plot, []Skipped, error)
	}{
		{PlotTTFTCDF, func() (*plot.Plot, []Skipped, error) {
			return cdfPlot("Time to first token, CDF", "TTFT (ms)", modes, func(s *metrics.Samples) []float64 { return s.TTFT })
		}},
		{PlotE2ELCDF, func() (*plot.Plot, []Skipped, error) {
			return cdfPlot("End-to-end latency, CDF", "E2EL (ms)", modes, func(s *metrics.Samples) []float64 { return s.E2EL })
		}},
		{PlotTPOT, func() (*plot.Plot, []Skipped, error) { return tpotPlot(modes) }},
		{PlotAcceptance, func() (*plot.Plot, []Skipped, error) { return acceptancePlot(d.Speculative) }},
		{PlotPower, func() (*plot.Plot, []Skipped, error) { return powerPlot(d.Power) }},
	}
	for _, b := range builders {
		path := filepath.Join(out, b.name)
		notes, err := render(path, b.build)
		for _, n := range notes {
			n.Plot = b.name
			skipped = append(skipped, n)
		}
		if err != nil {
			skipped = append(skipped, Skipped{b.name, err.Error()})
			continue
		}
		written = append(written, path)
	}
	return written, skipped
}

// render builds and writes one plot. gonum/plot panics on some degenerate inputs; the panic is
// turned into an error so that it skips this plot only.
func render(path string, build func() (*plot.Plot, []Skipped, error)) (notes []Skipped, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("drawing failed: %v", r)
		}
	}()
	p, notes, err := build()
	if err != nil {
		return notes, err
	}
	c := vgimg.New(plotWidth, plotHeight)
	p.Draw(draw.New(c))
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(&buf); err != nil {
		return notes, fmt.Errorf("encoding PNG: %w", err)
	}
	if err := writeAtomic(path, buf.Bytes()); err != nil {
		return notes, err
	}
	return notes, nil
}

type namedSamples struct {
	name string
	s    *metrics.Samples
}

func (d PlotData) modes() []namedSamples {
	var out []namedSamples
	if d.Speculative != nil {
		out = append(out, namedSamples{"speculative", d.Speculative})
	}
	if d.Target != nil {
		out = append(out, namedSamples{"target", d.Target})
	}
	return out
}

// cdfPlot draws the empirical CDF of one latency for every mode on one plot.
func cdfPlot(title, xLabel string, modes []namedSamples, values func(*metrics.Samples) []float64) (*plot.Plot, []Skipped, error) {
	p := newPlot(title, xLabel, "fraction of requests")
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top = false // a CDF ends top right; the bottom right stays clear
	drawn := 0
	for i, m := range modes {
		v := values(m.s)
		if len(v) == 0 {
			continue
		}
		line, err := plotter.NewLine(ecdf(v))
		if err != nil {
			return nil, nil, fmt.Errorf("%s line: %w", m.name, err)
		}
		line.StepStyle = plotter.PostStep
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(1.5)
		p.Add(line)
		p.Legend.Add(m.name, line)
		drawn++
	}
	if drawn == 0 {
		return nil, nil, errors.New("no completed requests with tokens in any mode")
	}
	return p, nil, nil
}

// ecdf returns the steps of the empirical CDF: (x₍ᵢ₎, i/n) for the sorted sample, starting from
// (x₍₁₎, 0) so the first step is drawn.
func ecdf(values []float64) plotter.XYs {
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	n := float64(len(sorted))
	xys := make(plotter.XYs, 0, len(sorted)+1)
	xys = append(xys, plotter.XY{X: sorted[0], Y: 0})
	for i, x := range sorted {
		xys = append(xys, plotter.XY{X: x, Y: float64(i+1) / n})
	}
	return xys
}

// tpotPlot draws a box plot of TPOT per mode.
func tpotPlot(modes []namedSamples) (*plot.Plot, []Skipped, error) {
	p := newPlot("Time per output token", "", "TPOT (ms)")
	var names []string
	for _, m := range modes {
		if len(m.s.TPOT) == 0 {
			continue
		}
		box, err := plotter.NewBoxPlot(vg.Points(40), float64(len(names)), plotter.Values(m.s.TPOT))
		if err != nil {
			return nil, nil, fmt.Errorf("%s box: %w", m.name, err)
		}
		box.FillColor = plotutil.Color(len(names))
		p.Add(box)
		names = append(names, m.name)
	}
	if len(names) == 0 {
		return nil, nil, errors.New("no request with two or more output tokens in any mode")
	}
	nominalX(p, names)
	return p, nil, nil
}

// acceptancePlot draws the acceptance rate of each draft position as bars.
func acceptancePlot(spec *metrics.Samples) (*plot.Plot, []Skipped, error) {
	if spec == nil {
		return nil, nil, errors.New("speculative mode did not run")
	}
	acc := metrics.Acceptance(spec.Rounds)
	if acc.NumDrafts == 0 {
		return nil, nil, errors.New("no speculative drafts")
	}
	p := newPlot("Acceptance by draft position", "draft position", "acceptance rate")
	p.Y.Min, p.Y.Max = 0, 1
	rates := make(plotter.Values, len(acc.AcceptanceByPosition))
	for i, r := range acc.AcceptanceByPosition {
		if r != nil { // a position no round reached has no bar
			rates[i] = *r
		}
	}
	bars, err := plotter.NewBarChart(rates, vg.Points(30))
	if err != nil {
		return nil, nil, fmt.Errorf("bars: %w", err)
	}
	bars.Color = plotutil.Color(0)
	p.Add(bars)
	names := make([]string, len(acc.AcceptanceByPosition))
	for i := range names {
		names[i] = strconv.Itoa(i + 1)
	}
	nominalX(p, names)
	return p, nil, nil
}

// powerPlot draws one power line per device. A series whose times and readings disagree in
// length is left out and reported, and the others are still drawn.
func powerPlot(series []PowerSeries) (*plot.Plot, []Skipped, error) {
	p := newPlot("GPU power", "time (s)", "power (W)")
	p.Y.Min = 0 // idle draw reads right only against zero
	var notes []Skipped
	drawn := 0
	for _, s := range series {
		if len(s.T) != len(s.Watts) {
			notes = append(notes, Skipped{Reason: fmt.Sprintf("device %s left out: %d times but %d readings", s.Device, len(s.T), len(s.Watts))})
			continue
		}
		if len(s.T) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(s.T))
		for i := range s.T {
			xys[i] = plotter.XY{X: s.T[i], Y: s.Watts[i]}
		}
		line, err := plotter.NewLine(xys)
		if err != nil {
			notes = append(notes, Skipped{Reason: fmt.Sprintf("device %s left out: %v", s.Device, err)})
			continue
		}
		line.Color = plotutil.Color(drawn)
		p.Add(line)
		p.Legend.Add(s.Device, line)
		drawn++
	}
	if drawn == 0 {
		return nil, notes, errors.New("no GPU power samples")
	}
	return p, notes, nil
}

// nominalX labels the categories 0..n-1 on the X axis with half a slot of margin each side, so
// the first and last boxes or bars are not cut by the frame.
func nominalX(p *plot.Plot, names []string) {
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.5, float64(len(names))-0.5
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	return p
}
