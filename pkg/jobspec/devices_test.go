package jobspec

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestParseDevices(t *testing.T) {
	tests := []struct {
		in      string
		want    []DeviceRef
		wantErr string
	}{
		{in: "", want: nil},
		{in: "  ", want: nil},
		{in: "0", want: []DeviceRef{{Index: 0}}},
		{in: "3, 1,2", want: []DeviceRef{{Index: 3}, {Index: 1}, {Index: 2}}},
		{in: "0-2", want: []DeviceRef{{Index: 0}, {Index: 1}, {Index: 2}}},
		{in: "a:0-1,b:1", want: []DeviceRef{{Host: "a", Index: 0}, {Host: "a", Index: 1}, {Host: "b", Index: 1}}},
		{in: "a:0,b:0", want: []DeviceRef{{Host: "a", Index: 0}, {Host: "b", Index: 0}}},
		{in: "0,x", wantErr: `entry "x": "x" is not a device index; write an index (3), a range (0-3) or host:index (gpu-a:0-3)`},
		{in: "0,", wantErr: `entry "": "" is not a device index; write an index (3), a range (0-3) or host:index (gpu-a:0-3)`},
		{in: "-1", wantErr: `entry "-1": "-1" is not a device index; write an index (3), a range (0-3) or host:index (gpu-a:0-3)`},
		{in: "3-1", wantErr: `entry "3-1": range 3-1 runs backwards; write an index (3), a range (0-3) or host:index (gpu-a:0-3)`},
		{in: "0-99999", wantErr: `entry "0-99999": device index 99999 is above 4095; write an index (3), a range (0-3) or host:index (gpu-a:0-3)`},
		{in: ":0", wantErr: `entry ":0" has an empty host name before ':'`},
		{in: "0-2,1", wantErr: `device 1 is listed twice`},
		{in: "a:1,a:1", wantErr: `device a:1 is listed twice`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseDevices(tc.in)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("ParseDevices(%q) error %v, want %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseDevices(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{in: "300s", want: 300 * time.Second},
		{in: "5m", want: 5 * time.Minute},
		{in: "1m30s", want: 90 * time.Second},
		{in: "300", want: 300 * time.Second},
		{in: " 1.5 ", want: 1500 * time.Millisecond},
		{in: "5 minutes", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseDuration(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseDuration(%q) = %v, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got.Std() != tc.want {
				t.Fatalf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}

	jsonTests := []struct {
		in   string
		want Duration
	}{
		{`"2m0s"`, Duration(2 * time.Minute)},
		{`90`, Duration(90 * time.Second)},
		{`0.25`, Duration(250 * time.Millisecond)},
	}
	for _, tc := range jsonTests {
		t.Run("json "+tc.in, func(t *testing.T) {
			var d Duration
			if err := json.Unmarshal([]byte(tc.in), &d); err != nil {
				t.Fatal(err)
			}
			if d != tc.want {
				t.Errorf("unmarshal %s = %v, want %v", tc.in, d, tc.want)
			}
			b, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			if want := `"` + tc.want.String() + `"`; string(b) != want {
				t.Errorf("marshal = %s, want %s", b, want)
			}
		})
	}
	var d Duration
	if err := json.Unmarshal([]byte(`true`), &d); err == nil {
		t.Error("unmarshal of true did not fail")
	}
}
