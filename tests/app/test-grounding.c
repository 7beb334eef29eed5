/* test-grounding.c - DeepSeek-VL2's grounding tags (app/core/app-grounding.c), without a display.
 *
 * The model's answers are the input: the official examples, then the same answers written
 * badly in every way a sampler can (counts, ranges, brackets, tags out of order), each case
 * stating the exact refs and Markdown it must give. A parse is shown as a compact dump, so a
 * test reads like the answer it checks. Streaming matters as much as the finished answer: the
 * app parses every prefix while tokens arrive, so the prefix tests check that no raw tag
 * flashes up and that a box, once drawn, never moves or disappears. The pixel tests pin the
 * official demo's mapping, down to images smaller than the grid and a rotated JPEG.
 */

#include "app-grounding.h"
#include "app-markdown.h"
#include "image-file.h"

#include <gdk-pixbuf/gdk-pixbuf.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

static const char *const all_tags[] = {
  "<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>", "<|grounding|>",
};

/* The refs as one line: `label#color(x1,y1,x2,y2)(...)`, `~` for no label, `*` after the
 * colour for a partial ref, refs separated by " | ". */
static char *
dump_refs (const AppGrounding *g)
{
  GString *out = g_string_new (NULL);

  for (guint i = 0; i < g->refs->len; i++)
    {
      const AppGroundingRef *ref = g_ptr_array_index (g->refs, i);

      if (i > 0)
        g_string_append (out, " | ");
      g_string_append_printf (out, "%s#%u%s", ref->label ? ref->label : "~", ref->color,
                              ref->partial ? "*" : "");
      for (guint j = 0; j < ref->boxes->len; j++)
        {
          const AppGroundingBox *b = &g_array_index (ref->boxes, AppGroundingBox, j);

          g_string_append_printf (out, "(%g,%g,%g,%g)", b->x1, b->y1, b->x2, b->y2);
        }
    }

  return g_string_free (out, FALSE);
}

static gboolean
has_complete_tag (const char *text)
{
  for (gsize i = 0; i < G_N_ELEMENTS (all_tags); i++)
    if (strstr (text, all_tags[i]) != NULL)
      return TRUE;
  return FALSE;
}

/* The boxes of all refs, in order. */
static GArray *
all_boxes (const AppGrounding *g)
{
  GArray *boxes = g_array_new (FALSE, FALSE, sizeof (AppGroundingBox));

  for (guint i = 0; i < g->refs->len; i++)
    {
      const AppGroundingRef *ref = g_ptr_array_index (g->refs, i);

      g_array_append_vals (boxes, ref->boxes->data, ref->boxes->len);
    }
  return boxes;
}

static gboolean
boxes_equal (const AppGroundingBox *a,
             const AppGroundingBox *b)
{
  return a->x1 == b->x1 && a->y1 == b->y1 && a->x2 == b->x2 && a->y2 == b->y2;
}

static guint
count_substrings (const char *haystack,
                  const char *needle)
{
  guint n = 0;

  for (const char *p = strstr (haystack, needle); p != NULL; p = strstr (p + 1, needle))
    n++;
  return n;
}

/* What every parse must satisfy, whatever the input. */
static void
check_invariants (const AppGrounding *g,
                  const char         *input)
{
  guint n_boxes = 0;
  g_autofree char *same = app_grounding_markdown (g, -1);

  g_assert_nonnull (g->markdown);
  g_assert_nonnull (g->refs);
  if (has_complete_tag (g->markdown))
    g_error ("markdown %s of input %s holds a tag", g->markdown, input);
  g_assert_cmpstr (same, ==, g->markdown);

  for (guint i = 0; i < g->refs->len; i++)
    {
      const AppGroundingRef *ref = g_ptr_array_index (g->refs, i);
      g_autofree char *uri = g_strdup_printf ("(sightline-ref:%u?color=%06x)", i,
                                              (guint) app_grounding_color (ref->color));
      g_autofree char *active = app_grounding_markdown (g, (int) i);

      if (ref->label != NULL)
        {
          g_assert_true (g_utf8_validate (ref->label, -1, NULL));
          g_assert_cmpstr (ref->label, !=, "");
          g_assert_null (strchr (ref->label, '\n'));
          g_assert_nonnull (strstr (g->markdown, uri));
          g_assert_cmpuint (count_substrings (active, "&active=1"), ==, 1);
          g_assert_cmpuint (strlen (active), ==, strlen (g->markdown) + strlen ("&active=1"));
        }
      else
        {
          g_assert_cmpstr (active, ==, g->markdown);
        }

      for (guint j = 0; j < ref->boxes->len; j++)
        {
          const AppGroundingBox *b = &g_array_index (ref->boxes, AppGroundingBox, j);

          g_assert_cmpfloat (0, <=, b->x1);
          g_assert_cmpfloat (b->x1, <, b->x2);
          g_assert_cmpfloat (b->x2, <=, APP_GROUNDING_GRID);
          g_assert_cmpfloat (0, <=, b->y1);
          g_assert_cmpfloat (b->y1, <, b->y2);
          g_assert_cmpfloat (b->y2, <=, APP_GROUNDING_GRID);
        }
      n_boxes += ref->boxes->len;
    }
  g_assert_cmpuint (g->n_boxes, ==, n_boxes);
}

static void
assert_parse_impl (const char *text,
                   gboolean    streaming,
                   const char *markdown,
                   const char *refs)
{
  g_autoptr(AppGrounding) g = app_grounding_parse (text, streaming);
  g_autofree char *dump = dump_refs (g);

  check_invariants (g, text);
  if (g_strcmp0 (g->markdown, markdown) != 0 || g_strcmp0 (dump, refs) != 0)
    g_error ("input %s (streaming %d)\n  markdown %s\n  expected %s\n  refs %s\n  expected %s",
             text, streaming, g->markdown, markdown, dump, refs);
}

/* The exact Markdown and refs of `text`, streamed or not. */
#define assert_parse(text, streaming, markdown, refs) \
  assert_parse_impl (text, streaming, markdown, refs)

#define GIRAFFE "<|ref|>The giraffe at the back.<|/ref|><|det|>[[580, 270, 999, 900]]<|/det|>"
#define CAPTION \
  "<|ref|>Two giraffes<|/ref|><|det|>[[70, 70, 620, 999], [580, 270, 945, 888]]<|/det|> " \
  "stand on <|ref|>grass<|/ref|><|det|>[[0, 600, 999, 999]]<|/det|>."

/* The chip of refs[n] in colour c, as the parser writes it. */
#define RED "e01b24"
#define BLUE "3584e4"
#define GREEN "2ec27e"
#define YELLOW "f5c211"
#define CHIP(label, n, color) "[" label "](sightline-ref:" #n "?color=" color ")"

