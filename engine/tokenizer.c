/* tokenizer.c - tokenizer.json -> byte-level BPE encode / decode, as Hugging Face tokenizers does.
 *
 * Encoding follows the reference pipeline stage by stage. The text (valid UTF-8) is first cut at
 * the added tokens: those with normalized=false are searched in the raw text, then those with
 * normalized=true in the gaps between them (the normalizer must be the identity), both
 * leftmost-longest through a byte trie, and each match becomes its id directly. Every remaining
 * gap goes through the pre-tokenizer's Split regexes in order, each regex cutting every piece
 * the previous ones produced (a match is a piece, and so is each gap between matches; empty
 * pieces vanish). ByteLevel then stands each byte of a piece for one symbol, so BPE starts from
 * the one-byte tokens of the piece's bytes and merges the adjacent pair of lowest rank until no
 * pair has a merge (a heap over a linked list of symbols). Decoding concatenates the bytes each
 * id stands for (precomputed at load) and replaces invalid UTF-8 like Rust's from_utf8_lossy;
 * the streaming variant emits the same text piece by piece.
 *
 * The regexes are written for Oniguruma, which the reference uses; here they run on GRegex
 * (PCRE2) after a rewrite of the constructs whose meaning differs (see "Regexes"). Nothing
 * mutable is shared once loaded, so one tokenizer may encode from several threads at once.
 * A model owns one; vl2_tokenizer_open() gives tools the same tokenizer without the model.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <json-glib/json-glib.h>

#include "vl2-private.h"

/* ---------------------------------------------------------------------------------------------
 * Data
 */

enum { ID_KNOWN = 1, ID_SPECIAL = 2 };

/* A byte trie of added tokens. The root's children are indexed by byte; deeper nodes keep their
 * children in a sibling list (DeepSeek's 826 tokens share long prefixes, so lists are short). */
typedef struct trie_node {
    int32_t child, sibling;
    int32_t token;               /* id of the token ending here, or -1 */
    uint8_t byte;
} trie_node;

typedef struct added_trie {
    int32_t root[256];
    GArray *nodes;               /* trie_node */
} added_trie;

/* One merge in an open-addressing table keyed by the pair of ids. */
typedef struct merge_slot {
    uint64_t pair;               /* left << 32 | right, or MERGE_EMPTY */
    uint32_t rank;
    int32_t merged;
} merge_slot;

#define MERGE_EMPTY UINT64_MAX

struct vl2_tokenizer {
    char *name;
    GStringChunk *strings;       /* every token string */
    GHashTable *vocab;           /* model token (byte-level form) -> id + 1 */
    GHashTable *added;           /* added token content -> id + 1 */
    int32_t n_ids;               /* largest id + 1 */
    const char **id_token;       /* [n_ids] token string (an added token's content wins) */
    uint8_t *id_flags;           /* [n_ids] ID_KNOWN | ID_SPECIAL */
    size_t *bytes_off;           /* [n_ids + 1]: id i decodes to bytes[off[i] .. off[i + 1]) */
    char *bytes;
    gunichar byte_char[256];     /* GPT-2 byte -> printable character */
    int32_t byte_token[256];     /* model id of each byte's one-character token, or -1 */
    merge_slot *merges;
    size_t merges_mask;
    added_trie raw_trie;         /* added tokens with normalized=false */
    added_trie norm_trie;        /* normalized=true */
    GPtrArray *splits;           /* GRegex*, the pre-tokenizer's Split stages in order */
    int32_t unk_id;              /* -1 without unk_token */
    bool fuse_unk;
};

/* ---------------------------------------------------------------------------------------------
 * Byte-level alphabet
 */

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the 68 others
 * (controls, space, DEL, NBSP, soft hyphen) for U+0100 onwards in byte order. */
static void byte_level_table(gunichar byte_char[256])
{
    gunichar next = 256;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        byte_char[b] = printable ? (gunichar)b : next++;
    }
}

/* ---------------------------------------------------------------------------------------------
 * UTF-8
 */

#define REPLACEMENT "\xEF\xBF\xBD"

/* Length of the sequence a lead byte starts, 0 when it cannot start one. */
static int utf8_seq_len(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return 2;
    if (c >= 0xE0 && c <= 0xEF)
        return 3;
    if (c >= 0xF0 && c <= 0xF4)
        return 4;
    return 0;
}

/* May b be byte k (1..3) of a sequence led by `lead`? The second byte's range is what rules out
 * overlong forms (E0, F0), surrogates (ED) and code points past U+10FFFF (F4). */
static bool utf8_cont_ok(unsigned char lead, int k, unsigned char b)
{
    unsigned char lo = 0x80, hi = 0xBF;
    if (k == 1) {
        switch (lead) {
        case 0xE0: lo = 0xA0; break;
        case 0xED: hi = 0x9F; break;
        case 0xF0: lo = 0x90; break;
        case 0xF4: hi = 0x8F; break;
        }
    }
    return b >= lo && b <= hi;
}

/* Decodes s[0..n) into dst (room for 3 * n bytes). Each maximal subpart of an invalid sequence
 * (its longest prefix that could still have been valid, at least one byte) becomes one U+FFFD,
 * which is what Rust's String::from_utf8_lossy does. Unless `final`, a tail that is a valid but
 * unfinished sequence is left unconsumed. Returns the bytes written; *used gets those consumed. */
static size_t utf8_lossy(const unsigned char *s, size_t n, bool final, char *dst, size_t *used)
{
    size_t i = 0, w = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            dst[w++] = (char)c;
            i++;
            continue;
        }
        int len = utf8_seq_len(c), k = 1;
        while (k < len && i + k < n && utf8_cont_ok(c, k, s[i + k]))
            k++;
        if (len && k == len) {
            memcpy(dst + w, s + i, (size_t)len);
            w += (size_t)len;
        } else if (len && i + k == n && !final) {
            break;
        } else {
            memcpy(dst + w, REPLACEMENT, 3);
            w += 3;
        }
        i += (size_t)k;
    }
    *used = i;
    return w;
}

/* Offset of the first byte that is not part of a valid sequence, or n. NUL is valid, as in a
 * Rust str (g_utf8_validate() would stop there). */
static size_t utf8_invalid_at(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        int len = utf8_seq_len(s[i]);
        if (!len || i + (size_t)len > n)
            return i;
        for (int k = 1; k < len; k++)
            if (!utf8_cont_ok(s[i], k, s[i + k]))
                return i;
        i += (size_t)len;
    }
    return n;
}

void vl2_utf8_lossy_append(GString *out, const char *bytes, size_t n)
{
    size_t old = out->len, used;
    g_string_set_size(out, old + 3 * n);
    size_t w = utf8_lossy((const unsigned char *)bytes, n, true, out->str + old, &used);
    g_string_truncate(out, old + w);
}

