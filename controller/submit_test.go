package main

import (
	"strings"
	"testing"

	"github.com/draftbench/draftbench/pkg/protocol"
)

// TestModeBars: a waiting submit on a terminal draws a bar per mode from
// the job's progress counts (each finished request once, failures named),
// the next mode's bar after the first one's; off a terminal it draws none.
func TestModeBars(t *testing.T) {
	var out strings.Builder
	b := newModeBars(&out, true)
	b.update([]protocol.JobProgress{{Mode: "speculative", Total: 4}, {Mode: "target", Total: 4}}) // nothing finished yet
	if out.Len() != 0 {
		t.Fatalf("a bar before any request finished: %q", out.String())
	}
	b.update([]protocol.JobProgress{{Mode: "speculative", Completed: 2, Total: 4}, {Mode: "target", Total: 4}})
	b.update([]protocol.JobProgress{{Mode: "speculative", Completed: 3, Failed: 1, Total: 4}, {Mode: "target", Total: 4}})
	b.update([]protocol.JobProgress{{Mode: "speculative", Completed: 3, Failed: 1, Total: 4}, {Mode: "target", Completed: 4, Total: 4}})
	b.close()
	text := out.String()
	for _, want := range []string{"speculative (1 failed)", "4/4", "target"} {
		if !strings.Contains(text, want) {
			t.Errorf("bars lack %q:\n%q", want, text)
		}
	}
	if strings.Index(text, "target") < strings.LastIndex(text, "speculative") {
		t.Errorf("the target bar is not after the speculative one:\n%q", text)
	}

	var plain strings.Builder
	p := newModeBars(&plain, false)
	p.update([]protocol.JobProgress{{Mode: "speculative", Completed: 4, Total: 4}})
	p.close()
	if plain.Len() != 0 {
		t.Errorf("off a terminal: %q, want nothing", plain.String())
	}
}
