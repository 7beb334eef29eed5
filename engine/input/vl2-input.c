/* vl2-input.c - see vl2-input.h. */
#include "vl2-input.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

G_DEFINE_QUARK(vl2-input-error-quark, vl2_input_error)

static const char *kind_of(mode_t mode)
{
    if (S_ISDIR(mode))
        return "this is a folder, not a regular file";
    if (S_ISFIFO(mode))
        return "this is a named pipe, not a regular file";
    if (S_ISCHR(mode) || S_ISBLK(mode))
        return "this is a device, not a regular file";
    if (S_ISSOCK(mode))
        return "this is a socket, not a regular file";
    return "not a regular file";
}

static void set_not_regular(GError **error, const char *path, const char *verb, mode_t mode)
{
    g_set_error(error, VL2_INPUT_ERROR, VL2_INPUT_ERROR_NOT_REGULAR,
                "%s: cannot %s: %s", path, verb, kind_of(mode));
}

/* `verb` says what was being done in messages ("open", "read"). */
static int open_regular(const char *path, const char *verb, goffset *size, GError **error)
{
    /* Looked at first, so that a device is not even opened (opening some has effects); then
     * checked again on what was opened, which is what counts. */
    GStatBuf st;
    if (g_stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        set_not_regular(error, path, verb, st.st_mode);
        return -1;
    }
    /* O_NONBLOCK: opening a named pipe put there meanwhile returns at once instead of waiting
     * for a writer; it changes nothing for a regular file. */
    int fd = g_open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0);
    if (fd < 0) {
        int e = errno;
        g_set_error(error, VL2_INPUT_ERROR,
                    e == ENOENT || e == ENOTDIR ? VL2_INPUT_ERROR_NOT_FOUND : VL2_INPUT_ERROR_IO,
                    "%s: cannot %s: %s", path, verb, g_strerror(e));
        return -1;
    }
    struct stat fst;
    if (fstat(fd, &fst) != 0) {
        int e = errno;
        close(fd);
        g_set_error(error, VL2_INPUT_ERROR, VL2_INPUT_ERROR_IO, "%s: cannot %s: %s", path, verb,
                    g_strerror(e));
        return -1;
    }
    if (!S_ISREG(fst.st_mode)) {
        close(fd);
        set_not_regular(error, path, verb, fst.st_mode);
        return -1;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags != -1)
        fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    if (size)
        *size = (goffset)fst.st_size;
    return fd;
}

int vl2_input_open(const char *path, goffset *size, GError **error)
{
    g_return_val_if_fail(path != NULL, -1);
    return open_regular(path, "open", size, error);
}

gboolean vl2_input_read(const char *path, gsize max_bytes, char **contents, gsize *length,
                        GError **error)
{
    g_return_val_if_fail(path != NULL && contents != NULL, FALSE);
    *contents = NULL;
    if (length)
        *length = 0;
    goffset size;
    int fd = open_regular(path, "read", &size, error);
    if (fd < 0)
        return FALSE;
    if (size < 0 || (guint64)size > max_bytes) {
        close(fd);
        g_set_error(error, VL2_INPUT_ERROR, VL2_INPUT_ERROR_TOO_LARGE,
                    "%s: the file is %" G_GINT64_FORMAT " bytes, more than this kind of file "
                    "may be (%" G_GSIZE_FORMAT ")", path, (gint64)size, max_bytes);
        return FALSE;
    }
    gsize want = (gsize)size;
    char *buf = g_try_malloc(want + 1);
    if (!buf) {
        close(fd);
        g_set_error(error, VL2_INPUT_ERROR, VL2_INPUT_ERROR_NO_MEMORY,
                    "%s: cannot read: out of memory for %" G_GSIZE_FORMAT " bytes", path, want);
        return FALSE;
    }
    /* What the size said, no more: a file that grows while it is read is cut where it was. */
    gsize got = 0;
    while (got < want) {
        ssize_t n = read(fd, buf + got, want - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            g_free(buf);
            close(fd);
            g_set_error(error, VL2_INPUT_ERROR, VL2_INPUT_ERROR_IO, "%s: cannot read: %s", path,
                        g_strerror(e));
            return FALSE;
        }
        if (n == 0)
            break; /* cut short meanwhile: what is there */
        got += (gsize)n;
    }
    close(fd);
    buf[got] = '\0';
    *contents = buf;
    if (length)
        *length = got;
    return TRUE;
}

