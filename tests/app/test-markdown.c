/* test-markdown.c - the Markdown block tree of app/core/app-markdown.c, without a display.
 *
 * Each construct is checked through a compact dump of the tree, so that a test states the
 * exact markup GtkLabel will get: escaping and link filtering are where a chat app can be
 * tricked into showing or opening something else than what the model wrote. The streaming
 * test parses every prefix of a long answer, as the app does while tokens arrive, and checks
 * that the markup stays well-formed whatever the cut.
 */

#include "app-markdown.h"

#include <string.h>

/* The tree as one line: P(markup) H2(markup) CODE[lang](code) QUOTE{...} UL{...} OL3{...}
 * ITEM{...} ITEM[x]{...} ITEM[ ]{...} TABLE[lcr-](cell|cell|...) with "/" between rows, HR. */
static void
dump_blocks (GString   *out,
             GPtrArray *blocks);

static void
dump_block (GString          *out,
            const AppMdBlock *block)
{
  switch (block->kind)
    {
    case APP_MD_PARAGRAPH:
      g_string_append_printf (out, "P(%s)", block->markup);
      break;
    case APP_MD_HEADING:
      g_string_append_printf (out, "H%d(%s)", block->level, block->markup);
      break;
    case APP_MD_CODE:
      g_string_append_printf (out, "CODE[%s](%s)",
                              block->language ? block->language : "", block->code);
      break;
    case APP_MD_QUOTE:
      g_string_append (out, "QUOTE");
      dump_blocks (out, block->children);
      break;
    case APP_MD_LIST:
      if (block->ordered)
        g_string_append_printf (out, "OL%d", block->start);
      else
        g_string_append (out, "UL");
      dump_blocks (out, block->children);
      break;
    case APP_MD_LIST_ITEM:
      g_string_append (out, "ITEM");
      if (block->checked >= 0)
        g_string_append (out, block->checked ? "[x]" : "[ ]");
      dump_blocks (out, block->children);
      break;
    case APP_MD_TABLE:
      g_string_append_printf (out, "TABLE[%s](", block->align);
      for (guint i = 0; i < block->cells->len; i++)
        {
          if (i > 0)
            g_string_append (out, i % (guint) block->n_columns == 0 ? "/" : "|");
          g_string_append (out, g_ptr_array_index (block->cells, i));
        }
      g_string_append (out, ")");
      break;
    case APP_MD_RULE:
      g_string_append (out, "HR");
      break;
    default:
      g_assert_not_reached ();
    }
}

static void
dump_blocks (GString   *out,
             GPtrArray *blocks)
{
  g_string_append (out, "{");
  for (guint i = 0; i < blocks->len; i++)
    {
      if (i > 0)
        g_string_append (out, " ");
      dump_block (out, g_ptr_array_index (blocks, i));
    }
  g_string_append (out, "}");
}

/* The dump of the document, without the outer braces. */
static char *
dump (const char *markdown)
{
  g_autoptr(GPtrArray) blocks = app_markdown_parse (markdown);
  GString *out = g_string_new (NULL);

  dump_blocks (out, blocks);
  g_string_erase (out, 0, 1);
  g_string_truncate (out, out->len - 1);

  return g_string_free (out, FALSE);
}

#define assert_dump(markdown, expected) \
  G_STMT_START { \
    g_autofree char *_dump = dump (markdown); \
    g_assert_cmpstr (_dump, ==, expected); \
  } G_STMT_END

/* Markup checks: Pango is not linked here, but its markup is XML, so GMarkup can tell whether
 * a string is well-formed and uses only the tags the parser is allowed to emit. */

static void
markup_start_element (GMarkupParseContext  *context,
                      const char           *element,
                      const char          **names,
                      const char          **values,
                      gpointer              user_data,
                      GError              **error)
{
  const char *plain[] = { "markup", "b", "i", "s", "tt" };

  for (gsize i = 0; i < G_N_ELEMENTS (plain); i++)
    {
      if (g_str_equal (element, plain[i]))
        {
          if (names[0] != NULL)
            g_set_error (error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT,
                         "attribute on <%s>", element);
          return;
        }
    }

  if (g_str_equal (element, "a"))
    {
      if (names[0] == NULL || !g_str_equal (names[0], "href") || names[1] != NULL ||
          !(g_str_has_prefix (values[0], "http://") || g_str_has_prefix (values[0], "https://") ||
            g_str_has_prefix (values[0], "mailto:")))
        g_set_error (error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT, "bad link");
      return;
    }

  g_set_error (error, G_MARKUP_ERROR, G_MARKUP_ERROR_UNKNOWN_ELEMENT, "<%s>", element);
}