static void
test_no_tags (void)
{
  assert_parse ("", FALSE, "", "");
  assert_parse ("", TRUE, "", "");
  assert_parse (NULL, FALSE, "", "");
  assert_parse ("Just **Markdown** with a < b and |x| > 0.", FALSE,
                "Just **Markdown** with a < b and |x| > 0.", "");
  assert_parse ("Just **Markdown** with a < b and |x| > 0.", TRUE,
                "Just **Markdown** with a < b and |x| > 0.", "");
}

static void
test_giraffe (void)
{
  g_autoptr(AppGrounding) question = app_grounding_parse (
    "<image>\n<|ref|>The giraffe at the back.<|/ref|>.", FALSE);
  g_autoptr(AppGrounding) answer = app_grounding_parse (GIRAFFE, FALSE);
  const AppGroundingRef *ref;
  const AppGroundingBox *box;

  /* the official README's example, both sides */
  g_assert_cmpstr (question->markdown, ==,
                   "<image>\n" CHIP ("The giraffe at the back\\.", 0, RED) ".");
  g_assert_cmpuint (question->n_boxes, ==, 0);

  g_assert_cmpstr (answer->markdown, ==, CHIP ("The giraffe at the back\\.", 0, RED));
  g_assert_cmpuint (answer->refs->len, ==, 1);
  g_assert_cmpuint (answer->n_boxes, ==, 1);
  g_assert_false (answer->grounding);
  ref = g_ptr_array_index (answer->refs, 0);
  g_assert_cmpstr (ref->label, ==, "The giraffe at the back.");
  g_assert_cmpuint (ref->color, ==, 0);
  g_assert_false (ref->partial);
  g_assert_cmpuint (ref->boxes->len, ==, 1);
  box = &g_array_index (ref->boxes, AppGroundingBox, 0);
  g_assert_cmpfloat (box->x1, ==, 580);
  g_assert_cmpfloat (box->y1, ==, 270);
  g_assert_cmpfloat (box->x2, ==, 999);
  g_assert_cmpfloat (box->y2, ==, 900);
}

static void
test_caption (void)
{
  assert_parse (CAPTION, FALSE,
                CHIP ("Two giraffes", 0, RED) " stand on " CHIP ("grass", 1, BLUE) ".",
                "Two giraffes#0(70,70,620,999)(580,270,945,888) | grass#1(0,600,999,999)");

  assert_parse ("In the picture, <|ref|>a giraffe<|/ref|><|det|>[[70, 70, 620, 999]]<|/det|> "
                "bends toward <|ref|>a zebra<|/ref|><|det|>[[600, 400, 950, 990]]<|/det|>.\n\n"
                "- **Sky:** <|ref|>clouds<|/ref|><|det|>[[0, 0, 999, 300], [500, 10, 800, 200]]"
                "<|/det|>\n- *Ground*", FALSE,
                "In the picture, " CHIP ("a giraffe", 0, RED) " bends toward "
                CHIP ("a zebra", 1, BLUE) ".\n\n- **Sky:** " CHIP ("clouds", 2, GREEN)
                "\n- *Ground*",
                "a giraffe#0(70,70,620,999) | a zebra#1(600,400,950,990) | "
                "clouds#2(0,0,999,300)(500,10,800,200)");
}

static void
test_several_boxes (void)
{
  assert_parse ("<|ref|>cars<|/ref|><|det|>[[1, 2, 3, 4], [10, 20, 30, 40],[100,200,300,400]]"
                "<|/det|>", FALSE,
                CHIP ("cars", 0, RED),
                "cars#0(1,2,3,4)(10,20,30,40)(100,200,300,400)");
}

static void
test_unlabelled (void)
{
  assert_parse ("Boxes: <|det|>[[10, 20, 30, 40]]<|/det|> done.", FALSE,
                "Boxes:  done.", "~#0(10,20,30,40)");
  /* two in a row, apart only by white space: one box set */
  assert_parse ("<|det|>[[10, 20, 30, 40]]<|/det|>\n <|det|>[[50, 60, 70, 80]]<|/det|>", FALSE,
                "\n ", "~#0(10,20,30,40)(50,60,70,80)");
  /* apart by text: two, each with its own colour */
  assert_parse ("<|det|>[[10, 20, 30, 40]]<|/det|> and <|det|>[[50, 60, 70, 80]]<|/det|>", FALSE,
                " and ", "~#0(10,20,30,40) | ~#1(50,60,70,80)");
  /* an empty label: no chip, but the boxes are kept */
  assert_parse ("<|ref|> \n <|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>x", FALSE, "x", "~#0(1,2,3,4)");
}

static void
test_colors (void)
{
  assert_parse ("<|ref|>The cat<|/ref|><|det|>[[1,1,2,2]]<|/det|> and "
                "<|ref|>a dog<|/ref|><|det|>[[3,3,4,4]]<|/det|> and "
                "<|ref|>the CAT<|/ref|><|det|>[[5,5,6,6]]<|/det|> and "
                "<|det|>[[7,7,8,8]]<|/det|> and <|ref|>bird<|/ref|>", FALSE,
                CHIP ("The cat", 0, RED) " and " CHIP ("a dog", 1, BLUE) " and "
                CHIP ("the CAT", 2, RED) " and  and " CHIP ("bird", 4, YELLOW),
                "The cat#0(1,1,2,2) | a dog#1(3,3,4,4) | the CAT#0(5,5,6,6) | ~#2(7,7,8,8) | "
                "bird#3");

  /* the palette */
  g_assert_cmphex (app_grounding_color (0), ==, 0xe01b24);
  g_assert_cmphex (app_grounding_color (1), ==, 0x3584e4);
  g_assert_cmphex (app_grounding_color (2), ==, 0x2ec27e);
  g_assert_cmphex (app_grounding_color (3), ==, 0xf5c211);
  g_assert_cmphex (app_grounding_color (4), ==, 0x9141ac);
  g_assert_cmphex (app_grounding_color (5), ==, 0xff7800);
  g_assert_cmphex (app_grounding_color (6), ==, 0x986a44);
  g_assert_cmphex (app_grounding_color (7), ==, 0xc061cb);
  g_assert_cmphex (app_grounding_color (8), ==, 0xe01b24);
  g_assert_cmphex (app_grounding_color (G_MAXUINT), ==, 0xc061cb);
}

static void
test_grounding_flag (void)
{
  g_autoptr(AppGrounding) question = app_grounding_parse (
    "<|grounding|>Describe this image.", FALSE);
  g_autoptr(AppGrounding) plain = app_grounding_parse ("Describe this image.", FALSE);
  g_autoptr(AppGrounding) inside = app_grounding_parse ("<|ref|>ca<|grounding|>t<|/ref|>", TRUE);

  g_assert_true (question->grounding);
  g_assert_cmpstr (question->markdown, ==, "Describe this image.");
  g_assert_cmpuint (question->refs->len, ==, 0);
  g_assert_false (plain->grounding);
  g_assert_cmpstr (plain->markdown, ==, "Describe this image.");

  /* removed inside a label too */
  g_assert_true (inside->grounding);
  g_assert_cmpstr (inside->markdown, ==, CHIP ("cat", 0, RED));
}

