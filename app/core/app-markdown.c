/* app-markdown.c - shapes md4c's parse events into the AppMdBlock tree of app-markdown.h.
 *
 * md4c reports a document as nested enter/leave callbacks for blocks and spans plus text runs.
 * This file keeps a stack of the open container blocks (quotes, lists, list items) and one
 * buffer of Pango markup for the paragraph, heading or table cell being written, so each
 * callback only appends to the tree. Blocks are attached to their parent as soon as they open:
 * when the input is cut mid-way (a streamed answer) or md4c gives up, what was seen so far is
 * already a complete tree, and finishing the open buffers is all that is left to do.
 *
 * Everything that reaches the markup is escaped here, because GtkLabel trusts it: raw HTML is
 * disabled in md4c (it comes through as text), links get an <a> only for schemes the desktop
 * may open, and the text is made valid UTF-8 first so that escaping cannot fail.
 */

#define G_LOG_DOMAIN "sightline-markdown"

#include "app-markdown.h"

#include "app-grounding.h"

#include <md4c.h>
#include <string.h>

/* GitHub's dialect (tables, strikethrough, task lists, bare URLs as links) without raw HTML:
 * a model that writes <b> or <|ref|> means those characters, not tags. */
#define APP_MD_FLAGS (MD_DIALECT_GITHUB | MD_FLAG_NOHTML)

typedef struct
{
  GPtrArray *blocks;        /* the document's top-level blocks (the result) */
  GPtrArray *containers;    /* AppMdBlock* of open quotes, lists and items, innermost last */

  /* The inline content being written: a paragraph's or heading's markup (inline_block set),
   * or a table cell's (inline_block NULL). */
  GString *inline_buf;
  AppMdBlock *inline_block;
  GPtrArray *closers;       /* static closing tags of the open spans, innermost last */
  guint image_depth;        /* > 0 inside an image: its description is plain text */

  AppMdBlock *code_block;   /* the open code block and its text */
  GString *code;

  AppMdBlock *table;        /* the open table, the row being read and its cell count */
  int table_row;
  int table_col;
} Parser;

/* Named entities that models and people actually write. md4c hands over anything shaped like
 * an entity; the ones not listed here stay as the literal text, as browsers show them. */