void vl2_utf8_stream_push(vl2_utf8_stream *st, const char *bytes, size_t n, GString *out)
{
    const unsigned char *s = (const unsigned char *)bytes;
    size_t i = 0;

    /* First complete, or give up on, the character held back by the previous push: byte by
     * byte, with the same checks the whole-buffer decode makes. */
    while (st->n_pending > 0 && i < n) {
        unsigned char lead = st->pending[0];
        if (!utf8_cont_ok(lead, st->n_pending, s[i])) {
            g_string_append_len(out, REPLACEMENT, 3);
            st->n_pending = 0;
            break;
        }
        st->pending[st->n_pending++] = s[i++];
        if (st->n_pending == utf8_seq_len(lead)) {
            g_string_append_len(out, (const char *)st->pending, st->n_pending);
            st->n_pending = 0;
        }
    }
    if (st->n_pending > 0 || i == n)
        return;

    size_t old = out->len, used;
    g_string_set_size(out, old + 3 * (n - i));
    size_t w = utf8_lossy(s + i, n - i, false, out->str + old, &used);
    g_string_truncate(out, old + w);
    st->n_pending = (int)(n - i - used);
    memcpy(st->pending, s + i + used, (size_t)st->n_pending);
}

void vl2_utf8_stream_finish(vl2_utf8_stream *st, GString *out)
{
    if (st->n_pending > 0)
        g_string_append_len(out, REPLACEMENT, 3);
    st->n_pending = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Merge table
 */

static inline uint64_t pair_key(int32_t a, int32_t b)
{
    return (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
}

static inline size_t pair_hash(uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t)key;
}

static merge_slot *merge_slot_for(const vl2_tokenizer *tok, uint64_t key)
{
    for (size_t i = pair_hash(key) & tok->merges_mask;; i = (i + 1) & tok->merges_mask) {
        merge_slot *s = &tok->merges[i];
        if (s->pair == key || s->pair == MERGE_EMPTY)
            return s;
    }
}

static inline const merge_slot *merge_find(const vl2_tokenizer *tok, int32_t a, int32_t b)
{
    const merge_slot *s = merge_slot_for(tok, pair_key(a, b));
    return s->pair == MERGE_EMPTY ? NULL : s;
}

/* ---------------------------------------------------------------------------------------------
 * Added-token trie
 */

#define NODE(t, i) (&g_array_index((t)->nodes, trie_node, (i)))

static void trie_init(added_trie *t)
{
    for (int b = 0; b < 256; b++)
        t->root[b] = -1;
    t->nodes = g_array_new(FALSE, FALSE, sizeof(trie_node));
}

static int32_t trie_new_node(added_trie *t, uint8_t byte)
{
    trie_node node = { .child = -1, .sibling = -1, .token = -1, .byte = byte };
    g_array_append_val(t->nodes, node);
    return (int32_t)t->nodes->len - 1;
}

static void trie_add(added_trie *t, const unsigned char *s, size_t n, int32_t id)
{
    int32_t node = t->root[s[0]];
    if (node < 0)
        node = t->root[s[0]] = trie_new_node(t, s[0]);
    for (size_t i = 1; i < n; i++) {
        int32_t prev = -1, c = NODE(t, node)->child;
        while (c >= 0 && NODE(t, c)->byte != s[i]) {
            prev = c;
            c = NODE(t, c)->sibling;
        }
        if (c < 0) {
            c = trie_new_node(t, s[i]);
            if (prev < 0)
                NODE(t, node)->child = c;
            else
                NODE(t, prev)->sibling = c;
        }
        node = c;
    }
    NODE(t, node)->token = id;
}

/* The first match at or after `from`, as HF's Aho-Corasick with MatchKind::LeftmostLongest finds
 * it: the earliest start wins, then the longest token starting there. */
static bool trie_find(const added_trie *t, const unsigned char *s, size_t n, size_t from,
                      size_t *start, size_t *end, int32_t *id)
{
    for (size_t i = from; i < n; i++) {
        int32_t node = t->root[s[i]];
        int32_t best = -1;
        size_t best_end = 0;
        for (size_t j = i; node >= 0;) {
            const trie_node *nd = NODE(t, node);
            if (nd->token >= 0) {
                best = nd->token;
                best_end = j + 1;
            }
            if (++j == n)
                break;
            for (node = nd->child; node >= 0 && NODE(t, node)->byte != s[j];)
                node = NODE(t, node)->sibling;
        }
        if (best >= 0) {
            *start = i;
            *end = best_end;
            *id = best;
            return true;
        }
    }
    return false;
}

/* ---------------------------------------------------------------------------------------------
 * Regexes: Oniguruma (the reference's engine) patterns rewritten for GRegex / PCRE2
 *
 * Compared code point by code point (Oniguruma 6.9.8 against GLib 2.74's PCRE2 10.42 with UCP,
 * both Unicode 14), \p{X} for every general category and \d agree exactly; \s differs at U+180E
 * only (PCRE2 counts it as space; Unicode dropped it from White_Space, which Oniguruma uses), so
 * \s and \S are spelled out as classes. \h means a hex digit to Oniguruma and horizontal space to
 * PCRE2; \v is the VT character to Oniguruma; \uHHHH and {,n} are Oniguruma-only spellings.
 * Constructs that differ and cannot be spelled out (\w and \b, which take marks as word characters
 * in Oniguruma; POSIX brackets; nested classes and && intersections; script and binary
 * properties) are refused rather than silently run with another meaning.
 */

#define WHITE_SPACE "\\t\\n\\x0B\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}" \
                    "\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

static bool is_general_category(const char *name, size_t len)
{
    static const char *const cats[] = {
        "L", "Lu", "Ll", "Lt", "Lm", "Lo", "M", "Mn", "Mc", "Me", "N", "Nd", "Nl", "No",
        "P", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "S", "Sm", "Sc", "Sk", "So",
        "Z", "Zs", "Zl", "Zp", "C", "Cc", "Cf", "Cs", "Co", "Cn",
    };
    if (len && name[0] == '^') {
        name++;
        len--;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(cats); i++)
        if (strlen(cats[i]) == len && memcmp(cats[i], name, len) == 0)
            return true;
    return false;
}

/* Returns the PCRE2 pattern, or NULL with *why naming the construct that cannot be carried over. */
static char *onig_to_pcre(const char *pat, const char **why)
{
    GString *out = g_string_new(NULL);
    bool in_class = false;
    const char *class_body = NULL;   /* a ']' right at the start of a class body is literal */
    const char *p = pat;

    while (*p) {
        if (*p == '\\' && p[1]) {
            char e = p[1];
            const char *close;
            switch (e) {
            case 's':
                g_string_append(out, in_class ? WHITE_SPACE : "[" WHITE_SPACE "]");
                p += 2;
                continue;
            case 'S':
                if (in_class) {
                    *why = "\\S inside a character class";
                    goto refuse;
                }
                g_string_append(out, "[^" WHITE_SPACE "]");
                p += 2;
                continue;
            case 'h':
                g_string_append(out, in_class ? "0-9A-Fa-f" : "[0-9A-Fa-f]");
                p += 2;
                continue;
            case 'H':
                if (in_class) {
                    *why = "\\H inside a character class";
                    goto refuse;
                }
                g_string_append(out, "[^0-9A-Fa-f]");
                p += 2;
                continue;
            case 'v':
                g_string_append(out, "\\x0B");
                p += 2;
                continue;
            case 'u':
                if (g_ascii_isxdigit(p[2]) && g_ascii_isxdigit(p[3]) && g_ascii_isxdigit(p[4])
                    && g_ascii_isxdigit(p[5])) {
                    g_string_append_printf(out, "\\x{%.4s}", p + 2);
                    p += 6;
                    continue;
                }
                break;
            case 'p':
            case 'P':
                close = p[2] == '{' ? strchr(p + 3, '}') : NULL;
                if (!close || !is_general_category(p + 3, (size_t)(close - p - 3))) {
                    *why = "a \\p property other than a general category";
                    goto refuse;
                }
                g_string_append_len(out, p, close + 1 - p);
                p = close + 1;
                continue;
            case 'w': case 'W': case 'b': case 'B':
                *why = "\\w or \\b (Oniguruma's word characters include marks)";
                goto refuse;
            case 'V': case 'K': case 'X': case 'O': case 'y': case 'Y':
                *why = "an escape Oniguruma and PCRE2 read differently";
                goto refuse;
            }
            /* Any other escape means the same to both: copy it with its whole character. */
            g_string_append_c(out, '\\');
            p++;
            g_string_append_len(out, p, g_utf8_next_char(p) - p);
            p = g_utf8_next_char(p);
            continue;
        }
        if (in_class) {
            if (*p == '[') {
                *why = "a nested class or POSIX bracket";
                goto refuse;
            }
            if (*p == '&' && p[1] == '&') {
                *why = "a class intersection (&&)";
                goto refuse;
            }
            if (*p == ']' && p != class_body)
                in_class = false;
        } else if (*p == '[') {
            in_class = true;
            g_string_append_c(out, *p++);
            if (*p == '^')
                g_string_append_c(out, *p++);
            class_body = p;
            continue;
        } else if (*p == '{' && p[1] == ',' && g_ascii_isdigit(p[2])) {
            g_string_append(out, "{0");   /* Oniguruma reads {,n} as {0,n}; PCRE2 as text */
            p++;
            continue;
        }
        g_string_append_len(out, p, g_utf8_next_char(p) - p);
        p = g_utf8_next_char(p);
    }
    return g_string_free(out, FALSE);

refuse:
    g_string_free(out, TRUE);
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Loading: JSON helpers
 */

static JsonNode *member(JsonObject *o, const char *key)
{
    return o && json_object_has_member(o, key) ? json_object_get_member(o, key) : NULL;
}

static bool is_null(JsonNode *n)
{
    return !n || JSON_NODE_HOLDS_NULL(n);
}

static JsonObject *as_object(JsonNode *n)
{
    return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

static JsonArray *as_array(JsonNode *n)
{
    return n && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
}

static const char *as_string(JsonNode *n)
{
    if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
        return NULL;
    return json_node_get_string(n);
}

static bool as_id(JsonNode *n, int32_t *id)
{
    if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64)
        return false;
    gint64 v = json_node_get_int(n);
    if (v < 0 || v >= INT32_MAX)
        return false;
    *id = (int32_t)v;
    return true;
}

/* An optional boolean member: absent or null gives `def`; false when present with another type. */
static bool opt_bool(JsonObject *o, const char *key, bool def, bool *out)
{
    JsonNode *n = member(o, key);
    *out = def;
    if (is_null(n))
        return true;
    if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_BOOLEAN)
        return false;
    *out = json_node_get_boolean(n);
    return true;
}

static const char *type_of(JsonNode *n)
{
    const char *type = as_string(member(as_object(n), "type"));
    return type ? type : "(no type)";
}

static int32_t lookup(GHashTable *table, const char *key)
{
    return GPOINTER_TO_INT(g_hash_table_lookup(table, key)) - 1;
}

/* ---------------------------------------------------------------------------------------------
 * Loading: model, added tokens, pipeline
 */

static vl2_status load_vocab(vl2_tokenizer *tok, JsonObject *model, vl2_error *err)
{
    JsonObject *vocab = as_object(member(model, "vocab"));
    if (!vocab)
        return vl2_set_error(err, VL2_ERR_FORMAT, "%s: model.vocab is missing or not an object",
                             tok->name);
    /* The id tables are sized by the largest id: one far beyond the file's own tokens would
     * cost gigabytes. A vocabulary's ids are 0..n-1; half of them missing is already absurd. */
    const int64_t id_limit = 2 * (int64_t)json_object_get_size(vocab) + 1024;
    JsonObjectIter it;
    const char *key;
    JsonNode *value;
    json_object_iter_init(&it, vocab);
    while (json_object_iter_next(&it, &key, &value)) {
        int32_t id;
        if (!as_id(value, &id))
            return vl2_set_error(err, VL2_ERR_FORMAT,
                                 "%s: model.vocab[\"%s\"] is not a non-negative 32-bit id",
                                 tok->name, key);
        if (id >= id_limit)
            return vl2_set_error(err, VL2_ERR_FORMAT, "%s: model.vocab[\"%s\"] has id %d, far "
                                 "beyond the vocabulary's %u tokens", tok->name, key, id,
                                 json_object_get_size(vocab));
        if (!g_utf8_validate(key, -1, NULL))
            return vl2_set_error(err, VL2_ERR_FORMAT, "%s: model.vocab has a key that is not UTF-8",
                                 tok->name);
        g_hash_table_insert(tok->vocab, g_string_chunk_insert(tok->strings, key),
                            GINT_TO_POINTER(id + 1));
        tok->n_ids = MAX(tok->n_ids, id + 1);
    }
    return VL2_OK;
}

/* Merges come as "a b" strings (where "#version" lines are skipped, as the reference does) or as
 * [a, b] pairs. A pair listed twice keeps its last rank: the reference collects them into a map. */
static vl2_status load_merges(vl2_tokenizer *tok, JsonObject *model, vl2_error *err)
{
    JsonArray *merges = as_array(member(model, "merges"));
    if (!merges)
        return vl2_set_error(err, VL2_ERR_FORMAT, "%s: model.merges is missing or not an array",
                             tok->name);
    guint n = json_array_get_length(merges);
    size_t cap = 16;
    while (cap < 2 * (size_t)n)
        cap *= 2;
    tok->merges = malloc(cap * sizeof *tok->merges);
    if (!tok->merges)
        return vl2_set_error(err, VL2_ERR_NO_MEMORY, "%s: no memory for %u merges", tok->name, n);
    for (size_t i = 0; i < cap; i++)
        tok->merges[i].pair = MERGE_EMPTY;
    tok->merges_mask = cap - 1;

    g_autoptr(GString) left = g_string_new(NULL);
    g_autoptr(GString) right = g_string_new(NULL);
    uint32_t rank = 0;
    for (guint i = 0; i < n; i++) {
        JsonNode *node = json_array_get_element(merges, i);
        JsonArray *pair = as_array(node);
        const char *line = as_string(node), *space;
        if (line && g_str_has_prefix(line, "#version"))
            continue;
        if (line && (space = strchr(line, ' ')) && !strchr(space + 1, ' ')) {
            g_string_assign(left, "");
            g_string_append_len(left, line, space - line);
            g_string_assign(right, space + 1);
        } else if (pair && json_array_get_length(pair) == 2
                   && as_string(json_array_get_element(pair, 0))
                   && as_string(json_array_get_element(pair, 1))) {
            g_string_assign(left, as_string(json_array_get_element(pair, 0)));
            g_string_assign(right, as_string(json_array_get_element(pair, 1)));
        } else {
            return vl2_set_error(err, VL2_ERR_FORMAT,
                                 "%s: model.merges[%u] is neither \"a b\" nor [\"a\", \"b\"]",
                                 tok->name, i);
        }
        int32_t a = lookup(tok->vocab, left->str), b = lookup(tok->vocab, right->str);
        if (a >= 0 && b >= 0)
            g_string_append(left, right->str);
        int32_t merged = a >= 0 && b >= 0 ? lookup(tok->vocab, left->str) : -1;
        if (merged < 0)
            return vl2_set_error(err, VL2_ERR_FORMAT,
                                 "%s: model.merges[%u]: token \"%s\" is not in the vocab",
                                 tok->name, i, b < 0 && a >= 0 ? right->str : left->str);
        merge_slot *slot = merge_slot_for(tok, pair_key(a, b));
        *slot = (merge_slot){ .pair = pair_key(a, b), .rank = rank++, .merged = merged };
    }
    return VL2_OK;
}

static vl2_status load_model(vl2_tokenizer *tok, JsonObject *root, vl2_error *err)
{
    JsonObject *model = as_object(member(root, "model"));
    if (!model)
        return vl2_set_error(err, VL2_ERR_FORMAT, "%s: \"model\" is missing or not an object",
                             tok->name);
    JsonNode *type = member(model, "type");
    if (type && (!as_string(type) || strcmp(as_string(type), "BPE") != 0))
        return vl2_set_error(err, VL2_ERR_UNSUPPORTED, "%s: model type %s is not supported "
                             "(only BPE)", tok->name, as_string(type) ? as_string(type) : "?");

    JsonNode *dropout = member(model, "dropout");
    if (!is_null(dropout) && (!JSON_NODE_HOLDS_VALUE(dropout)
                              || (json_node_get_value_type(dropout) != G_TYPE_DOUBLE
                                  && json_node_get_value_type(dropout) != G_TYPE_INT64)
                              || json_node_get_double(dropout) != 0))
        return vl2_set_error(err, VL2_ERR_UNSUPPORTED, "%s: BPE dropout is not supported",
                             tok->name);
    bool byte_fallback, ignore_merges;
    if (!opt_bool(model, "byte_fallback", false, &byte_fallback)
        || !opt_bool(model, "fuse_unk", false, &tok->fuse_unk)
        || !opt_bool(model, "ignore_merges", false, &ignore_merges))
        return vl2_set_error(err, VL2_ERR_FORMAT, "%s: a model flag is not a boolean", tok->name);
    if (byte_fallback || ignore_merges)
        return vl2_set_error(err, VL2_ERR_UNSUPPORTED, "%s: BPE %s is not supported", tok->name,
                             byte_fallback ? "byte_fallback" : "ignore_merges");
    static const char *const affixes[] = { "continuing_subword_prefix", "end_of_word_suffix" };
    for (size_t i = 0; i < G_N_ELEMENTS(affixes); i++) {
        JsonNode *n = member(model, affixes[i]);
        if (!is_null(n) && (!as_string(n) || *as_string(n)))
            return vl2_set_error(err, VL2_ERR_UNSUPPORTED, "%s: BPE %s is not supported",
                                 tok->name, affixes[i]);
    }

    vl2_status st = load_vocab(tok, model, err);
    if (st == VL2_OK)
        st = load_merges(tok, model, err);
    if (st != VL2_OK)
        return st;

    JsonNode *unk = member(model, "unk_token");
    tok->unk_id = -1;
    if (!is_null(unk) && (!as_string(unk)
                          || (tok->unk_id = lookup(tok->vocab, as_string(unk))) < 0))
        return vl2_set_error(err, VL2_ERR_FORMAT, "%s: model.unk_token is not a vocab token",
                             tok->name);
    return VL2_OK;
}

/* Ids are checked against the ones the reference gives when it loads the file: a token already
 * in the vocab keeps its vocab id, the others are numbered from the vocab's size on in file order
 * (the ids written in the file are only compared, with a warning, by the reference). */
static vl2_status load_added(vl2_tokenizer *tok, JsonObject *root, GHashTable *special,
                             vl2_error *err)
{
    JsonArray *added = as_array(member(root, "added_tokens"));
    if (!added)
        return vl2_set_error(err, VL2_ERR_FORMAT, "%s: \"added_tokens\" is missing or not an array",
                             tok->name);
    int32_t next_id = (int32_t)g_hash_table_size(tok->vocab);
    for (guint i = 0; i < json_array_get_length(added); i++) {
        JsonObject *o = as_object(json_array_get_element(added, i));
        const char *content = as_string(member(o, "content"));
        int32_t id;
        bool single_word, lstrip, rstrip, normalized, is_special;
        if (!o || !content || !g_utf8_validate(content, -1, NULL) || !as_id(member(o, "id"), &id)
            || !opt_bool(o, "single_word", false, &single_word)
            || !opt_bool(o, "lstrip", false, &lstrip) || !opt_bool(o, "rstrip", false, &rstrip)
            || !opt_bool(o, "normalized", true, &normalized)
            || !opt_bool(o, "special", false, &is_special))
            return vl2_set_error(err, VL2_ERR_FORMAT, "%s: added_tokens[%u] is malformed",
                                 tok->name, i);
        if (single_word || lstrip || rstrip)
            return vl2_set_error(err, VL2_ERR_UNSUPPORTED, "%s: added token \"%s\" sets "
                                 "single_word, lstrip or rstrip, which are not supported",
                                 tok->name, content);
        if (!*content)
            continue;            /* the reference ignores empty added tokens */
        if (lookup(tok->added, content) >= 0)
            return vl2_set_error(err, VL2_ERR_FORMAT, "%s: added token \"%s\" is listed twice",
                                 tok->name, content);
        int32_t expected = lookup(tok->vocab, content);
        if (expected < 0)
            expected = next_id++;
        if (id != expected)
            return vl2_set_error(err, VL2_ERR_FORMAT, "%s: added token \"%s\" has id %d, but the "
                                 "reference tokenizer gives it id %d", tok->name, content, id,
                                 expected);

        const char *copy = g_string_chunk_insert(tok->strings, content);
        g_hash_table_insert(tok->added, (gpointer)copy, GINT_TO_POINTER(id + 1));
        trie_add(normalized ? &tok->norm_trie : &tok->raw_trie, (const unsigned char *)copy,
                 strlen(copy), id);
        if (is_special)
            g_hash_table_add(special, (gpointer)copy);
        tok->n_ids = MAX(tok->n_ids, id + 1);
    }
    return VL2_OK;
}

static bool normalizer_is_identity(JsonNode *n)
{
    if (is_null(n))
        return true;
    JsonArray *seq = as_array(member(as_object(n), "normalizers"));
    if (strcmp(type_of(n), "Sequence") != 0 || !seq)
        return false;
    for (guint i = 0; i < json_array_get_length(seq); i++)
        if (is_null(json_array_get_element(seq, i))
            || !normalizer_is_identity(json_array_get_element(seq, i)))
            return false;
    return true;
}

static vl2_status add_split(vl2_tokenizer *tok, const char *pattern, bool literal, vl2_error *err)
{
    const char *why = NULL;
    char *pcre = literal ? g_regex_escape_string(pattern, -1) : onig_to_pcre(pattern, &why);
    if (!pcre)
        return vl2_set_error(err, VL2_ERR_UNSUPPORTED, "%s: pre-tokenizer regex /%s/ uses %s",
                             tok->name, pattern, why);
    /* G_REGEX_OPTIMIZE JIT-compiles here, once; matching then never writes to the GRegex, so
     * threads can share it. */
    g_autoptr(GError) gerr = NULL;
    GRegex *re = g_regex_new(pcre, G_REGEX_OPTIMIZE, 0, &gerr);
    g_free(pcre);
    if (!re)
        return vl2_set_error(err, VL2_ERR_UNSUPPORTED, "%s: pre-tokenizer regex /%s/: %s",
                             tok->name, pattern, gerr->message);
    g_ptr_array_add(tok->splits, re);
    return VL2_OK;
}

/* The GPT-2 split that ByteLevel applies itself when use_regex is true. */
#define BYTE_LEVEL_PATTERN \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

/* Flattens the pre-tokenizer into Split stages ending with ByteLevel (*byte_level set). */
static vl2_status load_pre_tokenizer(vl2_tokenizer *tok, JsonNode *node, bool *byte_level,
                                     vl2_error *err)
{
    JsonObject *o = as_object(node);
    const char *type = type_of(node);
    if (*byte_level)
        return vl2_set_error(err, VL2_ERR_UNSUPPORTED, "%s: pre-tokenizer %s after ByteLevel is "
                             "not supported", tok->name, type);
    if (strcmp(type, "Sequence") == 0) {
        JsonArray *seq = as_array(member(o, "pretokenizers"));
        if (!seq)
            return vl2_set_error(err, VL2_ERR_FORMAT, "%s: pre-tokenizer Sequence without "
                                 "\"pretokenizers\"", tok->name);
        for (guint i = 0; i < json_array_get_length(seq); i++) {
            vl2_status st = load_pre_tokenizer(tok, json_array_get_element(seq, i), byte_level,
                                               err);
            if (st != VL2_OK)
                return st;
        }
        return VL2_OK;
    }
    if (strcmp(type, "Split") == 0) {
        JsonObject *pattern = as_object(member(o, "pattern"));
        const char *regex = as_string(member(pattern, "Regex"));
        const char *literal = as_string(member(pattern, "String"));
        const char *behavior = as_string(member(o, "behavior"));
        bool invert;
        if ((!regex && !literal) || !behavior || !opt_bool(o, "invert", false, &invert))
            return vl2_set_error(err, VL2_ERR_FORMAT, "%s: malformed Split pre-tokenizer",
                                 tok->name);
        if (strcmp(behavior, "Isolated") != 0 || invert)
            return vl2_set_error(err, VL2_ERR_UNSUPPORTED, "%s: Split behavior %s%s is not "
                                 "supported (only Isolated)", tok->name, behavior,
                                 invert ? " inverted" : "");
        return add_split(tok, regex ? regex : literal, !regex, err);
    }
    if (strcmp(type, "ByteLevel") == 0) {
        bool prefix_space, use_regex;
        if (!opt_bool(o, "add_prefix_space", true, &prefix_space)
            || !opt_bool(o, "use_regex", true, &use_regex))
            return vl2_set_error(err, VL2_ERR_FORMAT, "%s: malformed ByteLevel pre-tokenizer",
                                 tok->name);
        if (prefix_space)
            return vl2_set_error(err, VL2_ERR_UNSUPPORTED, "%s: ByteLevel add_prefix_space is "
                                 "not supported", tok->name);
        *byte_level = true;
        return use_regex ? add_split(tok, BYTE_LEVEL_PATTERN, false, err) : VL2_OK;
    }
    return vl2_set_error(err, VL2_ERR_UNSUPPORTED, "%s: pre-tokenizer %s is not supported",
                         tok->name, type);
}

static vl2_status load_pipeline(vl2_tokenizer *tok, JsonObject *root, vl2_error *err)
{
    static const char *const unused[] = { "truncation", "padding" };
    for (size_t i = 0; i < G_N_ELEMENTS(unused); i++)
        if (!is_null(member(root, unused[i])))
            return vl2_set_error(err, VL2_ERR_UNSUPPORTED, "%s: %s is not supported",
                                 tok->name, unused[i]);
    JsonNode *normalizer = member(root, "normalizer");
    if (!normalizer_is_identity(normalizer))
        return vl2_set_error(err, VL2_ERR_UNSUPPORTED, "%s: normalizer %s is not supported "
                             "(only an empty Sequence)", tok->name, type_of(normalizer));
    /* Without the ByteLevel decoder the reference would join tokens with spaces instead. */
    JsonNode *decoder = member(root, "decoder");
    if (strcmp(type_of(decoder), "ByteLevel") != 0)
        return vl2_set_error(err, VL2_ERR_UNSUPPORTED, "%s: decoder %s is not supported "
                             "(only ByteLevel)", tok->name, type_of(decoder));
    bool byte_level = false;
    vl2_status st = load_pre_tokenizer(tok, member(root, "pre_tokenizer"), &byte_level, err);
    if (st == VL2_OK && !byte_level)
        st = vl2_set_error(err, VL2_ERR_UNSUPPORTED, "%s: the pre-tokenizer does not end with "
                           "ByteLevel", tok->name);
    return st;
}

/* What the ByteLevel decoder turns one token into: each character mapped back to its byte, or,
 * if any character is outside the byte alphabet (as in "<｜end▁of▁sentence｜>"), the token's
 * own UTF-8 bytes. Returns the length written to dst. */
static size_t token_bytes(const int16_t char_byte[512], const char *token, char *dst)
{
    size_t n = 0;
    for (const char *p = token; *p; p = g_utf8_next_char(p)) {
        gunichar c = g_utf8_get_char(p);
        if (c >= 512 || char_byte[c] < 0) {
            size_t len = strlen(token);
            memcpy(dst, token, len);
            return len;
        }
        dst[n++] = (char)char_byte[c];
    }
    return n;
}

static vl2_status build_id_tables(vl2_tokenizer *tok, GHashTable *special, vl2_error *err)
{
    size_t n = (size_t)tok->n_ids;
    tok->id_token = calloc(n ? n : 1, sizeof *tok->id_token);
    tok->id_flags = calloc(n ? n : 1, 1);
    tok->bytes_off = malloc((n + 1) * sizeof *tok->bytes_off);
    if (!tok->id_token || !tok->id_flags || !tok->bytes_off)
        return vl2_set_error(err, VL2_ERR_NO_MEMORY, "%s: no memory for %zu ids", tok->name, n);

    GHashTableIter it;
    gpointer key, value;
    g_hash_table_iter_init(&it, tok->vocab);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        int32_t id = GPOINTER_TO_INT(value) - 1;
        if (tok->id_token[id])
            return vl2_set_error(err, VL2_ERR_FORMAT, "%s: id %d is given to both \"%s\" and "
                                 "\"%s\"", tok->name, id, tok->id_token[id], (char *)key);
        tok->id_token[id] = key;
    }
    size_t total = 0;
    g_hash_table_iter_init(&it, tok->added);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        int32_t id = GPOINTER_TO_INT(value) - 1;
        if (tok->id_token[id] && strcmp(tok->id_token[id], key) != 0)
            return vl2_set_error(err, VL2_ERR_FORMAT, "%s: id %d is given to both \"%s\" and "
                                 "added token \"%s\"", tok->name, id, tok->id_token[id],
                                 (char *)key);
        tok->id_token[id] = key;
    }
    for (size_t id = 0; id < n; id++) {
        if (!tok->id_token[id])
            continue;
        total += strlen(tok->id_token[id]);
        tok->id_flags[id] = ID_KNOWN;
        /* The reference skips by token string, so a vocab entry spelled like a special added
         * token would be skipped too. */
        if (g_hash_table_contains(special, tok->id_token[id]))
            tok->id_flags[id] |= ID_SPECIAL;
    }

    int16_t char_byte[512];
    for (int c = 0; c < 512; c++)
        char_byte[c] = -1;
    for (int b = 0; b < 256; b++)
        char_byte[tok->byte_char[b]] = (int16_t)b;
    tok->bytes = malloc(total ? total : 1);
    if (!tok->bytes)
        return vl2_set_error(err, VL2_ERR_NO_MEMORY, "%s: no memory for token bytes", tok->name);
    size_t off = 0;
    for (size_t id = 0; id < n; id++) {
        tok->bytes_off[id] = off;
        if (tok->id_token[id])
            off += token_bytes(char_byte, tok->id_token[id], tok->bytes + off);
    }
    tok->bytes_off[n] = off;

    for (int b = 0; b < 256; b++) {
        char utf8[8] = { 0 };
        g_unichar_to_utf8(tok->byte_char[b], utf8);
        tok->byte_token[b] = lookup(tok->vocab, utf8);
    }
    return VL2_OK;
}