/* `det` as the content of a labelled `<|det|>` followed by text: its refs dump. */
static void
assert_det (const char *det,
            const char *refs)
{
  g_autofree char *text = g_strconcat ("<|ref|>x<|/ref|><|det|>", det, "<|/det|> after", NULL);

  assert_parse (text, FALSE, CHIP ("x", 0, RED) " after", refs);
  assert_parse (text, TRUE, CHIP ("x", 0, RED) " after", refs);
}

static void
test_malformed_boxes (void)
{
  assert_det ("[[1, 2, 3]]", "x#0");
  assert_det ("[[1, 2, 3, 4, 5]]", "x#0");
  assert_det ("[[]]", "x#0");
  assert_det ("", "x#0");
  assert_det ("[[100, 200, 9999, 300]]", "x#0(100,200,999,300)");
  assert_det ("[[-50, 200, 300, 400]]", "x#0(0,200,300,400)");
  assert_det ("[[-5.5, 200, 300.25, 400]]", "x#0(0,200,300.25,400)");
  assert_det ("[[1.5, 2.25, 3, 4]]", "x#0(1.5,2.25,3,4)");
  assert_det ("[[99999999999999999999999999999999999999, 1, 2, 3]]", "x#0(2,1,999,3)");
  assert_det ("[[[1, 2, 3, 4]]]", "x#0(1,2,3,4)");
  assert_det ("[[580, 270, 999, 900", "x#0(580,270,999,900)");
  assert_det ("[580, 270, 999, 900]]]", "x#0(580,270,999,900)");
  assert_det ("580, 270, 999, 900", "x#0");   /* no group at all */
  assert_det ("[[999, 900, 580, 270]]", "x#0(580,270,999,900)");
  assert_det ("[[580, 900, 999, 270]]", "x#0(580,270,999,900)");
  assert_det ("[[5, 5, 5, 9]]", "x#0");
  assert_det ("[[1, 2, 3, 2]]", "x#0");
  assert_det ("[[1000, 1, 2000, 5]]", "x#0");  /* both clamped to 999 */
  assert_det ("[[-1, 1, -9, 5]]", "x#0");      /* both clamped to 0 */
  assert_det ("[[x=580; y=270 -> 999 ,, 900 px]]", "x#0(580,270,999,900)");
  assert_det ("[[1. 2 .3 4]]", "x#0(1,2,3,4)");
  assert_det ("[[1,2,3,4],[5,6]]", "x#0(1,2,3,4)");
  assert_det ("[[1,2,3,4] [5,6,7,8", "x#0(1,2,3,4)(5,6,7,8)");
  assert_det ("[1,2,[3,4,5,6]", "x#0(3,4,5,6)");
  assert_det ("[1,2,3,4]\n[5,6,7,8]", "x#0(1,2,3,4)(5,6,7,8)");
  assert_det ("[[1,2,3,4]] <b> [5,6,7,8] < 9 >", "x#0(1,2,3,4)(5,6,7,8)");
  assert_det ("[[1,2,3,4]]<|/ref|><|grounding|>[[5,6,7,8]]", "x#0(1,2,3,4)(5,6,7,8)");
}

static void
test_malformed_tags (void)
{
  /* stray closing tags are removed, the text around them kept */
  assert_parse ("a<|/ref|>b<|/det|>c", FALSE, "abc", "");
  /* a second <|ref|> abandons the first, whose text is kept as text */
  assert_parse ("<|ref|>first <|ref|>second<|/ref|><|det|>[[1,2,3,4]]<|/det|> end", FALSE,
                "first " CHIP ("second", 0, RED) " end", "second#0(1,2,3,4)");
  /* <|det|> closes an open label */
  assert_parse ("<|ref|>cat<|det|>[[1,2,3,4]]<|/det|> end", FALSE,
                CHIP ("cat", 0, RED) " end", "cat#0(1,2,3,4)");
  /* a label the model gave no box */
  assert_parse ("<|ref|>cat<|/ref|> sits.", FALSE, CHIP ("cat", 0, RED) " sits.", "cat#0");
  /* text between a label and its boxes */
  assert_parse ("<|ref|>cat<|/ref|> is at <|det|>[[1,2,3,4]]<|/det|>.", FALSE,
                CHIP ("cat", 0, RED) " is at .", "cat#0(1,2,3,4)");
  /* a second list after text belongs to nobody */
  assert_parse ("<|ref|>cat<|/ref|><|det|>[[1,2,3,4]]<|/det|> and <|det|>[[5,6,7,8]]<|/det|>.",
                FALSE, CHIP ("cat", 0, RED) " and .", "cat#0(1,2,3,4) | ~#1(5,6,7,8)");
  /* <|ref|> and <|det|> inside an open <|det|> close it first */
  assert_parse ("<|det|>[[1,2,3,4]]<|ref|>dog<|/ref|> runs", FALSE,
                CHIP ("dog", 1, BLUE) " runs", "~#0(1,2,3,4) | dog#1");
  assert_parse ("<|ref|>cat<|/ref|><|det|>[[1,2,3,4]<|det|>[[5,6,7,8]]<|/det|> x", FALSE,
                CHIP ("cat", 0, RED) " x", "cat#0(1,2,3,4)(5,6,7,8)");
  assert_parse ("<|ref|>cat<|/ref|><|det|>[[1,2,3,4<|ref|>dog<|/ref|> x", FALSE,
                CHIP ("cat", 0, RED) CHIP ("dog", 1, BLUE) " x", "cat#0(1,2,3,4) | dog#1");
  /* labels: trimmed, on one line, valid UTF-8 */
  assert_parse ("<|ref|>\n big\ncat \r\n<|/ref|>", FALSE, CHIP ("big cat", 0, RED), "big cat#0");
  assert_parse ("<|ref|>\xff\xfe<|/ref|> \xff", FALSE,
                CHIP ("\xef\xbf\xbd\xef\xbf\xbd", 0, RED) " \xff",
                "\xef\xbf\xbd\xef\xbf\xbd#0");

  /* an open label at the end */
  assert_parse ("Look: <|ref|>the cat", FALSE, "Look: " CHIP ("the cat", 0, RED), "the cat#0");
  assert_parse ("Look: <|ref|>the cat", TRUE, "Look: " CHIP ("the cat", 0, RED), "the cat#0*");
  assert_parse ("Look: <|ref|> ", TRUE, "Look: ", "~#0*");
  /* an open <|det|> at the end: finished groups only */
  assert_parse ("A <|ref|>cat<|/ref|><|det|>[[1,2,3,4], [5,6,7,8", FALSE,
                "A " CHIP ("cat", 0, RED), "cat#0(1,2,3,4)");
  assert_parse ("A <|ref|>cat<|/ref|><|det|>[[1,2,3,4], [5,6,7,8", TRUE,
                "A " CHIP ("cat", 0, RED), "cat#0*(1,2,3,4)");
  assert_parse ("A <|det|>[[1,2,3,4], [5,6,7,8]", TRUE, "A ", "~#0*(1,2,3,4)(5,6,7,8)");
  /* an open <|det|> whose brackets closed: a finished answer shows the text after them */
  assert_parse ("A <|ref|>cat<|/ref|><|det|>[[1,2,3,4]] sits <|grounding|>here.", FALSE,
                "A " CHIP ("cat", 0, RED) " sits here.", "cat#0(1,2,3,4)");
  assert_parse ("A <|ref|>cat<|/ref|><|det|>[[1,2,3,4]] sits here.", TRUE,
                "A " CHIP ("cat", 0, RED), "cat#0*(1,2,3,4)");
  assert_parse ("A <|det|>[[1,2,3,4]] [x] y", FALSE, "A  y", "~#0(1,2,3,4)");

  /* text after each of these is never lost */
  assert_parse ("<|/ref|>one <|/det|>two <|ref|>a<|ref|>b<|/ref|>three <|ref|>c<|det|>"
                "[[1,2,3]<|/det|>four <|det|>[[-1,9999,5,5]]]]<|/det|>five", FALSE,
                "one two a" CHIP ("b", 0, RED) "three " CHIP ("c", 1, BLUE) "four five",
                "b#0 | c#1 | ~#2(0,5,5,999)");
}

