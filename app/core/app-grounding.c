/* app-grounding.c - DeepSeek-VL2's grounding tags -> refs with boxes, and Markdown with chips.
 *
 * The model's answer is shown while it streams, so the parser is run again on every longer
 * prefix of the same text. It therefore never looks ahead: one left-to-right scan with three
 * modes (plain text, inside `<|ref|>`, inside `<|det|>`), where every decision depends only on
 * what came before. A box, once complete, stays the same box in every longer prefix, and
 * the end of the text is the only place where streaming and a finished answer differ. The
 * model is not always tidy (the official demo never checks its output), so nothing here fails:
 * a tag that makes no sense is dropped, never shown raw.
 *
 * The rules, as applied:
 *  - Outside tags the text is the model's own Markdown and is copied unchanged.
 *  - `<|ref|>` opens a label, `<|/ref|>` closes it. The label is the text between, trimmed,
 *    newlines made spaces, made valid UTF-8. It becomes the chip
 *    `[LABEL](sightline-ref:N?color=RRGGBB)`: N its index in refs, LABEL backslash-escaped
 *    for Markdown. An empty label gives a ref without label and without chip (its boxes
 *    still draw). A second `<|ref|>` while one is open abandons the first: its text so far
 *    becomes plain text.
 *  - `<|det|>` closes an open label first. Its boxes go to the most recent ref if that ref has
 *    no `<|det|>` yet, or if only white space separates this `<|det|>` from that ref's
 *    previous `<|/det|>` (the model split one list in two); otherwise they make a new ref
 *    without label. Nothing inside a `<|det|>` reaches the Markdown.
 *  - Inside a `<|det|>`: `[` starts a group (dropping an unfinished one), `]` ends it, and a
 *    group of exactly four numbers is a box. `<|/det|>` also ends the group in progress, so
 *    does a `<|ref|>` or `<|det|>` that arrives before `<|/det|>` (they close this det and
 *    then do their own work). A number is `-`? digits (`.` digits)?; any other byte
 *    separates. Values are clamped to 0..999, corners swapped into order, and a box without
 *    area is dropped.
 *  - A closing tag with nothing open is removed; `<|grounding|>` is removed anywhere and sets
 *    the grounding flag.
 *  - At the end of a streaming text, a tail that is the start of a tag (`<|de`) is hidden, an
 *    open label becomes a partial chip, and an open `<|det|>` keeps its finished groups and
 *    marks its ref partial. At the end of a finished text there is no hiding, an open label
 *    is a chip, and an open `<|det|>` keeps its finished groups (its last number may be cut);
 *    text after its brackets' last close is shown again (without tags).
 *
 * Two repairs keep the Markdown honest, because a chip or a removed tag can change the
 * meaning of the text next to it: a `!` just before a chip is escaped (else `![label](...)`
 * is an image) and so is an odd backslash (else it escapes the chip's `[`); and when removing
 * a tag joins pieces of text into a new complete tag (`<|de` + `<|/ref|>` + `t|>`), its `|` is
 * escaped (`<\|det|>`, shown the same), so the Markdown never holds a grounding tag.
 */

#define G_LOG_DOMAIN "sightline-grounding"

#include "app-grounding.h"

#include <json-glib/json-glib.h>
#include <string.h>

struct _AppGroundingPrivate
{
  GArray *chip_ends;  /* gssize per ref: offset of the `)` ending its chip in markdown, or -1 */
};

typedef enum
{
  TAG_NONE = -1,
  TAG_REF,
  TAG_REF_END,
  TAG_DET,
  TAG_DET_END,
  TAG_GROUNDING,
  N_TAGS
} Tag;

static const struct
{
  const char *text;
  gsize len;
} tags[N_TAGS] = {
  [TAG_REF] = { "<|ref|>", 7 },
  [TAG_REF_END] = { "<|/ref|>", 8 },
  [TAG_DET] = { "<|det|>", 7 },
  [TAG_DET_END] = { "<|/det|>", 8 },
  [TAG_GROUNDING] = { "<|grounding|>", 13 },
};

#define LONGEST_TAG 13

