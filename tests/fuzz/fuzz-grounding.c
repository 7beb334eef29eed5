/* fuzz-grounding.c - the grounding parser (app/core/app-grounding.c) on any text, finished and
 * while streaming (every prefix the input's first bytes pick), and what is made from its
 * result: the Markdown with a chip highlighted, the boxes in pixels and as JSON, the plain
 * text, the prompt helpers. */
#include "fuzz.h"

#include <string.h>

#include "app-grounding.h"

FUZZ_INITIALIZE_GLIB_ONLY

static void
check (const char *text,
       gboolean    streaming,
       int         width,
       int         height)
{
  g_autoptr(AppGrounding) g = app_grounding_parse (text, streaming);
  guint n_boxes = 0;

  FUZZ_CHECK (g && g->markdown && g_utf8_validate (g->markdown, -1, NULL), "no Markdown");
  for (guint i = 0; i < g->refs->len; i++)
    {
      AppGroundingRef *ref = g_ptr_array_index (g->refs, i);

      FUZZ_CHECK (!ref->label || g_utf8_validate (ref->label, -1, NULL), "label not UTF-8");
      for (guint k = 0; k < ref->boxes->len; k++)
        {
          AppGroundingBox *b = &g_array_index (ref->boxes, AppGroundingBox, k);
          int x, y, w, h;

          FUZZ_CHECK (0 <= b->x1 && b->x1 < b->x2 && b->x2 <= APP_GROUNDING_GRID
                      && 0 <= b->y1 && b->y1 < b->y2 && b->y2 <= APP_GROUNDING_GRID,
                      "box %g %g %g %g", b->x1, b->y1, b->x2, b->y2);
          app_grounding_box_to_pixels (b, width, height, &x, &y, &w, &h);
          FUZZ_CHECK (x >= 0 && y >= 0 && w >= 1 && h >= 1 && x + w <= width && y + h <= height,
                      "box %d %d %d %d in %d x %d", x, y, w, h, width, height);
        }
      n_boxes += ref->boxes->len;
    }
  FUZZ_CHECK (n_boxes == g->n_boxes, "%u boxes, n_boxes %u", n_boxes, g->n_boxes);

  {
    g_autofree char *none = app_grounding_markdown (g, -1);
    FUZZ_CHECK (strcmp (none, g->markdown) == 0, "markdown(-1) differs");
  }
  for (int active = 0; active < (int) g->refs->len && active < 4; active++)
    {
      g_autofree char *md = app_grounding_markdown (g, active);
      g_autofree char *uri = g_strdup_printf (APP_GROUNDING_SCHEME ":%d?color=000000", active);

      FUZZ_CHECK (g_utf8_validate (md, -1, NULL), "highlighted Markdown is not UTF-8");

      FUZZ_CHECK (app_grounding_ref_from_uri (uri) == active, "%s", uri);
    }
  g_free (app_grounding_to_json (g, width, height));
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  FuzzReader r = { data, size, 0 };
  int width = 1 + fuzz_u16 (&r) % 8192, height = 1 + fuzz_u16 (&r) % 8192;
  uint8_t cuts = fuzz_u8 (&r);
  g_autofree char *text = fuzz_rest_as_utf8 (&r);
  size_t len = strlen (text);
  AppPromptKind kind;

  check (text, FALSE, width, height);
  check (text, TRUE, width, height);

  /* a stream cut at a few character boundaries */
  for (int i = 1; i <= (cuts & 7); i++)
    {
      const char *end = g_utf8_find_prev_char (text, text + len * i / 8 + 1);
      g_autofree char *prefix = g_strndup (text, end ? (gsize) (end - text) : 0);

      check (prefix, TRUE, width, height);
    }

  (void) app_grounding_has_tags (text);
  (void) app_grounding_ref_from_uri (text);
  g_free (app_grounding_plain_text (text));
  for (kind = APP_PROMPT_PLAIN; kind <= APP_PROMPT_FIND; kind++)
    {
      g_autofree char *wrapped = app_grounding_wrap_prompt (kind, text);

      if (wrapped)
        {
          AppPromptKind back;
          g_autofree char *unwrapped = app_grounding_unwrap_prompt (wrapped, &back);

          FUZZ_CHECK (unwrapped != NULL, "unwrap gave NULL");
        }
    }
  g_free (app_grounding_unwrap_prompt (text, &kind));
  return 0;
}
