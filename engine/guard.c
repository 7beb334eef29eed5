/* guard.c - weights that change on disk under a loaded model.
 *
 * The weights are the checkpoint's files mapped read-only and shared (weights.c): the kernels
 * read them where they lie, so the files must stay as they were for as long as the model is
 * loaded. People change them anyway: `git lfs pull` or a second download into the folder, a
 * copy over the old files, `truncate`. Two things can then happen to a mapping:
 *
 * - The file is cut short (truncated, or rewritten from the start: cp and most downloaders
 *   truncate before writing). The kernel takes back the pages past the new end, and the next
 *   read of one raises SIGBUS, which kills the process by default: the answer being written,
 *   and in the app everything not saved yet, would be lost.
 * - The file is rewritten in place at its size, or grows: reads return the new bytes, a model
 *   half old and half new. Wrong answers, but nothing crashes.
 *
 * A file replaced by another (renamed over it, as git and careful downloaders do) or deleted
 * changes nothing for the mapping: it keeps the old file's pages until the model is freed.
 *
 * What the engine does about it:
 *
 * 1. Mapped reads are guarded. A process-wide SIGBUS handler (installed once, by the first
 *    vl2_st_open()) looks up the faulting address in a table of the engine's mappings. If it
 *    lies in one, the handler maps anonymous zero pages over that whole mapping (mmap with
 *    MAP_FIXED is a plain system call on Linux, safe in a handler), marks the mapping as
 *    tripped and returns: the read that faulted runs again and reads zeros, and so does every
 *    later read of that file. Any other SIGBUS goes to the handler that was installed before
 *    (the process dies of it as it would have without the engine). The table is a fixed array
 *    of slots the handler reads without locks; slots are written under a mutex by
 *    registration, which happens outside any read of the mapping.
 * 2. Every call that runs the model checks afterwards whether one of its mappings tripped
 *    (vl2_session_prefill, _step, _feed, vl2_model_load) and before a prefill and after each
 *    decoded position also whether a mapped file was modified in place (its size or mtime
 *    differs from what it was when it was opened; a few stat() calls per token). Either
 *    ends the call with VL2_ERR_MODEL_CHANGED and a message naming the file; the session is
 *    reset, since its cache may hold values computed from the wrong bytes, and the model
 *    stays unusable: it has to be loaded again. No text computed from zeros or half-new
 *    weights is ever returned: the check comes before the step hands out its token.
 * 3. vl2_model_check_files() compares every file the model was loaded from with what it was,
 *    including files replaced or removed, so that a program can load the model again before
 *    it answers (Sightline does, before each answer).
 *
 * The slots run out after GUARD_SLOTS mappings open at once (a process with hundreds of
 * models): later mappings are read unguarded, and the size and mtime checks still apply.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vl2-private.h"

/* ---------------------------------------------------------------------------------------------
 * File stamps: what a file was when the model read it
 */