/* What a grounded caption asks when the person typed nothing, in English like the official
 * examples. */
#define DEFAULT_CAPTION "Describe the image in detail."

/* Colours of GNOME's HIG palette, one per hue: saturated enough to tell boxes apart on a photo. */
static const guint32 palette[] = {
  0xe01b24, /* red */
  0x3584e4, /* blue */
  0x2ec27e, /* green */
  0xf5c211, /* yellow */
  0x9141ac, /* purple */
  0xff7800, /* orange */
  0x986a44, /* brown */
  0xc061cb, /* pink */
};

typedef enum
{
  MODE_TEXT,
  MODE_REF,
  MODE_DET,
} Mode;

typedef struct
{
  const char *text;
  gsize len;
  gboolean streaming;

  AppGrounding *result;
  GString *md;
  GArray *chip_ends;      /* gssize per ref, see AppGroundingPrivate */
  GArray *det_ends;       /* gssize per ref: text offset where its last `<|det|>` ended, or -1
                             while it has none */
  GHashTable *colors;     /* casefolded label -> palette index + 1 */
  guint next_color;

  Mode mode;
  GString *label;         /* MODE_REF: the label so far, raw */
  guint det_ref;          /* MODE_DET: the index of the ref the boxes go to */
  gboolean in_group;      /* MODE_DET: between `[` and its `]` */
  guint n_numbers;        /* numbers of the group so far (counting stops at 5) */
  double numbers[4];
  guint depth;            /* MODE_DET: brackets open */
  gsize det_tail;         /* MODE_DET: text offset after the `]` that last closed every
                             bracket, 0 before one did */
} Scanner;

/* The complete tag at `s`, or TAG_NONE; then *is_prefix tells whether the `avail` bytes at
 * `s` are the start of a tag, cut by the end of the text. */
static Tag
tag_at (const char *s,
        gsize       avail,
        gboolean   *is_prefix)
{
  *is_prefix = FALSE;

  for (int t = 0; t < N_TAGS; t++)
    {
      if (avail >= tags[t].len)
        {
          if (memcmp (s, tags[t].text, tags[t].len) == 0)
            return (Tag) t;
        }
      else if (memcmp (s, tags[t].text, avail) == 0)
        {
          *is_prefix = TRUE;
        }
    }

  return TAG_NONE;
}

/* Escapes the `|` of every complete tag that starts at or after `from` (see the top). */
static void
break_tags (GString *md,
            gsize    from)
{
  for (gsize i = from; i + 1 < md->len; i++)
    {
      gboolean is_prefix;

      if (md->str[i] == '<' && md->str[i + 1] == '|' &&
          tag_at (md->str + i, md->len - i, &is_prefix) != TAG_NONE)
        g_string_insert_c (md, (gssize) i + 1, '\\');
    }
}

/* Plain text to the Markdown. The Markdown held no tag before; one can only appear across
 * the join (starting at most LONGEST_TAG - 1 bytes before it) or, for an abandoned label
 * whose stray tags were removed, inside the new text. */
static void
md_append (Scanner    *sc,
           const char *s,
           gsize       n)
{
  gsize from = sc->md->len >= LONGEST_TAG ? sc->md->len - (LONGEST_TAG - 1) : 0;

  if (n == 0)
    return;
  g_string_append_len (sc->md, s, (gssize) n);
  break_tags (sc->md, from);
}

static gsize
backslashes_before (const GString *md,
                    gsize          end)
{
  gsize n = 0;

  while (n < end && md->str[end - 1 - n] == '\\')
    n++;
  return n;
}

/* Makes sure the chip about to be appended is read as a link (see the top). */
static void
guard_before_chip (GString *md)
{
  if (md->len > 0 && md->str[md->len - 1] == '!' &&
      backslashes_before (md, md->len - 1) % 2 == 0)
    g_string_insert_c (md, (gssize) md->len - 1, '\\');
  else if (backslashes_before (md, md->len) % 2 == 1)
    g_string_append_c (md, '\\');
}

