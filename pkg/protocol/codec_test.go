package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/draftbench/draftbench/pkg/gpumon"
	"github.com/draftbench/draftbench/pkg/jobspec"
)

var update = flag.Bool("update", false, "rewrite testdata/v1 from the examples")

var (
	workerID  = "0b6f2d8e-5a57-4f3a-9d7e-1c2b3a4d5e6f"
	jobID     = "7d5e2a34-3c8e-4f0f-9a53-2b1f7a0c9e11"
	sessionID = uuid.MustParse("3f1c9b2a-8d4e-4c6f-a1b2-c3d4e5f60718")
	when      = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
)

// examples are one message of each type; testdata/v1 holds their JSON, so a
// change of the wire format shows up as a diff there.
func examples() map[string]Message {
	started := when.Add(time.Second)
	return map[string]Message{
		"registration": &Registration{WorkerID: workerID, Host: "gpu-node-1", BuildVersion: "v0.3.0", Devices: []Device{
			{Index: 0, UUID: "GPU-1a2b", Name: "NVIDIA H100 80GB HBM3", MemoryBytes: 85520809984, Kind: DeviceGPU},
			{Index: 1, Name: "cpu", MemoryBytes: 137438953472, Kind: DeviceCPU},
		}},
		"register_reply": &RegisterReply{HeartbeatMS: 2000},
		"heartbeat": &Heartbeat{WorkerID: workerID, Host: "gpu-node-1", Sent: when, Stages: []StageStatus{
			{Instance: "target-7d5e", Stage: 0, Stages: 2, Subject: "draftbench.stage.target-7d5e.0", State: StageReady, PID: 4242},
		}},
		"assignment": &Assignment{Instance: "target-7d5e", Role: "target", ModelDir: "/models/Qwen3-8B", Layers: [2]int{0, 18},
			Devices: []int{0, 1, 2}, Stage: 0, Stages: 2, DType: "bf16", Next: "draftbench.stage.target-7d5e.1", MaxBatchTokens: 4096},
		"release": &Release{Instance: "target-7d5e", Reason: "job finished"},
		"ack":     &Ack{Error: "no stage of instance drafter-1 runs here"},
		"stage_status": &StageStatus{WorkerID: workerID, Instance: "drafter-7d5e", Stage: 0, Stages: 1,
			State: StageFailed, Error: "loading layers [0,28) of /models/Qwen3-1.7B: tensor model.norm.weight is missing"},
		"gpu_read": &GPURead{},
		"gpu_read_reply": &GPUReadReply{Samples: []gpumon.Sample{
			{Host: "gpu-node-2", Device: 0, UUID: "GPU-1a2b", Name: "NVIDIA H200", T: when.Add(200 * time.Millisecond),
				PowerW: ptr(412.5), EnergyMJ: ptr(uint64(918_273_645))},
			// No energy counter on this one: the power alone.
			{Host: "gpu-node-2", Device: 3, UUID: "GPU-3c4d", Name: "NVIDIA H200", T: when.Add(201 * time.Millisecond), PowerW: ptr(71.0)},
		}},
		"gpu_read_reply_error": &GPUReadReply{Error: "gpumon: sampling gpu-node-2: the monitor is closed"},
		"job_submit": &JobSubmit{Job: jobspec.Source{Filename: "quickstart.hcl", HCL: "job \"q\" {}\n", Vars: []string{"num_prompts=10"},
			Env: map[string]string{"TARGET_MODEL": "/models/t"}}},
		"job_submit_reply": &JobSubmitReply{Errors: []string{`job.hcl:14,5: placement.strategy "ratio" is not one of multi_gpu_ratio, separate, same, auto`}},
		"job_status": &JobStatus{JobID: jobID, Name: "qwen3-8b-vs-1.7b", State: JobRunning, OutputDir: "results/qwen3",
			Submitted: when, Started: &started, Progress: []JobProgress{{Mode: "speculative", Completed: 40, Failed: 1, Total: 100}}},
		"job_cancel": &JobCancel{Reason: "user request"},
		"step_request_prefill": &StepRequest{Session: sessionID, Op: OpPrefill, Tokens: []int{1, 17, 250},
			Sampling: Sampling{Temperature: 0}, Seed: 42, Reply: "_INBOX.abc.1"},
		"step_request_draft": &StepRequest{Session: sessionID, Op: OpDraft, CacheLen: 9, Tokens: []int{33, 99}, Gamma: 3,
			Sampling: Sampling{Temperature: 0.7, TopP: 0.9, DraftTopK: 2, VocabLimit: 151669}, Seed: 18446744073709551615, Reply: "_INBOX.abc.2"},
		"step_request_verify": &StepRequest{Session: sessionID, Op: OpVerify, CacheLen: 10, Tokens: []int{99}, Drafts: []int{7, 380},
			Q:        []Sparse{{IDs: []int32{7, 8}, Probs: []float32{0.6, 0.4}}, {IDs: []int32{380}, Probs: []float32{1}}},
			Sampling: Sampling{Temperature: 0.7}, Seed: 9, Reply: "_INBOX.abc.3", ComputeNS: 1250000},
		"step_request_release": &StepRequest{Session: sessionID, Op: OpRelease},
		"step_reply_verify": &StepReply{Session: sessionID, Op: OpVerify, Tokens: []int{7, 12}, Accepted: 1,
			AcceptedByPosition: []bool{true, false}, CacheLen: 12, ComputeNS: 3400000, Stage: 1},
		"step_reply_draft": &StepReply{Session: sessionID, Op: OpDraft, Tokens: []int{7, 8},
			Q: []Sparse{{IDs: []int32{7, 8}, Probs: []float32{0.6, 0.4}}, {IDs: []int32{8, 7}, Probs: []float32{0.55, 0.45}}}, CacheLen: 12, ComputeNS: 900000},
		"step_reply_error": &StepReply{Session: sessionID, Op: OpDecode, Stage: 1,
			Error: "stage target-7d5e/1: session 3f1c9b2a-8d4e-4c6f-a1b2-c3d4e5f60718 has no cache here (released, or idle longer than 10m0s) and cache_len 12 needs one"},
	}
}