static gboolean
markup_is_valid (const char  *markup,
                 GError     **error)
{
  const GMarkupParser parser = { .start_element = markup_start_element };
  g_autoptr(GMarkupParseContext) context = NULL;
  g_autofree char *document = g_strconcat ("<markup>", markup, "</markup>", NULL);

  context = g_markup_parse_context_new (&parser, 0, NULL, NULL);
  return g_markup_parse_context_parse (context, document, -1, error) &&
         g_markup_parse_context_end_parse (context, error);
}

/* Checks every invariant of the tree that the view relies on. */
static void
check_blocks (GPtrArray  *blocks,
              const char *input)
{
  for (guint i = 0; i < blocks->len; i++)
    {
      const AppMdBlock *block = g_ptr_array_index (blocks, i);
      g_autoptr(GError) error = NULL;

      g_assert_true (app_md_block_equal (block, block));

      switch (block->kind)
        {
        case APP_MD_PARAGRAPH:
        case APP_MD_HEADING:
          if (!markup_is_valid (block->markup, &error))
            g_error ("invalid markup %s (%s) for input:\n%s", block->markup, error->message, input);
          g_assert_null (block->children);
          if (block->kind == APP_MD_HEADING)
            {
              g_assert_cmpint (block->level, >=, 1);
              g_assert_cmpint (block->level, <=, 6);
            }
          break;
        case APP_MD_CODE:
          g_assert_nonnull (block->code);
          g_assert_true (g_utf8_validate (block->code, -1, NULL));
          g_assert_true (block->language == NULL || *block->language != '\0');
          break;
        case APP_MD_QUOTE:
        case APP_MD_LIST:
        case APP_MD_LIST_ITEM:
          g_assert_nonnull (block->children);
          for (guint j = 0; j < block->children->len; j++)
            {
              const AppMdBlock *child = g_ptr_array_index (block->children, j);

              g_assert_true ((block->kind == APP_MD_LIST) == (child->kind == APP_MD_LIST_ITEM));
            }
          check_blocks (block->children, input);
          break;
        case APP_MD_TABLE:
          g_assert_cmpint (block->n_columns, >, 0);
          g_assert_cmpint (block->n_rows, >, 0);
          g_assert_cmpuint (block->cells->len, ==, (guint) (block->n_columns * block->n_rows));
          g_assert_cmpuint (strlen (block->align), ==, (gsize) block->n_columns);
          for (guint j = 0; j < block->cells->len; j++)
            if (!markup_is_valid (g_ptr_array_index (block->cells, j), &error))
              g_error ("invalid cell markup (%s) for input:\n%s", error->message, input);
          break;
        case APP_MD_RULE:
          break;
        default:
          g_assert_not_reached ();
        }
    }
}

static void
test_empty (void)
{
  g_autoptr(GPtrArray) blocks = app_markdown_parse ("");
  g_autoptr(GPtrArray) null_blocks = app_markdown_parse (NULL);

  g_assert_cmpuint (blocks->len, ==, 0);
  g_assert_cmpuint (null_blocks->len, ==, 0);
  assert_dump ("\n\n   \n", "");
}

static void
test_paragraphs (void)
{
  assert_dump ("Hello world", "P(Hello world)");
  assert_dump ("one\ntwo", "P(one two)");
  assert_dump ("one  \ntwo\\\nthree", "P(one\ntwo\nthree)");
  assert_dump ("first\n\nsecond", "P(first) P(second)");
  assert_dump ("  indented a little", "P(indented a little)");
}

static void
test_inline (void)
{
  assert_dump ("*em* _em_ **strong** __strong__ ~~del~~ ~del~ `code`",
               "P(<i>em</i> <i>em</i> <b>strong</b> <b>strong</b> <s>del</s> <s>del</s> "
               "<tt>code</tt>)");
  assert_dump ("***both*** **bold *and em***",
               "P(<i><b>both</b></i> <b>bold <i>and em</i></b>)");
  assert_dump ("`a <b> & c` and ``x ` y``", "P(<tt>a &lt;b&gt; &amp; c</tt> and <tt>x ` y</tt>)");
  assert_dump ("**not closed", "P(**not closed)");
  assert_dump ("snake_case_name and 2*3*4", "P(snake_case_name and 2<i>3</i>4)");
  assert_dump ("\\*literal\\*", "P(*literal*)");
}