static vl2_tokenizer *tokenizer_new(const char *name)
{
    vl2_tokenizer *tok = g_new0(vl2_tokenizer, 1);
    tok->name = g_strdup(name);
    tok->strings = g_string_chunk_new(1 << 20);
    tok->vocab = g_hash_table_new(g_str_hash, g_str_equal);
    tok->added = g_hash_table_new(g_str_hash, g_str_equal);
    tok->splits = g_ptr_array_new_with_free_func((GDestroyNotify)g_regex_unref);
    tok->unk_id = -1;
    trie_init(&tok->raw_trie);
    trie_init(&tok->norm_trie);
    byte_level_table(tok->byte_char);
    return tok;
}

void vl2_tokenizer_free(vl2_tokenizer *tok)
{
    if (!tok)
        return;
    g_free(tok->name);
    g_string_chunk_free(tok->strings);
    g_hash_table_destroy(tok->vocab);
    g_hash_table_destroy(tok->added);
    free(tok->id_token);
    free(tok->id_flags);
    free(tok->bytes_off);
    free(tok->bytes);
    free(tok->merges);
    g_array_free(tok->raw_trie.nodes, TRUE);
    g_array_free(tok->norm_trie.nodes, TRUE);
    g_ptr_array_free(tok->splits, TRUE);
    g_free(tok);
}

