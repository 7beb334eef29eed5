/* isa.c - which instruction-set level the kernels use (isa.h). */
#include "isa.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#if defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#include "quant.h"
#include "vl2.h"

_Atomic int vl2_isa_current = -1;

#if defined(__x86_64__)
static const char *const names[] = { "baseline", "x86-64-v3", "x86-64-v4" };
#elif defined(__aarch64__)
static const char *const names[] = { "baseline", "dotprod" };
#else
static const char *const names[] = { "baseline" };
#endif
#define N_LEVELS ((int)(sizeof names / sizeof names[0]))

static int detected;
static int env_cap;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int level_of(const char *name)
{
    for (int i = 0; i < N_LEVELS; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

static void detect(void)
{
    detected = VL2_ISA_BASELINE;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v3"))
        detected = VL2_ISA_V3;
    if (__builtin_cpu_supports("x86-64-v4"))
        detected = VL2_ISA_V4;
#elif defined(__aarch64__) && defined(__linux__) && defined(HWCAP_ASIMDDP)
    if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP)
        detected = 1;
#endif
    /* VL2_ISA caps it: an unknown name or a level above the CPU's is ignored */
    env_cap = detected;
    const char *env = getenv("VL2_ISA");
    int level = env && *env ? level_of(env) : -1;
    if (level >= 0 && level < detected)
        env_cap = level;
    atomic_store(&vl2_isa_current, env_cap);
}

int vl2_isa_init(void)
{
    pthread_once(&once, detect);
    return atomic_load(&vl2_isa_current);
}

int vl2_isa_detected(void)
{
    pthread_once(&once, detect);
    return detected;
}

int vl2_isa_count(void)
{
    return N_LEVELS;
}

const char *vl2_isa_name(int level)
{
    return level >= 0 && level < N_LEVELS ? names[level] : NULL;
}

bool vl2_isa_limit(const char *name)
{
    pthread_once(&once, detect);
    int level = name ? level_of(name) : env_cap;
    if (level < 0 || level > detected)
        return false;
    atomic_store(&vl2_isa_current, level);
    /* the hand-written kernels choose again, within the new cap */
    vl2_kernels_force_isa(NULL);
    return true;
}

const char *vl2_isa(void)
{
    return names[vl2_isa_level()];
}
