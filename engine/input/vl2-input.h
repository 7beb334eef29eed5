/* vl2-input.h - reading files and JSON that may be hostile: sizes and nesting bounded, named
 * pipes and devices refused before anything waits on them.
 *
 * Every program of the project reads through this: libvl2 (configs, tokenizer, weights), the
 * vl2 command line (eval cases, mkrandom's configs), the app (chats, model folders, the Hub's
 * answers, a server's answers) and vl2-server (request bodies). It is a small static library of
 * its own (engine/input/) rather than part of libvl2 because the app may not see the engine's
 * private header, and the engine may not depend on app/; this sits below both, needs only GLib
 * and json-glib, and reports through GError (the engine turns that into a vl2_error).
 *
 * The limits below are the ones README lists. Each has a wide margin over the largest real
 * file of its kind, so they refuse only what no model, chat or server produces.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* Arrays and objects inside one another. json-glib's parser recurses once per level, so a
 * 200 KB file of brackets would overflow the stack; the real files nest at most 6 deep
 * (tokenizer.json 5, the golden eval cases 6). The same limit holds for request bodies. */
#define VL2_JSON_MAX_DEPTH 64

/* Sizes in bytes of the files read whole. */
/* config.json: 2.4 KB for the published models */
#define VL2_CONFIG_MAX_BYTES ((gsize)16 << 20)
/* tokenizer.json: 6.3 MB for DeepSeek-VL2; some public ones reach tens of MB */
#define VL2_TOKENIZER_MAX_BYTES ((gsize)128 << 20)
/* tokenizer_config.json: 165 KB for DeepSeek-VL2 (its added tokens and chat template) */
#define VL2_TOKENIZER_CONFIG_MAX_BYTES ((gsize)16 << 20)
/* model.safetensors.index.json: 687 KB for Base */
#define VL2_WEIGHT_INDEX_MAX_BYTES ((gsize)64 << 20)
/* the JSON header at the start of a .safetensors file: under 1 MB for the published models */
#define VL2_SAFETENSORS_HEADER_MAX_BYTES ((gsize)100 << 20)
/* a `vl2 eval` case: one conversation's text (its images are files of their own) */
#define VL2_EVAL_CASE_MAX_BYTES ((gsize)16 << 20)
/* a chat file: text only (its images are stored beside it by id); a chat of a million short
 * messages is about 21 MB */
#define VL2_CHAT_MAX_BYTES ((gsize)64 << 20)
/* an image file the app copies into its chats: VL2_MAX_IMAGE_PIXELS (100 MP) uncompressed at 4
 * bytes a pixel, with room for the headers */
#define VL2_IMAGE_FILE_MAX_BYTES ((gsize)512 << 20)
/* the small files beside a model: the app's markers, a Hub cache's refs/main, the token file */
#define VL2_SMALL_FILE_MAX_BYTES ((gsize)1 << 20)

#define VL2_INPUT_ERROR (vl2_input_error_quark())
GQuark vl2_input_error_quark(void);

typedef enum {
    VL2_INPUT_ERROR_NOT_FOUND,   /* no such file (or a folder on the way is missing) */
    VL2_INPUT_ERROR_IO,          /* cannot open or read it */
    VL2_INPUT_ERROR_NOT_REGULAR, /* a folder, named pipe, device or socket */
    VL2_INPUT_ERROR_TOO_LARGE,   /* larger than the limit for its kind */
    VL2_INPUT_ERROR_TOO_DEEP,    /* JSON nested deeper than VL2_JSON_MAX_DEPTH */
    VL2_INPUT_ERROR_NO_MEMORY,
} Vl2InputError;

/* Opens `path` for reading without ever waiting: a named pipe, device or socket is refused
 * (open() on a pipe would wait for a writer forever), and so is a folder. Returns a descriptor
 * to close(), or -1 with `error` set; `size` (may be NULL) receives the file's size. The
 * message names the file. */
int vl2_input_open(const char *path, goffset *size, GError **error);

/* Reads the whole regular file `path` into a NUL-terminated buffer (g_free it), refusing a
 * file larger than `max_bytes` before reading any of it. */
gboolean vl2_input_read(const char *path, gsize max_bytes, char **contents, gsize *length,
                        GError **error);

/* How deep `text` nests arrays and objects; counting stops past `limit`. An upper bound where
 * the text leaves strict JSON (json-glib also takes comments and single-quoted strings, with
 * its own rules): from there on every opening bracket counts as a level. */
int vl2_json_depth(const char *text, gsize length, int limit);

/* json_parser_load_from_data() once the text nests at most VL2_JSON_MAX_DEPTH deep; a document
 * holding a string that is not UTF-8 (json-glib makes one of a lone surrogate escape) is refused
 * with JSON_PARSER_ERROR_INVALID_DATA. With a `name`, messages begin with it (in place of
 * json-glib's "<data>"). Messages are valid UTF-8. */
gboolean vl2_json_load_data(JsonParser *parser, const char *text, gsize length,
                            const char *name, GError **error);

/* Walks the members of a JSON object (or the elements of an array) one at a time, so that a
 * large document never stands whole in memory as json-glib's tree (about ten times its text):
 * each value's text is handed over to be parsed on its own (vl2_json_load_data()). Only the
 * structure of the top level is read here; the walk refuses what strict JSON does not allow
 * there, nesting deeper than VL2_JSON_MAX_DEPTH and half a surrogate pair in a string. */
typedef struct {
    const char *text;
    gsize length;
    gsize at;      /* the next byte to read */
    char close;    /* '}' or ']' */
    int count;     /* members given so far */
    gboolean done;
} Vl2JsonWalk;

/* Starts a walk over `text`, which must hold an object (open '{') or an array (open '['). */
gboolean vl2_json_walk_begin(Vl2JsonWalk *walk, const char *text, gsize length, char open,
                             GError **error);
/* 1: the next member, its name in *name (g_free it; NULL in an array) and its value's text in
 * *value, *value_length (inside the walked text); 0: the end, with nothing but white space
 * after it; -1: `error` set (JSON_PARSER_ERROR or VL2_INPUT_ERROR_TOO_DEEP). */
int vl2_json_walk_next(Vl2JsonWalk *walk, char **name, const char **value, gsize *value_length,
                       GError **error);

/* vl2_input_read() then vl2_json_load_data(); every message names the file. */
gboolean vl2_json_load_file(JsonParser *parser, const char *path, gsize max_bytes,
                            GError **error);

G_END_DECLS