vl2_status vl2_tokenizer_parse(const char *json, size_t len, const char *name, vl2_tokenizer **out,
                               vl2_error *err)
{
    if (!out || (!json && len))
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "vl2_tokenizer_parse: NULL argument");
    *out = NULL;
    if (!name)
        name = "tokenizer.json";
    if (len > G_MAXSSIZE)
        return vl2_set_error(err, VL2_ERR_FORMAT, "%s: file too large", name);

    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GError) gerr = NULL;
    /* the message puts the file's name in place of json-glib's "<data>" */
    if (!vl2_json_load_data(parser, json, len, name, &gerr))
        return vl2_set_error(err, VL2_ERR_FORMAT, "%s", gerr->message);
    JsonObject *root = as_object(json_parser_get_root(parser));
    if (!root)
        return vl2_set_error(err, VL2_ERR_FORMAT, "%s: not a JSON object%s", name,
                             json_parser_get_root(parser) ? "" : " (empty file)");

    vl2_tokenizer *tok = tokenizer_new(name);
    GHashTable *special = g_hash_table_new(g_str_hash, g_str_equal);
    vl2_status st = load_pipeline(tok, root, err);
    if (st == VL2_OK)
        st = load_model(tok, root, err);
    if (st == VL2_OK)
        st = load_added(tok, root, special, err);
    if (st == VL2_OK)
        st = build_id_tables(tok, special, err);
    g_hash_table_destroy(special);
    if (st != VL2_OK) {
        vl2_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return VL2_OK;
}

