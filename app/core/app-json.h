/* app-json.h - JSON text the way every reader accepts it. */
#pragma once

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* The text of `node` (indented by 2 with `pretty`), as json_generator_to_data() makes it but with
 * every control character escaped: json-glib 1.6 writes U+001F raw, which strict parsers
 * (Python's json, JavaScript's JSON.parse) refuse, and a model can write any character. */
char *app_json_to_data (JsonNode *node,
                        gboolean  pretty,
                        gsize    *length);

G_END_DECLS