static const struct
{
  const char *name;
  gunichar ch;
} named_entities[] = {
  { "amp", '&' }, { "lt", '<' }, { "gt", '>' }, { "quot", '"' }, { "apos", '\'' },
  { "nbsp", 0x00A0 }, { "ensp", 0x2002 }, { "emsp", 0x2003 }, { "thinsp", 0x2009 },
  { "shy", 0x00AD }, { "zwj", 0x200D }, { "zwnj", 0x200C },
  { "copy", 0x00A9 }, { "reg", 0x00AE }, { "trade", 0x2122 },
  { "hellip", 0x2026 }, { "mdash", 0x2014 }, { "ndash", 0x2013 },
  { "lsquo", 0x2018 }, { "rsquo", 0x2019 }, { "sbquo", 0x201A },
  { "ldquo", 0x201C }, { "rdquo", 0x201D }, { "bdquo", 0x201E },
  { "laquo", 0x00AB }, { "raquo", 0x00BB }, { "lsaquo", 0x2039 }, { "rsaquo", 0x203A },
  { "times", 0x00D7 }, { "divide", 0x00F7 }, { "plusmn", 0x00B1 }, { "minus", 0x2212 },
  { "deg", 0x00B0 }, { "middot", 0x00B7 }, { "bull", 0x2022 }, { "prime", 0x2032 },
  { "euro", 0x20AC }, { "pound", 0x00A3 }, { "yen", 0x00A5 }, { "cent", 0x00A2 },
  { "sect", 0x00A7 }, { "para", 0x00B6 }, { "dagger", 0x2020 }, { "Dagger", 0x2021 },
  { "iexcl", 0x00A1 }, { "iquest", 0x00BF }, { "micro", 0x00B5 },
  { "sup1", 0x00B9 }, { "sup2", 0x00B2 }, { "sup3", 0x00B3 },
  { "frac12", 0x00BD }, { "frac14", 0x00BC }, { "frac34", 0x00BE },
  { "larr", 0x2190 }, { "uarr", 0x2191 }, { "rarr", 0x2192 }, { "darr", 0x2193 },
  { "harr", 0x2194 }, { "lArr", 0x21D0 }, { "rArr", 0x21D2 }, { "hArr", 0x21D4 },
  { "le", 0x2264 }, { "ge", 0x2265 }, { "ne", 0x2260 }, { "asymp", 0x2248 },
  { "equiv", 0x2261 }, { "infin", 0x221E }, { "sum", 0x2211 }, { "prod", 0x220F },
  { "radic", 0x221A }, { "part", 0x2202 }, { "isin", 0x2208 }, { "forall", 0x2200 },
  { "exist", 0x2203 }, { "empty", 0x2205 }, { "nabla", 0x2207 }, { "and", 0x2227 },
  { "or", 0x2228 }, { "cap", 0x2229 }, { "cup", 0x222A }, { "int", 0x222B },
  { "alpha", 0x03B1 }, { "beta", 0x03B2 }, { "gamma", 0x03B3 }, { "delta", 0x03B4 },
  { "epsilon", 0x03B5 }, { "theta", 0x03B8 }, { "lambda", 0x03BB }, { "mu", 0x03BC },
  { "pi", 0x03C0 }, { "rho", 0x03C1 }, { "sigma", 0x03C3 }, { "tau", 0x03C4 },
  { "phi", 0x03C6 }, { "omega", 0x03C9 }, { "Gamma", 0x0393 }, { "Delta", 0x0394 },
  { "Theta", 0x0398 }, { "Lambda", 0x039B }, { "Pi", 0x03A0 }, { "Sigma", 0x03A3 },
  { "Phi", 0x03A6 }, { "Omega", 0x03A9 },
  { "check", 0x2713 }, { "cross", 0x2717 }, { "star", 0x2606 }, { "hearts", 0x2665 },
};

/* Code points that cannot appear in valid UTF-8 or in markup get the replacement character,
 * as CommonMark asks for &#0; and out-of-range references. */
static gunichar
sanitize_code_point (gunichar ch)
{
  if (ch == 0 || ch > 0x10FFFF || (ch >= 0xD800 && ch <= 0xDFFF) ||
      (ch & 0xFFFE) == 0xFFFE || (ch >= 0xFDD0 && ch <= 0xFDEF))
    return 0xFFFD;
  return ch;
}

/* Appends the character that the entity `text` ("&amp;", "&#65;", "&#x41;") stands for, or the
 * entity's own text when it names nothing known. The output is plain text, not markup. */
static void
append_entity (GString    *out,
               const char *text,
               gsize       size)
{
  if (size >= 4 && text[0] == '&' && text[1] == '#' && text[size - 1] == ';')
    {
      gboolean hex = text[2] == 'x' || text[2] == 'X';
      const char *digits = text + (hex ? 3 : 2);
      const char *end = text + size - 1;
      guint64 value = 0;

      /* md4c has checked the shape (at most 7 decimal or 6 hex digits), so this cannot
       * overflow; the loop still stops at the first stray character. */
      for (const char *p = digits; p < end; p++)
        {
          int digit = hex ? g_ascii_xdigit_value (*p) : g_ascii_digit_value (*p);

          if (digit < 0 || value > 0x10FFFF)
            {
              value = 0;
              break;
            }
          value = value * (hex ? 16 : 10) + (guint64) digit;
        }

      g_string_append_unichar (out, sanitize_code_point (value > 0x10FFFF ? 0 : (gunichar) value));
      return;
    }

  if (size >= 3 && text[0] == '&' && text[size - 1] == ';')
    {
      for (gsize i = 0; i < G_N_ELEMENTS (named_entities); i++)
        {
          const char *name = named_entities[i].name;

          if (strlen (name) == size - 2 && memcmp (name, text + 1, size - 2) == 0)
            {
              g_string_append_unichar (out, named_entities[i].ch);
              return;
            }
        }
    }

  g_string_append_len (out, text, (gssize) size);
}