func ptr[T any](v T) *T { return &v }

// blank returns an empty message of m's type.
func blank(m Message) Message {
	return reflect.New(reflect.TypeOf(m).Elem()).Interface().(Message)
}

// TestDecodeAnyFieldOrder: a step with q's before its other fields (as
// encoding/json wrote it before Encode wrote q's apart) decodes the same.
func TestDecodeAnyFieldOrder(t *testing.T) {
	ex := examples()
	for _, name := range []string{"step_reply_draft", "step_request_verify"} {
		data, err := os.ReadFile(filepath.Join("testdata", "v1", name+".q-first.json"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, []byte(`"q":[{`)) || bytes.HasSuffix(bytes.TrimSpace(data), []byte(`]}`)) {
			t.Fatalf("%s: not a q-first message:\n%s", name, data)
		}
		back := blank(ex[name])
		if err := Decode(data, back); err != nil {
			t.Fatal(err)
		}
		if _, err := Encode(ex[name]); err != nil { // stamps its version
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, ex[name]) {
			t.Errorf("%s: decoded %+v, want %+v", name, back, ex[name])
		}
	}
}

func TestWireFormat(t *testing.T) {
	for name, m := range examples() {
		t.Run(name, func(t *testing.T) {
			data, err := Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "v1", name+".json")
			if *update {
				if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to write it)", err)
			}
			if !bytes.Equal(append(data, '\n'), want) {
				t.Errorf("encoding changed:\n got %s\nwant %s", data, want)
			}
			back := blank(m)
			if err := Decode(want, back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, m) {
				t.Errorf("decoded %+v, want %+v", back, m)
			}
		})
	}
}

