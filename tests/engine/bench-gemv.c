/* bench-gemv.c - memory bandwidth of the decode kernels (quant.h), not a test.
 *
 * The workload is the Tiny decoder's experts: matrices of 896 rows by 1280 (a gate or up
 * projection), as many as make about 256 MB in each format, far beyond the caches. One run
 * multiplies every matrix by one x, each thread taking its band of rows of every matrix, and
 * counts the weight bytes read (values and scales). Beside it, a plain streaming read (sum of
 * 64-bit words) of the same bytes split among the same threads gives the ceiling. The two
 * alternate, 7 runs each after a warm-up; printed are their medians with the median of the
 * per-run ratios, and their best runs (another process on the machine only ever slows a run
 * down, so on a shared machine the best runs are the steadier measure).
 *
 *   bench-gemv [MB] [isa] [nothp]
 *
 * isa forces a kernel variant (see vl2_kernels_force_isa); nothp asks for 4 KiB pages, as the
 * page cache gives a mapped safetensors file, instead of transparent huge pages.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "quant.h"

#define ROWS 896
#define COLS 1280
#define RUNS 7
#define MAX_THREADS 2

typedef enum { F_BF16, F_Q8, F_Q4, F_STREAM } fmt;

typedef struct {
    fmt f;
    int n_mat;
    uint8_t *qs;       /* values of all matrices, one after another */
    uint16_t *sc;      /* scales of all matrices */
    size_t mat_bytes;  /* values per matrix */
    size_t bytes;      /* everything read by one run */
    vl2_qx *qx;
    const float *x;
    float *y;          /* n_mat * ROWS */
} workload;

static int n_threads;
static pthread_barrier_t start_bar, end_bar;
static const workload *job;
static volatile uint64_t sink;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static uint64_t stream_avx512(const uint8_t *p, size_t len)
{
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 256 <= len; i += 256) {
        a0 = _mm512_add_epi64(a0, _mm512_loadu_si512(p + i));
        a1 = _mm512_add_epi64(a1, _mm512_loadu_si512(p + i + 64));
        a2 = _mm512_add_epi64(a2, _mm512_loadu_si512(p + i + 128));
        a3 = _mm512_add_epi64(a3, _mm512_loadu_si512(p + i + 192));
    }
    uint64_t s = (uint64_t)_mm512_reduce_add_epi64(
        _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
    for (; i < len; i++)
        s += p[i];
    return s;
}
#endif

static uint64_t stream(const uint8_t *p, size_t len)
{
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f"))
        return stream_avx512(p, len);
#endif
    uint64_t s = 0;
    for (size_t i = 0; i + 8 <= len; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        s += v;
    }
    return s;
}

static void work(int t)
{
    const workload *w = job;
    int r0 = ROWS * t / n_threads, r1 = ROWS * (t + 1) / n_threads;
    if (w->f == F_STREAM) {
        /* the same byte count, each thread one contiguous share */
        size_t a = w->bytes * (size_t)t / (size_t)n_threads & ~(size_t)63;
        size_t b = t == n_threads - 1 ? w->bytes : w->bytes * (size_t)(t + 1) / (size_t)n_threads & ~(size_t)63;
        sink += stream(w->qs + a, b - a);
        return;
    }
    for (int e = 0; e < w->n_mat; e++) {
        const uint8_t *q = w->qs + (size_t)e * w->mat_bytes;
        const uint16_t *s = w->sc + (size_t)e * ROWS * (COLS / 32);
        float *y = w->y + (size_t)e * ROWS;
        switch (w->f) {
        case F_BF16:
            vl2_gemv_bf16((const uint16_t *)q, COLS, COLS, r0, r1, w->x, y);
            break;
        case F_Q8:
            vl2_gemv_q8((const int8_t *)q, s, COLS, r0, r1, w->qx, y);
            break;
        case F_Q4:
            vl2_gemv_q4(q, s, COLS, r0, r1, w->qx, y);
            break;
        default:
            break;
        }
    }
}

static void *worker(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (;;) {
        pthread_barrier_wait(&start_bar);
        if (!job)
            return NULL;
        work(t);
        pthread_barrier_wait(&end_bar);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double run_once(const workload *w)
{
    job = w;
    double t0 = now();
    pthread_barrier_wait(&start_bar);
    work(0);
    pthread_barrier_wait(&end_bar);
    return (double)w->bytes / (now() - t0) / 1e9;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* GB/s (1e9 bytes) of the kernel and of the plain read, medians of RUNS, run in alternation
 * so that both see the same machine (another process may share the cores); and the median of
 * the per-run ratios. */
static void measure(const workload *w, const workload *s, double *gk, double *gs, double *ratio,
                    double *best_k, double *best_s)
{
    double k[RUNS], r[RUNS], st[RUNS];
    run_once(s);
    run_once(w);
    *best_k = *best_s = 0;
    for (int i = 0; i < RUNS; i++) {
        st[i] = run_once(s);
        k[i] = run_once(w);
        r[i] = k[i] / st[i];
        *best_k = k[i] > *best_k ? k[i] : *best_k;
        *best_s = st[i] > *best_s ? st[i] : *best_s;
    }
    *gk = median(k, RUNS);
    *gs = median(st, RUNS);
    *ratio = median(r, RUNS);
}

static void *alloc(size_t bytes, int thp)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    madvise(p, bytes, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    return p;
}

static void fill(uint8_t *p, size_t bytes, uint64_t seed)
{
    for (size_t i = 0; i + 8 <= bytes; i += 8) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        memcpy(p + i, &seed, 8);
    }
}

static void cpu_model(char *out, size_t len)
{
    snprintf(out, len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[256], name[128] = "?";
    int family = -1, model = -1;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "model name : %127[^\n]", name) == 1)
            continue;
        if (family < 0 && sscanf(line, "cpu family : %d", &family) == 1)
            continue;
        if (model < 0 && sscanf(line, "model : %d", &model) == 1)
            continue;
        if (line[0] == '\n')
            break;
    }
    fclose(f);
    snprintf(out, len, "%s (family %d, model %d)", name, family, model);
}