/* Removing a tag must not make a new one, and a chip must stay a link. */
static void
test_repairs (void)
{
  assert_parse ("<|de<|/ref|>t|> and <|re<|grounding|>f|>!", FALSE,
                "<\\|det|> and <\\|ref|>!", "");
  assert_parse ("<|<|det|>[[1,2,3,4]]<|/det|>ref|>", FALSE, "<\\|ref|>", "~#0(1,2,3,4)");
  /* an abandoned label's text, itself joined by a removed tag */
  assert_parse ("<|ref|><|d<|/det|>et|><|ref|>x", FALSE,
                "<\\|det|>" CHIP ("x", 0, RED), "x#0");
  /* `!` before a chip would make it an image; an odd backslash would escape its `[` */
  assert_parse ("Look!<|ref|>cat<|/ref|>", FALSE, "Look\\!" CHIP ("cat", 0, RED), "cat#0");
  assert_parse ("Look\\!<|ref|>cat<|/ref|>", FALSE, "Look\\!" CHIP ("cat", 0, RED), "cat#0");
  assert_parse ("a\\<|ref|>cat<|/ref|>", FALSE, "a\\\\" CHIP ("cat", 0, RED), "cat#0");
  assert_parse ("a\\\\<|ref|>cat<|/ref|>", FALSE, "a\\\\" CHIP ("cat", 0, RED), "cat#0");
}

/* The tail of a streamed text that may become a tag is hidden, and only then. */
static void
test_stream_tail (void)
{
  assert_parse ("Hello <", TRUE, "Hello ", "");
  assert_parse ("Hello <|", TRUE, "Hello ", "");
  assert_parse ("Hello <|de", TRUE, "Hello ", "");
  assert_parse ("Hello <|/det|", TRUE, "Hello ", "");
  assert_parse ("Hello <|groundi", TRUE, "Hello ", "");
  assert_parse ("Hello <|de", FALSE, "Hello <|de", "");
  assert_parse ("Hello <|dex", TRUE, "Hello <|dex", "");
  assert_parse ("a <3", TRUE, "a <3", "");
  assert_parse ("a <<", TRUE, "a <", "");
  assert_parse ("<|ref|>cat<|/re", TRUE, CHIP ("cat", 0, RED), "cat#0*");
  assert_parse ("<|ref|>cat<|/re", FALSE, CHIP ("cat\\<\\|/re", 0, RED), "cat<|/re#0");
  assert_parse ("<|ref|>cat<|/ref|><|det|>[[1,2,3,4]]<|/de", TRUE,
                CHIP ("cat", 0, RED), "cat#0*(1,2,3,4)");
  assert_parse ("<|ref|>cat<|/ref|><|det|>[[1,2,3,4<|/de", TRUE, CHIP ("cat", 0, RED), "cat#0*");
  assert_parse ("<|ref|>cat<|/ref|><|det|>[[1,2,3,4<|/de", FALSE, CHIP ("cat", 0, RED), "cat#0");
}

/* Answers whose every prefix is parsed as the app does while they stream. None of them holds a
 * `<|` that is not a tag. */
static const char *const streamed_answers[] = {
  GIRAFFE,
  CAPTION,
  "<|grounding|>In the picture, <|ref|>a giraffe<|/ref|><|det|>[[70, 70, 620, 999]]<|/det|> "
  "bends toward <|ref|>a zebra<|/ref|><|det|>[[600, 400, 950, 990]]<|/det|>.\n\n"
  "- **Sky:** <|ref|>clouds<|/ref|><|det|>[[0, 0, 999, 300], [500, 10, 800, 200]]<|/det|>\n"
  "- *Ground* <|det|>[[1.5, 2, 3, 4]]<|/det|> <|det|>[[5, 6, 7, 8]]<|/det|>",
  "<|ref|>first <|ref|>second<|/ref|><|det|>[[580, 270, 999, 900<|/det|> and "
  "<|det|>[[1,2,3],[4,5,6,7]]]<|/det|> then <|ref|>cat<|det|>[[-5, 9999, 300, 10]]<|/det|>"
  "<|/ref|> end <|/det|> <|ref|><|/ref|><|det|>[[[1, 2, 3, 4]]]<|det|>[5, 5, 5, 9][8,8,9,9]",
  "a<|/ref|>b<|/det|>c <|ref|>x<|/ref|><|det|>[[999, 900, 580, 270]]<|/det|> "
  "<|det|>[[x=1; y=2 -> 3 ,, 4 px]] <b> [10, 20, 30, 40]<|ref|>dog<|/ref|> < 3 "
  "<|ref|>tail label",
  "Look!<|ref|>cat<|/ref|><|det|>[[1,2,3,4],[5,6,7,8<|/det|> \\<|ref|>dog",
};

