//go:build cuda

package cuda

/*
#include "draftbench.h"
*/
import "C"

import (
	"errors"
	"fmt"
)

// graphArena is the pinned host memory a step graph keeps for the uploads
// (token ids, positions, sequence descriptors) its copy nodes read.
const graphArena = 1 << 20

// maxGraphs is how many step shapes keep a graph at once (the least
// recently used leaves for a new one); maxSeen how many shapes seen once are
// remembered.
const maxGraphs, maxSeen = 32, 4096

// stepGraph is one captured step (per key) and what the backend learnt of it.
type stepGraph struct {
	g        *C.db_graph
	failures int  // captures that failed in a row
	off      bool // given up: the step runs eagerly
}

// GraphStats reports the step graphs' counts.
func (b *Backend) GraphStats() GraphStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.graphStats
}

var errStepAborted = errors.New("cuda: step graph: the step was not run")

// GraphStep implements backend.StepGrapher: f issues one step's operations
// (the same ones, in the same order, whenever key is the same). A key's
// first call runs eagerly; the second captures f's work into a CUDA graph;
// later calls only check that the calls match and write their new uploads,
// then launch the graph. A step that differs, or a capture that fails, runs
// again (a new capture, then eagerly); after three failed captures a key
// stays eager. At most maxGraphs keys keep a graph (stepCache: the least
// recently used leaves). With Options.Graphs off, several devices, or
// profiling, f just runs.
//
// No other goroutine may use the backend while f runs.
func (b *Backend) GraphStep(stepKey func() string, f func() error) error {
	b.mu.Lock()
	if !b.useGraphs || len(b.devs) != 1 || b.prof != nil || b.closed {
		b.mu.Unlock()
		return f()
	}
	key := stepKey()
	sg, found, again := b.graphs.sight(key)
	if again {
		// The key's second step: capture it. Its first ran eagerly, so what
		// a first call does once (grow scratch buffers, tune products, let
		// cuBLAS choose) was done before the capture, which could not do it.
		sg = &stepGraph{}
		if err := check("creating a step graph", b.devs[0].info.Ordinal, C.db_graph_new(b.devs[0].h, graphArena, &sg.g)); err != nil {
			b.mu.Unlock()
			return err
		}
		if old, evicted := b.graphs.put(key, sg); evicted {
			if err := check("freeing a step graph", b.devs[0].info.Ordinal, C.db_graph_free(b.devs[0].h, old.g)); err != nil {
				b.mu.Unlock()
				return err
			}
		}
	}
	b.mu.Unlock()
	if (!found && !again) || sg.off {
		b.countEager()
		return f()
	}
	for try := 0; try < 2; try++ {
		replayed, err := b.runStep(sg, f)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errStepAborted) {
			return err
		}
		b.mu.Lock()
		if replayed {
			b.graphStats.Mismatches++
		} else {
			sg.failures++
			if sg.failures >= 3 {
				sg.off = true
			}
		}
		b.mu.Unlock()
		if !replayed {
			break // a failed capture: run eagerly
		}
	}
	b.countEager()
	return f()
}

func (b *Backend) countEager() {
	b.mu.Lock()
	b.graphStats.Eager++
	b.mu.Unlock()
}

// runStep runs f inside a capture or a replay of sg. It returns
// errStepAborted when the step did not run (replay mismatch, failed
// capture): the caller runs it again.
func (b *Backend) runStep(sg *stepGraph, f func() error) (replayed bool, err error) {
	d := b.devs[0]
	var rep C.int
	b.mu.Lock()
	err = check("starting a step graph", d.info.Ordinal, C.db_step_begin(d.h, sg.g, &rep))
	b.mu.Unlock()
	if err != nil {
		// Nothing was captured or run: the step runs without a graph.
		return false, fmt.Errorf("%w (%v)", errStepAborted, err)
	}
	replayed = rep != 0
	ferr := f()
	abort := C.int(0)
	if ferr != nil {
		abort = 1
	}
	var launched C.int
	b.mu.Lock()
	err = check("ending a step graph", d.info.Ordinal, C.db_step_end(d.h, sg.g, abort, &launched))
	if err == nil && launched != 0 {
		if replayed {
			b.graphStats.Replays++
		} else {
			b.graphStats.Captures++
			sg.failures = 0
		}
	}
	if !replayed || launched == 0 {
		// A capture (the first, or after a refusal) or a refusal: the
		// graph's note of why, if any.
		if why := C.GoString(C.db_graph_why(sg.g)); why != "" {
			b.graphStats.LastWhy = why
		}
	}
	b.mu.Unlock()
	if err != nil {
		return replayed, err
	}
	if launched != 0 {
		return replayed, nil
	}
	return replayed, fmt.Errorf("%w (%v)", errStepAborted, ferr)
}

// freeGraphs releases the step graphs (Close).
func (b *Backend) freeGraphs() error {
	var first error
	for _, g := range b.graphs.drain() {
		if err := check("freeing a step graph", b.devs[0].info.Ordinal, C.db_graph_free(b.devs[0].h, g.g)); err != nil && first == nil {
			first = err
		}
	}
	return first
}
