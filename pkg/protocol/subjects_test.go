package protocol

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSubjects(t *testing.T) {
	custom, err := NewSubjects("acme.bench")
	if err != nil {
		t.Fatal(err)
	}
	def := Subjects{}
	job := "7d5e2a34-3c8e-4f0f-9a53-2b1f7a0c9e11"
	cases := []struct {
		got, want string
	}{
		{def.JobsSubmit(), "draftbench.jobs.submit"},
		{def.JobStatus(job), "draftbench.jobs." + job + ".status"},
		{def.JobCancel(job), "draftbench.jobs." + job + ".cancel"},
		{def.WorkersRegister(), "draftbench.workers.register"},
		{def.WorkerHeartbeat("w1"), "draftbench.workers.w1.heartbeat"},
		{def.WorkerHeartbeats(), "draftbench.workers.*.heartbeat"},
		{def.WorkerAssign("w1"), "draftbench.workers.w1.assign"},
		{def.WorkerRelease("w1"), "draftbench.workers.w1.release"},
		{def.WorkerStages("w1"), "draftbench.workers.w1.stages"},
		{def.WorkerGPURead("w1"), "draftbench.workers.w1.gpu_read"},
		{def.WorkerGPURead("w.1"), "draftbench.workers.w_1.gpu_read"},
		{def.AllWorkerGPUReads(), "draftbench.workers.*.gpu_read"},
		{def.Stage("target-1", 0), "draftbench.stage.target-1.0"},
		{def.Stage("target-1", 12), "draftbench.stage.target-1.12"},
		{def.ResultsRequests(job), "draftbench.results." + job + ".requests"},
		{def.ResultsProgress(job), "draftbench.results." + job + ".progress"},
		{def.ResultsSummary(job), "draftbench.results." + job + ".summary"},
		{def.JobResults(job), "draftbench.results." + job + ".>"},
		{def.AllResults(), "draftbench.results.>"},
		{def.GPU("gpu-node.example.com", 3), "draftbench.gpu.gpu-node_example_com.3"},
		{def.AllGPU(), "draftbench.gpu.>"},
		{custom.Stage("m", 1), "acme.bench.stage.m.1"},
		{custom.WorkerHeartbeat("a.b"), "acme.bench.workers.a_b.heartbeat"},
		{def.Stage("*", 0), "draftbench.stage._.0"},
		{def.JobStatus(">"), "draftbench.jobs._.status"},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
	if p := custom.Prefix(); p != "acme.bench" {
		t.Errorf("prefix %q", p)
	}
	if p := def.Prefix(); p != DefaultPrefix {
		t.Errorf("default prefix %q", p)
	}
}

func TestNewSubjectsRejectsBadPrefixes(t *testing.T) {
	for _, prefix := range []string{"a..b", ".a", "a.", "a b", "a.*", ">", "a.b>", "dr\taft"} {
		t.Run(prefix, func(t *testing.T) {
			if _, err := NewSubjects(prefix); err == nil {
				t.Errorf("prefix %q accepted", prefix)
			}
		})
	}
	if s, err := NewSubjects(""); err != nil || s.Prefix() != DefaultPrefix {
		t.Errorf(`NewSubjects(""): %v, %v`, s.Prefix(), err)
	}
}

func TestSanitize(t *testing.T) {
	long := strings.Repeat("x", 100)
	cases := []struct {
		in, want string
	}{
		{"", "_"},
		{"plain-name_1", "plain-name_1"},
		{"7d5e2a34-3c8e-4f0f-9a53-2b1f7a0c9e11", "7d5e2a34-3c8e-4f0f-9a53-2b1f7a0c9e11"},
		{"host.example.com", "host_example_com"},
		{"a*b>c", "a_b_c"},
		{"two words", "two_words"},
		{"tab\tnew\nline\x00", "tab_new_line_"},
		{"qwen/Qwen3-8B", "qwen_Qwen3-8B"},
		{"日本", "__"},
		{long, ""}, // checked by form below
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got := Sanitize(tc.in)
			if tc.in == long {
				// The hash is whatever FNV-1a gives; check the form.
				if len(got) != MaxTokenLen || !strings.HasPrefix(got, long[:MaxTokenLen-9]+"-") {
					t.Errorf("got %q", got)
				}
				return
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	a, b := Sanitize(long+"a"), Sanitize(long+"b")
	if a == b {
		t.Errorf("two long names that differ at the end both became %q", a)
	}
}

func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"", "a.b", "*", ">", " ", strings.Repeat("é", 80), "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := Sanitize(in)
		if out == "" || len(out) > MaxTokenLen || !utf8.ValidString(out) {
			t.Fatalf("Sanitize(%q) = %q", in, out)
		}
		for _, r := range out {
			if !safeRune(r) {
				t.Fatalf("Sanitize(%q) = %q holds %q", in, out, r)
			}
		}
		if again := Sanitize(out); again != out {
			t.Fatalf("not idempotent: %q then %q", out, again)
		}
	})
}