static void
append_escaped_label (GString    *md,
                      const char *label)
{
  for (const char *p = label; *p != '\0'; p++)
    {
      if (strchr ("\\`*_{}[]()#+-.!|<>&~", *p) != NULL)
        g_string_append_c (md, '\\');
      g_string_append_c (md, *p);
    }
}

/* The label as stored: valid UTF-8, trimmed, on one line; NULL when nothing is left. */
static char *
clean_label (const char *raw,
             gsize       len)
{
  g_autofree char *label = g_utf8_make_valid (raw, (gssize) len);

  g_strstrip (label);
  for (char *p = label; *p != '\0'; p++)
    if (*p == '\n' || *p == '\r')
      *p = ' ';

  if (*label == '\0')
    return NULL;
  return g_steal_pointer (&label);
}

static void
ref_free (AppGroundingRef *ref)
{
  g_free (ref->label);
  g_array_unref (ref->boxes);
  g_free (ref);
}

static AppGroundingRef *
scanner_ref (Scanner *sc,
             guint    index)
{
  return g_ptr_array_index (sc->result->refs, index);
}

/* Appends a ref (raw_label NULL for a `<|det|>` without one) and its chip; returns its index. */
static guint
scanner_add_ref (Scanner    *sc,
                 const char *raw_label,
                 gsize       raw_len,
                 gboolean    partial)
{
  AppGroundingRef *ref = g_new0 (AppGroundingRef, 1);
  guint index = sc->result->refs->len;
  gssize no_offset = -1;
  gssize chip_end = -1;

  ref->label = raw_label != NULL ? clean_label (raw_label, raw_len) : NULL;
  ref->boxes = g_array_new (FALSE, FALSE, sizeof (AppGroundingBox));
  ref->partial = partial;

  if (ref->label != NULL)
    {
      char *key = g_utf8_casefold (ref->label, -1);
      gpointer known = g_hash_table_lookup (sc->colors, key);

      if (known != NULL)
        {
          ref->color = GPOINTER_TO_UINT (known) - 1;
          g_free (key);
        }
      else
        {
          ref->color = sc->next_color++;
          g_hash_table_insert (sc->colors, key, GUINT_TO_POINTER (ref->color + 1));
        }

      guard_before_chip (sc->md);
      g_string_append_c (sc->md, '[');
      append_escaped_label (sc->md, ref->label);
      g_string_append_printf (sc->md, "](" APP_GROUNDING_SCHEME ":%u?color=%06x",
                              index, (guint) app_grounding_color (ref->color));
      chip_end = (gssize) sc->md->len;
      g_string_append_c (sc->md, ')');
    }
  else
    {
      ref->color = sc->next_color++;
    }

  g_ptr_array_add (sc->result->refs, ref);
  g_array_append_val (sc->chip_ends, chip_end);
  g_array_append_val (sc->det_ends, no_offset);

  return index;
}

static void
scanner_end_group (Scanner *sc)
{
  const double *n = sc->numbers;
  AppGroundingBox box;
  double v[4];

  if (!sc->in_group)
    return;
  sc->in_group = FALSE;
  if (sc->n_numbers != 4)
    return;

  for (int i = 0; i < 4; i++)
    v[i] = CLAMP (n[i], 0.0, (double) APP_GROUNDING_GRID);
  box.x1 = MIN (v[0], v[2]);
  box.x2 = MAX (v[0], v[2]);
  box.y1 = MIN (v[1], v[3]);
  box.y2 = MAX (v[1], v[3]);
  if (box.x1 == box.x2 || box.y1 == box.y2)
    return;

  g_array_append_val (scanner_ref (sc, sc->det_ref)->boxes, box);
  sc->result->n_boxes++;
}

static void
scanner_open_det (Scanner *sc,
                  gsize    pos)
{
  GPtrArray *refs = sc->result->refs;
  gboolean attach = FALSE;

  if (refs->len > 0)
    {
      gssize det_end = g_array_index (sc->det_ends, gssize, refs->len - 1);

      attach = TRUE;
      if (det_end >= 0)
        for (gsize i = (gsize) det_end; i < pos && attach; i++)
          attach = g_ascii_isspace (sc->text[i]);
    }

  sc->det_ref = attach ? refs->len - 1 : scanner_add_ref (sc, NULL, 0, FALSE);
  /* it has a `<|det|>` from now on; the offset is moved to its end when it closes */
  g_array_index (sc->det_ends, gssize, sc->det_ref) = (gssize) pos;
  sc->in_group = FALSE;
  sc->n_numbers = 0;
  sc->depth = 0;
  sc->det_tail = 0;
  sc->mode = MODE_DET;
}