/* The prefix properties, for one text; `no_raw_tags`: its prefixes' Markdown holds no `<|`. */
static void
check_prefixes (const char *text,
                gboolean    no_raw_tags)
{
  g_autoptr(AppGrounding) final = app_grounding_parse (text, FALSE);
  g_autoptr(AppGrounding) streamed = app_grounding_parse (text, TRUE);
  g_autoptr(GArray) final_boxes = all_boxes (final);
  g_autoptr(GArray) streamed_boxes = all_boxes (streamed);
  gsize len = strlen (text);
  guint last_n_boxes = 0;

  /* the whole text streamed gives the finished answer's boxes */
  g_assert_cmpuint (streamed_boxes->len, ==, final_boxes->len);
  for (guint i = 0; i < final_boxes->len; i++)
    g_assert_true (boxes_equal (&g_array_index (streamed_boxes, AppGroundingBox, i),
                                &g_array_index (final_boxes, AppGroundingBox, i)));

  for (gsize end = 0; end <= len; end++)
    {
      g_autofree char *prefix = g_strndup (text, end);
      g_autoptr(AppGrounding) g = app_grounding_parse (prefix, TRUE);
      g_autoptr(GArray) boxes = all_boxes (g);

      check_invariants (g, prefix);
      if (no_raw_tags && strstr (g->markdown, "<|") != NULL)
        g_error ("markdown %s of prefix %s shows a tag", g->markdown, prefix);
      if (g->n_boxes < last_n_boxes)
        g_error ("prefix %s has %u boxes, the one before %u", prefix, g->n_boxes, last_n_boxes);
      last_n_boxes = g->n_boxes;
      g_assert_cmpuint (boxes->len, <=, final_boxes->len);
      for (guint i = 0; i < boxes->len; i++)
        if (!boxes_equal (&g_array_index (boxes, AppGroundingBox, i),
                          &g_array_index (final_boxes, AppGroundingBox, i)))
          g_error ("box %u of prefix %s differs from the final one", i, prefix);
    }
}

static void
test_stream_prefixes (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (streamed_answers); i++)
    {
      const char *text = streamed_answers[i];
      g_autoptr(AppGrounding) final = app_grounding_parse (text, FALSE);
      g_autoptr(AppGrounding) streamed = app_grounding_parse (text, TRUE);

      check_prefixes (text, TRUE);
      g_assert_cmpstr (streamed->markdown, ==, final->markdown);
      g_assert_cmpuint (final->n_boxes, >, 0);
    }
}

/* Random strings of tag pieces, numbers, brackets and bytes: no crash, no tag in the
 * Markdown, and the prefix properties hold for the first few hundred. */
static void
test_fuzz (void)
{
  static const char *const pieces[] = {
    "<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>", "<|grounding|>",
    "<", "<|", "<|r", "<|re", "<|ref", "<|ref|", "<|d", "<|de", "<|/", "<|/de", "<|/det|",
    "<|grou", "|>", "|", ">", "ref", "det", "/",
    "0", "1", "5", "42", "580", "999", "9999", "-", "-7", ".", "0.5",
    "[", "]", "[[", "]]", ",", ", ", " ", "\n", "\r\n", "\t",
    "a", "The cat", "**", "_", "!", "\\", "(", ")", "#", "`", "&", "é",
    "<|det|>[[", "]]<|/det|>", "[5, 6, 700, 800]", "[10, 20, 30, 40], ", "[-1, 99, 9999, 5]",
  };
  g_autoptr(GRand) rand = g_rand_new_with_seed (20240607);
  guint total_boxes = 0;

  for (guint n = 0; n < 3000; n++)
    {
      GString *s = g_string_new (NULL);
      guint n_pieces = (guint) g_rand_int_range (rand, 1, 48);
      g_autofree char *text = NULL;

      for (guint i = 0; i < n_pieces; i++)
        {
          if (g_rand_int_range (rand, 0, 10) == 0)
            g_string_append_c (s, (char) g_rand_int_range (rand, 1, 256));
          else
            g_string_append (s, pieces[g_rand_int_range (rand, 0, (gint32) G_N_ELEMENTS (pieces))]);
        }
      text = g_string_free (s, FALSE);

      for (int streaming = 0; streaming <= 1; streaming++)
        {
          g_autoptr(AppGrounding) g = app_grounding_parse (text, streaming);
          g_autofree char *json = app_grounding_to_json (g, 17, 5);

          check_invariants (g, text);
          g_assert_nonnull (json);
          total_boxes += g->n_boxes;
          for (int active = -2; active <= (int) g->refs->len; active++)
            g_free (app_grounding_markdown (g, active));
        }

      if (n < 300)
        check_prefixes (text, FALSE);
    }

  /* the strings do hold boxes, or this would test little */
  g_test_message ("%u boxes", total_boxes);
  g_assert_cmpuint (total_boxes, >, 100);
}

/* The chip's label survives the Markdown renderer literally. */
static void
test_markdown_escaping (void)
{
  const char *labels[] = {
    "a*b [c] _d_", "\\`*_{}[]()#+-.!|<>&~ & more", "1. item", "# not a heading",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (labels); i++)
    {
      g_autofree char *text = g_strconcat ("See <|ref|>", labels[i], "<|/ref|><|det|>[[1,2,3,4]]"
                                           "<|/det|> here.", NULL);
      g_autoptr(AppGrounding) g = app_grounding_parse (text, FALSE);
      g_autoptr(GPtrArray) blocks = app_markdown_parse (g->markdown);
      g_autofree char *escaped = g_markup_escape_text (labels[i], -1);
      const AppMdBlock *block;

      g_test_message ("%s -> %s", labels[i], g->markdown);
      g_assert_cmpuint (blocks->len, ==, 1);
      block = g_ptr_array_index (blocks, 0);
      g_assert_cmpint (block->kind, ==, APP_MD_PARAGRAPH);
      g_test_message ("markup %s", block->markup);
      g_assert_nonnull (strstr (block->markup, "sightline-ref:0"));
      g_assert_nonnull (strstr (block->markup, escaped));
      g_assert_true (g_str_has_prefix (block->markup, "See "));
      g_assert_true (g_str_has_suffix (block->markup, " here."));
    }

}

static void
test_active (void)
{
  g_autoptr(AppGrounding) g = app_grounding_parse (
    "<|det|>[[1,2,3,4]]<|/det|> then " CAPTION, FALSE);
  g_autofree char *none = app_grounding_markdown (g, -1);
  g_autofree char *first = app_grounding_markdown (g, 1);
  g_autofree char *second = app_grounding_markdown (g, 2);
  g_autofree char *unlabelled = app_grounding_markdown (g, 0);
  g_autofree char *beyond = app_grounding_markdown (g, 3);
  g_autofree char *far = app_grounding_markdown (g, G_MAXINT);
  g_autofree char *negative = app_grounding_markdown (g, -7);

  g_assert_cmpstr (g->markdown, ==,
                   " then " CHIP ("Two giraffes", 1, BLUE) " stand on "
                   CHIP ("grass", 2, GREEN) ".");
  g_assert_cmpstr (none, ==, g->markdown);
  g_assert_cmpstr (first, ==,
                   " then [Two giraffes](sightline-ref:1?color=" BLUE "&active=1) stand on "
                   CHIP ("grass", 2, GREEN) ".");
  g_assert_cmpuint (count_substrings (first, "&active=1"), ==, 1);
  g_assert_cmpstr (second, ==,
                   " then " CHIP ("Two giraffes", 1, BLUE)
                   " stand on [grass](sightline-ref:2?color=" GREEN "&active=1).");
  g_assert_cmpstr (unlabelled, ==, g->markdown);   /* no chip to highlight */
  g_assert_cmpstr (beyond, ==, g->markdown);
  g_assert_cmpstr (far, ==, g->markdown);
  g_assert_cmpstr (negative, ==, g->markdown);
}