int main(int argc, char **argv)
{
    size_t mb = argc > 1 ? (size_t)atoi(argv[1]) : 256;
    const char *isa = argc > 2 ? argv[2] : NULL;
    int thp = !(argc > 3 && strcmp(argv[3], "nothp") == 0);
    if (isa && strcmp(isa, "auto") != 0 && !vl2_kernels_force_isa(isa)) {
        fprintf(stderr, "variant %s not available\n", isa);
        return 1;
    }
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    printf("cpu: %s\nkernels: %s, pages: %s\n", cpu, vl2_kernels_isa(),
           thp ? "transparent huge pages" : "4 KiB");
    printf("workload: %d x %d matrices, ~%zu MB per format\n\n", ROWS, COLS, mb);

    float *x = malloc(COLS * sizeof(float));
    for (int i = 0; i < COLS; i++)
        x[i] = (float)((i * 37) % 101 - 50) / 50.0f;
    void *qxbuf = malloc(vl2_qx_bytes(COLS));
    vl2_qx qx;
    vl2_qx_init(&qx, qxbuf, COLS);
    vl2_quantize_x(x, &qx);

    static const char *names[] = { "bf16", "q8_0", "q4_0" };
    printf("%-6s %7s %8s | %-23s | %-23s\n", "", "", "", "median of 7 runs, GB/s", "best of 7 runs, GB/s");
    printf("%-6s %7s %8s | %7s %7s %7s | %7s %7s %7s\n", "format", "threads", "matrices", "kernel",
           "stream", "ratio", "kernel", "stream", "ratio");
    for (fmt f = F_BF16; f <= F_Q4; f++) {
        workload w = { .f = f, .qx = &qx, .x = x };
        size_t sc_bytes = f == F_BF16 ? 0 : (size_t)ROWS * (COLS / 32) * 2;
        w.mat_bytes = f == F_BF16 ? (size_t)ROWS * COLS * 2
                    : f == F_Q8   ? (size_t)ROWS * COLS
                                  : (size_t)ROWS * COLS / 2;
        w.n_mat = (int)(mb * 1000000 / (w.mat_bytes + sc_bytes));
        w.bytes = (size_t)w.n_mat * (w.mat_bytes + sc_bytes);
        /* values and scales in one mapping, scales after all values */
        w.qs = alloc(w.bytes + 64, thp);
        fill(w.qs, w.bytes, 0x9e3779b97f4a7c15ull + f);
        w.sc = (uint16_t *)(w.qs + (size_t)w.n_mat * w.mat_bytes);
        for (size_t i = 0; i < (size_t)w.n_mat * ROWS * (COLS / 32) && f != F_BF16; i++)
            w.sc[i] = (uint16_t)(0x2000 + (i * 7919) % 0x1000); /* f16 in [2^-7, 2^-6) */
        if (f == F_BF16) /* keep bf16 weights finite: exponent bits from a small range */
            for (size_t i = 0; i < w.bytes / 2; i++)
                ((uint16_t *)w.qs)[i] = (uint16_t)(0x3c00 | (((uint16_t *)w.qs)[i] & 0x80ff));
        w.y = malloc((size_t)w.n_mat * ROWS * sizeof(float));
        workload s = w;
        s.f = F_STREAM;
        for (n_threads = 1; n_threads <= MAX_THREADS; n_threads++) {
            pthread_t th[MAX_THREADS];
            pthread_barrier_init(&start_bar, NULL, (unsigned)n_threads);
            pthread_barrier_init(&end_bar, NULL, (unsigned)n_threads);
            for (int t = 1; t < n_threads; t++)
                pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t);
            double gk, gs, ratio, bk, bs;
            measure(&w, &s, &gk, &gs, &ratio, &bk, &bs);
            printf("%-6s %7d %8d | %7.2f %7.2f %6.1f%% | %7.2f %7.2f %6.1f%%\n", names[f],
                   n_threads, w.n_mat, gk, gs, 100 * ratio, bk, bs, 100 * bk / bs);
            fflush(stdout);
            job = NULL;
            pthread_barrier_wait(&start_bar);
            for (int t = 1; t < n_threads; t++)
                pthread_join(th[t], NULL);
            pthread_barrier_destroy(&start_bar);
            pthread_barrier_destroy(&end_bar);
        }
        munmap(w.qs, w.bytes + 64);
        free(w.y);
    }
    free(x);
    free(qxbuf);
    return (int)(sink & 0);
}