static void
scanner_close_det (Scanner *sc,
                   gsize    end)
{
  scanner_end_group (sc);
  g_array_index (sc->det_ends, gssize, sc->det_ref) = (gssize) end;
  sc->mode = MODE_TEXT;
}

static void
scanner_close_ref (Scanner *sc)
{
  scanner_add_ref (sc, sc->label->str, sc->label->len, FALSE);
  g_string_truncate (sc->label, 0);
  sc->mode = MODE_TEXT;
}

/* A tag at `pos` of the text; the tables of the top, mode by mode. */
static void
scanner_tag (Scanner *sc,
             Tag      tag,
             gsize    pos)
{
  switch (tag)
    {
    case TAG_GROUNDING:
      sc->result->grounding = TRUE;
      break;

    case TAG_REF:
      if (sc->mode == MODE_REF)
        md_append (sc, sc->label->str, sc->label->len);
      else if (sc->mode == MODE_DET)
        scanner_close_det (sc, pos);
      g_string_truncate (sc->label, 0);
      sc->mode = MODE_REF;
      break;

    case TAG_REF_END:
      if (sc->mode == MODE_REF)
        scanner_close_ref (sc);
      break;

    case TAG_DET:
      if (sc->mode == MODE_REF)
        scanner_close_ref (sc);
      else if (sc->mode == MODE_DET)
        scanner_close_det (sc, pos);
      scanner_open_det (sc, pos);
      break;

    case TAG_DET_END:
      if (sc->mode == MODE_DET)
        scanner_close_det (sc, pos + tags[TAG_DET_END].len);
      break;

    case TAG_NONE:
    case N_TAGS:
    default:
      g_assert_not_reached ();
    }
}

/* Coordinates: a run of bytes inside a `<|det|>`. Runs end at a `<`, so a number is never
 * split between two runs. */
static void
scanner_det_run (Scanner    *sc,
                 const char *s,
                 gsize       n)
{
  gsize i = 0;

  while (i < n)
    {
      if (s[i] == '[')
        {
          sc->in_group = TRUE;
          sc->n_numbers = 0;
          sc->depth++;
          i++;
        }
      else if (s[i] == ']')
        {
          scanner_end_group (sc);
          i++;
          if (sc->depth > 0 && --sc->depth == 0)
            sc->det_tail = (gsize) (s - sc->text) + i;
        }
      else if (g_ascii_isdigit (s[i]) || (s[i] == '-' && i + 1 < n && g_ascii_isdigit (s[i + 1])))
        {
          gboolean negative = s[i] == '-';
          double value = 0;

          if (negative)
            i++;
          for (; i < n && g_ascii_isdigit (s[i]); i++)
            value = value * 10 + (s[i] - '0');
          if (i + 1 < n && s[i] == '.' && g_ascii_isdigit (s[i + 1]))
            {
              double scale = 0.1;

              for (i++; i < n && g_ascii_isdigit (s[i]); i++, scale /= 10)
                value += (s[i] - '0') * scale;
            }
          if (negative)
            value = -value;

          if (sc->in_group)
            {
              if (sc->n_numbers < 4)
                sc->numbers[sc->n_numbers] = value;
              if (sc->n_numbers < 5)
                sc->n_numbers++;
            }
        }
      else
        {
          i++;
        }
    }
}

static void
scanner_run (Scanner    *sc,
             const char *s,
             gsize       n)
{
  switch (sc->mode)
    {
    case MODE_TEXT:
      md_append (sc, s, n);
      break;
    case MODE_REF:
      g_string_append_len (sc->label, s, (gssize) n);
      break;
    case MODE_DET:
      scanner_det_run (sc, s, n);
      break;
    default:
      g_assert_not_reached ();
    }
}