static void
test_ref_from_uri (void)
{
  g_assert_cmpint (app_grounding_ref_from_uri ("sightline-ref:0"), ==, 0);
  g_assert_cmpint (app_grounding_ref_from_uri ("sightline-ref:12"), ==, 12);
  g_assert_cmpint (app_grounding_ref_from_uri ("sightline-ref:007"), ==, 7);
  g_assert_cmpint (app_grounding_ref_from_uri ("sightline-ref:3?color=e01b24"), ==, 3);
  g_assert_cmpint (app_grounding_ref_from_uri ("sightline-ref:3?color=e01b24&active=1"), ==, 3);
  g_assert_cmpint (app_grounding_ref_from_uri ("sightline-ref:3?"), ==, 3);
  g_assert_cmpint (app_grounding_ref_from_uri ("sightline-ref:2147483647"), ==, G_MAXINT);

  g_assert_cmpint (app_grounding_ref_from_uri ("sightline-ref:-1"), ==, -1);
  g_assert_cmpint (app_grounding_ref_from_uri ("sightline-ref:+1"), ==, -1);
  g_assert_cmpint (app_grounding_ref_from_uri ("sightline-ref:2147483648"), ==, -1);
  g_assert_cmpint (app_grounding_ref_from_uri ("sightline-ref:99999999999999999999999"), ==, -1);
  g_assert_cmpint (app_grounding_ref_from_uri ("sightline-ref:"), ==, -1);
  g_assert_cmpint (app_grounding_ref_from_uri ("sightline-ref:?color=e01b24"), ==, -1);
  g_assert_cmpint (app_grounding_ref_from_uri ("sightline-ref:3x"), ==, -1);
  g_assert_cmpint (app_grounding_ref_from_uri ("sightline-ref:3#top"), ==, -1);
  g_assert_cmpint (app_grounding_ref_from_uri ("sightline-ref: 3"), ==, -1);
  g_assert_cmpint (app_grounding_ref_from_uri ("sightline-refs:3"), ==, -1);
  g_assert_cmpint (app_grounding_ref_from_uri ("https://example.com/sightline-ref:3"), ==, -1);
  g_assert_cmpint (app_grounding_ref_from_uri ("mailto:someone@example.com"), ==, -1);
  g_assert_cmpint (app_grounding_ref_from_uri ("3"), ==, -1);
  g_assert_cmpint (app_grounding_ref_from_uri (""), ==, -1);
  g_assert_cmpint (app_grounding_ref_from_uri (NULL), ==, -1);
}

static void
assert_pixels (double x1,
               double y1,
               double x2,
               double y2,
               int    image_width,
               int    image_height,
               int    x,
               int    y,
               int    width,
               int    height)
{
  AppGroundingBox box = { x1, y1, x2, y2 };
  int got[4] = { -1, -1, -1, -1 };

  app_grounding_box_to_pixels (&box, image_width, image_height,
                               &got[0], &got[1], &got[2], &got[3]);
  if (got[0] != x || got[1] != y || got[2] != width || got[3] != height)
    g_error ("box (%g,%g,%g,%g) on %d x %d: (%d, %d, %d, %d), expected (%d, %d, %d, %d)",
             x1, y1, x2, y2, image_width, image_height, got[0], got[1], got[2], got[3],
             x, y, width, height);
}

static void
test_pixels (void)
{
  /* the giraffe on the official example's 724 x 1086 image */
  assert_pixels (580, 270, 999, 900, 724, 1086, 420, 293, 304, 685);
  /* square and wide images */
  assert_pixels (100, 200, 300, 400, 1000, 1000, 100, 200, 200, 200);
  assert_pixels (0, 0, 999, 999, 1000, 1000, 0, 0, 1000, 1000);
  assert_pixels (580, 270, 999, 900, 1920, 1080, 1114, 291, 806, 681);
  assert_pixels (0, 600, 999, 999, 640, 480, 0, 288, 640, 192);
  /* an image smaller than the grid: boxes collapse and are widened to one pixel */
  assert_pixels (100, 100, 110, 110, 17, 23, 1, 2, 1, 1);
  assert_pixels (998, 998, 999, 999, 17, 23, 16, 22, 1, 1);
  assert_pixels (0, 0, 1, 1, 17, 23, 0, 0, 1, 1);
  assert_pixels (999, 999, 999, 999, 17, 23, 16, 22, 1, 1);  /* not normalised: still inside */
  assert_pixels (2000, -5, 3000, -1, 17, 23, 16, 0, 1, 1);
  assert_pixels (0, 0, 999, 999, 17, 23, 0, 0, 17, 23);
  assert_pixels (580, 270, 999, 900, 1, 1, 0, 0, 1, 1);
  assert_pixels (0, 0, 1, 1, 1, 1, 0, 0, 1, 1);
  assert_pixels (998, 998, 999, 999, 1, 1, 0, 0, 1, 1);
  /* no image */
  assert_pixels (580, 270, 999, 900, 0, 1086, 0, 0, 0, 0);
  assert_pixels (580, 270, 999, 900, 724, 0, 0, 0, 0, 0);
  assert_pixels (580, 270, 999, 900, -3, -3, 0, 0, 0, 0);
  /* values no parse gives: still no undefined conversion */
  assert_pixels (NAN, 1e300, -1e300, INFINITY, 100, 100, 0, 99, 1, 1);
}

/* An EXIF APP1 segment holding only Orientation, inserted after the JPEG's SOI. */
static GBytes *
jpeg_with_orientation (const guint8 *jpeg,
                       gsize         len,
                       guint8        orientation)
{
  const guint8 app1[] = {
    0xFF, 0xE1, 0x00, 0x22, 'E', 'x', 'i', 'f', 0, 0,
    'M', 'M', 0, 42, 0, 0, 0, 8,         /* big-endian TIFF header, IFD at 8 */
    0, 1,                                /* one entry: */
    0x01, 0x12, 0, 3, 0, 0, 0, 1,        /* Orientation, SHORT, count 1 */
    0, orientation, 0, 0,                /* its value */
    0, 0, 0, 0,                          /* no next IFD */
  };
  GByteArray *out = g_byte_array_new ();

  g_assert_cmpuint (len, >, 2);
  g_byte_array_append (out, jpeg, 2);
  g_byte_array_append (out, app1, sizeof app1);
  g_byte_array_append (out, jpeg + 2, (guint) (len - 2));
  return g_byte_array_free_to_bytes (out);
}