static void
test_escaping (void)
{
  assert_dump ("a < b > c & d \"q\" 'a'",
               "P(a &lt; b &gt; c &amp; d &quot;q&quot; &apos;a&apos;)");
  assert_dump ("**<i>x</i>**", "P(<b>&lt;i&gt;x&lt;/i&gt;</b>)");
  /* control characters become character references that GMarkup (and so Pango) accepts */
  assert_dump ("bell\x07here", "P(bell&#x7;here)");
}

static void
test_entities (void)
{
  assert_dump ("&amp; &lt;tag&gt; &quot; &copy; &mdash; &hellip; &nbsp;.",
               "P(&amp; &lt;tag&gt; &quot; \u00a9 \u2014 \u2026 \u00a0.)");
  assert_dump ("&#65;&#x42;&#X43; &#x1F600; &#0; &#xD800;",
               "P(ABC \U0001F600 \uFFFD \uFFFD)");
  assert_dump ("&unknownentity; &amp", "P(&amp;unknownentity; &amp;amp)");
  assert_dump ("`&amp;`", "P(<tt>&amp;amp;</tt>)");
}

static void
test_links (void)
{
  assert_dump ("[Site](https://example.org/a?b=1&c=2 \"title\")",
               "P(<a href=\"https://example.org/a?b=1&amp;c=2\">Site</a>)");
  assert_dump ("[x](http://example.org) [m](mailto:me@example.org) [H](HTTPS://EXAMPLE.ORG)",
               "P(<a href=\"http://example.org\">x</a> <a href=\"mailto:me@example.org\">m</a> "
               "<a href=\"HTTPS://EXAMPLE.ORG\">H</a>)");
  assert_dump ("[**bold** link](https://e.org)",
               "P(<a href=\"https://e.org\"><b>bold</b> link</a>)");
  /* quotes and entities in the target */
  assert_dump ("[q](<https://e.org/\"x\">) [e](https://e.org/?a&amp;b)",
               "P(<a href=\"https://e.org/&quot;x&quot;\">q</a> "
               "<a href=\"https://e.org/?a&amp;b\">e</a>)");
  /* autolinks, with and without angle brackets */
  assert_dump ("<https://a.org> see www.b.org or https://c.org/x.",
               "P(<a href=\"https://a.org\">https://a.org</a> see "
               "<a href=\"http://www.b.org\">www.b.org</a> or "
               "<a href=\"https://c.org/x\">https://c.org/x</a>.)");
  assert_dump ("mail me@example.org",
               "P(mail <a href=\"mailto:me@example.org\">me@example.org</a>)");
  /* what the desktop should not open, or cannot resolve, is text */
  assert_dump ("[run](javascript:alert(1)) [f](file:///etc/passwd) [d](data:text/html,x)",
               "P(run f d)");
  assert_dump ("[rel](docs/page.md) [anchor](#section) [empty]()", "P(rel anchor empty)");
  assert_dump ("[ js ](JaVaScRiPt:alert) [ws]( javascript:x )", "P( js  ws)");
  /* reference links */
  assert_dump ("[ref]\n\n[ref]: https://e.org/r", "P(<a href=\"https://e.org/r\">ref</a>)");
}

static void
test_images (void)
{
  assert_dump ("![a *cat* & dog](cat.png \"t\")", "P(a cat &amp; dog)");
  assert_dump ("[![logo](l.png)](https://e.org)", "P(<a href=\"https://e.org\">logo</a>)");
  assert_dump ("![outer ![inner](i.png)](o.png) after", "P(outer inner after)");
}

static void
test_raw_html (void)
{
  assert_dump ("<b>bold?</b> <script>alert(1)</script>",
               "P(&lt;b&gt;bold?&lt;/b&gt; &lt;script&gt;alert(1)&lt;/script&gt;)");
  assert_dump ("<div>\nblock\n</div>", "P(&lt;div&gt; block &lt;/div&gt;)");
  assert_dump ("<!-- comment -->", "P(&lt;!-- comment --&gt;)");
  assert_dump ("<span foreground=\"red\">x</span>",
               "P(&lt;span foreground=&quot;red&quot;&gt;x&lt;/span&gt;)");
}