vl2_status vl2_tokenizer_load(const char *path, vl2_tokenizer **out, vl2_error *err)
{
    if (!path || !out)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "vl2_tokenizer_load: NULL argument");
    *out = NULL;
    char *data;
    size_t size;
    vl2_status st = vl2_read_file(path, VL2_TOKENIZER_MAX_BYTES, &data, &size, err);
    if (st != VL2_OK)
        return st;
    if ((st = vl2_check_lfs_pointer(path, data, size, "the tokenizer", err)) == VL2_OK)
        st = vl2_tokenizer_parse(data, size, path, out, err);
    g_free(data);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Encoding
 */

typedef struct merge_cand {
    uint32_t rank;
    int32_t pos;                 /* the pair's left symbol */
    int32_t merged;
} merge_cand;

/* Per-call state: scratch buffers live here, never in the tokenizer, so encoding is reentrant. */
typedef struct encoder {
    const vl2_tokenizer *tok;
    vl2_ids *out;
    vl2_error *err;
    size_t cap;                  /* symbols the scratch can hold */
    int32_t *sym, *prev, *next;  /* sym -1: merged into its left neighbour */
    merge_cand *heap;            /* room for 3 * cap: n - 1 pairs, then at most 2 per merge */
    size_t n_heap;
} encoder;