/* The boxes are on the image as shown: a photo with EXIF orientation 6 is rotated first. */
static void
test_exif (void)
{
  g_autoptr(GdkPixbuf) pixbuf = gdk_pixbuf_new (GDK_COLORSPACE_RGB, FALSE, 8, 60, 40);
  g_autoptr(GBytes) rotated = NULL;
  g_autoptr(AppGrounding) g = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *jpeg = NULL;
  const AppGroundingRef *ref;
  g_auto(ImageRgb) im = { 0 };
  int x, y, width, height, n_checked = 0;
  gsize len;

  /* white, with a red rectangle at x 40..59, y 0..19 */
  gdk_pixbuf_fill (pixbuf, 0xffffffff);
  {
    g_autoptr(GdkPixbuf) red = gdk_pixbuf_new_subpixbuf (pixbuf, 40, 0, 20, 20);

    gdk_pixbuf_fill (red, 0xff0000ff);
  }
  g_assert_true (gdk_pixbuf_save_to_buffer (pixbuf, &jpeg, &len, "jpeg", NULL,
                                            "quality", "100", NULL));
  rotated = jpeg_with_orientation ((const guint8 *) jpeg, len, 6);
  if (!image_file_load_bytes (rotated, "rotated.jpg", &im, &error))
    g_error ("%s", error->message);
  g_assert_cmpint (im.width, ==, 40);
  g_assert_cmpint (im.height, ==, 60);

  /* (x, y) -> (39 - y, x): red is at x 20..39, y 40..59 of the rotated image */
  g = app_grounding_parse ("<|ref|>the red square<|/ref|><|det|>[[500, 667, 999, 999]]<|/det|>",
                           FALSE);
  g_assert_cmpuint (g->n_boxes, ==, 1);
  ref = g_ptr_array_index (g->refs, 0);
  app_grounding_box_to_pixels (&g_array_index (ref->boxes, AppGroundingBox, 0),
                               im.width, im.height, &x, &y, &width, &height);
  g_assert_cmpint (x, ==, 20);
  g_assert_cmpint (y, ==, 40);
  g_assert_cmpint (width, ==, 20);
  g_assert_cmpint (height, ==, 20);

  /* inside: red; outside, two pixels away from the edge (JPEG blurs it): white */
  for (int py = 0; py < im.height; py++)
    for (int px = 0; px < im.width; px++)
      {
        const guint8 *p = im.rgb + (gsize) py * im.stride + (gsize) px * 3;
        gboolean inside = px > x && px < x + width - 1 && py > y && py < y + height - 1;
        gboolean outside = px < x - 2 || px > x + width + 1 || py < y - 2 || py > y + height + 1;

        if (inside && !(p[0] > 200 && p[1] < 80 && p[2] < 80))
          g_error ("(%d, %d) inside the box is %d %d %d", px, py, p[0], p[1], p[2]);
        if (outside && !(p[0] > 200 && p[1] > 200 && p[2] > 200))
          g_error ("(%d, %d) outside the box is %d %d %d", px, py, p[0], p[1], p[2]);
        n_checked += inside || outside;
      }
  g_assert_cmpint (n_checked, >, 1500);
}

