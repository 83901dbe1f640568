package cuda

// stepCache decides which step shapes keep a graph (graph.go). A key's
// first sighting only notes it (no graph, no pinned arena: a prefill's
// shape is seldom seen twice); its second gets an entry. At most max keys
// keep one; a new entry then evicts the least recently used, so the
// steady-state shapes of a live benchmark (every sequence decoding, every
// sequence verifying gamma+1 tokens) keep their graphs while one-off batch
// compositions come and go. Keys seen once are forgotten in bulk when
// there are more than maxSeen of them.
type stepCache[V any] struct {
	max, maxSeen int
	tick         uint64
	seen         map[string]struct{}
	live         map[string]*stepEntry[V]
}

type stepEntry[V any] struct {
	v    V
	used uint64
}

func newStepCache[V any](max, maxSeen int) *stepCache[V] {
	return &stepCache[V]{max: max, maxSeen: maxSeen, seen: map[string]struct{}{}, live: map[string]*stepEntry[V]{}}
}

// sight records a step of key: its value when it has one (found); else
// whether the key was seen before (again: the caller makes its value and
// puts it).
func (c *stepCache[V]) sight(key string) (v V, found, again bool) {
	c.tick++
	if e := c.live[key]; e != nil {
		e.used = c.tick
		return e.v, true, false
	}
	if _, ok := c.seen[key]; ok {
		delete(c.seen, key)
		return v, false, true
	}
	if len(c.seen) >= c.maxSeen {
		clear(c.seen)
	}
	c.seen[key] = struct{}{}
	return v, false, false
}

// put stores v for key; when that makes more than max entries, the least
// recently used other entry leaves and is returned (evicted) for freeing.
func (c *stepCache[V]) put(key string, v V) (old V, evicted bool) {
	c.tick++
	c.live[key] = &stepEntry[V]{v: v, used: c.tick}
	if len(c.live) <= c.max {
		return old, false
	}
	var oldest string
	var at uint64
	found := false
	for k, e := range c.live {
		if k != key && (!found || e.used < at) {
			oldest, at, found = k, e.used, true
		}
	}
	old = c.live[oldest].v
	delete(c.live, oldest)
	return old, true
}

// drain removes and returns every value (closing).
func (c *stepCache[V]) drain() []V {
	var out []V
	for k, e := range c.live {
		out = append(out, e.v)
		delete(c.live, k)
	}
	clear(c.seen)
	return out
}
