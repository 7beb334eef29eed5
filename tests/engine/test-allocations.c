/* test-allocations.c - decoding allocates nothing per token: after the first steps of an answer
 * have sized the session's buffers, further vl2_session_step() calls make no heap allocation in
 * any thread (the engine's, the pool's or GLib's). The executable counts every call to the
 * allocator by defining malloc and its relatives, which the process then uses instead of the C
 * library's; the counts come from glibc's own entry points (__libc_malloc and friends). Not
 * built under the sanitizers, which replace the allocator themselves. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "test-util.h"
#include "vl2.h"

/* glibc's allocator, under the names it exports for programs that wrap it */
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);
extern void __libc_free(void *p);

static atomic_bool counting;
static atomic_long allocations;
/* while counting: the allocation of this number (1, 2, ...) made by malloc or calloc fails */
static atomic_long fail_at;

/* Counts the call; false when it is the one to fail. */
static bool count(void)
{
    if (!atomic_load_explicit(&counting, memory_order_relaxed))
        return true;
    long n = atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed) + 1;
    if (n != atomic_load_explicit(&fail_at, memory_order_relaxed))
        return true;
    errno = ENOMEM; /* as the allocator's failures set it (glibc's own callers check) */
    return false;
}

void *malloc(size_t size)
{
    if (!count())
        return NULL;
    return __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
    if (!count())
        return NULL;
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
    count();
    return __libc_realloc(p, size);
}

void *aligned_alloc(size_t align, size_t size)
{
    count();
    return __libc_memalign(align, size);
}

void *memalign(size_t align, size_t size)
{
    count();
    return __libc_memalign(align, size);
}

int posix_memalign(void **out, size_t align, size_t size)
{
    count();
    void *p = __libc_memalign(align, size);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void free(void *p)
{
    __libc_free(p);
}

typedef struct {
    const char *model;
    vl2_weights_format weights;
    vl2_kv_type kv;
    float temperature;           /* 0: greedy; otherwise top-k and top-p sampling too */
} alloc_case;

/* Steps an answer; the allocations of steps [warm, warm + n) are counted. */
static void test_decode_steps(gconstpointer data)
{
    const alloc_case *c = data;
    g_autofree char *dir = g_build_filename(test_fixture_dir(), c->model, NULL);
    vl2_model_params mp = vl2_model_default_params();
    mp.n_threads = 2;
    mp.weights = c->weights;
    vl2_model *m;
    vl2_error err;
    if (vl2_model_load(dir, &mp, &m, &err) != VL2_OK)
        g_error("%s", err.message);
    vl2_session_params sp = vl2_session_default_params();
    sp.n_ctx = 512;
    sp.kv_type = c->kv;
    vl2_session *s;
    g_assert_cmpint(vl2_session_new(m, &sp, &s, &err), ==, VL2_OK);

    vl2_message msg = { .role = VL2_ROLE_USER, .content = "Describe the picture in a few words." };
    vl2_conversation conv = { &msg, 1, NULL };
    vl2_prompt *p;
    g_assert_cmpint(vl2_prompt_new(m, &conv, &p, &err), ==, VL2_OK);
    vl2_generate_params gp = vl2_generate_default_params();
    gp.temperature = c->temperature;
    gp.seed = 7;
    gp.max_new_tokens = 200;
    gp.stop_at_eos = false;
    const char *stop[] = { "never appears \xe2\x80\x94 in this answer" };
    gp.stop_strings = stop;
    gp.n_stop_strings = 1;
    g_assert_cmpint(vl2_session_prefill(s, p, &gp, &err), ==, VL2_OK);

    const int warm = 4, n = 40;
    vl2_step st;
    for (int i = 0; i < warm + n; i++) {
        if (i == warm)
            atomic_store(&counting, true);
        g_assert_cmpint(vl2_session_step(s, &st, &err), ==, VL2_OK);
        g_assert_cmpint(st.stop, ==, VL2_STOP_NONE);
    }
    atomic_store(&counting, false);
    long got = atomic_exchange(&allocations, 0);
    g_test_message("%s: %ld allocations in %d steps", c->model, got, n);
    g_assert_cmpint(got, ==, 0);

    vl2_prompt_free(p);
    vl2_session_free(s);
    vl2_model_free(m);
}

/* A failed allocation in vl2_pool_new() is NULL, never a crash: the cleanup joined threads
 * through the NULL array the failed calloc left. Each of its allocations fails in turn. */
static void test_pool_allocation_failures(void)
{
    /* in a child: threads that failed to start leave the allocator's per-thread state behind,
     * which the decode cases would count */
    if (!g_test_subprocess()) {
        g_test_trap_subprocess(NULL, 60 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
        g_test_trap_assert_passed();
        return;
    }
    for (long k = 1; k <= 12; k++) {
        atomic_store(&allocations, 0);
        atomic_store(&fail_at, k);
        atomic_store(&counting, true);
        vl2_pool *p = vl2_pool_new(4);
        atomic_store(&counting, false);
        atomic_store(&fail_at, 0);
        vl2_pool_free(p);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    static const alloc_case cases[] = {
        { "mini-tiny", VL2_WEIGHTS_STORED, VL2_KV_F16, 0.0f },
        { "mini-tiny", VL2_WEIGHTS_STORED, VL2_KV_F16, 0.8f },
        { "mini-small", VL2_WEIGHTS_STORED, VL2_KV_F16, 0.8f },
        { "mini-base", VL2_WEIGHTS_Q8, VL2_KV_F32, 0.0f },
        { "mini-tiny", VL2_WEIGHTS_Q4, VL2_KV_BF16, 0.8f },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        const alloc_case *c = &cases[i];
        g_autofree char *path = g_strdup_printf(
            "/engine/allocations/decode/%s-%s-%s-%s", c->model,
            c->weights == VL2_WEIGHTS_Q8 ? "q8" : c->weights == VL2_WEIGHTS_Q4 ? "q4" : "stored",
            c->kv == VL2_KV_F32 ? "f32" : c->kv == VL2_KV_BF16 ? "bf16" : "f16",
            c->temperature > 0 ? "sampled" : "greedy");
        g_test_add_data_func(path, c, test_decode_steps);
    }
    g_test_add_func("/engine/allocations/pool-failures", test_pool_allocation_failures);
    return g_test_run();
}
