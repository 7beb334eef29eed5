/* heap-peak.c - see heap-peak.h. */
#include "heap-peak.h"

#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stddef.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);
extern void __libc_free(void *p);

static atomic_long live;  /* bytes the heap holds for the program */
static atomic_long peak;

static void *grew(void *p)
{
    if (p) {
        long now = atomic_fetch_add(&live, (long)malloc_usable_size(p)) +
                   (long)malloc_usable_size(p);
        long high = atomic_load(&peak);
        while (now > high && !atomic_compare_exchange_weak(&peak, &high, now))
            ;
    }
    return p;
}

static void shrinking(void *p)
{
    if (p)
        atomic_fetch_sub(&live, (long)malloc_usable_size(p));
}

void *malloc(size_t size) { return grew(__libc_malloc(size)); }
void *calloc(size_t n, size_t size) { return grew(__libc_calloc(n, size)); }
void *aligned_alloc(size_t align, size_t size) { return grew(__libc_memalign(align, size)); }
void *memalign(size_t align, size_t size) { return grew(__libc_memalign(align, size)); }
void free(void *p)
{
    shrinking(p);
    __libc_free(p);
}

void *realloc(void *p, size_t size)
{
    size_t before = p ? malloc_usable_size(p) : 0;
    void *q = __libc_realloc(p, size);
    if (q || size == 0) {
        atomic_fetch_sub(&live, (long)before);
        grew(q);
    }
    return q;
}

int posix_memalign(void **out, size_t align, size_t size)
{
    void *p = __libc_memalign(align, size);
    if (!p)
        return ENOMEM;
    *out = grew(p);
    return 0;
}


long heap_peak_begin(void)
{
    long now = atomic_load(&live);
    atomic_store(&peak, now);
    return now;
}

long heap_live(void)
{
    return atomic_load(&live);
}

long heap_peak(void)
{
    return atomic_load(&peak);
}