func TestDecodeRejectsOtherVersions(t *testing.T) {
	cases := []struct {
		name, json string
	}{
		{"missing", `{"session":"3f1c9b2a-8d4e-4c6f-a1b2-c3d4e5f60718","op":"release"}`},
		{"zero", `{"v":0,"session":"3f1c9b2a-8d4e-4c6f-a1b2-c3d4e5f60718","op":"release"}`},
		// Step messages are at StepVersion (2): 1 wrote a sparse q as JSON numbers.
		{"older", `{"v":1,"session":"3f1c9b2a-8d4e-4c6f-a1b2-c3d4e5f60718","op":"release"}`},
		{"older with the old q", `{"v":1,"session":"3f1c9b2a-8d4e-4c6f-a1b2-c3d4e5f60718","op":"verify","q":[{"ids":[7],"probs":[1]}]}`},
		{"newer", `{"v":3,"session":"3f1c9b2a-8d4e-4c6f-a1b2-c3d4e5f60718","op":"release"}`},
		// A future version may change field types; the version is reported, not the type.
		{"newer with other types", `{"v":3,"session":17,"op":["release"]}`},
		{"null", `{"v":null}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Decode([]byte(tc.json), &StepRequest{})
			if !errors.Is(err, ErrVersion) {
				t.Errorf("got %v, want ErrVersion", err)
			}
		})
	}
}

func TestValidation(t *testing.T) {
	valid := func() *StepRequest {
		return &StepRequest{Session: sessionID, Op: OpDecode, CacheLen: 3, Tokens: []int{5}, Reply: "_INBOX.x"}
	}
	cases := []struct {
		name string
		m    Message
		want string
	}{
		{"nil session", func() Message { r := valid(); r.Session = uuid.Nil; return r }(), "nil UUID"},
		{"unknown op", func() Message { r := valid(); r.Op = "jump"; return r }(), `op "jump"`},
		{"negative cache", func() Message { r := valid(); r.CacheLen = -1; return r }(), "cache_len -1"},
		{"no reply", func() Message { r := valid(); r.Reply = ""; return r }(), "no reply subject"},
		{"no tokens", func() Message { r := valid(); r.Tokens = nil; return r }(), "no tokens"},
		{"negative token", func() Message { r := valid(); r.Tokens = []int{-2}; return r }(), "token 0 is -2"},
		{"bad temperature", func() Message { r := valid(); r.Sampling.Temperature = -1; return r }(), "temperature"},
		{"bad top_p", func() Message { r := valid(); r.Sampling.TopP = 2; return r }(), "top_p"},
		{"gamma 0", func() Message { r := valid(); r.Op = OpDraft; return r }(), "gamma 0"},
		{"gamma too large", func() Message { r := valid(); r.Op, r.Gamma = OpDraft, MaxGamma+1; return r }(), "gamma 257"},
		{"return_q on verify", func() Message { r := valid(); r.Op, r.Drafts, r.ReturnQ = OpVerify, []int{1}, true; return r }(), "return_q"},
		{"verify without drafts", func() Message { r := valid(); r.Op = OpVerify; return r }(), "0 drafts"},
		{"sampled verify without q", func() Message {
			r := valid()
			r.Op, r.Drafts, r.Sampling.Temperature = OpVerify, []int{1}, 1
			return r
		}(), "0 draft distributions for 1 drafts"},
		{"q of unequal lengths", func() Message {
			r := valid()
			r.Op, r.Drafts, r.Q = OpVerify, []int{1}, []Sparse{{IDs: []int32{1, 2}, Probs: []float32{1}}}
			return r
		}(), "2 ids but 1 probs"},
		{"negative probability", func() Message {
			r := valid()
			r.Op, r.Drafts, r.Q = OpVerify, []int{1}, []Sparse{{IDs: []int32{1}, Probs: []float32{-0.5}}}
			return r
		}(), "probability -0.5"},
		{"reply verdict mismatch", &StepReply{Session: sessionID, Op: OpVerify, Tokens: []int{1}, Accepted: 2}, "2 accepted, 1 tokens"},
		{"reply q count", &StepReply{Session: sessionID, Op: OpDraft, Tokens: []int{1, 2}, Q: []Sparse{{}}}, "1 distributions for 2 tokens"},
		{"reply without session", &StepReply{Op: OpDecode, Tokens: []int{1}}, "nil UUID"},
		{"worker id", &Registration{WorkerID: "w1", Host: "h"}, `worker_id "w1" is not a UUID`},
		{"device kind", &Registration{WorkerID: workerID, Host: "h", Devices: []Device{{Kind: "tpu"}}}, `kind "tpu"`},
		{"duplicate device", &Registration{WorkerID: workerID, Host: "h", Devices: []Device{{Kind: DeviceGPU}, {Kind: DeviceGPU}}}, "listed twice"},
		{"empty layer range", &Assignment{Instance: "i", ModelDir: "/m", Layers: [2]int{4, 4}, Stages: 1}, "layers [4,4)"},
		{"last stage with next", &Assignment{Instance: "i", ModelDir: "/m", Layers: [2]int{0, 4}, Stages: 1, Next: "x"}, "last stage has next"},
		{"middle stage without next", &Assignment{Instance: "i", ModelDir: "/m", Layers: [2]int{0, 4}, Stages: 2}, "no next subject"},
		{"bad dtype", &Assignment{Instance: "i", ModelDir: "/m", Layers: [2]int{0, 4}, Stages: 1, DType: "int8"}, `dtype "int8"`},
		{"repeated device", &Assignment{Instance: "i", ModelDir: "/m", Layers: [2]int{0, 4}, Stages: 1, Devices: []int{1, 1}}, "repeated"},
		{"failed stage without reason", &StageStatus{Instance: "i", Stages: 1, State: StageFailed}, "must say why"},
		{"unknown stage state", &StageStatus{Instance: "i", Stages: 1, State: "sleeping"}, `state "sleeping"`},
		{"empty job", &JobSubmit{}, "HCL is empty"},
		{"reply with id and errors", &JobSubmitReply{JobID: jobID, Errors: []string{"x"}}, "must not name a job id"},
		{"reply without id", &JobSubmitReply{}, "not a UUID"},
		{"job state", &JobStatus{JobID: jobID, State: "paused"}, `state "paused"`},
		{"heartbeat interval", &RegisterReply{}, "heartbeat_interval_ms 0"},
		{"gpu read with error and samples", &GPUReadReply{Error: "x", Samples: []gpumon.Sample{{Host: "h", T: when}}}, "carries 1 samples"},
		{"gpu read without host", &GPUReadReply{Samples: []gpumon.Sample{{Device: 2, T: when}}}, "sample 0 (device 2) has no host"},
		{"gpu read without time", &GPUReadReply{Samples: []gpumon.Sample{{Host: "h", T: when}, {Host: "h", Device: 1}}}, "sample 1 (h device 1) has no time"},
		{"gpu read negative device", &GPUReadReply{Samples: []gpumon.Sample{{Host: "h", Device: -1, T: when}}}, "device index -1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Encode(tc.m)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want ErrInvalid saying %q", err, tc.want)
			}
		})
	}
}

// TestDecodeKeepsWhatItRead checks the promise a stage relies on to answer
// an invalid request: the reply subject survives a validation error.
func TestDecodeKeepsWhatItRead(t *testing.T) {
	var r StepRequest
	err := Decode([]byte(`{"v":2,"session":"`+sessionID.String()+`","op":"decode","reply":"_INBOX.z"}`), &r)
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v, want ErrInvalid", err)
	}
	if r.Reply != "_INBOX.z" || r.Session != sessionID {
		t.Errorf("decoded %+v", r)
	}
}

func TestStepRequestPositions(t *testing.T) {
	cases := []struct {
		req  StepRequest
		n    int
		feed []int
	}{
		{StepRequest{Op: OpPrefill, Tokens: []int{1, 2, 3}}, 3, []int{1, 2, 3}},
		{StepRequest{Op: OpDraft, Tokens: []int{1, 2}, Gamma: 4}, 2, []int{1, 2}},
		{StepRequest{Op: OpVerify, Tokens: []int{9}, Drafts: []int{4, 5, 6}}, 4, []int{9, 4, 5, 6}},
		{StepRequest{Op: OpRelease}, 0, nil},
	}
	for _, tc := range cases {
		t.Run(string(tc.req.Op), func(t *testing.T) {
			if n := tc.req.Positions(); n != tc.n {
				t.Errorf("Positions() = %d, want %d", n, tc.n)
			}
			if f := tc.req.Feed(); !reflect.DeepEqual(f, tc.feed) {
				t.Errorf("Feed() = %v, want %v", f, tc.feed)
			}
		})
	}
}

// TestSparseWire: a q round-trips bit for bit (the smallest, the largest and
// a NaN-free odd value), packed as base64 strings, and a packing that is not
// whole 4-byte values is refused.
func TestSparseWire(t *testing.T) {
	q := Sparse{IDs: []int32{0, 151935, 7}, Probs: []float32{math.SmallestNonzeroFloat32, 1, 0.1}}
	data, err := json.Marshal(q)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != `{"ids":"AAAAAH9RAgAHAAAA","probs":"AQAAAAAAgD/NzMw9"}` {
		t.Errorf("wire form %s", data)
	}
	var back Sparse
	if err := json.Unmarshal(data, &back); err != nil || !reflect.DeepEqual(back, q) {
		t.Errorf("round trip: %+v, %v", back, err)
	}
	q.Kept = 0.375
	data, err = json.Marshal(q)
	if err != nil {
		t.Fatal(err)
	}
	back = Sparse{}
	if err := json.Unmarshal(data, &back); err != nil || !reflect.DeepEqual(back, q) || !strings.Contains(string(data), `"kept":0.375`) {
		t.Errorf("round trip with the kept mass: %s -> %+v, %v", data, back, err)
	}
	if err := json.Unmarshal([]byte(`{"ids":"AAAA","probs":"AAA="}`), &back); err == nil || !strings.Contains(err.Error(), "not whole 4-byte values") {
		t.Errorf("a 2-byte probs field: %v", err)
	}
	if err := json.Unmarshal([]byte(`{"ids":[1],"probs":[1]}`), &back); err == nil {
		t.Error("the version-1 form of numbers read as a version-2 q")
	}
}

// TestSparseWireForms: the form Encode writes is read without encoding/json
// (fastSparseWire); any other spelling of the same q reads the same through
// it, and broken ones fail.
func TestSparseWireForms(t *testing.T) {
	want := Sparse{IDs: []int32{7, 8}, Probs: []float32{0.75, 0.25}, Kept: 0.5}
	for _, form := range []string{
		`{"ids":"BwAAAAgAAAA=","probs":"AABAPwAAgD4=","kept":0.5}`,
		`{ "ids": "BwAAAAgAAAA=", "probs": "AABAPwAAgD4=", "kept": 0.5 }`,
		`{"kept":0.5,"probs":"AABAPwAAgD4=","ids":"BwAAAAgAAAA="}`,
		`{"ids":"BwAAAAgAAAA=","probs":"AABAPwAAgD4=","kept":5e-1}`,
	} {
		var got Sparse
		if err := json.Unmarshal([]byte(form), &got); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v, %v", form, got, err)
		}
	}
	if w, ok := fastSparseWire([]byte(`{"ids":"BwAAAAgAAAA=","probs":"AABAPwAAgD4=","kept":0.5}`)); !ok || w.Kept != 0.5 || len(w.IDs) != 8 {
		t.Errorf("the written form did not take the fast path: %+v %v", w, ok)
	}
	for _, bad := range []string{
		`{"ids":"BwAAAAgAAAA","probs":"AABAPwAAgD4="}`, // base64 cut short
		`{"ids":"BwAAAAgAAAA=","probs":"AABAPwAAgD4=","kept":"x"}`,
		`{"ids":"BwAAAAgAAAA=","probs":"AABAPwAAgD4="`, // no end
		`{"ids":"BwAAAAgAAAA=","probs":"AABAPw=="}`,    // 4 bytes of probs for 8 of ids: read, then refused by Validate
	} {
		var got Sparse
		err := json.Unmarshal([]byte(bad), &got)
		if err == nil && len(got.IDs) == len(got.Probs) {
			t.Errorf("%s read as %+v", bad, got)
		}
	}
}

// TestLeadingVersion: the version of a message as Encode begins it is read
// without decoding the rest; anything else goes to a full decode.
func TestLeadingVersion(t *testing.T) {
	for in, want := range map[string]int{`{"v":2,"x":1}`: 2, `{"v":13}`: 13} {
		if v, ok := leadingVersion([]byte(in)); !ok || v != want {
			t.Errorf("%s: %d %v, want %d", in, v, ok, want)
		}
	}
	for _, in := range []string{` {"v":2,`, `{"v": 2,`, `{"v":02,`, `{"v":2`, `{"v":-1,`, `{"v":"2",`, `{"x":1,"v":2}`, `{"v":12345678901,`} {
		if v, ok := leadingVersion([]byte(in)); ok {
			t.Errorf("%s read as version %d", in, v)
		}
	}
	// A second "v" later in the message is refused as another version.
	var m StepReply
	err := Decode([]byte(`{"v":2,"session":"3f1c9b2a-8d4e-4c6f-a1b2-c3d4e5f60718","cache_len":1,"compute_ns":1,"stage":0,"v":1}`), &m)
	if !errors.Is(err, ErrVersion) {
		t.Errorf("a message with two versions: %v", err)
	}
}
