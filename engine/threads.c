/* threads.c - the worker pool behind every hot loop.
 *
 * One pool per session: n - 1 worker threads plus the calling thread. vl2_pool_run() hands out
 * task indices from an atomic counter (so uneven tasks balance themselves) and returns when all
 * are done. Decoding a token dispatches a few hundred small jobs, so workers spin briefly on the
 * job counter before sleeping on a condition variable: a wake-up through the kernel costs more
 * than a whole small matmul. OpenBLAS is kept single-threaded (model.c) and called from inside
 * tasks, so the two never oversubscribe the cores.
 *
 * The pool also keeps one scratch buffer per thread, and one for the dispatching thread
 * (vl2_scratch_get): tasks and the products' callers borrow memory there instead of allocating,
 * so a decoded token, whose jobs have the same shapes as the last token's, allocates nothing.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#define SPIN_ITERATIONS 20000

struct vl2_pool {
    int n_threads;
    vl2_compute compute;       /* the products' arithmetic (vl2_matmul) */
    pthread_t *threads;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    pthread_cond_t done;

    /* The current job; written by the caller before bumping `generation`. */
    vl2_task_fn fn;
    void *ctx;
    int n_tasks;
    atomic_int next_task;
    atomic_int n_active;       /* workers still inside the current job */
    atomic_uint generation;
    atomic_bool quit;

    /* [n_threads + 1]: each thread's scratch, then the dispatching thread's (VL2_POOL_CALLER) */
    struct pool_scratch {
        void *p;
        size_t size;
    } *scratch;
};

typedef struct {
    vl2_pool *pool;
    int index;
} worker_arg;

static void run_tasks(vl2_pool *p, int thread)
{
    for (;;) {
        int i = atomic_fetch_add_explicit(&p->next_task, 1, memory_order_relaxed);
        if (i >= p->n_tasks)
            break;
        p->fn(p->ctx, i, thread);
    }
}

static void *worker_main(void *argp)
{
    worker_arg *arg = argp;
    vl2_pool *p = arg->pool;
    int index = arg->index;
    free(arg);
    unsigned seen = 0;
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
               !atomic_load(&p->quit) && spins < SPIN_ITERATIONS) {
            spins++;
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
        if (gen == seen && !atomic_load(&p->quit)) {
            pthread_mutex_lock(&p->mutex);
            while ((gen = atomic_load(&p->generation)) == seen && !atomic_load(&p->quit))
                pthread_cond_wait(&p->wake, &p->mutex);
            pthread_mutex_unlock(&p->mutex);
        }
        if (atomic_load(&p->quit))
            return NULL;
        seen = gen;
        run_tasks(p, index);
        if (atomic_fetch_sub_explicit(&p->n_active, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mutex);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mutex);
        }
    }
}

vl2_pool *vl2_pool_new(int n_threads)
{
    if (n_threads < 1)
        n_threads = 1;
    vl2_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n_threads = n_threads;
    p->scratch = calloc((size_t)n_threads + 1, sizeof *p->scratch);
    pthread_mutex_init(&p->mutex, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    if (!p->scratch) {
        p->n_threads = 1; /* no thread started */
        vl2_pool_free(p);
        return NULL;
    }
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            p->n_threads = 1; /* no thread started: nothing to join */
            vl2_pool_free(p);
            return NULL;
        }
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *arg = malloc(sizeof *arg);
        if (arg) {
            arg->pool = p;
            arg->index = i;
        }
        if (!arg || pthread_create(&p->threads[i - 1], NULL, worker_main, arg) != 0) {
            free(arg);
            p->n_threads = i; /* the threads started so far are joined by free */
            vl2_pool_free(p);
            return NULL;
        }
    }
    return p;
}

void vl2_pool_free(vl2_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mutex);
    atomic_store(&p->quit, true);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mutex);
    for (int i = 1; i < p->n_threads; i++)
        pthread_join(p->threads[i - 1], NULL);
    free(p->threads);
    if (p->scratch)
        for (int i = 0; i <= p->n_threads; i++)
            free(p->scratch[i].p);
    free(p->scratch);
    pthread_mutex_destroy(&p->mutex);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p);
}

static bool scratch_grow(struct pool_scratch *b, size_t bytes)
{
    if (b->size >= bytes)
        return true;
    size_t size = (bytes + 63) / 64 * 64;
    void *n = aligned_alloc(64, size);
    if (!n)
        return false;
    free(b->p);
    b->p = n;
    b->size = size;
    return true;
}

void *vl2_scratch_get(vl2_pool *p, int thread, size_t bytes, vl2_scratch *s)
{
    s->owned = !p;
    if (!p)
        return s->p = malloc(bytes ? bytes : 1);
    struct pool_scratch *b = &p->scratch[thread == VL2_POOL_CALLER ? p->n_threads : thread];
    return s->p = scratch_grow(b, bytes) ? b->p : NULL;
}

bool vl2_pool_reserve(vl2_pool *p, size_t bytes)
{
    if (!p)
        return true;
    for (int i = 0; i < p->n_threads; i++)
        if (!scratch_grow(&p->scratch[i], bytes))
            return false;
    return true;
}

void vl2_scratch_release(vl2_scratch *s)
{
    if (s->owned)
        free(s->p);
    s->p = NULL;
    s->owned = false;
}

int vl2_pool_size(const vl2_pool *p)
{
    return p ? p->n_threads : 1;
}

void vl2_pool_set_compute(vl2_pool *p, vl2_compute compute)
{
    p->compute = compute;
}

vl2_compute vl2_pool_compute(const vl2_pool *p)
{
    return p ? p->compute : VL2_COMPUTE_F32;
}

void vl2_pool_run(vl2_pool *p, int n_tasks, vl2_task_fn fn, void *ctx)
{
    if (n_tasks <= 0)
        return;
    if (!p || p->n_threads == 1 || n_tasks == 1) {
        for (int i = 0; i < n_tasks; i++)
            fn(ctx, i, 0);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next_task, 0, memory_order_relaxed);
    atomic_store_explicit(&p->n_active, p->n_threads - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mutex);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mutex);

    run_tasks(p, 0);

    int spins = 0;
    while (atomic_load_explicit(&p->n_active, memory_order_acquire) > 0 &&
           spins < SPIN_ITERATIONS) {
        spins++;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    if (atomic_load_explicit(&p->n_active, memory_order_acquire) > 0) {
        pthread_mutex_lock(&p->mutex);
        while (atomic_load(&p->n_active) > 0)
            pthread_cond_wait(&p->done, &p->mutex);
        pthread_mutex_unlock(&p->mutex);
    }
}

typedef struct {
    vl2_rows_fn fn;
    void *ctx;
    int n_rows, per_task;
} rows_job;

static void rows_task(void *ctx, int task, int thread)
{
    rows_job *j = ctx;
    int r0 = task * j->per_task, r1 = r0 + j->per_task < j->n_rows ? r0 + j->per_task : j->n_rows;
    if (r0 < r1)
        j->fn(j->ctx, r0, r1);
}

void vl2_pool_rows(vl2_pool *pool, int n_rows, vl2_rows_fn fn, void *ctx)
{
    int per = n_rows / (4 * vl2_pool_size(pool));
    rows_job j = { fn, ctx, n_rows, per < 1 ? 1 : per };
    vl2_pool_run(pool, (n_rows + j.per_task - 1) / j.per_task, rows_task, &j);
}