static void
append_escaped (GString    *out,
                const char *text,
                gsize       size)
{
  g_autofree char *escaped = g_markup_escape_text (text, (gssize) size);

  g_string_append (out, escaped);
}

/* An md4c attribute (a link target, a code block's language) as plain text, entities decoded. */
static char *
attribute_to_string (const MD_ATTRIBUTE *attr)
{
  GString *out = g_string_new (NULL);

  if (attr->text == NULL)
    return g_string_free (out, FALSE);

  for (int i = 0; attr->substr_offsets[i] < attr->size; i++)
    {
      const char *piece = attr->text + attr->substr_offsets[i];
      gsize len = attr->substr_offsets[i + 1] - attr->substr_offsets[i];

      switch (attr->substr_types[i])
        {
        case MD_TEXT_ENTITY:
          append_entity (out, piece, len);
          break;
        case MD_TEXT_NULLCHAR:
          g_string_append_unichar (out, 0xFFFD);
          break;
        default:
          g_string_append_len (out, piece, (gssize) len);
          break;
        }
    }

  return g_string_free (out, FALSE);
}

/* Only targets the desktop can open safely become links; relative and anchor targets have no
 * base to resolve against in a chat, and javascript:, file: and the like must never run. */
static gboolean
link_is_allowed (const char *href)
{
  const char *allowed[] = { "http", "https", "mailto" };
  const char *scheme = g_uri_peek_scheme (href);   /* interned, lower case */

  if (scheme == NULL)
    return FALSE;

  for (gsize i = 0; i < G_N_ELEMENTS (allowed); i++)
    if (g_str_equal (scheme, allowed[i]))
      return TRUE;

  return FALSE;
}

/* A grounding chip (see app-grounding.h): `sightline-ref:N?color=RRGGBB[&active=1]` becomes a
 * pill in the label's colour, with black or white text for contrast, its link reduced to
 * `sightline-ref:N` for the view. Narrow no-break spaces pad the pill, which Pango cannot. An
 * active chip (its boxes are hovered) is outlined above and below. Returns the closer, or NULL
 * when `href` is not a chip. */
static const char *
chip_open (const char *href,
           GString    *out)
{
  int ref = app_grounding_ref_from_uri (href);
  const char *query = strchr (href, '?');
  const char *color = query ? strstr (query, "color=") : NULL;
  guint32 rgb = 0x808080;
  double luma;

  if (ref < 0)
    return NULL;
  if (color && strspn (color + 6, "0123456789abcdefABCDEF") >= 6)
    {
      char hex[7];

      memcpy (hex, color + 6, 6);
      hex[6] = '\0';
      rgb = (guint32) g_ascii_strtoull (hex, NULL, 16);
    }
  luma = (0.2126 * (rgb >> 16) + 0.7152 * ((rgb >> 8) & 0xff) + 0.0722 * (rgb & 0xff)) / 255;
  g_string_append_printf (out, "<a href=\"" APP_GROUNDING_SCHEME ":%d\">"
                          "<span bgcolor=\"#%06x\" foreground=\"%s\" %s>\u202f",
                          ref, rgb, luma > 0.5 ? "#000000" : "#ffffff",
                          query && strstr (query, "active=1")
                            ? "underline=\"single\" overline=\"single\""
                            : "underline=\"none\"");
  return "\u202f</span></a>";
}

