package jobspec

import (
	"fmt"
	"strconv"
	"strings"
)

// DeviceRef is one entry of placement.devices: a device index, on a named
// host when the job spans several hosts.
type DeviceRef struct {
	Host  string `json:"host,omitempty"` // empty: the only host, or any
	Index int    `json:"index"`
}

func (r DeviceRef) String() string {
	if r.Host == "" {
		return strconv.Itoa(r.Index)
	}
	return r.Host + ":" + strconv.Itoa(r.Index)
}

// DeviceRefs parses Devices; nil when it is empty.
func (p Placement) DeviceRefs() ([]DeviceRef, error) {
	return ParseDevices(p.Devices)
}

// ParseDevices reads a device list: comma-separated entries, each an index
// ("3"), a range ("0-3") or either after a host name ("gpu-a:0-3"), the
// CUDA_VISIBLE_DEVICES form extended with hosts. Order is kept: it is the
// order in which strategies hand out devices. Duplicates are an error.
func ParseDevices(s string) ([]DeviceRef, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []DeviceRef
	seen := map[DeviceRef]bool{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		host, idx := "", item
		if h, rest, ok := strings.Cut(item, ":"); ok {
			host, idx = strings.TrimSpace(h), strings.TrimSpace(rest)
			if host == "" {
				return nil, fmt.Errorf("entry %q has an empty host name before ':'", item)
			}
		}
		first, last, err := parseRange(idx)
		if err != nil {
			return nil, fmt.Errorf("entry %q: %w; write an index (3), a range (0-3) or host:index (gpu-a:0-3)", item, err)
		}
		for i := first; i <= last; i++ {
			ref := DeviceRef{Host: host, Index: i}
			if seen[ref] {
				return nil, fmt.Errorf("device %s is listed twice", ref)
			}
			seen[ref] = true
			out = append(out, ref)
		}
	}
	return out, nil
}

// maxDeviceIndex bounds ranges so that a typo such as 0-99999999 fails
// instead of allocating a huge list.
const maxDeviceIndex = 4095

func parseRange(s string) (first, last int, err error) {
	if strings.HasPrefix(s, "-") {
		return 0, 0, fmt.Errorf("%q is not a device index", s)
	}
	lo, hi, isRange := strings.Cut(s, "-")
	first, err = parseIndex(lo)
	if err != nil {
		return 0, 0, err
	}
	if !isRange {
		return first, first, nil
	}
	last, err = parseIndex(hi)
	if err != nil {
		return 0, 0, err
	}
	if last < first {
		return 0, 0, fmt.Errorf("range %d-%d runs backwards", first, last)
	}
	return first, last, nil
}

func parseIndex(s string) (int, error) {
	s = strings.TrimSpace(s)
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 {
		return 0, fmt.Errorf("%q is not a device index", s)
	}
	if i > maxDeviceIndex {
		return 0, fmt.Errorf("device index %d is above %d", i, maxDeviceIndex)
	}
	return i, nil
}
