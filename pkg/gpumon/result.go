package gpumon

import (
	"encoding/json"
	"math"
)

// Result is the GPU section of the results (benchmark_results_gpu.json and the "gpu" key of
// benchmark_results.json, DESIGN §7). Without NVML it marshals to exactly
// {"available": false, "reason": "..."}.
type Result struct {
	Available bool
	Reason    string

	Devices []DeviceResult
	// JoulesPerOutputToken holds, per mode, the energy of all devices during that mode's phase
	// over the output tokens of that mode.
	JoulesPerOutputToken map[Phase]float64
	// EnergyByRoleJ sums the devices of each role, per phase and in "total".
	EnergyByRoleJ map[Role]map[string]float64
	// IdleBaselineW is the summed idle power of the devices, from the samples taken before the
	// first mode phase; nil when there were none.
	IdleBaselineW *float64
	Samples       int
	IntervalS     float64
	CoolDowns     []CoolDownRecord
	// UnavailableHosts names the hosts whose monitor did not start, with the reason, when
	// other hosts did report samples.
	UnavailableHosts map[string]string
}

// DeviceResult is one device's line of the GPU results. Readings a device never gave are
// left out rather than written as zero.
type DeviceResult struct {
	Index int    `json:"index"`
	UUID  string `json:"uuid"`
	Name  string `json:"name"`
	Host  string `json:"host"`
	Role  Role   `json:"role,omitempty"`

	PowerW *Stat `json:"power_w,omitempty"`
	// EnergyJ holds joules per phase ("idle", "speculative", "target") and their "total".
	EnergyJ        map[string]float64 `json:"energy_j,omitempty"`
	EnergyMethod   EnergyMethod       `json:"energy_method,omitempty"`
	UtilizationPct *Stat              `json:"utilization_pct,omitempty"`
	MemoryUsedPct  *Stat              `json:"memory_used_pct,omitempty"`
	TemperatureC   *Peak              `json:"temperature_c,omitempty"`
	IdleBaselineW  *float64           `json:"idle_baseline_w,omitempty"`
	Samples        int                `json:"samples"`
}

// Stat is the average and the peak of a reading over the mode phases.
type Stat struct {
	Avg  float64 `json:"avg"`
	Peak float64 `json:"peak"`
}

// Peak is the highest value of a reading.
type Peak struct {
	Peak float64 `json:"peak"`
}

// CoolDownRecord is one wait for the GPUs to cool down between phases.
type CoolDownRecord struct {
	BelowC  uint32  `json:"below_c"`
	WaitedS float64 `json:"waited_s"`
	Reached bool    `json:"reached"`
	// Note says why the wait could not judge the temperature, when it could not.
	Note string `json:"note,omitempty"`
}

// Unavailable is the result of a run without a GPU monitor.
func Unavailable(reason string) Result { return Result{Reason: reason} }

// MarshalJSON writes the DESIGN §7 shape.
func (r Result) MarshalJSON() ([]byte, error) {
	if !r.Available {
		return json.Marshal(struct {
			Available bool   `json:"available"`
			Reason    string `json:"reason"`
		}{false, r.Reason})
	}
	devices := r.Devices
	if devices == nil {
		devices = []DeviceResult{}
	}
	return json.Marshal(struct {
		Available            bool                        `json:"available"`
		Devices              []DeviceResult              `json:"devices"`
		JoulesPerOutputToken map[Phase]float64           `json:"joules_per_output_token"`
		EnergyByRoleJ        map[Role]map[string]float64 `json:"energy_by_role_j,omitempty"`
		IdleBaselineW        *float64                    `json:"idle_baseline_w,omitempty"`
		Samples              int                         `json:"samples"`
		IntervalS            float64                     `json:"interval_s"`
		CoolDowns            []CoolDownRecord            `json:"cool_downs,omitempty"`
		UnavailableHosts     map[string]string           `json:"unavailable_hosts,omitempty"`
	}{true, devices, nonNil(r.JoulesPerOutputToken), r.EnergyByRoleJ, r.IdleBaselineW, r.Samples,
		r.IntervalS, r.CoolDowns, r.UnavailableHosts})
}

// UnmarshalJSON reads what MarshalJSON writes, so the controller can read back a results file.
func (r *Result) UnmarshalJSON(data []byte) error {
	var in struct {
		Available            bool                        `json:"available"`
		Reason               string                      `json:"reason"`
		Devices              []DeviceResult              `json:"devices"`
		JoulesPerOutputToken map[Phase]float64           `json:"joules_per_output_token"`
		EnergyByRoleJ        map[Role]map[string]float64 `json:"energy_by_role_j"`
		IdleBaselineW        *float64                    `json:"idle_baseline_w"`
		Samples              int                         `json:"samples"`
		IntervalS            float64                     `json:"interval_s"`
		CoolDowns            []CoolDownRecord            `json:"cool_downs"`
		UnavailableHosts     map[string]string           `json:"unavailable_hosts"`
	}
	if err := json.Unmarshal(data, &in); err != nil {
		return err
	}
	*r = Result(in)
	return nil
}

// nonNil keeps an empty joules_per_output_token an object: report reads it as a map.
func nonNil(m map[Phase]float64) map[Phase]float64 {
	if m == nil {
		return map[Phase]float64{}
	}
	return m
}

// round3 keeps results to the millijoule (and milliwatt): the counter's own resolution, and
// free of float noise in the files.
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