static bool encoder_reserve(encoder *e, size_t n)
{
    if (n <= e->cap)
        return true;
    free(e->sym);
    free(e->heap);
    e->sym = malloc(3 * n * sizeof *e->sym);
    e->heap = malloc(3 * n * sizeof *e->heap);
    if (!e->sym || !e->heap) {
        free(e->sym);
        free(e->heap);
        e->sym = NULL;
        e->heap = NULL;
        e->cap = 0;
        return false;
    }
    e->prev = e->sym + n;
    e->next = e->sym + 2 * n;
    e->cap = n;
    return true;
}

/* The reference's merge queue order: lowest rank first, leftmost among equal ranks. */
static inline bool cand_before(const merge_cand *a, const merge_cand *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(encoder *e, int32_t pos, int32_t left, int32_t right)
{
    const merge_slot *m = merge_find(e->tok, left, right);
    if (!m)
        return;
    merge_cand c = { m->rank, pos, m->merged };
    size_t i = e->n_heap++;
    while (i > 0 && cand_before(&c, &e->heap[(i - 1) / 2])) {
        e->heap[i] = e->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    e->heap[i] = c;
}

static merge_cand heap_pop(encoder *e)
{
    merge_cand top = e->heap[0], last = e->heap[--e->n_heap];
    size_t i = 0, n = e->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && cand_before(&e->heap[c + 1], &e->heap[c]))
            c++;
        if (!cand_before(&e->heap[c], &last))
            break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n > 0)
        e->heap[i] = last;
    return top;
}

