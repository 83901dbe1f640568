// graph_sig_test.cu: the host side of step graphs (common.cuh), run without
// a GPU: a replay accepts the captured calls and refuses any other call,
// argument or upload, saying which. `make test-cuda-build` builds and runs it.
#include "../common.cuh"

static int checks, fails;

#define EXPECT(cond, ...)                                                   \
	do {                                                                    \
		checks++;                                                           \
		if (!(cond)) {                                                      \
			fails++;                                                        \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                                   \
			fputc('\n', stderr);                                            \
		}                                                                   \
	} while (0)

// Two step-aware calls as the kernel files write them.
static db_status call_a(db_device *d, const void *p, int n) {
	STEP_SIG(d, p, n);
	return db_ok();
}

static db_status call_b(db_device *d, float x) {
	STEP_SIG(d, x);
	return db_ok();
}

static bool refused(db_status s) { return s.kind == DB_ERR_REPLAY; }

int main() {
	db_device d{};
	db_graph g{};
	int buf[4] = {0};
	d.graph = &g;

	// Eager calls record nothing.
	EXPECT(call_a(&d, buf, 3).kind == DB_OK, "eager call");
	EXPECT(g.sigs.empty(), "eager call recorded %zu signatures", g.sigs.size());

	d.mode = DB_CAPTURE;
	EXPECT(call_a(&d, buf, 3).kind == DB_OK && call_b(&d, 0.5f).kind == DB_OK, "capture");
	EXPECT(g.sigs.size() == 2, "captured %zu calls, want 2", g.sigs.size());

	d.mode = DB_REPLAY;
	d.sig_i = 0;
	EXPECT(call_a(&d, buf, 3).kind == DB_OK && call_b(&d, 0.5f).kind == DB_OK, "replay of the same calls");
	EXPECT(d.sig_i == 2, "replay counted %zu calls", d.sig_i);
	EXPECT(g.why[0] == 0, "a matching replay left a note: %s", g.why);

	d.sig_i = 0;
	EXPECT(refused(call_a(&d, buf + 1, 3)), "another address was accepted");
	EXPECT(strstr(g.why, "call 0 (call_a): argument 1 is") != NULL, "note: %s", g.why);

	d.sig_i = 0;
	EXPECT(refused(call_a(&d, buf, 4)), "another size was accepted");
	EXPECT(strstr(g.why, "argument 2 is 0x4, the capture had 0x3") != NULL, "note: %s", g.why);

	d.sig_i = 1;
	EXPECT(refused(call_b(&d, 0.25f)), "another float was accepted");
	EXPECT(strstr(g.why, "call 1 (call_b): argument 1") != NULL, "note: %s", g.why);

	d.sig_i = 0;
	EXPECT(refused(call_b(&d, 0.5f)), "calls in another order were accepted");
	EXPECT(strstr(g.why, "call 0 is call_b, the capture had call_a") != NULL, "note: %s", g.why);

	d.sig_i = 2;
	EXPECT(refused(call_a(&d, buf, 3)), "an extra call was accepted");
	EXPECT(strstr(g.why, "the captured step had only 2 calls") != NULL, "note: %s", g.why);

	// Uploads in a replay go into the capture's pinned slots, same sizes only.
	char slot[16] = {0}, args[1024];
	g.slots.push_back(std::make_pair(slot, (size_t)8));
	d.args = args;
	d.args_cap = sizeof args;
	d.args_used = 0;
	d.slot_i = 0;
	const char up[12] = "abcdefghijk";
	void *dev = NULL;
	EXPECT(db_args_push(&d, up, 8, &dev).kind == DB_OK, "an upload of the captured size");
	EXPECT(memcmp(slot, up, 8) == 0 && dev == args, "the upload did not land in the slot");
	d.slot_i = 0;
	d.args_used = 0;
	EXPECT(refused(db_args_push(&d, up, 12, &dev)), "an upload of another size was accepted");
	EXPECT(strstr(g.why, "upload 0: 12 bytes, the capture had another size") != NULL, "note: %s", g.why);
	d.slot_i = 1;
	EXPECT(refused(db_args_push(&d, up, 8, &dev)), "an extra upload was accepted");
	EXPECT(strstr(g.why, "the capture had fewer uploads") != NULL, "note: %s", g.why);

	// A call's arrays go up as one upload, each part 256-byte aligned.
	char big[1024] = {0};
	g.slots.clear();
	g.slots.push_back(std::make_pair(big, (size_t)256 + 12));
	d.slot_i = 0;
	d.args_used = 0;
	const int32_t pa[2] = {7, 9};
	const int32_t pb[3] = {1, 2, 3};
	void *da = NULL, *db = NULL;
	EXPECT(db_args_push_parts(&d, {{pa, sizeof pa, &da}, {pb, sizeof pb, &db}}).kind == DB_OK, "two parts in one upload");
	EXPECT(d.slot_i == 1, "two parts took %zu uploads, want 1", d.slot_i);
	EXPECT(da == args && db == args + 256, "parts at %p and %p, want %p and %p", da, db, (void *)args, (void *)(args + 256));
	EXPECT(memcmp(big, pa, sizeof pa) == 0 && memcmp(big + 256, pb, sizeof pb) == 0, "the parts did not land at their offsets");
	EXPECT(db_args_size(sizeof pa, sizeof pb) >= 256 + sizeof pb, "db_args_size does not cover the parts");

	// A scratch buffer cannot grow inside a step.
	void *p = NULL;
	size_t cap = 0;
	EXPECT(refused(db_grow(&d, &p, &cap, 100, 64, false, "db_work")), "a buffer grew inside a replay");
	EXPECT(strstr(g.why, "db_work: a device buffer must grow") != NULL, "note: %s", g.why);

	printf("graph signatures: %d checks, %d failed\n", checks, fails);
	return fails ? 1 : 0;
}
