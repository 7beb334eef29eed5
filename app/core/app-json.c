/* app-json.c - JSON text the way every reader accepts it. */
#include "app-json.h"

#include <string.h>

char *
app_json_to_data (JsonNode *node,
                  gboolean  pretty,
                  gsize    *length)
{
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autofree char *text = NULL;
  GString *out;
  gsize len;

  json_generator_set_pretty (gen, pretty);
  json_generator_set_indent (gen, 2);
  json_generator_set_root (gen, node);
  text = json_generator_to_data (gen, &len);
  /* The generator escapes every other control character, and writes U+001F only inside
   * strings; in UTF-8 the byte 0x1f is always that character. */
  out = g_string_sized_new (len + 16);
  for (gsize i = 0; i < len; i++)
    {
      guchar c = (guchar) text[i];

      if (c == 0x1f)
        g_string_append (out, "\\u001f");
      else
        g_string_append_c (out, (char) c);
    }
  if (length)
    *length = out->len;
  return g_string_free (out, FALSE);
}
