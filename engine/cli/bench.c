/* bench.c - `vl2 bench`: how fast the engine runs a model on this machine, and how close that is
 * to what the machine allows.
 *
 *   vl2 bench --model DIR [--threads N] [--weights bf16|q8|q4] [--compute f32|bf16] [--tiles N]
 *             [--prompt-tokens N]
 *             [--gen-tokens N] [--repeats N] [--json]
 *
 * Two kinds of floor. Decoding a token reads every activated weight once, so its floor is the
 * machine's memory read bandwidth: the engine reports the weight bytes a token reads
 * (vl2_model_info.decode_bytes_per_token), this program measures the bandwidth (threads
 * summing a buffer far larger than the caches), and floor tokens/s = bandwidth / bytes.
 * Encoding a tile and reading a prompt are matrix products, so their floor is the arithmetic
 * peak: the engine reports the FLOPs, this program measures the float32 GEMM peak (OpenBLAS
 * sgemm on every thread at once, as the engine runs it) and, where the CPU has AVX-512 BF16,
 * the bf16 dot-product peak (a register-only loop of vdpbf16ps), both sampled around every vision
 * and prefill run and each run judged against both. Every figure is the median of
 * --repeats runs; the machine, the CPU and the thread count are printed with them.
 *
 * A shared or throttling machine moves its floors from second to second (on the 2-core cloud
 * guest of engine/BENCHMARKS.md, read bandwidth ranged 15-67 GB/s). So the floors are measured
 * next to the work they judge: the bandwidth before and after every group of 8 decoded
 * tokens, the GEMM peak before and after every vision and prefill run; each group or run is
 * judged against the mean of its two samples, and the fractions printed are the medians of
 * those. A neighbour that slows the work slows its floor too. The floors printed are the
 * medians of all samples.
 *
 * The workloads go through the public API only, like an application: a synthetic image whose
 * tiling gives --tiles tiles (vision seconds per tile), a text prompt of about --prompt-tokens
 * tokens (prefill tokens/s), and --gen-tokens greedy tokens after a short prompt and after the
 * long one (decode tokens/s at short and long context). Peak RSS is the process's high-water
 * mark (mapped weights count as they are touched) less the bandwidth probe's buffer.
 */
#include <cblas.h>
#include <glib.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench.h"
#include "vl2.h"

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 */