static void
test_special_tokens (void)
{
  assert_dump ("<|ref|>x<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>",
               "P(&lt;|ref|&gt;x&lt;|/ref|&gt;&lt;|det|&gt;[[1, 2, 3, 4]]&lt;|/det|&gt;)");
  assert_dump ("<|grounding|>Find <|ref|>the cat<|/ref|>.",
               "P(&lt;|grounding|&gt;Find &lt;|ref|&gt;the cat&lt;|/ref|&gt;.)");
  assert_dump ("<｜end▁of▁sentence｜>", "P(&lt;｜end▁of▁sentence｜&gt;)");
}

static void
test_headings (void)
{
  assert_dump ("# One\n## Two\n### Three *em*\n#### Four\n##### Five\n###### Six",
               "H1(One) H2(Two) H3(Three <i>em</i>) H4(Four) H5(Five) H6(Six)");
  assert_dump ("####### seven", "P(####### seven)");
  assert_dump ("Title\n=====\n\nSub\n---", "H1(Title) H2(Sub)");
  assert_dump ("# closed ##", "H1(closed)");
  assert_dump ("#hashtag", "P(#hashtag)");
}

static void
test_quotes (void)
{
  assert_dump ("> quoted *text*\n> more", "QUOTE{P(quoted <i>text</i> more)}");
  assert_dump ("> outer\n>\n> > inner\n\nafter",
               "QUOTE{P(outer) QUOTE{P(inner)}} P(after)");
  assert_dump ("> - a\n> - b", "QUOTE{UL{ITEM{P(a)} ITEM{P(b)}}}");
  assert_dump ("> ```\n> code\n> ```", "QUOTE{CODE[](code)}");
}

static void
test_lists (void)
{
  assert_dump ("- a\n- b\n* c", "UL{ITEM{P(a)} ITEM{P(b)}} UL{ITEM{P(c)}}");
  assert_dump ("1. one\n2. two", "OL1{ITEM{P(one)} ITEM{P(two)}}");
  assert_dump ("3) three\n4) four", "OL3{ITEM{P(three)} ITEM{P(four)}}");
  assert_dump ("- a\n  - b\n    1. c\n  - d\n- e",
               "UL{ITEM{P(a) UL{ITEM{P(b) OL1{ITEM{P(c)}}} ITEM{P(d)}}} ITEM{P(e)}}");
  /* only a list that starts at 1 may interrupt a paragraph, so this one needs a blank line */
  assert_dump ("7. x\n   10. no list", "OL7{ITEM{P(x 10. no list)}}");
  assert_dump ("7. x\n\n   10. nested start",
               "OL7{ITEM{P(x) OL10{ITEM{P(nested start)}}}}");
  /* a loose list: paragraphs, several per item */
  assert_dump ("- a\n\n  a2\n\n- b", "UL{ITEM{P(a) P(a2)} ITEM{P(b)}}");
  assert_dump ("- **bold** item\n- `code`\n\n  ```sh\n  ls\n  ```",
               "UL{ITEM{P(<b>bold</b> item)} ITEM{P(<tt>code</tt>) CODE[sh](ls)}}");
  assert_dump ("- ", "UL{ITEM{}}");
  assert_dump ("-", "UL{ITEM{}}");
}

static void
test_tasks (void)
{
  assert_dump ("- [x] done\n- [ ] todo\n- [X] Done\n- plain",
               "UL{ITEM[x]{P(done)} ITEM[ ]{P(todo)} ITEM[x]{P(Done)} ITEM{P(plain)}}");
  assert_dump ("1. [x] first\n2. [ ] second", "OL1{ITEM[x]{P(first)} ITEM[ ]{P(second)}}");
  assert_dump ("- [ ] parent\n  - [x] child", "UL{ITEM[ ]{P(parent) UL{ITEM[x]{P(child)}}}}");
  assert_dump ("- [y] not a task", "UL{ITEM{P([y] not a task)}}");
}