/* A finished answer whose `<|det|>` never closed: what follows the brackets' last close is
 * the model's text again (`[[1, 2, 3, 4]] stands here.`), not lost. Tags in it are dropped. */
static void
scanner_tail (Scanner *sc)
{
  gsize pos = sc->det_tail;

  while (pos < sc->len)
    {
      gboolean is_prefix;
      Tag tag = sc->text[pos] == '<' ? tag_at (sc->text + pos, sc->len - pos, &is_prefix)
                                     : TAG_NONE;
      const char *lt;
      gsize run;

      if (tag != TAG_NONE)
        {
          pos += tags[tag].len;
          continue;
        }
      lt = memchr (sc->text + pos + 1, '<', sc->len - pos - 1);
      run = lt != NULL ? (gsize) (lt - (sc->text + pos)) : sc->len - pos;
      md_append (sc, sc->text + pos, run);
      pos += run;
    }
}

static void
scanner_finish (Scanner *sc)
{
  switch (sc->mode)
    {
    case MODE_TEXT:
      break;
    case MODE_REF:
      scanner_add_ref (sc, sc->label->str, sc->label->len, sc->streaming);
      break;
    case MODE_DET:
      /* the group in progress is dropped: its last number may be cut */
      sc->in_group = FALSE;
      if (sc->streaming)
        scanner_ref (sc, sc->det_ref)->partial = TRUE;
      else if (sc->det_tail > 0)
        scanner_tail (sc);
      break;
    default:
      g_assert_not_reached ();
    }
  sc->mode = MODE_TEXT;
}

AppGrounding *
app_grounding_parse (const char *text,
                     gboolean    streaming)
{
  AppGrounding *result = g_new0 (AppGrounding, 1);
  Scanner sc = { 0 };
  gsize pos = 0;

  if (text == NULL)
    text = "";

  result->refs = g_ptr_array_new_with_free_func ((GDestroyNotify) ref_free);
  result->priv = g_new0 (AppGroundingPrivate, 1);

  sc.text = text;
  sc.len = strlen (text);
  sc.streaming = streaming;
  sc.result = result;
  sc.md = g_string_sized_new (sc.len + 1);
  sc.chip_ends = g_array_new (FALSE, FALSE, sizeof (gssize));
  sc.det_ends = g_array_new (FALSE, FALSE, sizeof (gssize));
  sc.colors = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  sc.label = g_string_new (NULL);
  sc.mode = MODE_TEXT;

  while (pos < sc.len)
    {
      const char *s = text + pos;
      gsize avail = sc.len - pos;
      const char *lt;
      gsize run;

      if (*s == '<')
        {
          gboolean is_prefix;
          Tag tag = tag_at (s, avail, &is_prefix);

          if (tag != TAG_NONE)
            {
              scanner_tag (&sc, tag, pos);
              pos += tags[tag].len;
              continue;
            }
          if (is_prefix && streaming)
            break;              /* a tag still being written: hidden */
          run = 1;              /* a `<` that is not a tag */
        }
      else
        {
          lt = memchr (s, '<', avail);
          run = lt != NULL ? (gsize) (lt - s) : avail;
        }

      scanner_run (&sc, s, run);
      pos += run;
    }

  scanner_finish (&sc);

  result->markdown = g_string_free (sc.md, FALSE);
  result->priv->chip_ends = sc.chip_ends;
  g_array_unref (sc.det_ends);
  g_hash_table_unref (sc.colors);
  g_string_free (sc.label, TRUE);

  return result;
}

void
app_grounding_free (AppGrounding *grounding)
{
  if (grounding == NULL)
    return;

  g_free (grounding->markdown);
  g_clear_pointer (&grounding->refs, g_ptr_array_unref);
  if (grounding->priv != NULL)
    {
      g_clear_pointer (&grounding->priv->chip_ends, g_array_unref);
      g_free (grounding->priv);
    }
  g_free (grounding);
}