static double now(void)
{
    return (double)g_get_monotonic_time() / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    if (n <= 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static char *cpu_model(void)
{
    g_autofree char *info = NULL;
    if (g_file_get_contents("/proc/cpuinfo", &info, NULL, NULL)) {
        const char *keys[] = { "model name", "Model", "Hardware", "CPU part" };
        for (size_t k = 0; k < G_N_ELEMENTS(keys); k++) {
            const char *p = strstr(info, keys[k]);
            const char *colon = p ? strchr(p, ':') : NULL;
            if (colon) {
                const char *end = strchr(colon, '\n');
                return g_strstrip(g_strndup(colon + 1, end ? (size_t)(end - colon - 1)
                                                           : strlen(colon + 1)));
            }
        }
    }
    return g_strdup("unknown CPU");
}

static const char *cpu_features(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512bf16"))
        return "avx512 bf16 vnni";
    if (__builtin_cpu_supports("avx512vnni"))
        return "avx512 vnni";
    if (__builtin_cpu_supports("avx512f"))
        return "avx512";
    if (__builtin_cpu_supports("avx2"))
        return "avx2";
    return "sse";
#elif defined(__aarch64__)
    return "neon";
#else
    return "generic";
#endif
}

static bool has_bf16_dot(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16");
#else
    return false;
#endif
}

/* Runs fn(i) on n threads at once and returns the wall time from the common start. */
typedef struct {
    void (*fn)(void *ctx, int i);
    void *ctx;
    int i;
    GMutex *lock;
    GCond *cond;
    int *ready, *go;
} worker_arg;

static gpointer worker(gpointer p)
{
    worker_arg *a = p;
    g_mutex_lock(a->lock);
    (*a->ready)++;
    g_cond_broadcast(a->cond);
    while (!*a->go)
        g_cond_wait(a->cond, a->lock);
    g_mutex_unlock(a->lock);
    a->fn(a->ctx, a->i);
    return NULL;
}

static double run_threads(int n, void (*fn)(void *ctx, int i), void *ctx)
{
    GMutex lock;
    GCond cond;
    int ready = 0, go = 0;
    g_mutex_init(&lock);
    g_cond_init(&cond);
    worker_arg *args = g_new0(worker_arg, n);
    GThread **th = g_new0(GThread *, n);
    for (int i = 0; i < n; i++) {
        args[i] = (worker_arg){ fn, ctx, i, &lock, &cond, &ready, &go };
        th[i] = g_thread_new("bench", worker, &args[i]);
    }
    g_mutex_lock(&lock);
    while (ready < n)
        g_cond_wait(&cond, &lock);
    double t0 = now();
    go = 1;
    g_cond_broadcast(&cond);
    g_mutex_unlock(&lock);
    for (int i = 0; i < n; i++)
        g_thread_join(th[i]);
    double t = now() - t0;
    g_free(th);
    g_free(args);
    g_mutex_clear(&lock);
    g_cond_clear(&cond);
    return t;
}

/* ---------------------------------------------------------------------------------------------
 * The machine's floors
 */

/* far above any machine this runs on (each thread is a real thread of the probe) */
#define BENCH_MAX_THREADS 1024
/* the test image is 384 * (tiles - 1) pixels wide: at most VL2_MAX_IMAGE_SIDE */
#define BENCH_MAX_TILES (1 + VL2_MAX_IMAGE_SIDE / 384)

typedef struct {
    const uint64_t *buf;
    size_t n_words;       /* per thread */
    int n_threads;
    uint64_t *sink;       /* [n_threads]: what each read, so that the reads are not dropped */
} read_job;

/* Reads its slice with the widest loads the CPU has (64-byte vectors, four accumulators): the
 * loop must be bound by memory, not by instructions, or the floor would be set too low. */
typedef uint64_t v8u __attribute__((vector_size(64)));

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static uint64_t read_words(const uint64_t *p, size_t n_words)
{
    const v8u *v = (const v8u *)p;
    v8u a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 };
    size_t n = n_words / 8;
    for (size_t i = 0; i + 4 <= n; i += 4) {
        a |= v[i];
        b |= v[i + 1];
        c |= v[i + 2];
        d |= v[i + 3];
    }
    a |= b | c | d;
    uint64_t r = 0;
    for (int k = 0; k < 8; k++)
        r |= a[k];
    return r;
}

static void read_slice(void *ctx, int i)
{
    read_job *j = ctx;
    j->sink[i] = read_words(j->buf + (size_t)i * j->n_words, j->n_words);
}

/* A buffer far larger than the caches, written once so that every page is resident. */
typedef struct {
    uint64_t *buf;
    size_t len;
    read_job job;
} bw_probe;

static bool bw_probe_init(bw_probe *p, int n_threads, size_t bytes)
{
    p->buf = NULL;
    size_t words = bytes / 8 / (size_t)n_threads / 32 * 32;
    p->len = words * (size_t)n_threads * 8;
    p->buf = mmap(NULL, p->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p->buf == MAP_FAILED)
        return false;
#ifdef MADV_HUGEPAGE
    /* the best the machine does: large pages spare the reads their page walks */
    madvise(p->buf, p->len, MADV_HUGEPAGE);
#endif
    for (size_t i = 0; i < p->len / 8; i++)
        p->buf[i] = i * 0x9e3779b97f4a7c15ull;
    p->job = (read_job){ p->buf, words, n_threads, g_new0(uint64_t, n_threads) };
    run_threads(n_threads, read_slice, &p->job); /* warm up */
    return true;
}

/* GB/s of one pass over the buffer, every thread reading its share. */
static double bw_probe_run(bw_probe *p)
{
    return (double)p->len / run_threads(p->job.n_threads, read_slice, &p->job) / 1e9;
}

static void bw_probe_clear(bw_probe *p)
{
    if (p->buf && p->buf != MAP_FAILED)
        munmap(p->buf, p->len);
    p->buf = NULL;
    g_clear_pointer(&p->job.sink, g_free);
}

typedef struct {
    int n;
    float **a, **b, **c;
    int calls;
} gemm_job;

static void gemm_slice(void *ctx, int i)
{
    gemm_job *j = ctx;
    for (int k = 0; k < j->calls; k++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, j->n, j->n, 1.0f, j->a[i],
                    j->n, j->b[i], j->n, 0.0f, j->c[i], j->n);
}

/* GFLOP/s of float32 sgemm on every thread at once (OpenBLAS single-threaded in each). */
static double measure_sgemm_peak(int n_threads, int repeats)
{
    const int n = 1024;
    gemm_job j = { n, g_new0(float *, n_threads), g_new0(float *, n_threads),
                   g_new0(float *, n_threads), 2 };
    for (int i = 0; i < n_threads; i++) {
        j.a[i] = malloc((size_t)n * n * sizeof(float));
        j.b[i] = malloc((size_t)n * n * sizeof(float));
        j.c[i] = malloc((size_t)n * n * sizeof(float));
        for (size_t k = 0; k < (size_t)n * n; k++) {
            j.a[i][k] = (float)(k % 17) * 0.01f;
            j.b[i][k] = (float)(k % 13) * 0.01f;
        }
    }
    double *g = g_new(double, repeats);
    run_threads(n_threads, gemm_slice, &j);
    for (int r = 0; r < repeats; r++)
        g[r] = 2.0 * n * n * (double)n * j.calls * n_threads /
               run_threads(n_threads, gemm_slice, &j) / 1e9;
    double m = median(g, repeats);
    for (int i = 0; i < n_threads; i++) {
        free(j.a[i]);
        free(j.b[i]);
        free(j.c[i]);
    }
    g_free(j.a);
    g_free(j.b);
    g_free(j.c);
    g_free(g);
    return m;
}

#if defined(__x86_64__) && defined(__GNUC__)

#define BF16_ITERS 2000000

/* The bf16 dot-product peak: 16 independent vdpbf16ps (each 16 lanes x 2 multiply-adds) per
 * iteration on registers only, written in assembly so that no accumulator is kept in memory
 * (a loop over an array of accumulators in C compiles, at -O2, to one load and store per
 * instruction and measured a third of the peak). 16 chains hide the instruction's latency
 * at two issued per cycle. */
#define DP(n) "vdpbf16ps %%zmm30, %%zmm31, %%zmm" #n "\n\t"
__attribute__((target("avx512f,avx512bf16"))) static void bf16_slice(void *ctx, int i)
{
    __asm__ volatile("vpxord %%zmm30, %%zmm30, %%zmm30\n\t"
                     "vpxord %%zmm31, %%zmm31, %%zmm31\n\t" ::: "xmm30", "xmm31");
    for (long it = 0; it < BF16_ITERS; it++)
        __asm__ volatile(DP(0) DP(1) DP(2) DP(3) DP(4) DP(5) DP(6) DP(7) DP(8) DP(9) DP(10)
                             DP(11) DP(12) DP(13) DP(14) DP(15)::
                                 : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
                                   "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
                                   "xmm15");
}
#undef DP

/* GFLOP/s of vdpbf16ps on every thread at once: the better of two passes of some 10 ms (a
 * neighbour can only slow a pass). A true peak: no bf16 product on this CPU, the engine's or a
 * library's, can exceed it (engine/BENCHMARKS.md compares it with oneDNN's). */
static double measure_bf16_peak(int n_threads)
{
    double best = 0;
    for (int r = 0; r < 2; r++)
        best = MAX(best, 2.0 * 32 * 16 * (double)BF16_ITERS * n_threads /
                             run_threads(n_threads, bf16_slice, NULL) / 1e9);
    return best;
}
#else
static double measure_bf16_peak(int n_threads)
{
    return 0;
}
#endif

/* ---------------------------------------------------------------------------------------------
 * Workloads through the public API
 */

/* ---------------------------------------------------------------------------------------------
 * Peak RSS: the process's high-water mark, less the bandwidth buffer (resident throughout)
 */

static double rss_hwm_mb(void)
{
    g_autofree char *status = NULL;
    if (g_file_get_contents("/proc/self/status", &status, NULL, NULL)) {
        const char *line = strstr(status, "\nVmHWM:");
        if (line)
            return g_ascii_strtod(line + 7, NULL) / 1024.0; /* kB */
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
}

/* ---------------------------------------------------------------------------------------------
 * The workloads
 */

/* 256 MiB: eight times the largest L3 of a desktop CPU; one pass takes some 5 ms */
#define BW_BYTES ((size_t)256 << 20)
/* decoded tokens between two bandwidth samples */
#define DECODE_GROUP 8

typedef struct {
    vl2_model *model;
    vl2_session *session;
    vl2_model_info info;
    int repeats, n_threads, kv_bytes;
    bw_probe probe;
    GArray *bw;       /* GB/s, every measurement */
    GArray *gemm;     /* f32 GEMM GFLOP/s, every measurement */
    GArray *bf16;     /* bf16 dot GFLOP/s, every measurement (none without AVX-512 BF16) */
    bool has_bf16;
} bench;

static void bench_clear(bench *b)
{
    vl2_session_free(b->session);
    vl2_model_free(b->model);
    g_array_unref(b->bw);
    g_array_unref(b->gemm);
    g_array_unref(b->bf16);
    bw_probe_clear(&b->probe);
}

static int bench_fail(bench *b, const char *message)
{
    fprintf(stderr, "vl2 bench: %s\n", message);
    bench_clear(b);
    return 1;
}

/* The read bandwidth now: the better of two passes (a pass can only be slowed, not sped up, by
 * a neighbour). */
static double sample_bandwidth(bench *b)
{
    double a = bw_probe_run(&b->probe), c = bw_probe_run(&b->probe);
    double gbs = MAX(a, c);
    g_array_append_val(b->bw, gbs);
    return gbs;
}

/* The arithmetic peaks now: the f32 GEMM (a few 1024^3 products per thread, some 50 ms) and,
 * where the CPU has it, the bf16 dot product (some 20 ms). */
typedef struct {
    double f32, bf16;
} peaks;

static peaks sample_peaks(bench *b)
{
    peaks p = { measure_sgemm_peak(b->n_threads, 3), 0 };
    g_array_append_val(b->gemm, p.f32);
    if (b->has_bf16) {
        p.bf16 = measure_bf16_peak(b->n_threads);
        g_array_append_val(b->bf16, p.bf16);
    }
    return p;
}

/* GFLOP/s done over the mean of the peaks sampled before and after */
static peaks fractions(double gflops, peaks p0, peaks p1)
{
    return (peaks){ gflops / ((p0.f32 + p1.f32) / 2),
                    p0.bf16 + p1.bf16 > 0 ? gflops / ((p0.bf16 + p1.bf16) / 2) : 0 };
}

/* FLOPs of reading a prompt of n tokens: the layers for every token, attention over the
 * causal pairs, the output head once. */
static double prefill_flops(const bench *b, int n)
{
    return b->info.lm_flops_per_token * n + b->info.lm_head_flops +
           b->info.lm_flops_per_attention_pair * n * (n + 1) / 2.0;
}

/* Tokens/s at the floor for a context of n_ctx tokens: the weights a token reads plus the KV
 * cache it attends over, at gbs GB/s. */
static double decode_floor(const bench *b, double gbs, int n_ctx)
{
    double bytes = (double)b->info.decode_bytes_per_token +
                   (double)b->info.kv_values_per_token * b->kv_bytes * n_ctx;
    return gbs * 1e9 / bytes;
}

/* Reads the conversation into a fresh cache, ready to decode up to `gen` tokens. */
static bool prefill(bench *b, const vl2_conversation *conv, int gen, vl2_timings *t,
                    vl2_error *err)
{
    vl2_prompt *p = NULL;
    if (vl2_prompt_new(b->model, conv, &p, err) != VL2_OK)
        return false;
    vl2_generate_params gp = vl2_generate_default_params();
    gp.temperature = 0;
    gp.max_new_tokens = gen + 1;
    gp.stop_at_eos = false;
    gp.repetition_penalty = 1;
    vl2_session_reset(b->session);
    bool ok = vl2_session_prefill(b->session, p, &gp, err) == VL2_OK;
    vl2_session_get_timings(b->session, t);
    vl2_prompt_free(p);
    return ok;
}

/* A text of about n tokens: plain English, as a prompt would be. */
/* Sets *err (vl2_set_error() is the engine's own) and returns false. */
G_GNUC_PRINTF(3, 4)
static bool bench_error(vl2_error *err, vl2_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err->code = code;
    g_vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return false;
}

static char *long_text(vl2_model *model, int n)
{
    static const char *sentences[] = {
        "The engine reads the prompt in one pass and then writes the answer one token at a "
        "time. ",
        "Each layer mixes the tokens with attention and then sends every token through a few "
        "experts. ",
        "Memory bandwidth decides how fast a token comes out; arithmetic decides how fast a "
        "prompt is read. ",
    };
    /* Sentences are added by an estimate from their own counts, then the whole is counted
     * (counting it after each sentence was quadratic in n); a tokenizer that gives English
     * no tokens at all gives no text. */
    size_t per[3];
    for (int k = 0; k < 3; k++) {
        per[k] = 0;
        vl2_tokenize(model, sentences[k], strlen(sentences[k]), NULL, 0, &per[k], NULL);
        if (!per[k])
            return NULL;
    }
    GString *s = g_string_new(NULL);
    size_t estimate = 0;
    for (int i = 0;; i++) {
        if ((int64_t)estimate >= n - 16) {
            size_t n_ids = 0;
            vl2_tokenize(model, s->str, s->len, NULL, 0, &n_ids, NULL);
            if ((int64_t)n_ids >= n - 16)
                break;
            estimate = n_ids;
        }
        g_string_append(s, sentences[i % 3]);
        estimate += per[i % 3];
    }
    return g_string_free(s, FALSE);
}

typedef struct {
    double tps, fraction; /* medians of the runs; fraction of each run's own floor */
} decode_result;

typedef struct {
    double seconds_per_tile, prefill_tps;
    /* of the f32 GEMM and the bf16 dot peaks measured around each run */
    peaks vision_fraction, prefill_fraction;
    decode_result short_ctx, long_ctx;
    int tiles, prompt_tokens, long_context;
    double ttft_cold, ttft_warm;  /* seconds to the first token: image + question */
    int ttft_tiles, ttft_tokens;
} results;

/* `repeats` runs of prefill and `gen` decoded tokens. The tokens are decoded in groups of
 * DECODE_GROUP, the bandwidth sampled before and after each group, and each group's tokens/s
 * judged against the mean of its two samples: a neighbour that takes bandwidth from a group
 * takes it from its samples too. The fraction reported is the median over all groups; the
 * prefill fraction likewise, per run against the GEMM peak measured around it. */
static bool decode_runs(bench *b, const vl2_conversation *c, int gen, double *prefill_tps,
                        peaks *prefill_fraction, int *n_prompt, int *n_ctx, decode_result *out,
                        vl2_error *err)
{
    int n_groups = (gen + DECODE_GROUP - 1) / DECODE_GROUP;
    double *tps = g_new(double, b->repeats);
    double *frac = g_new(double, (size_t)b->repeats * n_groups);
    double *pf = g_new(double, b->repeats), *pf_frac = g_new(double, b->repeats),
           *pf_frac_bf16 = g_new(double, b->repeats);
    int n_frac = 0;
    vl2_timings t;
    bool ok = true;
    for (int i = 0; ok && i < b->repeats; i++) {
        peaks p0 = prefill_fraction ? sample_peaks(b) : (peaks){ 0 };
        ok = prefill(b, c, gen, &t, err);
        peaks p1 = prefill_fraction ? sample_peaks(b) : (peaks){ 0 };
        if (!ok)
            break;
        pf[i] = t.n_prompt_tokens / t.prefill_seconds;
        peaks f = fractions(prefill_flops(b, t.n_prompt_tokens) / t.prefill_seconds / 1e9, p0, p1);
        pf_frac[i] = f.f32;
        pf_frac_bf16[i] = f.bf16;
        *n_prompt = t.n_prompt_tokens;
        double seconds = 0;
        int done = 0;
        while (ok && done < gen) {
            int n = MIN(DECODE_GROUP, gen - done);
            double bw0 = sample_bandwidth(b);
            double t0 = now();
            vl2_step step;
            for (int k = 0; ok && k < n; k++)
                ok = vl2_session_step(b->session, &step, err) == VL2_OK;
            double dt = now() - t0;
            double bw1 = sample_bandwidth(b);
            /* the cache holds the prompt, the tokens before and half the group on average */
            int ctx = t.n_prompt_tokens + done + n / 2;
            frac[n_frac++] = n / dt / decode_floor(b, (bw0 + bw1) / 2, ctx);
            seconds += dt;
            done += n;
        }
        tps[i] = done / seconds;
        *n_ctx = t.n_prompt_tokens + gen / 2;
    }
    if (ok) {
        if (prefill_tps)
            *prefill_tps = median(pf, b->repeats);
        if (prefill_fraction)
            *prefill_fraction = (peaks){ median(pf_frac, b->repeats),
                                         median(pf_frac_bf16, b->repeats) };
        out->tps = median(tps, b->repeats);
        out->fraction = median(frac, n_frac);
    }
    g_free(pf);
    g_free(pf_frac);
    g_free(pf_frac_bf16);
    g_free(frac);
    g_free(tps);
    return ok;
}

/* Seconds from Send to the first token of an answer about a 1280 x 960 photo with a question
 * of about 20 tokens: cold (nothing cached: tiles, SigLIP, projector, the whole prompt) and
 * warm (the image read beforehand with vl2_session_prepare(), as the app does while the
 * question is typed: only the question is read). Medians of the repeats. */
static bool ttft_runs(bench *b, results *r, vl2_error *err)
{
    const int w = 1280, h = 960;
    uint8_t *px = malloc((size_t)w * h * 3);
    if (!px) {
        err->code = VL2_ERR_NO_MEMORY;
        g_strlcpy(err->message, "out of memory for the test image", sizeof err->message);
        return false;
    }
    for (size_t i = 0; i < (size_t)w * h * 3; i++)
        px[i] = (uint8_t)((i * 2654435761u) >> 24);
    vl2_image img = { w, h, w * 3, px };
    vl2_message typing = { VL2_ROLE_USER, "<image>\nWhat is wr", &img, 1 };
    vl2_message sent = { VL2_ROLE_USER, "<image>\nWhat is written on the sign above the door of "
                                        "the shop, and what colour are its letters?", &img, 1 };
    vl2_conversation ct = { &typing, 1, NULL }, cs = { &sent, 1, NULL };
    vl2_prompt *pt = NULL, *ps = NULL;
    double *cold = g_new(double, b->repeats), *warm = g_new(double, b->repeats);
    bool ok = vl2_prompt_new(b->model, &ct, &pt, err) == VL2_OK &&
              vl2_prompt_new(b->model, &cs, &ps, err) == VL2_OK;
    vl2_generate_params gp = vl2_generate_default_params();
    gp.temperature = 0;
    gp.max_new_tokens = 2;
    vl2_step step;
    vl2_timings t;
    for (int i = 0; ok && i < b->repeats; i++) {
        vl2_session_reset(b->session);
        double t0 = now();
        ok = vl2_session_prefill(b->session, ps, &gp, err) == VL2_OK &&
             vl2_session_step(b->session, &step, err) == VL2_OK;
        cold[i] = now() - t0;
        vl2_session_get_timings(b->session, &t);
        r->ttft_tiles = t.n_tiles;
        vl2_session_reset(b->session);
        ok = ok && vl2_session_prepare(b->session, pt, NULL, err) == VL2_OK;
        t0 = now();
        ok = ok && vl2_session_prefill(b->session, ps, &gp, err) == VL2_OK &&
             vl2_session_step(b->session, &step, err) == VL2_OK;
        warm[i] = now() - t0;
        vl2_session_get_timings(b->session, &t);
        r->ttft_tokens = t.n_prompt_tokens;
    }
    if (ok) {
        r->ttft_cold = median(cold, b->repeats);
        r->ttft_warm = median(warm, b->repeats);
    }
    g_free(cold);
    g_free(warm);
    vl2_prompt_free(pt);
    vl2_prompt_free(ps);
    free(px);
    return ok;
}

static bool run_workloads(bench *b, int tiles, int prompt_tokens, int gen, results *r,
                          vl2_error *err)
{
    double *v = g_new(double, b->repeats), *frac = g_new(double, b->repeats),
           *frac_bf16 = g_new(double, b->repeats);
    vl2_timings t;
    bool ok = true;

    /* vision: one image whose tiling gives `tiles` tiles (a global view and tiles-1 local) */
    if (tiles > 0) {
        int w = 384 * (tiles > 1 ? tiles - 1 : 1), h = 384;
        uint8_t *px = g_try_malloc((size_t)w * h * 3);
        if (!px) {
            g_free(v);
            g_free(frac);
            g_free(frac_bf16);
            return bench_error(err, VL2_ERR_NO_MEMORY, "no memory for a %d x %d test image", w, h);
        }
        for (size_t i = 0; i < (size_t)w * h * 3; i++)
            px[i] = (uint8_t)((i * 2654435761u) >> 24);
        vl2_image img = { w, h, w * 3, px };
        vl2_message m = { VL2_ROLE_USER, "<image>\nDescribe the image.", &img, 1 };
        vl2_conversation c = { &m, 1, NULL };
        for (int i = 0; ok && i < b->repeats; i++) {
            peaks p0 = sample_peaks(b);
            ok = prefill(b, &c, 0, &t, err);
            peaks p1 = sample_peaks(b);
            v[i] = t.n_tiles ? t.vision_seconds / t.n_tiles : 0;
            peaks f = fractions(v[i] > 0 ? b->info.vision_flops_per_tile / v[i] / 1e9 : 0, p0, p1);
            frac[i] = f.f32;
            frac_bf16[i] = f.bf16;
            r->tiles = t.n_tiles;
        }
        r->seconds_per_tile = median(v, b->repeats);
        r->vision_fraction = (peaks){ median(frac, b->repeats), median(frac_bf16, b->repeats) };
        g_free(px);
    }
    g_free(v);
    g_free(frac);
    g_free(frac_bf16);

    /* the first token of an image question, cold and with the image read ahead */
    if (ok && tiles > 0)
        ok = ttft_runs(b, r, err);

    /* prefill of a long prompt, then decoding after it */
    g_autofree char *text = long_text(b->model, prompt_tokens);
    if (!text)
        ok = bench_error(err, VL2_ERR_FORMAT, "the tokenizer gives no tokens for English text");
    vl2_message m = { VL2_ROLE_USER, text, NULL, 0 };
    vl2_conversation c = { &m, 1, NULL };
    if (ok)
        ok = decode_runs(b, &c, gen, &r->prefill_tps, &r->prefill_fraction, &r->prompt_tokens,
                         &r->long_context, &r->long_ctx, err);

    /* decoding at a short context */
    vl2_message sm = { VL2_ROLE_USER, "Write a long story about a lighthouse.", NULL, 0 };
    vl2_conversation sc = { &sm, 1, NULL };
    int n_prompt, n_ctx;
    if (ok)
        ok = decode_runs(b, &sc, gen, NULL, NULL, &n_prompt, &n_ctx, &r->short_ctx, err);
    return ok;
}

/* ---------------------------------------------------------------------------------------------
 * The command
 */

int vl2_cmd_bench(int argc, char **argv)
{
    g_autofree char *model_dir = NULL, *weights = NULL, *compute = NULL;
    int threads = 0, tiles = 2, prompt_tokens = 1500, gen = 32, repeats = 5;
    gboolean json = FALSE, resident = FALSE;
    GOptionEntry entries[] = {
        { "model", 0, 0, G_OPTION_ARG_FILENAME, &model_dir, "Checkpoint folder", "DIR" },
        { "threads", 0, 0, G_OPTION_ARG_INT, &threads, "Worker threads (default: all CPUs)", "N" },
        { "weights", 0, 0, G_OPTION_ARG_STRING, &weights, "bf16 (as stored), q8 or q4 "
          "(quantized while loading)", "FORMAT" },
        { "compute", 0, 0, G_OPTION_ARG_STRING, &compute, "Arithmetic of vision and prefill: "
          "f32 (default) or bf16", "MODE" },
        { "tiles", 0, 0, G_OPTION_ARG_INT, &tiles, "Tiles of the test image (default 2; 0 skips "
          "vision)", "N" },
        { "prompt-tokens", 0, 0, G_OPTION_ARG_INT, &prompt_tokens, "Length of the long prompt "
          "(default 1500)", "N" },
        { "gen-tokens", 0, 0, G_OPTION_ARG_INT, &gen, "Tokens decoded per run (default 32)", "N" },
        { "repeats", 0, 0, G_OPTION_ARG_INT, &repeats, "Runs per figure; medians are reported "
          "(default 5)", "N" },
        { "resident", 0, 0, G_OPTION_ARG_NONE, &resident, "Copy the stored weights into memory "
          "while loading instead of reading the mapped files", NULL },
        { "json", 0, 0, G_OPTION_ARG_NONE, &json, "One JSON object on stdout", NULL },
        { NULL },
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("- measure speed against this machine's "
                                                         "floors");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) gerr = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
        fprintf(stderr, "vl2 bench: %s\n", gerr->message);
        return 2;
    }
    vl2_model_params mp = vl2_model_default_params();
    if (!model_dir || repeats < 1 || gen < 1 || prompt_tokens < 32 || tiles < 0 ||
        (weights && !g_str_equal(weights, "bf16") && !g_str_equal(weights, "q8") &&
         !g_str_equal(weights, "q4")) ||
        (compute && !vl2_compute_from_name(compute, &(vl2_compute){ 0 }))) {
        g_autofree char *help = g_option_context_get_help(ctx, TRUE, NULL);
        fprintf(stderr, "vl2 bench: needs --model; --weights is bf16, q8 or q4; --compute is f32 "
                        "or bf16; counts must be positive\n\n%s", help);
        return 2;
    }
    /* what the runs allocate follows from these: each is bounded before anything is made */
    if (threads < 0 || threads > BENCH_MAX_THREADS || tiles > BENCH_MAX_TILES ||
        repeats > 1000 || gen > (1 << 20) || prompt_tokens > (1 << 22)) {
        fprintf(stderr, "vl2 bench: --threads is 0 (all CPUs) to %d, --tiles at most %d, "
                        "--repeats at most 1000, --gen-tokens at most %d, --prompt-tokens at "
                        "most the model's context\n", BENCH_MAX_THREADS, BENCH_MAX_TILES, 1 << 20);
        return 2;
    }
    mp.n_threads = threads;
    mp.resident = resident;
    mp.weights = !weights || g_str_equal(weights, "bf16") ? VL2_WEIGHTS_STORED
                 : g_str_equal(weights, "q8") ? VL2_WEIGHTS_Q8 : VL2_WEIGHTS_Q4;

    bench b = { .repeats = repeats };
    vl2_error err;
    b.bw = g_array_new(FALSE, FALSE, sizeof(double));
    b.gemm = g_array_new(FALSE, FALSE, sizeof(double));
    b.bf16 = g_array_new(FALSE, FALSE, sizeof(double));
    b.has_bf16 = has_bf16_dot();
    /* the probe's buffer first: from here on it is in every RSS figure, and taken out of them */
    int n_threads = threads > 0 ? threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (!bw_probe_init(&b.probe, MAX(n_threads, 1), BW_BYTES))
        return bench_fail(&b, "cannot map the memory to measure bandwidth in");
    double probe_mb = (double)b.probe.len / (1 << 20);
    if (vl2_model_load(model_dir, &mp, &b.model, &err) != VL2_OK)
        return bench_fail(&b, err.message);
    vl2_model_get_info(b.model, &b.info);
    const vl2_model_info info = b.info;
    if (prompt_tokens + gen > info.n_ctx_max) {
        g_autofree char *msg = g_strdup_printf("--prompt-tokens %d and --gen-tokens %d do not "
                                               "fit the model's context of %d tokens",
                                               prompt_tokens, gen, info.n_ctx_max);
        return bench_fail(&b, msg);
    }
    /* quantized matrices, whether quantized while loading or read from a quantized checkpoint,
     * are always held in memory (vl2_model_params.resident) */
    const bool in_memory = resident || !strcmp(info.weights_format, "q8") ||
                           !strcmp(info.weights_format, "q4");
    n_threads = b.n_threads = info.n_threads;
    if (n_threads != b.probe.job.n_threads) { /* the engine chose otherwise */
        bw_probe_clear(&b.probe);
        if (!bw_probe_init(&b.probe, n_threads, BW_BYTES))
            return bench_fail(&b, "cannot map the memory to measure bandwidth in");
    }
    vl2_session_params sp = vl2_session_default_params();
    if (compute)
        vl2_compute_from_name(compute, &sp.compute);
    b.kv_bytes = sp.kv_type == VL2_KV_F32 ? 4 : 2;
    if (vl2_session_new(b.model, &sp, &b.session, &err) != VL2_OK)
        return bench_fail(&b, err.message);
    openblas_set_num_threads(1);

    results r = { 0 };
    if (!run_workloads(&b, tiles, prompt_tokens, gen, &r, &err))
        return bench_fail(&b, err.message);
    double rss = rss_hwm_mb() - probe_mb;
    double bw = median((double *)b.bw->data, (int)b.bw->len);
    /* median() sorted them */
    double bw_min = ((double *)b.bw->data)[0], bw_max = ((double *)b.bw->data)[b.bw->len - 1];
    if (b.gemm->len == 0)
        sample_peaks(&b);
    double f32_peak = median((double *)b.gemm->data, (int)b.gemm->len);
    double bf16_peak = b.bf16->len ? median((double *)b.bf16->data, (int)b.bf16->len) : 0;
    g_autofree char *cpu = cpu_model();

    /* what each figure would be at its floor */
    double decode_floor_short = decode_floor(&b, bw, 0);
    double decode_floor_long = decode_floor(&b, bw, r.long_context);
    double tile_gflop = info.vision_flops_per_tile / 1e9;
    double prefill_gflops = prefill_flops(&b, r.prompt_tokens) / (r.prompt_tokens / r.prefill_tps) /
                            1e9;
    double vit_gflops = r.seconds_per_tile > 0 ? tile_gflop / r.seconds_per_tile : 0;
    double kv_mb = (double)info.kv_values_per_token * b.kv_bytes * info.n_ctx_max / 1e6;
    double rss_bound = (double)info.n_bytes / 1e6 + kv_mb + 300;

    if (json) {
        g_autoptr(JsonBuilder) jb = json_builder_new();
        json_builder_begin_object(jb);
#define ADD_S(k, v) (json_builder_set_member_name(jb, k), json_builder_add_string_value(jb, v))
#define ADD_D(k, v) (json_builder_set_member_name(jb, k), json_builder_add_double_value(jb, v))
#define ADD_I(k, v) (json_builder_set_member_name(jb, k), json_builder_add_int_value(jb, v))
        ADD_S("cpu", cpu);
        ADD_S("cpu_features", cpu_features());
        ADD_S("kernels", vl2_isa());
        ADD_I("threads", n_threads);
        ADD_S("model", model_dir);
        ADD_S("variant", info.variant);
        ADD_S("weights", info.weights_format);
        json_builder_set_member_name(jb, "resident");
        json_builder_add_boolean_value(jb, in_memory);
        ADD_I("repeats", repeats);
        ADD_D("load_seconds", info.load_seconds);
        ADD_D("bandwidth_gbs", bw);
        ADD_D("bandwidth_gbs_min", bw_min);
        ADD_D("bandwidth_gbs_max", bw_max);
        ADD_I("bandwidth_samples", b.bw->len);
        ADD_D("f32_gemm_peak_gflops", f32_peak);
        ADD_I("f32_gemm_samples", b.gemm->len);
        ADD_D("bf16_dot_peak_gflops", bf16_peak);
        ADD_I("bf16_dot_samples", b.bf16->len);
        ADD_S("compute", vl2_compute_name(sp.compute));
        ADD_I("decode_bytes_per_token", info.decode_bytes_per_token);
        ADD_I("tiles", r.tiles);
        ADD_D("vision_seconds_per_tile", r.seconds_per_tile);
        ADD_D("vision_gflops", vit_gflops);
        ADD_D("vision_fraction_f32", r.vision_fraction.f32);
        ADD_D("vision_fraction_bf16", r.vision_fraction.bf16);
        ADD_D("ttft_cold_seconds", r.ttft_cold);
        ADD_D("ttft_warm_seconds", r.ttft_warm);
        ADD_I("ttft_tiles", r.ttft_tiles);
        ADD_I("ttft_warm_prompt_tokens", r.ttft_tokens);
        ADD_I("prompt_tokens", r.prompt_tokens);
        ADD_D("prefill_tokens_per_second", r.prefill_tps);
        ADD_D("prefill_gflops", prefill_gflops);
        ADD_D("prefill_fraction_f32", r.prefill_fraction.f32);
        ADD_D("prefill_fraction_bf16", r.prefill_fraction.bf16);
        ADD_D("decode_tokens_per_second_short", r.short_ctx.tps);
        ADD_D("decode_floor_short", decode_floor_short);
        ADD_D("decode_fraction_short", r.short_ctx.fraction);
        ADD_I("long_context", r.long_context);
        ADD_D("decode_tokens_per_second_long", r.long_ctx.tps);
        ADD_D("decode_floor_long", decode_floor_long);
        ADD_D("decode_fraction_long", r.long_ctx.fraction);
        ADD_D("peak_rss_mb", rss);
        ADD_D("rss_bound_mb", rss_bound);
        json_builder_end_object(jb);
        g_autoptr(JsonGenerator) gen_json = json_generator_new();
        g_autoptr(JsonNode) root = json_builder_get_root(jb);
        json_generator_set_root(gen_json, root);
        json_generator_set_pretty(gen_json, TRUE);
        g_autofree char *out = json_generator_to_data(gen_json, NULL);
        puts(out);
    } else {
        printf("machine     %s (%s), %d threads, %ld CPUs online, kernels %s\n", cpu,
               cpu_features(), n_threads, sysconf(_SC_NPROCESSORS_ONLN), vl2_isa());
        printf("model       %s: DeepSeek-VL2 %s, %s weights %s, %.2f B parameters, loaded in "
               "%.2f s\n", model_dir, info.variant, info.weights_format,
               in_memory ? "in memory" : "mapped", info.n_params / 1e9,
               info.load_seconds);
        printf("floors      read bandwidth %.1f GB/s (median of %u samples, %.1f-%.1f); f32 GEMM "
               "%.0f GFLOP/s (median of %u)", bw, b.bw->len, bw_min, bw_max, f32_peak,
               b.gemm->len);
        if (bf16_peak > 0)
            printf("; bf16 dot %.0f GFLOP/s (median of %u)", bf16_peak, b.bf16->len);
        printf("\ncompute     %s\n", sp.compute == VL2_COMPUTE_BF16 ? "bf16 operands, float32 sums"
                                                                 : "float32");
        if (r.tiles) {
            printf("vision      %.2f s per tile (%d tiles): %.0f GFLOP/s = %.0f%% of the f32 GEMM "
                   "peak", r.seconds_per_tile, r.tiles, vit_gflops, 100 * r.vision_fraction.f32);
            if (bf16_peak > 0)
                printf(", %.0f%% of the bf16 dot peak", 100 * r.vision_fraction.bf16);
            printf("\n");
        }
        if (r.tiles)
            printf("first token %.2f s after Send for a 1280x960 photo (%d tiles) and a question; "
                   "%.2f s with the image read while it is typed (%d tokens left to read)\n",
                   r.ttft_cold, r.ttft_tiles, r.ttft_warm, r.ttft_tokens);
        printf("prefill     %d tokens at %.1f tokens/s: %.0f GFLOP/s = %.0f%% of the f32 GEMM "
               "peak", r.prompt_tokens, r.prefill_tps, prefill_gflops,
               100 * r.prefill_fraction.f32);
        if (bf16_peak > 0)
            printf(", %.0f%% of the bf16 dot peak", 100 * r.prefill_fraction.bf16);
        printf("\n");
        printf("decode      %.1f tokens/s at a short context: %.0f%% of the floor (%.1f at the "
               "median bandwidth; %.0f MB per token)\n", r.short_ctx.tps,
               100 * r.short_ctx.fraction, decode_floor_short, info.decode_bytes_per_token / 1e6);
        printf("            %.1f tokens/s at context %d: %.0f%% of the floor (%.1f)\n",
               r.long_ctx.tps, r.long_context, 100 * r.long_ctx.fraction, decode_floor_long);
        printf("            (fractions: medians over groups of %d tokens, each judged against the "
               "bandwidth measured just before and after it)\n", DECODE_GROUP);
        printf("memory      peak RSS %.0f MB (checkpoint %.0f MB + KV cache at %d tokens %.0f MB "
               "+ 300 MB = %.0f MB)\n", rss, info.n_bytes / 1e6, info.n_ctx_max, kv_mb,
               rss_bound);
    }
    bench_clear(&b);
    return 0;
}
