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
        /* and UTF-8, as vl2.h promises: a character cut by the end of the buffer is dropped,
         * any other invalid byte (quoted from a file, a name) becomes '?' */
        const char *end;
        while (!g_utf8_validate(err->message, -1, &end)) {
            char *bad = (char *)end;
            if (g_utf8_get_char_validated(bad, -1) == (gunichar)-2) {
                *bad = 0;
                break;
            }
            *bad = '?';
        }
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

vl2_status vl2_input_status(const GError *error)
{
    if (error->domain == VL2_INPUT_ERROR) {
        switch ((Vl2InputError)error->code) {
        case VL2_INPUT_ERROR_NOT_FOUND:
        case VL2_INPUT_ERROR_IO:
        case VL2_INPUT_ERROR_NOT_REGULAR:
            return VL2_ERR_IO;
        case VL2_INPUT_ERROR_NO_MEMORY:
            return VL2_ERR_NO_MEMORY;
        case VL2_INPUT_ERROR_TOO_LARGE:
        case VL2_INPUT_ERROR_TOO_DEEP:
            return VL2_ERR_FORMAT;
        }
    }
    return VL2_ERR_FORMAT; /* json-glib: not valid JSON */
}

vl2_status vl2_read_file(const char *path, size_t max_size, char **data, size_t *len,
                         vl2_error *err)
{
    g_autoptr(GError) gerr = NULL;
    gsize n = 0;
    *len = 0;
    if (!vl2_input_read(path, max_size, data, &n, &gerr))
        return vl2_set_error(err, vl2_input_status(gerr), "%s", gerr->message);
    *len = n;
    return VL2_OK;
}

double vl2_now_seconds(void)
{
    return (double)g_get_monotonic_time() / 1e6;
}