char *
app_grounding_markdown (const AppGrounding *grounding,
                        int                 active)
{
  const char *markdown;
  GArray *chip_ends;
  gssize end;
  GString *out;

  g_return_val_if_fail (grounding != NULL, NULL);

  markdown = grounding->markdown != NULL ? grounding->markdown : "";
  chip_ends = grounding->priv != NULL ? grounding->priv->chip_ends : NULL;
  if (active < 0 || chip_ends == NULL || (guint) active >= chip_ends->len)
    return g_strdup (markdown);

  end = g_array_index (chip_ends, gssize, active);
  if (end < 0 || (gsize) end >= strlen (markdown) || markdown[end] != ')')
    return g_strdup (markdown);

  out = g_string_new_len (markdown, end);
  g_string_append (out, "&active=1");
  g_string_append (out, markdown + end);
  return g_string_free (out, FALSE);
}

gboolean
app_grounding_has_tags (const char *text)
{
  if (text == NULL)
    return FALSE;

  for (int t = 0; t < N_TAGS; t++)
    if (strstr (text, tags[t].text) != NULL)
      return TRUE;

  return FALSE;
}

int
app_grounding_ref_from_uri (const char *uri)
{
  const char *prefix = APP_GROUNDING_SCHEME ":";
  const char *p;
  gint64 value = 0;

  if (uri == NULL || !g_str_has_prefix (uri, prefix))
    return -1;

  p = uri + strlen (prefix);
  if (!g_ascii_isdigit (*p))
    return -1;

  for (; g_ascii_isdigit (*p); p++)
    {
      value = value * 10 + (*p - '0');
      if (value > G_MAXINT)
        return -1;
    }

  if (*p != '\0' && *p != '?')
    return -1;

  return (int) value;
}

/* One axis of app_grounding_box_to_pixels(): the demo's `(int) (v / 999 * size)`, clamped to
 * the image (in double, so that no value is out of int's range), at least one pixel wide. */
static void
axis_to_pixels (double  v1,
                double  v2,
                int     size,
                int    *start,
                int    *length)
{
  double p1 = v1 / APP_GROUNDING_GRID * size;
  double p2 = v2 / APP_GROUNDING_GRID * size;
  int a, b;

  /* !(p >= 0) also catches NaN */
  a = !(p1 >= 0) ? 0 : p1 > size ? size : (int) p1;
  b = !(p2 >= 0) ? 0 : p2 > size ? size : (int) p2;

  if (b <= a)
    {
      if (a >= size)
        a = size - 1;
      b = a + 1;
    }

  *start = a;
  *length = b - a;
}

void
app_grounding_box_to_pixels (const AppGroundingBox *box,
                             int                    image_width,
                             int                    image_height,
                             int                   *x,
                             int                   *y,
                             int                   *width,
                             int                   *height)
{
  int px = 0, py = 0, pw = 0, ph = 0;

  if (box != NULL && image_width > 0 && image_height > 0)
    {
      axis_to_pixels (box->x1, box->x2, image_width, &px, &pw);
      axis_to_pixels (box->y1, box->y2, image_height, &py, &ph);
    }

  if (x != NULL)
    *x = px;
  if (y != NULL)
    *y = py;
  if (width != NULL)
    *width = pw;
  if (height != NULL)
    *height = ph;
}

char *
app_grounding_to_json (const AppGrounding *grounding,
                       int                 image_width,
                       int                 image_height)
{
  g_autoptr(JsonBuilder) builder = json_builder_new ();
  g_autoptr(JsonGenerator) generator = json_generator_new ();
  g_autoptr(JsonNode) root = NULL;

  json_builder_begin_array (builder);
  for (guint i = 0; grounding != NULL && i < grounding->refs->len; i++)
    {
      const AppGroundingRef *ref = g_ptr_array_index (grounding->refs, i);

      for (guint j = 0; j < ref->boxes->len; j++)
        {
          const AppGroundingBox *box = &g_array_index (ref->boxes, AppGroundingBox, j);
          int x, y, width, height;

          app_grounding_box_to_pixels (box, image_width, image_height, &x, &y, &width, &height);

          json_builder_begin_object (builder);
          json_builder_set_member_name (builder, "label");
          if (ref->label != NULL)
            json_builder_add_string_value (builder, ref->label);
          else
            json_builder_add_null_value (builder);
          json_builder_set_member_name (builder, "box");
          json_builder_begin_array (builder);
          json_builder_add_int_value (builder, x);
          json_builder_add_int_value (builder, y);
          json_builder_add_int_value (builder, x + width);
          json_builder_add_int_value (builder, y + height);
          json_builder_end_array (builder);
          json_builder_end_object (builder);
        }
    }
  json_builder_end_array (builder);

  root = json_builder_get_root (builder);
  json_generator_set_root (generator, root);
  json_generator_set_pretty (generator, TRUE);
  return json_generator_to_data (generator, NULL);
}