static void
test_tables (void)
{
  g_autoptr(GPtrArray) blocks = NULL;
  const AppMdBlock *table;

  assert_dump ("| Name | Qty | Price | Note |\n"
               "|:-----|:---:|------:|------|\n"
               "| *apple* | 3 | 1.50 | a \\| b |\n"
               "| `x|y` | 10 |\n",
               "TABLE[lcr-](Name|Qty|Price|Note/<i>apple</i>|3|1.50|a | b/<tt>x|y</tt>|10||)");
  assert_dump ("a | b\n--- | ---\n1 | 2 | 3", "TABLE[--](a|b/1|2)");
  assert_dump ("| h1 | h2 |\n| --- | --- |", "TABLE[--](h1|h2)");
  assert_dump ("| <b> | & |\n| --- | --- |\n| [l](https://e.org) | [j](javascript:x) |",
               "TABLE[--](&lt;b&gt;|&amp;/<a href=\"https://e.org\">l</a>|j)");
  assert_dump ("text\n\n| a |\n| --- |\n| 1 |\n\nafter", "P(text) TABLE[-](a/1) P(after)");

  blocks = app_markdown_parse ("| a | b |\n| :-- | --: |\n| 1 | 2 |\n| 3 | 4 |");
  g_assert_cmpuint (blocks->len, ==, 1);
  table = g_ptr_array_index (blocks, 0);
  g_assert_cmpint (table->kind, ==, APP_MD_TABLE);
  g_assert_cmpint (table->n_columns, ==, 2);
  g_assert_cmpint (table->n_rows, ==, 3);
  g_assert_cmpstr (table->align, ==, "lr");
  g_assert_cmpuint (table->cells->len, ==, 6);
  g_assert_cmpstr (g_ptr_array_index (table->cells, 5), ==, "4");
}

static void
test_code (void)
{
  g_autoptr(GPtrArray) blocks = NULL;
  const AppMdBlock *code;

  assert_dump ("```python\ndef f(x):\n    return x < 1 and x > 0 & 1\n```",
               "CODE[python](def f(x):\n    return x < 1 and x > 0 & 1)");
  assert_dump ("~~~ c {.numberLines}\nint a;\n~~~", "CODE[c](int a;)");
  assert_dump ("```\nplain\n\n\nwith blank lines\n```", "CODE[](plain\n\n\nwith blank lines)");
  assert_dump ("```\n```", "CODE[]()");
  assert_dump ("```c&#43;&#43;\nx\n```", "CODE[c++](x)");
  assert_dump ("para\n\n    indented code\n      more\n\nafter",
               "P(para) CODE[](indented code\n  more) P(after)");
  assert_dump ("```md\n# not a heading\n<|ref|> **x**\n```",
               "CODE[md](# not a heading\n<|ref|> **x**)");
  assert_dump ("````\n```\ninner fence\n```\n````", "CODE[](```\ninner fence\n```)");

  blocks = app_markdown_parse ("Intro:\n\n```json\n{\"a\": [1, 2]}\n```\n");
  g_assert_cmpuint (blocks->len, ==, 2);
  code = g_ptr_array_index (blocks, 1);
  g_assert_cmpint (code->kind, ==, APP_MD_CODE);
  g_assert_cmpstr (code->language, ==, "json");
  g_assert_cmpstr (code->code, ==, "{\"a\": [1, 2]}");
  g_assert_null (code->markup);
  g_assert_null (code->children);
}

static void
test_rules (void)
{
  assert_dump ("a\n\n---\n\nb\n\n***\n___", "P(a) HR P(b) HR HR");
  assert_dump ("- - -", "HR");
}

/* What a stream cut at an awkward place looks like. */
static void
test_partial (void)
{
  assert_dump ("*", "UL{ITEM{}}");
  assert_dump ("a *", "P(a *)");
  assert_dump ("**bo", "P(**bo)");
  assert_dump ("`unclosed code", "P(`unclosed code)");
  assert_dump ("```py", "CODE[py]()");
  assert_dump ("```py\nprint(", "CODE[py](print()");
  assert_dump ("```py\nprint(1)\n", "CODE[py](print(1))");
  assert_dump ("```py\nprint(1)\n``", "CODE[py](print(1)\n``)");
  assert_dump ("| a | b |\n| --", "P(| a | b | | --)");
  assert_dump ("| a | b |\n| --- | --- |\n| 1", "TABLE[--](a|b/1|)");
  assert_dump ("[link](https://exa", "P([link](https://exa)");
  assert_dump ("[link", "P([link)");
  assert_dump ("&am", "P(&amp;am)");
  assert_dump ("&amp", "P(&amp;amp)");
  assert_dump ("- [", "UL{ITEM{P([)}}");
  assert_dump ("- [x", "UL{ITEM{P([x)}}");
  assert_dump ("- [x]", "UL{ITEM[x]{}}");
  assert_dump ("1.", "OL1{ITEM{}}");
  assert_dump ("> ", "QUOTE{}");
  assert_dump ("#", "H1()");
  assert_dump ("<|ref", "P(&lt;|ref)");
  assert_dump ("![alt](", "P(![alt]()");
}

