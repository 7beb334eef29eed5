/* isa.h - the instruction set the engine's kernels use, chosen at run time.
 *
 * One binary runs on every CPU of its architecture: the kernels that the compiler vectorises
 * are built at each level below (VL2_MULTI in kernels.c) and the hand-written ones are chosen
 * by table (quant.c), both by vl2_isa_level(): the highest level this CPU has, or less where
 * the environment variable VL2_ISA (a level's name) or vl2_isa_limit() caps it. Every level
 * computes the same thing; only the order and rounding of float additions can differ (fused
 * multiply-adds), which tests/engine/test-isa.c bounds.
 *
 *   level   x86-64                              aarch64
 *   0       baseline (x86-64, SSE2)             baseline (NEON)
 *   1       x86-64-v3 (AVX2, FMA, F16C)         dotprod (Armv8.2 dot product)
 *   2       x86-64-v4 (AVX-512 F/BW/CD/DQ/VL)   -
 */
#ifndef VL2_ISA_H
#define VL2_ISA_H

#include <stdatomic.h>
#include <stdbool.h>

enum { VL2_ISA_BASELINE = 0, VL2_ISA_V3 = 1, VL2_ISA_V4 = 2 };

extern _Atomic int vl2_isa_current;   /* -1 until first asked */
int vl2_isa_init(void);

/* The level the kernels use now. Cheap: one relaxed load. */
static inline int vl2_isa_level(void)
{
    int level = atomic_load_explicit(&vl2_isa_current, memory_order_relaxed);
    return level >= 0 ? level : vl2_isa_init();
}

/* The highest level this CPU has, and how many levels this architecture knows. */
int vl2_isa_detected(void);
int vl2_isa_count(void);
/* A level's name ("baseline", "x86-64-v3", ...), NULL outside 0..count-1. */
const char *vl2_isa_name(int level);
/* Caps the level at the one named (NULL: lifts the cap, back to VL2_ISA or the CPU's best).
 * False, changing nothing, for an unknown name or a level this CPU lacks. */
bool vl2_isa_limit(const char *name);

#endif