static AppMdBlock *
block_new (AppMdKind kind)
{
  AppMdBlock *block = g_new0 (AppMdBlock, 1);

  block->kind = kind;
  block->checked = -1;
  if (kind == APP_MD_QUOTE || kind == APP_MD_LIST || kind == APP_MD_LIST_ITEM)
    block->children = g_ptr_array_new_with_free_func ((GDestroyNotify) app_md_block_free);
  if (kind == APP_MD_PARAGRAPH || kind == APP_MD_HEADING)
    block->markup = g_strdup ("");
  if (kind == APP_MD_CODE)
    block->code = g_strdup ("");

  return block;
}

void
app_md_block_free (AppMdBlock *block)
{
  if (block == NULL)
    return;

  g_free (block->markup);
  g_free (block->code);
  g_free (block->language);
  g_clear_pointer (&block->children, g_ptr_array_unref);
  g_clear_pointer (&block->cells, g_ptr_array_unref);
  g_free (block->align);
  g_free (block);
}

/* Attaches a new block to the innermost open container, or to the document. */
static AppMdBlock *
parser_add_block (Parser    *parser,
                  AppMdKind  kind)
{
  AppMdBlock *block = block_new (kind);
  GPtrArray *siblings = parser->blocks;

  if (parser->containers->len > 0)
    {
      AppMdBlock *container = g_ptr_array_index (parser->containers,
                                                 parser->containers->len - 1);
      siblings = container->children;
    }

  g_ptr_array_add (siblings, block);
  return block;
}

static void
parser_begin_inline (Parser     *parser,
                     AppMdBlock *block)
{
  parser->inline_buf = g_string_new (NULL);
  parser->inline_block = block;
  parser->image_depth = 0;
}

/* Closes the paragraph, heading or cell being written, with any span md4c left open. */
static void
parser_end_inline (Parser *parser)
{
  char *markup;

  if (parser->inline_buf == NULL)
    return;

  while (parser->closers->len > 0)
    g_string_append (parser->inline_buf,
                     g_ptr_array_steal_index (parser->closers, parser->closers->len - 1));
  parser->image_depth = 0;

  markup = g_string_free (g_steal_pointer (&parser->inline_buf), FALSE);

  if (parser->inline_block != NULL)
    {
      g_free (parser->inline_block->markup);
      parser->inline_block->markup = markup;
      parser->inline_block = NULL;
    }
  else if (parser->table != NULL && parser->table_col < parser->table->n_columns)
    {
      g_ptr_array_add (parser->table->cells, markup);
      parser->table_col++;
    }
  else
    {
      /* a cell beyond the header's columns: GitHub drops it too */
      g_free (markup);
    }
}

/* Tight list items hold their text without a paragraph block around it; give it one, so
 * every piece of text in the tree is a paragraph's, a heading's or a cell's. */
static GString *
parser_get_inline (Parser *parser)
{
  if (parser->inline_buf == NULL)
    parser_begin_inline (parser, parser_add_block (parser, APP_MD_PARAGRAPH));

  return parser->inline_buf;
}

static void
parser_end_code (Parser *parser)
{
  char *code;

  if (parser->code_block == NULL)
    return;

  /* md4c ends every line with '\n'; the block's text is the lines without the last one */
  if (parser->code->len > 0 && parser->code->str[parser->code->len - 1] == '\n')
    g_string_truncate (parser->code, parser->code->len - 1);

  code = g_string_free (g_steal_pointer (&parser->code), FALSE);
  g_free (parser->code_block->code);
  parser->code_block->code = code;
  parser->code_block = NULL;
}

/* Fills the rows that md4c did not (it normally does) so that cells is always rectangular. */
static void
parser_end_table_row (Parser *parser)
{
  AppMdBlock *table = parser->table;

  if (table == NULL || parser->table_row < 0)
    return;

  while ((int) table->cells->len < (parser->table_row + 1) * table->n_columns)
    g_ptr_array_add (table->cells, g_strdup (""));

  parser->table_row = -1;
}

