/* test-input.c - the walk over a large JSON document member by member (vl2-input.h), which the
 * safetensors header and chat files are read with so that json-glib never holds them whole. */
#include <string.h>

#include "vl2-input.h"

/* Walks `json` and returns "name=value;..." for its members, or "error: <message>". */
static char *walk(const char *json, char open)
{
    Vl2JsonWalk w;
    g_autoptr(GError) error = NULL;
    GString *out = g_string_new(NULL);
    if (!vl2_json_walk_begin(&w, json, strlen(json), open, &error)) {
        g_string_printf(out, "error: %s", error->message);
        return g_string_free(out, FALSE);
    }
    for (;;) {
        char *name;
        const char *value;
        gsize n;
        int r = vl2_json_walk_next(&w, &name, &value, &n, &error);
        if (r < 0) {
            g_assert_null(name);
            g_string_printf(out, "error: %s", error->message);
            break;
        }
        if (r == 0) {
            g_assert_null(name);
            break;
        }
        if (name)
            g_string_append_printf(out, "%s=", name);
        g_string_append_len(out, value, (gssize)n);
        g_string_append_c(out, ';');
        g_free(name);
    }
    return g_string_free(out, FALSE);
}

/* `want` may end in '*': then only its start is compared. */
static void expect(const char *json, char open, const char *want)
{
    g_autofree char *got = walk(json, open);
    if (g_str_has_suffix(want, "*")) {
        g_autofree char *prefix = g_strndup(want, strlen(want) - 1);
        if (!g_str_has_prefix(got, prefix))
            g_error("%s\n  walked as %s, want %s", json, got, want);
    } else if (strcmp(got, want) != 0) {
        g_error("%s\n  walked as %s, want %s", json, got, want);
    }
}

static void test_walk_members(void)
{
    expect("{}", '{', "");
    expect(" \n{ } \n", '{', "");
    expect("{\"a\": 1}", '{', "a=1;");
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}, \"b\" : [1, [2]],"
           "\"c\":\"x,}]\\\"\", \"d\": -1.5e3, \"e\": null, \"f\": true}",
           '{',
           "a={\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]};b=[1, [2]];"
           "c=\"x,}]\\\"\";d=-1.5e3;e=null;f=true;");
    /* names with escapes are read by json-glib */
    expect("{\"a\\u00e9\\n\": 0, \"\\ud83d\\ude00\": 1}", '{', "a\xc3\xa9\n=0;\xf0\x9f\x98\x80=1;");
    expect("[]", '[', "");
    expect("[1, {\"a\": [\"]\"]}, \"s\"]", '[', "1;{\"a\": [\"]\"]};\"s\";");
}

static void test_walk_refusals(void)
{
    expect("[1]", '{', "error: not a JSON object*");
    expect("{\"a\": 1", '{', "error: a ',' missing*");
    expect("{\"a\": 1,}", '{', "error: a comma before the end*");
    expect("{\"a\" 1}", '{', "error: a ':' missing*");
    expect("{a: 1}", '{', "error: a member name missing*");
    expect("{\"a\": }", '{', "error: a value missing*");
    expect("{\"a\": 1} x", '{', "error: text after the end*");
    expect("{} x", '{', "error: text after the end*");
    expect("{\"a\": \"x\\ude12 \"}", '{', "error: half of a surrogate pair*");
    expect("{\"\\udc00 \": 1}", '{', "error: half of a surrogate pair*");
    expect("{\"a\": [\"\\ud800\"]}", '{', "error: half of a surrogate pair*");
    expect("{\"a\": \"\\u12\"}", '{', "error: a \\u escape without four hex digits*");
    expect("{\"a\": \"\\x\"}", '{', "error: an escape JSON does not have*");
    expect("{\"a\": \"x\ny\"}", '{', "error: a control character*");
    expect("{\"a\": [/* ] */ 1]}", '{', "error: a comment or a single-quoted string*");
    expect("{\"a\": ['x]']}", '{', "error: a comment or a single-quoted string*");
    expect("{\"a\": [1, 2}", '{', "error: a bracket that does not match*");
    expect("{\"a\": [1, 2", '{', "error: a value without its end*");
    expect("{\"a\": \"x", '{', "error: a string without its end*");
    /* a name that is not UTF-8 */
    expect("{\"\xff\": 1}", '{', "error: a member name that is not UTF-8*");
}

static void test_walk_deep(void)
{
    const gsize n = 100000;
    g_autofree char *brackets = g_strnfill(n, '[');
    g_autofree char *json = g_strconcat("{\"a\": ", brackets, NULL);
    Vl2JsonWalk w;
    g_autoptr(GError) error = NULL;
    char *name;
    const char *value;
    gsize len;
    g_assert_true(vl2_json_walk_begin(&w, json, strlen(json), '{', NULL));
    g_assert_cmpint(vl2_json_walk_next(&w, &name, &value, &len, &error), ==, -1);
    g_assert_error(error, VL2_INPUT_ERROR, VL2_INPUT_ERROR_TOO_DEEP);
    /* 63 levels inside the walked object are fine */
    g_autofree char *open = g_strnfill(VL2_JSON_MAX_DEPTH - 1, '[');
    g_autofree char *close = g_strnfill(VL2_JSON_MAX_DEPTH - 1, ']');
    g_autofree char *ok = g_strconcat("{\"a\": ", open, close, "}", NULL);
    g_autofree char *got = walk(ok, '{');
    g_assert_true(g_str_has_prefix(got, "a=[[["));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/engine/input/walk-members", test_walk_members);
    g_test_add_func("/engine/input/walk-refusals", test_walk_refusals);
    g_test_add_func("/engine/input/walk-deep", test_walk_deep);
    return g_test_run();
}