static vl2_status push_id(encoder *e, int32_t id)
{
    if (vl2_ids_push(e->out, id))
        return VL2_OK;
    return vl2_set_error(e->err, VL2_ERR_NO_MEMORY, "%s: no memory for token ids", e->tok->name);
}

/* BPE over one pre-token's bytes. */
static vl2_status bpe(encoder *e, const unsigned char *s, size_t n)
{
    const vl2_tokenizer *tok = e->tok;
    if (!encoder_reserve(e, n))
        return vl2_set_error(e->err, VL2_ERR_NO_MEMORY, "%s: no memory to encode a %zu-byte word",
                             tok->name, n);

    int32_t *sym = e->sym, *prev = e->prev, *next = e->next;
    int32_t ns = 0;
    bool after_unk = false;
    for (size_t i = 0; i < n; i++) {
        int32_t id = tok->byte_token[s[i]];
        if (id < 0) {
            /* Without unk_token the reference drops a character it has no token for. */
            if (tok->unk_id < 0 || (tok->fuse_unk && after_unk))
                continue;
            id = tok->unk_id;
            after_unk = true;
        } else {
            after_unk = false;
        }
        sym[ns] = id;
        prev[ns] = ns - 1;
        next[ns] = ns + 1;
        ns++;
    }
    if (ns == 0)
        return VL2_OK;
    next[ns - 1] = -1;

    e->n_heap = 0;
    for (int32_t i = 0; i + 1 < ns; i++)
        heap_push(e, i, sym[i], sym[i + 1]);
    while (e->n_heap > 0) {
        merge_cand top = heap_pop(e);
        int32_t p = top.pos, q = next[p];
        if (sym[p] < 0 || q < 0)
            continue;
        /* A queued pair may be stale: one side has merged since. The reference checks that the
         * current pair still merges into the queued token; so do we. */
        const merge_slot *m = merge_find(tok, sym[p], sym[q]);
        if (!m || m->merged != top.merged)
            continue;
        sym[p] = top.merged;
        sym[q] = -1;
        next[p] = next[q];
        if (next[q] >= 0)
            prev[next[q]] = p;
        if (prev[p] >= 0)
            heap_push(e, prev[p], sym[prev[p]], sym[p]);
        if (next[p] >= 0)
            heap_push(e, p, sym[p], sym[next[p]]);
    }
    for (int32_t i = 0; i >= 0; i = next[i]) {
        vl2_status st = push_id(e, sym[i]);
        if (st != VL2_OK)
            return st;
    }
    return VL2_OK;
}

/* Split stage `stage` (Isolated: matches and the gaps between them are pieces, empty ones
 * dropped), each piece going on to the next stage, and after the last one to BPE. */
static vl2_status split_stage(encoder *e, guint stage, const char *s, size_t n)
{
    const vl2_tokenizer *tok = e->tok;
    if (n == 0)
        return VL2_OK;
    if (stage == tok->splits->len)
        return bpe(e, (const unsigned char *)s, n);

    GMatchInfo *mi = NULL;
    GError *gerr = NULL;
    vl2_status st = VL2_OK;
    size_t done = 0;
    g_regex_match_full(g_ptr_array_index(tok->splits, stage), s, (gssize)n, 0, 0, &mi, &gerr);
    while (!gerr && g_match_info_matches(mi)) {
        int start, end;
        g_match_info_fetch_pos(mi, 0, &start, &end);
        if ((size_t)start >= done) {
            st = split_stage(e, stage + 1, s + done, (size_t)start - done);
            if (st == VL2_OK)
                st = split_stage(e, stage + 1, s + start, (size_t)(end - start));
            if (st != VL2_OK)
                break;
            done = (size_t)end;
        }
        g_match_info_next(mi, &gerr);
    }
    if (st == VL2_OK && gerr)
        st = vl2_set_error(e->err, VL2_ERR_UNSUPPORTED, "%s: pre-tokenizer regex failed on a "
                           "%zu-byte piece: %s", tok->name, n, gerr->message);
    if (st == VL2_OK)
        st = split_stage(e, stage + 1, s + done, n - done);
    g_match_info_free(mi);
    g_clear_error(&gerr);
    return st;
}