static void
parser_end_table (Parser *parser)
{
  if (parser->table == NULL)
    return;

  parser_end_table_row (parser);
  parser->table = NULL;
}

static int
on_enter_block (MD_BLOCKTYPE  type,
                void         *detail,
                void         *user_data)
{
  Parser *parser = user_data;
  AppMdBlock *block;

  /* any new block ends the implicit paragraph of a tight list item */
  parser_end_inline (parser);

  switch (type)
    {
    case MD_BLOCK_DOC:
      break;

    case MD_BLOCK_QUOTE:
      block = parser_add_block (parser, APP_MD_QUOTE);
      g_ptr_array_add (parser->containers, block);
      break;

    case MD_BLOCK_UL:
      block = parser_add_block (parser, APP_MD_LIST);
      g_ptr_array_add (parser->containers, block);
      break;

    case MD_BLOCK_OL:
      {
        const MD_BLOCK_OL_DETAIL *ol = detail;

        block = parser_add_block (parser, APP_MD_LIST);
        block->ordered = TRUE;
        block->start = (int) MIN (ol->start, (unsigned) G_MAXINT);
        g_ptr_array_add (parser->containers, block);
      }
      break;

    case MD_BLOCK_LI:
      {
        const MD_BLOCK_LI_DETAIL *li = detail;

        block = parser_add_block (parser, APP_MD_LIST_ITEM);
        if (li->is_task)
          block->checked = li->task_mark == 'x' || li->task_mark == 'X';
        g_ptr_array_add (parser->containers, block);
      }
      break;

    case MD_BLOCK_HR:
      parser_add_block (parser, APP_MD_RULE);
      break;

    case MD_BLOCK_H:
      {
        const MD_BLOCK_H_DETAIL *h = detail;

        block = parser_add_block (parser, APP_MD_HEADING);
        block->level = (int) CLAMP (h->level, 1, 6);
        parser_begin_inline (parser, block);
      }
      break;

    case MD_BLOCK_CODE:
      {
        const MD_BLOCK_CODE_DETAIL *code = detail;
        char *language = attribute_to_string (&code->lang);

        block = parser_add_block (parser, APP_MD_CODE);
        if (*language != '\0')
          block->language = language;
        else
          g_free (language);
        parser->code_block = block;
        parser->code = g_string_new (NULL);
      }
      break;

    case MD_BLOCK_HTML:
      /* not produced with MD_FLAG_NOHTML; were it ever, its text would show as text */
    case MD_BLOCK_P:
      parser_begin_inline (parser, parser_add_block (parser, APP_MD_PARAGRAPH));
      break;

    case MD_BLOCK_TABLE:
      {
        const MD_BLOCK_TABLE_DETAIL *table = detail;

        parser_end_table (parser);
        block = parser_add_block (parser, APP_MD_TABLE);
        block->n_columns = (int) CLAMP (table->col_count, 1, 1000);
        block->cells = g_ptr_array_new_with_free_func (g_free);
        block->align = g_strnfill ((gsize) block->n_columns, '-');
        parser->table = block;
        parser->table_row = -1;
      }
      break;

    case MD_BLOCK_TR:
      if (parser->table != NULL)
        {
          parser_end_table_row (parser);
          parser->table_row = parser->table->n_rows++;
          parser->table_col = 0;
        }
      break;

    case MD_BLOCK_TH:
    case MD_BLOCK_TD:
      if (parser->table != NULL)
        {
          const MD_BLOCK_TD_DETAIL *td = detail;

          /* the alignment is the column's, set by the delimiter row: read it off the header */
          if (type == MD_BLOCK_TH && parser->table_col < parser->table->n_columns)
            {
              char align[] = { '-', 'l', 'c', 'r' };

              if ((unsigned) td->align < G_N_ELEMENTS (align))
                parser->table->align[parser->table_col] = align[td->align];
            }
          parser_begin_inline (parser, NULL);
        }
      break;

    case MD_BLOCK_THEAD:
    case MD_BLOCK_TBODY:
    default:
      break;
    }

  return 0;
}

