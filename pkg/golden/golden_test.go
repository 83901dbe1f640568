package golden

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/draftbench/draftbench/pkg/backend"
	"github.com/draftbench/draftbench/pkg/backend/cpu"
	"github.com/draftbench/draftbench/pkg/sampling"
	"github.com/draftbench/draftbench/pkg/spec"
)

const dir = "../../testdata/golden"

func TestCPUPassesGoldens(t *testing.T) {
	rs, err := Check(dir, cpu.New(0), F32)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 5 {
		t.Fatalf("%d goldens, want 5", len(rs))
	}
	var buf bytes.Buffer
	if err := WriteTable(&buf, "cpu", rs); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + buf.String())
	for _, r := range rs {
		if !r.LogitsOK() || r.Mismatch != 0 || r.Rows == 0 || r.Tokens == 0 {
			t.Errorf("%s: %+v", r.Name, r)
		}
	}
	if !strings.Contains(buf.String(), "goldens cpu: 5 of 5 within their limits, greedy tokens equal on 5 of 5") {
		t.Errorf("summary line missing:\n%s", buf.String())
	}
}

// copyGolden writes a modified copy of one golden into a fresh folder that
// links to the real model.
func copyGolden(t *testing.T, name string, edit func(*File)) string {
	t.Helper()
	g, err := Read(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	edit(g)
	out := t.TempDir()
	data, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, name+".json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(filepath.Join(dir, "models", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(out, "models"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(abs, filepath.Join(out, "models", name)); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCheckEachFreshBackends: CheckEach opens a backend per golden, closes
// each once its golden is checked, gives Check's results, and stops on a
// backend that does not open.
func TestCheckEachFreshBackends(t *testing.T) {
	want, err := Check(dir, cpu.New(1), F32)
	if err != nil {
		t.Fatal(err)
	}
	opened, closed := 0, 0
	got, err := CheckEach(dir, func() (backend.Backend, func(), error) {
		if opened != closed {
			t.Errorf("backend %d opened before backend %d closed", opened+1, opened)
		}
		opened++
		return cpu.New(1), func() { closed++ }, nil
	}, F32)
	if err != nil {
		t.Fatal(err)
	}
	if opened != len(want) || closed != len(want) {
		t.Errorf("%d backends opened and %d closed for %d goldens", opened, closed, len(want))
	}
	for i := range want {
		if got[i].Name != want[i].Name || got[i].MaxRel != want[i].MaxRel || got[i].Mismatch != want[i].Mismatch {
			t.Errorf("golden %d: %+v, Check gave %+v", i, got[i], want[i])
		}
	}
	_, err = CheckEach(dir, func() (backend.Backend, func(), error) { return nil, nil, os.ErrPermission }, F32)
	if err == nil {
		t.Error("a backend that does not open went unreported")
	}
}

func TestWrongLogitsFail(t *testing.T) {
	d := copyGolden(t, "qwen3", func(g *File) {
		row := g.Prompts[0].StepLogits[2]
		for i := range row {
			row[i] *= 1.05
		}
	})
	rs, err := Check(d, cpu.New(0), F32)
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].LogitsOK() || Failed(rs) != 1 {
		t.Fatalf("logits 5%% off passed: %+v", rs[0])
	}
	if rs[0].MaxRel < 0.04 || rs[0].MaxRel > 0.06 {
		t.Errorf("max rel err %.3g, want about 0.05", rs[0].MaxRel)
	}
}

func TestGreedyMismatchCounted(t *testing.T) {
	d := copyGolden(t, "llama", func(g *File) {
		p := &g.Prompts[0]
		p.Greedy[1] = (p.Greedy[1] + 1) % len(p.StepLogits[1])
	})
	rs, err := Check(d, cpu.New(0), F32)
	if err != nil {
		t.Fatal(err)
	}
	r := rs[0]
	// The teacher-forced logits now follow a different token at step 1, so
	// step 2's golden row no longer matches: that fails too.
	if r.Mismatch != len(dataOf(t, "llama").Prompts[0].Greedy)-1 {
		t.Errorf("mismatch %d, want every token from step 1 on", r.Mismatch)
	}
	if r.TieGap >= 0 {
		t.Errorf("tie gap %.3g: transformers' (edited) token should score below ours", r.TieGap)
	}
}

func dataOf(t *testing.T, name string) *File {
	g, err := Read(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestBrokenInputsNamed(t *testing.T) {
	if _, err := Check(t.TempDir(), cpu.New(0), F32); err == nil || !strings.Contains(err.Error(), "no goldens") {
		t.Errorf("empty dir: %v", err)
	}
	d := copyGolden(t, "qwen2", func(g *File) { g.Prompts[0].PrefillLogits = g.Prompts[0].PrefillLogits[1:] })
	rs, err := Check(d, cpu.New(0), F32)
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Err == nil || !strings.Contains(rs[0].Err.Error(), "qwen2.json: prompt 0") {
		t.Errorf("short prefill rows: %v", rs[0].Err)
	}
}

func TestRelErr(t *testing.T) {
	if e := RelErr([]float32{3, 4}, []float32{3, 4}); e != 0 {
		t.Error(e)
	}
	if e := RelErr([]float32{3, 4.5}, []float32{3, 4}); e < 0.0999 || e > 0.1001 {
		t.Error(e)
	}
	if e := RelErr([]float32{1}, []float32{1, 2}); e < 1e300 {
		t.Error(e)
	}
}

func TestBF16LimitFollowsYardstick(t *testing.T) {
	rs, err := Check(dir, cpu.New(0), BF16)
	if err != nil {
		t.Fatal(err)
	}
	ys, err := Yardsticks(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		y := ys[r.Name]
		if y <= 0 {
			t.Errorf("%s: no yardstick in bf16_yardstick.json", r.Name)
			continue
		}
		if want := max(1e-2, 2*y); r.Tol != want || r.Yardstick != y {
			t.Errorf("%s: limit %.3g, yardstick %.3g; want %.3g from %.3g", r.Name, r.Tol, r.Yardstick, want, y)
		}
	}
}

func TestInvarianceOnCPU(t *testing.T) {
	rs, err := CheckInvariance(dir, cpu.New(0), 5)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteInvariance(&buf, "cpu", 5, rs); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + buf.String())
	for _, r := range rs {
		if r.Err != nil || r.Rows == 0 {
			t.Fatalf("%s: %+v", r.Name, r)
		}
		// The CPU backend's bf16 kernels are batch-invariant (docs/engine.md).
		if r.Name == "qwen3-bf16" && !r.Identical {
			t.Errorf("qwen3-bf16 on the CPU backend: max |Δlogit| %.3g, want bit-identical", r.MaxAbs)
		}
	}
}

// rowSensitive is a backend whose matrix products round differently when
// they have several rows, as cuBLAS's kernels for 1 and for 5 rows may.
type rowSensitive struct{ *cpu.Backend }

func (b rowSensitive) MatMul(dst, x, w backend.Tensor) error {
	if err := b.Backend.MatMul(dst, x, w); err != nil {
		return err
	}
	if backend.Rows(x) == 1 {
		return nil
	}
	v := make([]float32, backend.Elems(dst))
	if err := b.Read(dst, v); err != nil {
		return err
	}
	for i := range v {
		v[i] = math.Nextafter32(v[i], float32(math.Inf(1)))
	}
	return b.Write(dst, v)
}

func TestInvarianceCatchesRowDependentRounding(t *testing.T) {
	rs, err := CheckInvariance(dir, rowSensitive{cpu.New(0)}, 5)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Err != nil || r.Identical || r.MaxAbs == 0 {
			t.Errorf("%s: %+v, want a difference", r.Name, r)
		}
	}
}

// TestOutputsOnCPU: on the CPU (the host computes every output) the
// outputs check passes on every golden.
func TestOutputsOnCPU(t *testing.T) {
	rs, err := CheckOutputs(dir, cpu.New(1))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteOutputs(&buf, "cpu", rs); err != nil {
		t.Fatal(err)
	}
	if OutputFailures(rs) != 0 || len(rs) != 5 || !strings.Contains(buf.String(), "outputs cpu:") {
		t.Fatalf("outputs check on the CPU:\n%s", buf.String())
	}
	for _, r := range rs {
		if r.Checks < 10 {
			t.Errorf("%s: only %d checks", r.Name, r.Checks)
		}
	}
}

// deviceCPU gives the CPU backend the device output operations (on the
// host, with a device's float32 uniforms), so the outputs check's device
// branches run here; broken breaks the draw, to show the check sees it.
type deviceCPU struct {
	*cpu.Backend
	broken bool
}

func (d *deviceCPU) rows(t backend.Tensor) [][]float32 {
	n, c := backend.Rows(t), backend.Cols(t)
	v := make([]float32, n*c)
	if err := d.Read(t, v); err != nil {
		panic(err)
	}
	out := make([][]float32, n)
	for r := range out {
		out[r] = v[r*c : (r+1)*c]
	}
	return out
}

func (d *deviceCPU) Probs(logits backend.Tensor, p sampling.Params) (backend.Tensor, error) {
	var out []float32
	rows := d.rows(logits)
	for _, row := range rows {
		out = append(out, sampling.Probs(row, p)...)
	}
	return cpu.FromSlice(out, len(rows), backend.Cols(logits)), nil
}

func (d *deviceCPU) Sample(probs backend.Tensor, u []float32) ([]int32, error) {
	out := make([]int32, len(u))
	for r, row := range d.rows(probs) {
		uu := float64(u[r])
		if d.broken {
			uu = 1 - uu
		}
		out[r] = int32(sampling.Sample(row, uu))
	}
	return out, nil
}

func (d *deviceCPU) TopKSparse(probs backend.Tensor, k int) ([]sampling.Sparse, error) {
	var out []sampling.Sparse
	for _, row := range d.rows(probs) {
		out = append(out, sampling.TopKSparse(row, k))
	}
	return out, nil
}

func (d *deviceCPU) Verify(p backend.Tensor, drafts []int32, q []sampling.Sparse, greedy bool, ua, ur []float32, ub float32) (int, int32, error) {
	f := func(u []float32) []float64 {
		out := make([]float64, len(u))
		for i, x := range u {
			out[i] = float64(x)
		}
		return out
	}
	ds := make([]int, len(drafts))
	for i, x := range drafts {
		ds[i] = int(x)
	}
	v, err := spec.VerifyAt(ds, q, d.rows(p), f(ua), f(ur), float64(ub))
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %v", backend.ErrBadDraft, err) // as a device says so
	}
	return v.Accepted, int32(v.Emitted[len(v.Emitted)-1]), nil
}

// TestOutputsDevicePaths: through device-style operations the outputs
// check passes, and a draw at the wrong uniform fails it.
func TestOutputsDevicePaths(t *testing.T) {
	rs, err := CheckOutputs(dir, &deviceCPU{Backend: cpu.New(1)})
	if err != nil {
		t.Fatal(err)
	}
	if n := OutputFailures(rs); n != 0 {
		var buf bytes.Buffer
		_ = WriteOutputs(&buf, "device-style", rs)
		t.Fatalf("%d failures:\n%s", n, buf.String())
	}
	rs, err = CheckOutputs(dir, &deviceCPU{Backend: cpu.New(1), broken: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if len(r.Failures) == 0 || !strings.Contains(strings.Join(r.Failures, ";"), "drawn token") {
			t.Errorf("%s: a broken draw went unnoticed: %v", r.Name, r.Failures)
		}
	}
}