static void
test_invalid_utf8 (void)
{
  g_autoptr(GPtrArray) blocks = app_markdown_parse ("caf\xc3 **x** \xff end");

  check_blocks (blocks, "invalid UTF-8");
  assert_dump ("caf\xc3", "P(caf\uFFFD)");
  assert_dump ("```\n\xe2\x82\n```", "CODE[](\uFFFD\uFFFD)");
}

/* A long answer of the kind the model writes, mixing every construct. */
static const char long_answer[] =
  "# Analysis of the image\n"
  "\n"
  "The photo shows a **street sign** at a crossing in *Zürich* — with ~~two~~ three lines of "
  "text, written in `DejaVu Sans`. See [the manual](https://example.org/manual?a=1&b=2) or "
  "https://example.org/raw for details, & note that 2 < 3 > 1.\n"
  "Line two of the paragraph,  \n"
  "after a hard break. Ünïcödé: 日本語テキスト, emoji 🚏🚦, RTL שלום.\n"
  "\n"
  "## Objects found\n"
  "\n"
  "1. The sign <|ref|>sign<|/ref|><|det|>[[120, 40, 380, 210]]<|/det|>\n"
  "2. A *pole*:\n"
  "   - metal, **grey**\n"
  "   - about 3&nbsp;m tall &mdash; estimated\n"
  "     1. from the shadow\n"
  "     2. from the door\n"
  "3. A bicycle ![bike](bike.png)\n"
  "\n"
  "### Checklist\n"
  "\n"
  "- [x] read the text\n"
  "- [ ] check the `colour`\n"
  "- [ ] look for <b>hidden</b> tags & entities &copy;\n"
  "\n"
  "> **Note:** the lower line is partly hidden.\n"
  "> > A nested quote with a [bad link](javascript:alert(1)).\n"
  ">\n"
  "> - quoted list item\n"
  "\n"
  "| Object | Count | Confidence | Notes |\n"
  "|:-------|:-----:|-----------:|-------|\n"
  "| sign | 1 | 0.97 | text \\| arrows |\n"
  "| pole | 1 | 0.91 | *grey* |\n"
  "| bike | 2 | 0.55 | `partly` hidden |\n"
  "\n"
  "---\n"
  "\n"
  "```python\n"
  "def area(box):\n"
  "    \"\"\"Area of <x0, y0, x1, y1> & more.\"\"\"\n"
  "    x0, y0, x1, y1 = box\n"
  "    return (x1 - x0) * (y1 - y0)\n"
  "```\n"
  "\n"
  "    indented code block\n"
  "    second line\n"
  "\n"
  "~~~\n"
  "tilde fence with ``` inside\n"
  "~~~\n"
  "\n"
  "Setext heading\n"
  "--------------\n"
  "\n"
  "Final words with an autolink <https://example.org/end>, mail@example.org, "
  "&#x1F600; and a trailing lone *";

static void
test_stream_prefixes (void)
{
  gsize length = strlen (long_answer);
  g_autoptr(GPtrArray) full = app_markdown_parse (long_answer);
  guint n_prefixes = 0;

  g_assert_true (g_utf8_validate (long_answer, -1, NULL));
  check_blocks (full, long_answer);
  g_assert_cmpuint (full->len, >=, 12);

  for (gsize end = 0; end <= length; end++)
    {
      g_autofree char *prefix = NULL;
      g_autoptr(GPtrArray) blocks = NULL;
      g_autoptr(GPtrArray) again = NULL;

      /* a stream delivers whole characters */
      if (end < length && (long_answer[end] & 0xC0) == 0x80)
        continue;

      prefix = g_strndup (long_answer, end);
      blocks = app_markdown_parse (prefix);
      check_blocks (blocks, prefix);

      /* the same text gives an equal tree, block by block */
      again = app_markdown_parse (prefix);
      g_assert_cmpuint (blocks->len, ==, again->len);
      for (guint i = 0; i < blocks->len; i++)
        g_assert_true (app_md_block_equal (g_ptr_array_index (blocks, i),
                                           g_ptr_array_index (again, i)));
      n_prefixes++;
    }

  g_assert_cmpuint (n_prefixes, >, 1000);
}