static int
on_leave_block (MD_BLOCKTYPE  type,
                void         *detail,
                void         *user_data)
{
  Parser *parser = user_data;

  switch (type)
    {
    case MD_BLOCK_QUOTE:
    case MD_BLOCK_UL:
    case MD_BLOCK_OL:
    case MD_BLOCK_LI:
      parser_end_inline (parser);
      if (parser->containers->len > 0)
        g_ptr_array_set_size (parser->containers, parser->containers->len - 1);
      break;

    case MD_BLOCK_CODE:
      parser_end_code (parser);
      break;

    case MD_BLOCK_TR:
      parser_end_inline (parser);
      parser_end_table_row (parser);
      break;

    case MD_BLOCK_TABLE:
      parser_end_inline (parser);
      parser_end_table (parser);
      break;

    default:
      parser_end_inline (parser);
      break;
    }

  return 0;
}

static int
on_enter_span (MD_SPANTYPE  type,
               void        *detail,
               void        *user_data)
{
  Parser *parser = user_data;
  GString *out = parser_get_inline (parser);
  const char *open = NULL;
  const char *close = "";

  /* an image shows as its description; formatting inside it would be lost in a tooltip-less
   * label anyway, so it is plain text */
  if (parser->image_depth > 0)
    {
      if (type == MD_SPAN_IMG)
        parser->image_depth++;
      g_ptr_array_add (parser->closers, (gpointer) "");
      return 0;
    }

  switch (type)
    {
    case MD_SPAN_EM:
      open = "<i>", close = "</i>";
      break;
    case MD_SPAN_STRONG:
      open = "<b>", close = "</b>";
      break;
    case MD_SPAN_DEL:
      open = "<s>", close = "</s>";
      break;
    case MD_SPAN_U:
      open = "<u>", close = "</u>";
      break;
    case MD_SPAN_CODE:
      open = "<tt>", close = "</tt>";
      break;
    case MD_SPAN_IMG:
      parser->image_depth++;
      break;
    case MD_SPAN_A:
      {
        const MD_SPAN_A_DETAIL *a = detail;
        g_autofree char *href = attribute_to_string (&a->href);
        const char *chip_close = chip_open (href, out);

        if (chip_close)
          close = chip_close;
        else if (link_is_allowed (href))
          {
            g_autofree char *escaped = g_markup_escape_text (href, -1);

            g_string_append_printf (out, "<a href=\"%s\">", escaped);
            close = "</a>";
          }
      }
      break;
    default:
      break;
    }

  if (open != NULL)
    g_string_append (out, open);
  g_ptr_array_add (parser->closers, (gpointer) close);

  return 0;
}

static int
on_leave_span (MD_SPANTYPE  type,
               void        *detail,
               void        *user_data)
{
  Parser *parser = user_data;

  if (parser->inline_buf == NULL || parser->closers->len == 0)
    return 0;

  g_string_append (parser->inline_buf,
                   g_ptr_array_steal_index (parser->closers, parser->closers->len - 1));
  if (type == MD_SPAN_IMG && parser->image_depth > 0)
    parser->image_depth--;

  return 0;
}

