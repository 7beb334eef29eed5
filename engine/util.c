/* util.c - status names, error messages and the growable id array used across the engine. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vl2-private.h"

const char *vl2_status_name(vl2_status status)
{
    switch (status) {
    case VL2_OK: return "ok";
    case VL2_ERR_INVALID_ARGUMENT: return "invalid argument";
    case VL2_ERR_IO: return "i/o error";
    case VL2_ERR_FORMAT: return "malformed file";
    case VL2_ERR_UNSUPPORTED: return "unsupported";
    case VL2_ERR_NO_MEMORY: return "out of memory";
    case VL2_ERR_CONTEXT_OVERFLOW: return "context overflow";
    case VL2_ERR_CANCELLED: return "cancelled";
    case VL2_ERR_IMAGE: return "bad image";
    case VL2_ERR_MODEL_CHANGED: return "model changed";
    }
    return "unknown status";
}

vl2_status vl2_set_error(vl2_error *err, vl2_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        /* The message is one line: a newline from a quoted file name must not split it. */
        for (char *p = err->message; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
    }
    return code;
}

/* ---------------------------------------------------------------------------------------------
 * vl2_ids
 */

bool vl2_ids_reserve(vl2_ids *ids, size_t cap)
{
    if (cap <= ids->cap)
        return true;
    size_t n = ids->cap ? ids->cap : 64;
    while (n < cap)
        n *= 2;
    int32_t *p = realloc(ids->data, n * sizeof *p);
    if (!p)
        return false;
    ids->data = p;
    ids->cap = n;
    return true;
}

bool vl2_ids_push(vl2_ids *ids, int32_t id)
{
    if (!vl2_ids_reserve(ids, ids->len + 1))
        return false;
    ids->data[ids->len++] = id;
    return true;
}

bool vl2_ids_append(vl2_ids *ids, const int32_t *src, size_t n)
{
    if (!vl2_ids_reserve(ids, ids->len + n))
        return false;
    if (n)
        memcpy(ids->data + ids->len, src, n * sizeof *src);
    ids->len += n;
    return true;
}

void vl2_ids_clear(vl2_ids *ids)
{
    free(ids->data);
    ids->data = NULL;
    ids->len = ids->cap = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Reading whole files (configs, tokenizer.json)
 */

vl2_status vl2_read_file(const char *path, size_t max_size, char **data, size_t *len,
                         vl2_error *err)
{
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vl2_set_error(err, VL2_ERR_IO, "%s: cannot read: %s", path, g_strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return vl2_set_error(err, VL2_ERR_IO, "%s: cannot read: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_size) {
        close(fd);
        return vl2_set_error(err, VL2_ERR_FORMAT, "%s: %lld bytes is too large for this file",
                             path, (long long)st.st_size);
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size + 1);
    if (!buf) {
        close(fd);
        return vl2_set_error(err, VL2_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            free(buf);
            close(fd);
            return vl2_set_error(err, VL2_ERR_IO, "%s: cannot read: %s", path, g_strerror(e));
        }
        got += (size_t)n;
    }
    close(fd);
    buf[size] = 0;
    *data = buf;
    *len = size;
    return VL2_OK;
}

double vl2_now_seconds(void)
{
    return (double)g_get_monotonic_time() / 1e6;
}
