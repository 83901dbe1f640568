// graph.cu: CUDA graphs for a decode step (see draftbench.h). A step is
// hundreds of short launches; replaying them as one graph takes the host's
// launch cost and the gaps between kernels out of the step.
#include "common.cuh"

extern "C" db_status db_graph_new(db_device *d, size_t arena_bytes, db_graph **out) {
	ARG(d != NULL, "no device");
	CK(cudaSetDevice(d->ordinal));
	db_graph *g = new db_graph();
	g->arena_cap = arena_bytes;
	cudaError_t e = cudaHostAlloc((void **)&g->arena, arena_bytes, cudaHostAllocDefault);
	if (e == cudaSuccess) e = cudaEventCreateWithFlags(&g->done, cudaEventDisableTiming);
	if (e != cudaSuccess) {
		if (g->arena) cudaFreeHost(g->arena);
		delete g;
		return db_cuda_fail(e, __FILE__, __LINE__, "cudaHostAlloc/cudaEventCreate for a step graph");
	}
	*out = g;
	return db_ok();
}

extern "C" db_status db_graph_free(db_device *d, db_graph *g) {
	if (g == NULL) return db_ok();
	ARG(d != NULL, "no device");
	CK(cudaSetDevice(d->ordinal));
	if (g->launched) CK(cudaEventSynchronize(g->done));
	if (g->exec) CK(cudaGraphExecDestroy(g->exec));
	CK(cudaEventDestroy(g->done));
	CK(cudaFreeHost(g->arena));
	delete g;
	return db_ok();
}

extern "C" const char *db_graph_why(db_graph *g) { return g ? g->why : ""; }

extern "C" db_status db_step_begin(db_device *d, db_graph *g, int *replaying) {
	ARG(d != NULL && g != NULL, "no device or graph");
	ARG(d->mode == DB_EAGER, "a step is already open on this device");
	CK(cudaSetDevice(d->ordinal));
	// The last launch must have read its slots before they are rewritten.
	if (g->launched) CK(cudaEventSynchronize(g->done));
	d->graph = g;
	d->sig_i = d->slot_i = 0;
	if (g->valid && g->buf_gen != d->buf_gen) {
		// Args or work moved since the capture: its nodes hold old addresses.
		snprintf(g->why, sizeof g->why, "device scratch was reallocated since the capture");
		g->valid = 0;
	}
	if (g->valid) {
		d->mode = DB_REPLAY;
		*replaying = 1;
		return db_ok();
	}
	g->sigs.clear();
	g->slots.clear();
	g->why[0] = 0; // a new capture: earlier reasons are history
	g->arena_used = 0;
	g->buf_gen = d->buf_gen;
	CK(cudaStreamBeginCapture(d->stream, cudaStreamCaptureModeRelaxed));
	d->mode = DB_CAPTURE;
	*replaying = 0;
	return db_ok();
}

extern "C" db_status db_step_end(db_device *d, db_graph *g, int abort, int *launched) {
	ARG(d != NULL && g != NULL && d->graph == g, "no step open with this graph");
	CK(cudaSetDevice(d->ordinal));
	*launched = 0;
	const int mode = d->mode;
	d->mode = DB_EAGER;
	d->graph = NULL;
	if (mode == DB_REPLAY) {
		if (abort || d->sig_i != g->sigs.size() || d->slot_i != g->slots.size()) {
			if (!abort)
				snprintf(g->why, sizeof g->why, "the step made %zu calls and %zu uploads, the capture %zu and %zu", d->sig_i,
				         d->slot_i, g->sigs.size(), g->slots.size());
			g->valid = 0;
			return db_ok();
		}
	} else {
		cudaGraph_t graph = NULL;
		cudaError_t e = cudaStreamEndCapture(d->stream, &graph);
		if (abort || e != cudaSuccess || graph == NULL) {
			if (!abort) snprintf(g->why, sizeof g->why, "capture failed: %s", cudaGetErrorString(e));
			if (graph) cudaGraphDestroy(graph);
			(void)cudaGetLastError(); // a failed capture is not the next call's error
			g->valid = 0;
			return db_ok();
		}
		if (g->exec) {
			cudaGraphExecDestroy(g->exec);
			g->exec = NULL;
		}
		e = cudaGraphInstantiate(&g->exec, graph, 0);
		cudaGraphDestroy(graph);
		if (e != cudaSuccess) {
			// Not launched: the caller runs the step without a graph.
			snprintf(g->why, sizeof g->why, "cudaGraphInstantiate: %s", cudaGetErrorString(e));
			(void)cudaGetLastError();
			g->exec = NULL;
			g->valid = 0;
			return db_ok();
		}
		g->valid = 1;
	}
	CK(cudaGraphLaunch(g->exec, d->stream));
	CK(cudaEventRecord(g->done, d->stream));
	g->launched = 1;
	*launched = 1;
	return db_ok();
}