static void
test_json (void)
{
  g_autoptr(AppGrounding) g = app_grounding_parse (
    GIRAFFE " and <|det|>[[0, 0, 999, 999], [998, 998, 999, 999]]<|/det|> and "
    "<|ref|>\"quoted\" label<|/ref|>", FALSE);
  g_autoptr(AppGrounding) empty = app_grounding_parse ("no boxes", FALSE);
  g_autofree char *json = app_grounding_to_json (g, 724, 1086);
  g_autofree char *empty_json = app_grounding_to_json (empty, 724, 1086);
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GError) error = NULL;
  const struct
  {
    const char *label;
    int box[4];
  } expected[] = {
    { "The giraffe at the back.", { 420, 293, 724, 978 } },
    { NULL, { 0, 0, 724, 1086 } },
    { NULL, { 723, 1084, 724, 1086 } },
  };
  JsonArray *array;

  g_test_message ("%s", json);
  g_assert_nonnull (strchr (json, '\n'));   /* pretty */
  g_assert_true (json_parser_load_from_data (parser, json, -1, &error));
  g_assert_no_error (error);
  g_assert_true (JSON_NODE_HOLDS_ARRAY (json_parser_get_root (parser)));
  array = json_node_get_array (json_parser_get_root (parser));
  g_assert_cmpuint (json_array_get_length (array), ==, G_N_ELEMENTS (expected));

  for (guint i = 0; i < G_N_ELEMENTS (expected); i++)
    {
      JsonObject *object = json_array_get_object_element (array, i);
      JsonNode *label = json_object_get_member (object, "label");
      JsonArray *box = json_object_get_array_member (object, "box");

      g_assert_cmpuint (json_object_get_size (object), ==, 2);
      if (expected[i].label != NULL)
        g_assert_cmpstr (json_node_get_string (label), ==, expected[i].label);
      else
        g_assert_true (JSON_NODE_HOLDS_NULL (label));
      g_assert_cmpuint (json_array_get_length (box), ==, 4);
      for (guint j = 0; j < 4; j++)
        g_assert_cmpint (json_array_get_int_element (box, j), ==, expected[i].box[j]);
    }

  g_assert_true (json_parser_load_from_data (parser, empty_json, -1, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (json_array_get_length (json_node_get_array (json_parser_get_root (parser))),
                    ==, 0);
}

static void
assert_wrap (AppPromptKind  kind,
             const char    *text,
             const char    *expected)
{
  g_autofree char *wrapped = app_grounding_wrap_prompt (kind, text);

  g_assert_cmpstr (wrapped, ==, expected);
}

static void
test_wrap_prompt (void)
{
  g_autofree char *find = app_grounding_wrap_prompt (APP_PROMPT_FIND, " The giraffe at the back. ");
  g_autoptr(AppGrounding) g = app_grounding_parse (find, FALSE);

  assert_wrap (APP_PROMPT_PLAIN, "What is this?", "What is this?");
  assert_wrap (APP_PROMPT_PLAIN, "  What is this? \n", "What is this?");
  assert_wrap (APP_PROMPT_PLAIN, "", NULL);
  assert_wrap (APP_PROMPT_PLAIN, " \n\t ", NULL);
  assert_wrap (APP_PROMPT_PLAIN, NULL, NULL);

  assert_wrap (APP_PROMPT_FIND, "the giraffe", "<|ref|>the giraffe<|/ref|>");
  assert_wrap (APP_PROMPT_FIND, "\n the giraffe  ", "<|ref|>the giraffe<|/ref|>");
  assert_wrap (APP_PROMPT_FIND, "", NULL);
  assert_wrap (APP_PROMPT_FIND, "   ", NULL);

  assert_wrap (APP_PROMPT_GROUNDED_CAPTION, "Describe the animals.",
               "<|grounding|>Describe the animals.");
  assert_wrap (APP_PROMPT_GROUNDED_CAPTION, "  Describe the animals.\n",
               "<|grounding|>Describe the animals.");
  assert_wrap (APP_PROMPT_GROUNDED_CAPTION, "", "<|grounding|>Describe the image in detail.");
  assert_wrap (APP_PROMPT_GROUNDED_CAPTION, " \n ", "<|grounding|>Describe the image in detail.");
  assert_wrap (APP_PROMPT_GROUNDED_CAPTION, NULL, "<|grounding|>Describe the image in detail.");

  /* the question as the chat shows it */
  g_assert_cmpstr (g->markdown, ==, CHIP ("The giraffe at the back\\.", 0, RED));
}

/* Editing a sent question gives back what was typed and the helper it was sent with. */
static void
test_unwrap_prompt (void)
{
  static const struct {
    AppPromptKind kind;
    const char *typed;
  } cases[] = {
    { APP_PROMPT_PLAIN, "What is this?" },
    { APP_PROMPT_FIND, "The giraffe at the back." },
    { APP_PROMPT_GROUNDED_CAPTION, "What should I do?" },
    { APP_PROMPT_GROUNDED_CAPTION, "" },
  };
  static const struct {
    const char *sent;
    AppPromptKind kind;
    const char *text;
  } others[] = {
    { "Find all the <|ref|>Watermelon slices<|/ref|>", APP_PROMPT_PLAIN,
      "Find all the <|ref|>Watermelon slices<|/ref|>" },
    { "<|ref|>a<|/ref|> and <|ref|>b<|/ref|>", APP_PROMPT_PLAIN,
      "<|ref|>a<|/ref|> and <|ref|>b<|/ref|>" },
    { "  <|ref|>x<|/ref|> ", APP_PROMPT_FIND, "x" },
    { "<|ref|><|/ref|>", APP_PROMPT_PLAIN, "<|ref|><|/ref|>" },
    { "<|grounding|>  Describe it  ", APP_PROMPT_GROUNDED_CAPTION, "Describe it" },
    { "", APP_PROMPT_PLAIN, "" },
    { NULL, APP_PROMPT_PLAIN, "" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *sent = app_grounding_wrap_prompt (cases[i].kind, cases[i].typed);
      AppPromptKind kind = -1;
      g_autofree char *back = app_grounding_unwrap_prompt (sent, &kind);

      g_assert_cmpint (kind, ==, cases[i].kind);
      g_assert_cmpstr (back, ==, cases[i].typed);
    }
  for (gsize i = 0; i < G_N_ELEMENTS (others); i++)
    {
      AppPromptKind kind = -1;
      g_autofree char *back = app_grounding_unwrap_prompt (others[i].sent, &kind);

      g_assert_cmpint (kind, ==, others[i].kind);
      g_assert_cmpstr (back, ==, others[i].text);
    }
}

static void
test_plain_text (void)
{
  static const char *const cases[][2] = {
    { "<|grounding|>Describe the image.", "Describe the image." },
    { "<|ref|>The giraffe at the back.<|/ref|>", "The giraffe at the back." },
    { "<|ref|>cat<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|> sits.", "cat sits." },
    { "a <|det|>[[1, 2, 3, 4]]<|ref|>dog<|/ref|> b", "a dog b" },
    { "open <|det|>[[1, 2", "open" },
    { "no tags <b>", "no tags <b>" },
    { "", "" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *plain = app_grounding_plain_text (cases[i][0]);

      g_assert_cmpstr (plain, ==, cases[i][1]);
    }
  g_free (app_grounding_plain_text (NULL));
}

static void
test_has_tags (void)
{
  g_assert_false (app_grounding_has_tags (NULL));
  g_assert_false (app_grounding_has_tags (""));
  g_assert_false (app_grounding_has_tags ("plain <b>text</b> with |pipes|"));
  g_assert_false (app_grounding_has_tags ("<|ref|"));
  g_assert_false (app_grounding_has_tags ("<|det|"));
  g_assert_false (app_grounding_has_tags ("<|ground|>"));
  for (gsize i = 0; i < G_N_ELEMENTS (all_tags); i++)
    {
      g_autofree char *text = g_strconcat ("some ", all_tags[i], " text", NULL);

      g_assert_true (app_grounding_has_tags (all_tags[i]));
      g_assert_true (app_grounding_has_tags (text));
    }
  g_assert_true (app_grounding_has_tags (GIRAFFE));
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/app/grounding/no-tags", test_no_tags);
  g_test_add_func ("/app/grounding/giraffe", test_giraffe);
  g_test_add_func ("/app/grounding/caption", test_caption);
  g_test_add_func ("/app/grounding/several-boxes", test_several_boxes);
  g_test_add_func ("/app/grounding/unlabelled", test_unlabelled);
  g_test_add_func ("/app/grounding/colors", test_colors);
  g_test_add_func ("/app/grounding/grounding-flag", test_grounding_flag);
  g_test_add_func ("/app/grounding/malformed-boxes", test_malformed_boxes);
  g_test_add_func ("/app/grounding/malformed-tags", test_malformed_tags);
  g_test_add_func ("/app/grounding/repairs", test_repairs);
  g_test_add_func ("/app/grounding/stream-tail", test_stream_tail);
  g_test_add_func ("/app/grounding/stream-prefixes", test_stream_prefixes);
  g_test_add_func ("/app/grounding/fuzz", test_fuzz);
  g_test_add_func ("/app/grounding/markdown-escaping", test_markdown_escaping);
  g_test_add_func ("/app/grounding/active", test_active);
  g_test_add_func ("/app/grounding/ref-from-uri", test_ref_from_uri);
  g_test_add_func ("/app/grounding/pixels", test_pixels);
  g_test_add_func ("/app/grounding/exif", test_exif);
  g_test_add_func ("/app/grounding/json", test_json);
  g_test_add_func ("/app/grounding/wrap-prompt", test_wrap_prompt);
  g_test_add_func ("/app/grounding/has-tags", test_has_tags);
  g_test_add_func ("/app/grounding/unwrap-prompt", test_unwrap_prompt);
  g_test_add_func ("/app/grounding/plain-text", test_plain_text);

  return g_test_run ();
}