/* Level 0 cuts at added tokens found in the raw text, level 1 at those found after normalization
 * (the identity here); what is left goes to the pre-tokenizer. */
static vl2_status split_added(encoder *e, int level, const char *s, size_t n)
{
    const added_trie *t = level == 0 ? &e->tok->raw_trie : &e->tok->norm_trie;
    size_t pos = 0, start, end;
    int32_t id;
    vl2_status st = VL2_OK;
    while (st == VL2_OK && trie_find(t, (const unsigned char *)s, n, pos, &start, &end, &id)) {
        st = level == 0 ? split_added(e, 1, s + pos, start - pos)
                        : split_stage(e, 0, s + pos, start - pos);
        if (st == VL2_OK)
            st = push_id(e, id);
        pos = end;
    }
    if (st == VL2_OK)
        st = level == 0 ? split_added(e, 1, s + pos, n - pos) : split_stage(e, 0, s + pos, n - pos);
    return st;
}

vl2_status vl2_tokenizer_encode(const vl2_tokenizer *tok, const char *text, size_t len,
                                vl2_ids *out, vl2_error *err)
{
    if (!tok || !out || (!text && len))
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "vl2_tokenizer_encode: NULL argument");
    if (len > G_MAXINT)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "%s: cannot encode %zu bytes at once "
                             "(GRegex offsets are int)", tok->name, len);
    /* The reference takes a Rust str, so it never sees invalid UTF-8; neither do we. */
    size_t bad = utf8_invalid_at((const unsigned char *)text, len);
    if (bad < len)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "%s: text to encode is not valid "
                             "UTF-8 (byte %zu of %zu)", tok->name, bad, len);

    encoder e = { .tok = tok, .out = out, .err = err };
    size_t old_len = out->len;
    vl2_status st = split_added(&e, 0, text, len);
    free(e.sym);
    free(e.heap);
    if (st != VL2_OK)
        out->len = old_len;
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Lookup and decoding
 */

int32_t vl2_tokenizer_n_vocab(const vl2_tokenizer *tok)
{
    return tok ? tok->n_ids : 0;
}

int32_t vl2_tokenizer_find(const vl2_tokenizer *tok, const char *token)
{
    if (!tok || !token)
        return -1;
    int32_t id = lookup(tok->added, token);
    return id >= 0 ? id : lookup(tok->vocab, token);
}

static bool id_known(const vl2_tokenizer *tok, int32_t id)
{
    return id >= 0 && id < tok->n_ids && (tok->id_flags[id] & ID_KNOWN);
}

const char *vl2_tokenizer_bytes(const vl2_tokenizer *tok, int32_t id, size_t *len)
{
    if (!tok || !id_known(tok, id)) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = tok->bytes_off[id + 1] - tok->bytes_off[id];
    return tok->bytes + tok->bytes_off[id];
}

bool vl2_tokenizer_is_special(const vl2_tokenizer *tok, int32_t id)
{
    return tok && id_known(tok, id) && (tok->id_flags[id] & ID_SPECIAL);
}

const char *vl2_tokenizer_token(const vl2_tokenizer *tok, int32_t id)
{
    return tok && id_known(tok, id) ? tok->id_token[id] : NULL;
}

char *vl2_tokenizer_decode(const vl2_tokenizer *tok, const int32_t *ids, size_t n,
                           bool skip_special)
{
    if (!tok || (!ids && n))
        return NULL;
    /* Ids the tokenizer does not know decode to nothing, as in the reference: the model's
     * embedding (129280 rows) is larger than the vocabulary (128823 ids), so a model can
     * produce them. */
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!id_known(tok, ids[i]))
            continue;
        if (!(skip_special && (tok->id_flags[ids[i]] & ID_SPECIAL)))
            total += tok->bytes_off[ids[i] + 1] - tok->bytes_off[ids[i]];
    }
    if (total > (SIZE_MAX - 1) / 4)
        return NULL;
    /* One block: the raw bytes at the end, the text (at most 3 bytes per byte) written ahead of
     * them, which never overtakes the byte being read. */
    char *buf = malloc(4 * total + 1);
    if (!buf)
        return NULL;
    char *raw = buf + 3 * total + 1, *p = raw;
    for (size_t i = 0; i < n; i++) {
        if (!id_known(tok, ids[i]) || (skip_special && (tok->id_flags[ids[i]] & ID_SPECIAL)))
            continue;
        size_t len = tok->bytes_off[ids[i] + 1] - tok->bytes_off[ids[i]];
        memcpy(p, tok->bytes + tok->bytes_off[ids[i]], len);
        p += len;
    }
    size_t used, w = utf8_lossy((const unsigned char *)raw, total, true, buf, &used);
    buf[w] = '\0';
    char *shrunk = realloc(buf, w + 1);
    return shrunk ? shrunk : buf;
}

/* ---------------------------------------------------------------------------------------------
 * The tokenizer on its own (vl2.h)
 */

vl2_status vl2_tokenizer_open(const char *dir, vl2_tokenizer **out_tok, vl2_error *err)
{
    if (!out_tok)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "out_tok is NULL");
    *out_tok = NULL;
    if (!dir || !*dir)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "no model folder given");
    if (!g_file_test(dir, G_FILE_TEST_IS_DIR))
        return vl2_set_error(err, VL2_ERR_IO, "%s: not a folder", dir);
    g_autofree char *path = g_build_filename(dir, "tokenizer.json", NULL);
    return vl2_tokenizer_load(path, out_tok, err);
}

vl2_status vl2_tokenizer_tokenize(const vl2_tokenizer *tok, const char *text, size_t text_len,
                                  int32_t *ids, size_t max_ids, size_t *n_ids, vl2_error *err)
{
    if (!tok || (!text && text_len))
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "tokenizer or text is NULL");
    vl2_ids out = { 0 };
    vl2_status s = vl2_tokenizer_encode(tok, text ? text : "", text_len, &out, err);
    if (s == VL2_OK) {
        if (n_ids)
            *n_ids = out.len;
        if (ids && out.len && max_ids)
            memcpy(ids, out.data, (out.len < max_ids ? out.len : max_ids) * sizeof *ids);
    }
    vl2_ids_clear(&out);
    return s;
}

char *vl2_tokenizer_detokenize(const vl2_tokenizer *tok, const int32_t *ids, size_t n_ids,
                               bool skip_special)
{
    return vl2_tokenizer_decode(tok, ids, n_ids, skip_special);
}