/* ---------------------------------------------------------------------------------------------
 * JSON
 */

/* The value of the 4 hex digits at text[at], or -1. */
static int hex4(const char *text, gsize length, gsize at)
{
    if (at > length || length - at < 4)
        return -1;
    int v = 0;
    for (int k = 0; k < 4; k++) {
        int d = g_ascii_xdigit_value(text[at + k]);
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

/* The end of the string whose opening quote is at text[at], as strict JSON writes one: the
 * index of its closing quote, TRUE. Anything else in one (a raw control character, an escape
 * JSON does not have, half of a surrogate pair, no end) and json-glib's scanner may see its
 * end elsewhere: FALSE, with where it went wrong in *end and what in *what. */
static gboolean strict_string_end(const char *text, gsize length, gsize at, gsize *end,
                                  const char **what)
{
    gsize i = at + 1;
    for (; i < length && text[i] != '"'; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20) {
            *what = "a control character in a string";
            goto wrong;
        }
        if (c != '\\')
            continue;
        char e = i + 1 < length ? text[i + 1] : '\0';
        i++;
        if (e == 'u') {
            int unit = hex4(text, length, i + 1);
            if (unit < 0) {
                *what = "a \\u escape without four hex digits";
                goto wrong;
            }
            i += 4;
            /* Half of a surrogate pair: json-glib 1.6 reads on past a lone one (closing quote
             * included), so only a whole pair is strict. */
            if (unit >= 0xd800 && unit <= 0xdfff) {
                int low = i + 2 < length && text[i + 1] == '\\' && text[i + 2] == 'u'
                              ? hex4(text, length, i + 3)
                              : -1;
                if (unit > 0xdbff || low < 0xdc00 || low > 0xdfff) {
                    *what = "half of a surrogate pair in a string";
                    goto wrong;
                }
                i += 6;
            }
        } else if (!e || !strchr("\"\\/bfnrt", e)) {
            *what = "an escape JSON does not have";
            goto wrong;
        }
    }
    if (i < length) {
        *end = i;
        return TRUE;
    }
    *what = "a string without its end";
    i = length;
wrong:
    *end = MIN(i, length);
    return FALSE;
}

int vl2_json_depth(const char *text, gsize length, int limit)
{
    int depth = 0, deepest = 0;
    gsize i = 0;
    for (; i < length; i++) {
        char c = text[i];
        if (c == '"') {
            gsize end;
            const char *what;
            if (!strict_string_end(text, length, i, &end, &what)) {
                i = end < length ? end : i; /* a string without its end: look inside it */
                goto loose;
            }
            i = end;
        } else if (c == '[' || c == '{') {
            if (++depth > deepest && (deepest = depth) > limit)
                return deepest;
        } else if (c == ']' || c == '}') {
            if (depth > 0)
                depth--;
        } else if (c == '\'' || c == '/') {
            /* a single-quoted string or a comment: not JSON, but json-glib takes both */
            goto loose;
        }
    }
    return deepest;

loose:
    for (; i < length; i++)
        if ((text[i] == '[' || text[i] == '{') && ++depth > deepest &&
            (deepest = depth) > limit)
            return deepest;
    return deepest;
}

/* Whether every string and member name under `node` is UTF-8. json-glib reads a \u escape of
 * half a surrogate pair ("\udc00", "\ude1 ") into bytes that are not, which would then reach
 * names, messages and the screen. The depth is bounded by the check before parsing. */
static gboolean json_strings_valid(JsonNode *node)
{
    switch (json_node_get_node_type(node)) {
    case JSON_NODE_OBJECT: {
        JsonObjectIter iter;
        const char *member;
        JsonNode *child;
        json_object_iter_init(&iter, json_node_get_object(node));
        while (json_object_iter_next(&iter, &member, &child))
            if (!g_utf8_validate(member, -1, NULL) || !json_strings_valid(child))
                return FALSE;
        return TRUE;
    }
    case JSON_NODE_ARRAY: {
        JsonArray *array = json_node_get_array(node);
        guint n = json_array_get_length(array);
        for (guint i = 0; i < n; i++)
            if (!json_strings_valid(json_array_get_element(array, i)))
                return FALSE;
        return TRUE;
    }
    case JSON_NODE_VALUE:
        return json_node_get_value_type(node) != G_TYPE_STRING ||
               g_utf8_validate(json_node_get_string(node), -1, NULL);
    case JSON_NODE_NULL:
    default:
        return TRUE;
    }
}

gboolean vl2_json_load_data(JsonParser *parser, const char *text, gsize length,
                            const char *name, GError **error)
{
    g_return_val_if_fail(JSON_IS_PARSER(parser), FALSE);
    g_return_val_if_fail(text != NULL || length == 0, FALSE);
    if (!text)
        text = "";
    if (length > G_MAXSSIZE) {
        g_set_error(error, VL2_INPUT_ERROR, VL2_INPUT_ERROR_TOO_LARGE, "%s%stoo large for JSON",
                    name ? name : "", name ? ": " : "");
        return FALSE;
    }
    if (vl2_json_depth(text, length, VL2_JSON_MAX_DEPTH) > VL2_JSON_MAX_DEPTH) {
        g_set_error(error, VL2_INPUT_ERROR, VL2_INPUT_ERROR_TOO_DEEP,
                    "%s%sJSON nested more than %d levels deep", name ? name : "",
                    name ? ": " : "", VL2_JSON_MAX_DEPTH);
        return FALSE;
    }
    g_autoptr(GError) local = NULL;
    if (json_parser_load_from_data(parser, text, (gssize)length, &local)) {
        JsonNode *root = json_parser_get_root(parser);
        if (!root || json_strings_valid(root))
            return TRUE;
        g_set_error(error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                    "%s%sa string is not valid UTF-8 (a \\u escape of half a surrogate pair)",
                    name ? name : "", name ? ": " : "");
        return FALSE;
    }
    /* json-glib quotes the text around the error cut at a byte count, which can split a
     * character: the message is made valid UTF-8 */
    g_autofree char *msg = g_utf8_make_valid(local->message, -1);
    if (!name)
        g_set_error_literal(error, local->domain, local->code, msg);
    else if (g_str_has_prefix(msg, "<data>:")) /* json-glib says "<data>:line:col: ..." */
        g_set_error(error, local->domain, local->code, "%s:%s", name, msg + strlen("<data>:"));
    else
        g_set_error(error, local->domain, local->code, "%s: %s", name, msg);
    return FALSE;
}

gboolean vl2_json_load_file(JsonParser *parser, const char *path, gsize max_bytes,
                            GError **error)
{
    g_autofree char *text = NULL;
    gsize length;
    if (!vl2_input_read(path, max_bytes, &text, &length, error))
        return FALSE;
    return vl2_json_load_data(parser, text, length, path, error);
}

/* ---------------------------------------------------------------------------------------------
 * Walking a large document member by member
 */

/* Sets `error` to what is wrong at the walk's place; FALSE. */
static gboolean walk_error(Vl2JsonWalk *w, GError **error, const char *what)
{
    g_set_error(error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                "%s at byte %" G_GSIZE_FORMAT, what, w->at);
    return FALSE;
}

/* walk_error() for vl2_json_walk_next(), which also takes back the name it gave: -1. */
static int walk_fail(Vl2JsonWalk *w, GError **error, char **name, const char *what)
{
    g_clear_pointer(name, g_free);
    if (what)
        walk_error(w, error, what);
    return -1;
}

static void skip_space(Vl2JsonWalk *w)
{
    while (w->at < w->length && strchr(" \t\r\n", w->text[w->at]) && w->text[w->at])
        w->at++;
}

/* Moves past the string at w->at, as strict JSON writes one. */
static gboolean skip_string(Vl2JsonWalk *w, GError **error)
{
    gsize end;
    const char *what;
    if (!strict_string_end(w->text, w->length, w->at, &end, &what)) {
        if (end < w->length)
            w->at = end;
        return walk_error(w, error, what);
    }
    w->at = end + 1;
    return TRUE;
}

/* Moves past the value at w->at: a string, a number or word, or an object or array whose
 * strings are skipped as such (json-glib checks the rest when the value is parsed). */
static gboolean skip_value(Vl2JsonWalk *w, GError **error)
{
    const char *t = w->text;
    if (w->at >= w->length)
        return walk_error(w, error, "a value missing");
    if (t[w->at] == '"')
        return skip_string(w, error);
    if (t[w->at] != '{' && t[w->at] != '[') {
        gsize start = w->at;
        while (w->at < w->length && (g_ascii_isalnum(t[w->at]) || strchr("+-.", t[w->at])) &&
               t[w->at])
            w->at++;
        return w->at > start || walk_error(w, error, "a value missing");
    }
    /* the brackets open, the walked container's own first */
    char open[VL2_JSON_MAX_DEPTH + 1];
    int depth = 1;
    open[0] = w->close == '}' ? '{' : '[';
    while (w->at < w->length) {
        char c = t[w->at];
        if (c == '"') {
            if (!skip_string(w, error))
                return FALSE;
            continue;
        }
        if (c == '{' || c == '[') {
            if (depth == VL2_JSON_MAX_DEPTH) {
                g_set_error(error, VL2_INPUT_ERROR, VL2_INPUT_ERROR_TOO_DEEP,
                            "JSON nested more than %d levels deep", VL2_JSON_MAX_DEPTH);
                return FALSE;
            }
            open[depth++] = c;
        } else if (c == '}' || c == ']') {
            if (open[depth - 1] != (c == '}' ? '{' : '['))
                return walk_error(w, error, "a bracket that does not match");
            if (--depth == 1) {
                w->at++;
                return TRUE;
            }
        } else if (c == '/' || c == '\'') {
            return walk_error(w, error, "a comment or a single-quoted string");
        }
        w->at++;
    }
    return walk_error(w, error, "a value without its end");
}

gboolean vl2_json_walk_begin(Vl2JsonWalk *walk, const char *text, gsize length, char open,
                             GError **error)
{
    g_return_val_if_fail(open == '{' || open == '[', FALSE);
    *walk = (Vl2JsonWalk){ .text = text, .length = length, .close = open == '{' ? '}' : ']' };
    skip_space(walk);
    if (walk->at >= length || text[walk->at] != open)
        return walk_error(walk, error, open == '{' ? "not a JSON object" : "not a JSON array");
    walk->at++;
    return TRUE;
}

int vl2_json_walk_next(Vl2JsonWalk *walk, char **name, const char **value, gsize *value_length,
                       GError **error)
{
    const char *t = walk->text;
    *name = NULL;
    if (walk->done)
        return 0;
    skip_space(walk);
    if (walk->at < walk->length && t[walk->at] == walk->close) {
        if (walk->count > 0)
            return walk_fail(walk, error, name, "a comma before the end");
        walk->at++;
        walk->done = TRUE; /* an empty object or array */
        skip_space(walk);
        return walk->at < walk->length ? walk_fail(walk, error, name, "text after the end") : 0;
    }
    if (walk->close == '}') {
        if (walk->at >= walk->length || t[walk->at] != '"')
            return walk_fail(walk, error, name, "a member name missing");
        gsize start = walk->at;
        if (!skip_string(walk, error))
            return -1;
        const char *quoted = t + start;
        gsize n = walk->at - start;
        if (!memchr(quoted, '\\', n)) {
            *name = g_strndup(quoted + 1, n - 2);
        } else {
            /* escapes: json-glib reads them */
            g_autoptr(JsonParser) parser = json_parser_new_immutable();
            if (!json_parser_load_from_data(parser, quoted, (gssize)n, error))
                return -1;
            *name = g_strdup(json_node_get_string(json_parser_get_root(parser)));
        }
        if (!*name || !g_utf8_validate(*name, -1, NULL)) {
            walk->at = start;
            return walk_fail(walk, error, name, "a member name that is not UTF-8");
        }
        skip_space(walk);
        if (walk->at >= walk->length || t[walk->at] != ':')
            return walk_fail(walk, error, name, "a ':' missing");
        walk->at++;
        skip_space(walk);
    }
    gsize start = walk->at;
    if (!skip_value(walk, error))
        return walk_fail(walk, error, name, NULL);
    *value = t + start;
    *value_length = walk->at - start;
    walk->count++;
    skip_space(walk);
    if (walk->at < walk->length && t[walk->at] == ',') {
        walk->at++;
        return 1;
    }
    if (walk->at >= walk->length || t[walk->at] != walk->close)
        return walk_fail(walk, error, name, "a ',' missing");
    walk->at++;
    walk->done = TRUE; /* the last member */
    skip_space(walk);
    return walk->at < walk->length ? walk_fail(walk, error, name, "text after the end") : 1;
}