static int
on_text (MD_TEXTTYPE  type,
         const char  *text,
         MD_SIZE      size,
         void        *user_data)
{
  Parser *parser = user_data;
  GString *out;

  if (parser->code_block != NULL)
    {
      if (type == MD_TEXT_NULLCHAR)
        g_string_append_unichar (parser->code, 0xFFFD);
      else
        g_string_append_len (parser->code, text, (gssize) size);
      return 0;
    }

  out = parser_get_inline (parser);

  switch (type)
    {
    case MD_TEXT_NULLCHAR:
      g_string_append_unichar (out, 0xFFFD);
      break;

    case MD_TEXT_BR:
      g_string_append_c (out, '\n');
      break;

    case MD_TEXT_SOFTBR:
      g_string_append_c (out, ' ');
      break;

    case MD_TEXT_ENTITY:
      {
        g_autoptr(GString) decoded = g_string_new (NULL);

        append_entity (decoded, text, size);
        append_escaped (out, decoded->str, decoded->len);
      }
      break;

    case MD_TEXT_NORMAL:
    case MD_TEXT_CODE:
    case MD_TEXT_HTML:
    case MD_TEXT_LATEXMATH:
    default:
      append_escaped (out, text, size);
      break;
    }

  return 0;
}

GPtrArray *
app_markdown_parse (const char *text)
{
  const MD_PARSER md_parser = {
    .abi_version = 0,
    .flags = APP_MD_FLAGS,
    .enter_block = on_enter_block,
    .leave_block = on_leave_block,
    .enter_span = on_enter_span,
    .leave_span = on_leave_span,
    .text = on_text,
  };
  g_autofree char *valid = NULL;
  Parser parser = { 0 };
  gsize size;

  if (text == NULL)
    text = "";

  /* The markup escaper and GtkLabel need UTF-8; a stream cut inside a character must not
   * make the whole answer disappear, so repair rather than refuse. */
  if (!g_utf8_validate (text, -1, NULL))
    text = valid = g_utf8_make_valid (text, -1);

  size = strlen (text);

  parser.blocks = g_ptr_array_new_with_free_func ((GDestroyNotify) app_md_block_free);
  parser.containers = g_ptr_array_new ();
  parser.closers = g_ptr_array_new ();
  parser.table_row = -1;

  /* md4c's offsets are unsigned ints: a longer text (never an answer) is cut */
  md_parse (text, (MD_SIZE) MIN (size, (gsize) G_MAXUINT32 / 2), &md_parser, &parser);

  /* md4c closes every block it opened, unless it failed part-way: finish the open buffers so
   * the tree is whole either way */
  parser_end_inline (&parser);
  parser_end_code (&parser);
  parser_end_table (&parser);

  g_ptr_array_unref (parser.containers);
  g_ptr_array_unref (parser.closers);

  return parser.blocks;
}

static gboolean
block_arrays_equal (GPtrArray *a,
                    GPtrArray *b)
{
  if (a == NULL || b == NULL)
    return a == b;
  if (a->len != b->len)
    return FALSE;

  for (guint i = 0; i < a->len; i++)
    if (!app_md_block_equal (g_ptr_array_index (a, i), g_ptr_array_index (b, i)))
      return FALSE;

  return TRUE;
}

static gboolean
string_arrays_equal (GPtrArray *a,
                     GPtrArray *b)
{
  if (a == NULL || b == NULL)
    return a == b;
  if (a->len != b->len)
    return FALSE;

  for (guint i = 0; i < a->len; i++)
    if (g_strcmp0 (g_ptr_array_index (a, i), g_ptr_array_index (b, i)) != 0)
      return FALSE;

  return TRUE;
}

gboolean
app_md_block_equal (const AppMdBlock *a,
                    const AppMdBlock *b)
{
  if (a == b)
    return TRUE;
  if (a == NULL || b == NULL)
    return FALSE;

  return a->kind == b->kind &&
         a->level == b->level &&
         a->ordered == b->ordered &&
         a->start == b->start &&
         a->checked == b->checked &&
         a->n_columns == b->n_columns &&
         a->n_rows == b->n_rows &&
         g_strcmp0 (a->markup, b->markup) == 0 &&
         g_strcmp0 (a->code, b->code) == 0 &&
         g_strcmp0 (a->language, b->language) == 0 &&
         g_strcmp0 (a->align, b->align) == 0 &&
         string_arrays_equal (a->cells, b->cells) &&
         block_arrays_equal (a->children, b->children);
}