static gboolean
trees_equal (GPtrArray *a,
             GPtrArray *b)
{
  if (a->len != b->len)
    return FALSE;
  for (guint i = 0; i < a->len; i++)
    if (!app_md_block_equal (g_ptr_array_index (a, i), g_ptr_array_index (b, i)))
      return FALSE;
  return TRUE;
}

static void
test_equal (void)
{
  const char *variants[] = {
    "Some **changed** text",
    "# Title",
    "## Title",
    "```c\nint x;\n```",
    "```cpp\nint x;\n```",
    "```c\nint y;\n```",
    "- a\n- b",
    "1. a\n2. b",
    "3. a\n4. b",
    "- [ ] a\n- b",
    "- [x] a\n- b",
    "- a\n  - b",
    "> q",
    "> > q",
    "| a | b |\n| --- | --- |\n| 1 | 2 |",
    "| a | b |\n| :-- | --- |\n| 1 | 2 |",
    "| a | b |\n| --- | --- |\n| 1 | 3 |",
    "| a | b |\n| --- | --- |\n| 1 | 2 |\n| 3 | 4 |",
    "---",
  };
  g_autoptr(GPtrArray) doc = app_markdown_parse (long_answer);
  g_autoptr(GPtrArray) same = app_markdown_parse (long_answer);
  g_autofree char *changed_text = g_strdup (long_answer);
  g_autoptr(GPtrArray) changed = NULL;
  guint n_different = 0;
  char *word;

  g_assert_false (app_md_block_equal (NULL, g_ptr_array_index (doc, 0)));
  g_assert_true (app_md_block_equal (NULL, NULL));
  g_assert_true (trees_equal (doc, same));

  /* one word changed deep inside the nested list: only that top-level block differs */
  word = strstr (changed_text, "shadow");
  g_assert_nonnull (word);
  memcpy (word, "window", 6);
  changed = app_markdown_parse (changed_text);
  g_assert_cmpuint (changed->len, ==, doc->len);
  for (guint i = 0; i < doc->len; i++)
    if (!app_md_block_equal (g_ptr_array_index (doc, i), g_ptr_array_index (changed, i)))
      {
        const AppMdBlock *block = g_ptr_array_index (doc, i);

        g_assert_cmpint (block->kind, ==, APP_MD_LIST);
        g_assert_true (block->ordered);
        n_different++;
      }
  g_assert_cmpuint (n_different, ==, 1);

  /* every pair of different documents differs, every document equals itself */
  for (gsize i = 0; i < G_N_ELEMENTS (variants); i++)
    for (gsize j = 0; j < G_N_ELEMENTS (variants); j++)
      {
        g_autoptr(GPtrArray) a = app_markdown_parse (variants[i]);
        g_autoptr(GPtrArray) b = app_markdown_parse (variants[j]);

        if (i == j)
          g_assert_true (trees_equal (a, b));
        else if (trees_equal (a, b))
          g_error ("'%s' and '%s' parse as equal", variants[i], variants[j]);
      }
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/app/markdown/empty", test_empty);
  g_test_add_func ("/app/markdown/paragraphs", test_paragraphs);
  g_test_add_func ("/app/markdown/inline", test_inline);
  g_test_add_func ("/app/markdown/escaping", test_escaping);
  g_test_add_func ("/app/markdown/entities", test_entities);
  g_test_add_func ("/app/markdown/links", test_links);
  g_test_add_func ("/app/markdown/images", test_images);
  g_test_add_func ("/app/markdown/raw-html", test_raw_html);
  g_test_add_func ("/app/markdown/special-tokens", test_special_tokens);
  g_test_add_func ("/app/markdown/headings", test_headings);
  g_test_add_func ("/app/markdown/quotes", test_quotes);
  g_test_add_func ("/app/markdown/lists", test_lists);
  g_test_add_func ("/app/markdown/tasks", test_tasks);
  g_test_add_func ("/app/markdown/tables", test_tables);
  g_test_add_func ("/app/markdown/code", test_code);
  g_test_add_func ("/app/markdown/rules", test_rules);
  g_test_add_func ("/app/markdown/partial", test_partial);
  g_test_add_func ("/app/markdown/invalid-utf8", test_invalid_utf8);
  g_test_add_func ("/app/markdown/stream-prefixes", test_stream_prefixes);
  g_test_add_func ("/app/markdown/equal", test_equal);

  return g_test_run ();
}