static void stamp_from_stat(const struct stat *st, vl2_file_stamp *out)
{
    out->exists = true;
    out->dev = (uint64_t)st->st_dev;
    out->ino = (uint64_t)st->st_ino;
    out->size = (int64_t)st->st_size;
    out->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

void vl2_stamp_path(const char *path, vl2_file_stamp *out)
{
    struct stat st;
    memset(out, 0, sizeof *out);
    if (stat(path, &st) == 0)
        stamp_from_stat(&st, out);
}

void vl2_stamp_fd(int fd, vl2_file_stamp *out)
{
    struct stat st;
    memset(out, 0, sizeof *out);
    if (fstat(fd, &st) == 0)
        stamp_from_stat(&st, out);
}

vl2_stamp_change vl2_stamp_compare(const vl2_file_stamp *then, const vl2_file_stamp *now)
{
    if (then->exists != now->exists)
        return VL2_STAMP_REPLACED;
    if (!then->exists)
        return VL2_STAMP_SAME;
    if (then->dev != now->dev || then->ino != now->ino)
        return VL2_STAMP_REPLACED;
    if (then->size != now->size || then->mtime_ns != now->mtime_ns)
        return VL2_STAMP_MODIFIED;
    return VL2_STAMP_SAME;
}

/* "6.7 GB (6746589584 bytes)", or "135 bytes". */
static char *describe_size(int64_t n)
{
    if (n < 1000)
        return g_strdup_printf("%" G_GINT64_FORMAT " bytes", n);
    g_autofree char *human = g_format_size((guint64)n);
    return g_strdup_printf("%s (%" G_GINT64_FORMAT " bytes)", human, n);
}

vl2_status vl2_stamp_error(const char *path, const vl2_file_stamp *then,
                           const vl2_file_stamp *now, bool tripped, vl2_error *err)
{
    const char *again = "load the model again";
    vl2_stamp_change c = vl2_stamp_compare(then, now);
    if (c == VL2_STAMP_REPLACED && !now->exists)
        return vl2_set_error(err, VL2_ERR_MODEL_CHANGED, "%s was %s since the model was loaded; "
                             "%s", path, then->exists ? "removed or renamed" : "added", again);
    if (c == VL2_STAMP_REPLACED)
        return vl2_set_error(err, VL2_ERR_MODEL_CHANGED, "%s was %s since the model was loaded; "
                             "%s", path, then->exists ? "replaced by another file" : "added",
                             again);
    if (c == VL2_STAMP_MODIFIED && then->size != now->size) {
        g_autofree char *was = describe_size(then->size);
        g_autofree char *is = describe_size(now->size);
        return vl2_set_error(err, VL2_ERR_MODEL_CHANGED, "%s changed on disk while the model was "
                             "in use: it has %s now, %s when the model was loaded; %s", path, is,
                             was, again);
    }
    if (c == VL2_STAMP_MODIFIED)
        return vl2_set_error(err, VL2_ERR_MODEL_CHANGED, "%s was rewritten on disk while the "
                             "model was in use; %s", path, again);
    if (tripped)
        return vl2_set_error(err, VL2_ERR_MODEL_CHANGED, "%s could not be read while the model "
                             "was in use: it was cut short or changed on disk, or the disk "
                             "failed; %s", path, again);
    return VL2_OK;
}

/* ---------------------------------------------------------------------------------------------
 * The SIGBUS guard
 */

#define GUARD_SLOTS 1024

/* A slot is in use while `end` is not 0. The handler reads end, then start; registration
 * writes start, then end (and clears end first when the slot is given back). */
typedef struct {
    volatile uintptr_t start, end;
    volatile sig_atomic_t tripped;
} guard_slot;

static guard_slot slots[GUARD_SLOTS];
static GMutex slots_lock;
static struct sigaction previous;
static uintptr_t page_mask;

/* The default action for a signal the engine does not own: die of it, as without the
 * handler. A fault repeats when the handler returns; a signal sent by kill() does not. */
static void chain(int sig, siginfo_t *info, void *ctx)
{
    if (previous.sa_flags & SA_SIGINFO) {
        if (previous.sa_sigaction)
            previous.sa_sigaction(sig, info, ctx);
        return;
    }
    if (previous.sa_handler == SIG_IGN && info->si_code <= 0)
        return;
    if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(sig);
        return;
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    if (info->si_code <= 0)
        raise(sig);
}

/* Only async-signal-safe work here: plain loads and stores, mmap, sigaction. */
static void on_sigbus(int sig, siginfo_t *info, void *ctx)
{
    int saved_errno = errno;
    uintptr_t a = (uintptr_t)info->si_addr;
    if (info->si_code > 0) {
        for (int i = 0; i < GUARD_SLOTS; i++) {
            uintptr_t end = slots[i].end;
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            uintptr_t start = slots[i].start;
            if (!end || a < start || a >= end)
                continue;
            void *p = mmap((void *)start, end - start, PROT_READ,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
            if (p == MAP_FAILED)
                break;
            slots[i].tripped = 1;
            errno = saved_errno;
            return;
        }
    }
    chain(sig, info, ctx);
    errno = saved_errno;
}

static gpointer install(gpointer data)
{
    (void)data;
    page_mask = (uintptr_t)sysconf(_SC_PAGESIZE) - 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    return GINT_TO_POINTER(sigaction(SIGBUS, &sa, &previous) == 0);
}

int vl2_guard_add(const void *start, size_t len)
{
    static GOnce once = G_ONCE_INIT;
    if (!GPOINTER_TO_INT(g_once(&once, install, NULL)) || !start || !len)
        return -1;
    int slot = -1;
    g_mutex_lock(&slots_lock);
    for (int i = 0; i < GUARD_SLOTS && slot < 0; i++)
        if (!slots[i].end)
            slot = i;
    if (slot >= 0) {
        slots[slot].tripped = 0;
        slots[slot].start = (uintptr_t)start;
        __atomic_thread_fence(__ATOMIC_RELEASE);
        slots[slot].end = ((uintptr_t)start + len + page_mask) & ~page_mask;
    }
    g_mutex_unlock(&slots_lock);
    return slot;
}

void vl2_guard_remove(int slot)
{
    if (slot < 0 || slot >= GUARD_SLOTS)
        return;
    g_mutex_lock(&slots_lock);
    slots[slot].end = 0;
    __atomic_thread_fence(__ATOMIC_RELEASE);
    slots[slot].start = 0;
    g_mutex_unlock(&slots_lock);
}

bool vl2_guard_tripped(int slot)
{
    if (slot < 0 || slot >= GUARD_SLOTS)
        return false;
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return slots[slot].tripped != 0;
}
