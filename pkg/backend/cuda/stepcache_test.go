package cuda

import (
	"fmt"
	"testing"
)

// TestStepCache: a graph only from a key's second step; the least recently
// used entry leaves when the cache is full; one-off keys never evict the
// steady ones.
func TestStepCache(t *testing.T) {
	c := newStepCache[string](2, 3)
	step := func(key string) (v string, found, again bool) {
		v, found, again = c.sight(key)
		if again {
			if old, ev := c.put(key, "g"+key); ev {
				return "evicted " + old, found, again
			}
		}
		return v, found, again
	}
	if _, found, again := step("a"); found || again {
		t.Fatalf("first step of a: found %v again %v, want neither", found, again)
	}
	if v, found, again := step("a"); found || !again || v != "" {
		t.Fatalf("second step of a: %q found %v again %v, want a new entry", v, found, again)
	}
	if v, found, _ := step("a"); !found || v != "ga" {
		t.Fatalf("third step of a: %q found %v, want ga", v, found)
	}
	step("b")
	step("b")
	// a is used after b: c's entry must evict b, not a.
	step("a")
	step("c")
	if v, _, again := step("c"); !again || v != "evicted gb" {
		t.Fatalf("c's entry: %q again %v, want b evicted", v, again)
	}
	if _, found, _ := step("a"); !found {
		t.Fatal("a lost its graph to c; b was the least recently used")
	}
	// Many one-off keys (prefills): none gets an entry, a and c keep theirs.
	for i := 0; i < 50; i++ {
		if _, found, again := step(fmt.Sprintf("prefill %d", i)); found || again {
			t.Fatalf("one-off key %d: found %v again %v", i, found, again)
		}
	}
	if len(c.seen) > 3 {
		t.Fatalf("%d keys seen once are kept, want at most 3", len(c.seen))
	}
	for _, k := range []string{"a", "c"} {
		if _, found, _ := step(k); !found {
			t.Fatalf("%s lost its graph to one-off keys", k)
		}
	}
	if got := c.drain(); len(got) != 2 || len(c.live) != 0 {
		t.Fatalf("drain: %v, %d left", got, len(c.live))
	}
}