guint32
app_grounding_color (guint index)
{
  return palette[index % G_N_ELEMENTS (palette)];
}

char *
app_grounding_wrap_prompt (AppPromptKind  kind,
                           const char    *text)
{
  g_autofree char *trimmed = g_strstrip (g_strdup (text != NULL ? text : ""));

  switch (kind)
    {
    case APP_PROMPT_PLAIN:
      return *trimmed != '\0' ? g_steal_pointer (&trimmed) : NULL;
    case APP_PROMPT_FIND:
      return *trimmed != '\0' ? g_strconcat ("<|ref|>", trimmed, "<|/ref|>", NULL) : NULL;
    case APP_PROMPT_GROUNDED_CAPTION:
      return g_strconcat ("<|grounding|>", *trimmed != '\0' ? trimmed : DEFAULT_CAPTION, NULL);
    default:
      g_return_val_if_reached (NULL);
    }
}

/* Whether the `n` bytes at `s` hold no grounding tag. */
static gboolean
free_of_tags (const char *s,
              gsize       n)
{
  for (gsize i = 0; i < n; i++)
    {
      gboolean is_prefix;

      if (s[i] == '<' && tag_at (s + i, n - i, &is_prefix) != TAG_NONE)
        return FALSE;
    }
  return TRUE;
}

char *
app_grounding_unwrap_prompt (const char    *prompt,
                             AppPromptKind *kind)
{
  g_autofree char *trimmed = g_strstrip (g_strdup (prompt != NULL ? prompt : ""));
  const char *ref = tags[TAG_REF].text, *ref_end = tags[TAG_REF_END].text;
  gsize len = strlen (trimmed);

  *kind = APP_PROMPT_PLAIN;
  if (g_str_has_prefix (trimmed, tags[TAG_GROUNDING].text))
    {
      char *rest = g_strstrip (g_strdup (trimmed + tags[TAG_GROUNDING].len));

      *kind = APP_PROMPT_GROUNDED_CAPTION;
      if (g_str_equal (rest, DEFAULT_CAPTION))
        rest[0] = '\0';
      return rest;
    }
  if (len > tags[TAG_REF].len + tags[TAG_REF_END].len && g_str_has_prefix (trimmed, ref) &&
      g_str_has_suffix (trimmed, ref_end) &&
      free_of_tags (trimmed + tags[TAG_REF].len,
                    len - tags[TAG_REF].len - tags[TAG_REF_END].len))
    {
      *kind = APP_PROMPT_FIND;
      return g_strndup (trimmed + tags[TAG_REF].len,
                        len - tags[TAG_REF].len - tags[TAG_REF_END].len);
    }
  return g_steal_pointer (&trimmed);
}

char *
app_grounding_plain_text (const char *text)
{
  GString *out = g_string_new (NULL);
  gsize len = text != NULL ? strlen (text) : 0;
  gboolean in_det = FALSE;

  for (gsize pos = 0; pos < len;)
    {
      gboolean is_prefix;
      Tag tag = text[pos] == '<' ? tag_at (text + pos, len - pos, &is_prefix) : TAG_NONE;

      if (tag != TAG_NONE)
        {
          if (tag == TAG_DET)
            in_det = TRUE;
          else if (tag == TAG_DET_END || tag == TAG_REF)
            in_det = FALSE;
          pos += tags[tag].len;
          continue;
        }
      if (!in_det)
        g_string_append_c (out, text[pos]);
      pos++;
    }
  return g_strstrip (g_string_free (out, FALSE));
}
