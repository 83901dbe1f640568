package report

import (
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/draftbench/draftbench/pkg/metrics"
)

var allPlots = []string{PlotTTFTCDF, PlotE2ELCDF, PlotTPOT, PlotAcceptance, PlotPower}

func TestWritePlots(t *testing.T) {
	fx := loadFixture(t)
	power := []PowerSeries{
		{Device: "node-a/GPU 0", T: []float64{0, 1, 2, 3}, Watts: []float64{90, 410, 420, 95}},
		{Device: "node-a/GPU 1", T: []float64{0, 1, 2, 3}, Watts: []float64{60, 180, 175, 62}},
	}
	tests := []struct {
		name        string
		data        PlotData
		wantWritten []string
		wantSkipped map[string]string // plot -> part of the reason
	}{
		{
			name:        "all data",
			data:        PlotData{Speculative: fx.spec, Target: fx.target, Power: power},
			wantWritten: allPlots,
		},
		{
			name: "no data",
			data: PlotData{},
			wantSkipped: map[string]string{
				PlotTTFTCDF: "no completed requests", PlotE2ELCDF: "no completed requests",
				PlotTPOT: "no request with two or more output tokens", PlotAcceptance: "speculative mode did not run",
				PlotPower: "no GPU power samples",
			},
		},
		{
			name:        "target only, one bad power series",
			data:        PlotData{Target: fx.target, Power: []PowerSeries{power[0], {Device: "node-b/GPU 2", T: []float64{0, 1}, Watts: []float64{5}}}},
			wantWritten: []string{PlotTTFTCDF, PlotE2ELCDF, PlotTPOT, PlotPower},
			wantSkipped: map[string]string{PlotAcceptance: "speculative mode did not run", PlotPower: "device node-b/GPU 2 left out: 2 times but 1 readings"},
		},
		{
			name: "speculative ran but nothing completed",
			data: PlotData{Speculative: &metrics.Samples{Mode: metrics.ModeSpeculative, NumRequests: 2, Failed: 2}},
			wantSkipped: map[string]string{
				PlotTTFTCDF: "no completed requests", PlotE2ELCDF: "no completed requests",
				PlotTPOT: "no request with two or more", PlotAcceptance: "no speculative drafts", PlotPower: "no GPU power samples",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			written, skipped := WritePlots(dir, tt.data)

			var want []string
			for _, name := range tt.wantWritten {
				want = append(want, filepath.Join(dir, DirPlots, name))
			}
			if !slices.Equal(written, want) {
				t.Errorf("written = %v, want %v", written, want)
			}
			for _, path := range written {
				assertPNG(t, path)
			}
			assertDirHolds(t, filepath.Join(dir, DirPlots), tt.wantWritten)

			if len(skipped) != len(tt.wantSkipped) {
				t.Errorf("skipped = %+v, want %d entries", skipped, len(tt.wantSkipped))
			}
			for _, s := range skipped {
				if want, ok := tt.wantSkipped[s.Plot]; !ok || !strings.Contains(s.Reason, want) {
					t.Errorf("skipped %s because %q, want a reason containing %q", s.Plot, s.Reason, want)
				}
			}
		})
	}
}

func TestWritePlotsUnwritableFolder(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, DirPlots), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fx := loadFixture(t)
	written, skipped := WritePlots(dir, PlotData{Speculative: fx.spec, Target: fx.target})
	if len(written) != 0 || len(skipped) != len(allPlots) {
		t.Fatalf("written %v, skipped %+v; want nothing written and every plot skipped", written, skipped)
	}
	for _, s := range skipped {
		if !strings.Contains(s.Reason, "creating") {
			t.Errorf("skipped %s because %q, want the folder error", s.Plot, s.Reason)
		}
	}
}

func assertPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s is not a PNG: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
		t.Errorf("%s is %dx%d, want a full-size plot", path, b.Dx(), b.Dy())
	}
}

func TestECDF(t *testing.T) {
	got := ecdf([]float64{30, 10, 20, 20})
	want := []struct{ x, y float64 }{{10, 0}, {10, 0.25}, {20, 0.5}, {20, 0.75}, {30, 1}}
	if len(got) != len(want) {
		t.Fatalf("ecdf = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].X != want[i].x || got[i].Y != want[i].y {
			t.Errorf("ecdf = %v, want %v", got, want)
			break
		}
	}
}
