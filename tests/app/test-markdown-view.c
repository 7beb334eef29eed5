/* test-markdown-view.c - the widgets of AppMarkdownView; needs a display (run under Xvfb).
 *
 * The tests look at the widget tree the view builds for each kind of block, at the copy
 * button of code blocks through the real clipboard, and at streaming: a text set again with
 * more at its end must keep the widgets of what did not change, and whatever way the text
 * grew, the result must be the same tree a fresh view builds from the final text. Warnings are
 * fatal under GTest, so invalid markup or a layout complaint from GTK fails a test too.
 */

#include "app-markdown-view.h"

#include <string.h>

/* A long answer with every construct, as the model streams it. */
static const char long_answer[] =
  "# Analysis of the image\n"
  "\n"
  "The photo shows a **street sign** in *Zürich* — with ~~two~~ three lines, in `DejaVu`. "
  "See [the manual](https://example.org/manual?a=1&b=2) & note that 2 < 3.\n"
  "Ünïcödé: 日本語テキスト, emoji 🚏, "
  "<|ref|>sign<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>.\n"
  "\n"
  "## Objects found\n"
  "\n"
  "1. The sign\n"
  "2. A *pole*:\n"
  "   - metal, **grey**\n"
  "   - about 3&nbsp;m tall\n"
  "     1. from the shadow\n"
  "     2. from the door\n"
  "3. A bicycle\n"
  "4. four\n"
  "5. five\n"
  "6. six\n"
  "7. seven\n"
  "8. eight\n"
  "9. nine\n"
  "10. ten\n"
  "\n"
  "- [x] read the text\n"
  "- [ ] check the `colour`\n"
  "\n"
  "> **Note:** the lower line is partly hidden.\n"
  "> > A nested quote with a [bad link](javascript:alert(1)).\n"
  ">\n"
  "> - quoted list item\n"
  "\n"
  "| Object | Count | Confidence |\n"
  "|:-------|:-----:|-----------:|\n"
  "| sign | 1 | 0.97 |\n"
  "| pole | 1 | *0.91* |\n"
  "| bike | 2 | 0.55 \\| 0.6 |\n"
  "\n"
  "---\n"
  "\n"
  "```python\n"
  "def area(box):\n"
  "    x0, y0, x1, y1 = box  # a long comment that makes the line wider than the window\n"
  "    return (x1 - x0) * (y1 - y0)\n"
  "```\n"
  "\n"
  "Final words, <b>not bold</b>.";

static GtkWidget *
nth_child (GtkWidget *widget,
           guint      n)
{
  GtkWidget *child = gtk_widget_get_first_child (widget);

  for (guint i = 0; child != NULL && i < n; i++)
    child = gtk_widget_get_next_sibling (child);

  g_assert_nonnull (child);
  return child;
}

static guint
n_children (GtkWidget *widget)
{
  guint n = 0;

  for (GtkWidget *child = gtk_widget_get_first_child (widget); child != NULL;
       child = gtk_widget_get_next_sibling (child))
    n++;

  return n;
}

/* The first widget of `type` in the tree under `widget`, depth first. */
static GtkWidget *
find_widget (GtkWidget *widget,
             GType      type)
{
  if (G_TYPE_CHECK_INSTANCE_TYPE (widget, type))
    return widget;

  for (GtkWidget *child = gtk_widget_get_first_child (widget); child != NULL;
       child = gtk_widget_get_next_sibling (child))
    {
      GtkWidget *found = find_widget (child, type);

      if (found != NULL)
        return found;
    }

  return NULL;
}

/* The tree under `widget` as text: types, style classes, label markup, check states. Two views
 * showing the same thing give the same dump. */
static void
dump_widget (GString   *out,
             GtkWidget *widget,
             int        depth)
{
  g_auto(GStrv) classes = gtk_widget_get_css_classes (widget);
  g_autofree char *joined = g_strjoinv (".", classes);

  g_string_append_printf (out, "%*s%s.%s", depth * 2, "", G_OBJECT_TYPE_NAME (widget), joined);
  if (GTK_IS_LABEL (widget))
    g_string_append_printf (out, " [%s] x=%.1f", gtk_label_get_label (GTK_LABEL (widget)),
                            gtk_label_get_xalign (GTK_LABEL (widget)));
  if (GTK_IS_CHECK_BUTTON (widget))
    g_string_append_printf (out, " active=%d",
                            gtk_check_button_get_active (GTK_CHECK_BUTTON (widget)));
  g_string_append_c (out, '\n');

  for (GtkWidget *child = gtk_widget_get_first_child (widget); child != NULL;
       child = gtk_widget_get_next_sibling (child))
    dump_widget (out, child, depth + 1);
}

static char *
dump_view (AppMarkdownView *view)
{
  GString *out = g_string_new (NULL);

  dump_widget (out, GTK_WIDGET (view), 0);
  return g_string_free (out, FALSE);
}

static void
on_notify (GObject    *object,
           GParamSpec *pspec,
           gpointer    user_data)
{
  (*(guint *) user_data)++;
}

static void
test_text_property (void)
{
  AppMarkdownView *view = g_object_ref_sink (app_markdown_view_new ());
  g_autofree char *text = NULL;
  guint notified = 0;

  g_assert_cmpstr (app_markdown_view_get_text (view), ==, "");
  g_assert_cmpuint (n_children (GTK_WIDGET (view)), ==, 0);
  g_signal_connect (view, "notify::text", G_CALLBACK (on_notify), &notified);

  g_object_set (view, "text", "Hello *world*", NULL);
  g_object_get (view, "text", &text, NULL);
  g_assert_cmpstr (text, ==, "Hello *world*");
  g_assert_cmpuint (notified, ==, 1);

  /* the same text again is no change */
  app_markdown_view_set_text (view, "Hello *world*");
  g_assert_cmpuint (notified, ==, 1);

  app_markdown_view_set_text (view, NULL);
  g_assert_cmpstr (app_markdown_view_get_text (view), ==, "");
  g_assert_cmpuint (n_children (GTK_WIDGET (view)), ==, 0);
  g_assert_cmpuint (notified, ==, 2);

  g_object_unref (view);
}

static void
test_blocks (void)
{
  AppMarkdownView *view = g_object_ref_sink (app_markdown_view_new ());
  GtkWidget *heading, *para, *code, *quote, *list, *table, *rule, *h5, *grid;

  app_markdown_view_set_text (view,
                              "# Title\n"
                              "\n"
                              "Some **bold** & <|ref|>x<|/ref|> [link](https://e.org)\n"
                              "\n"
                              "```c\nint x;\n```\n"
                              "\n"
                              "> quoted\n"
                              "\n"
                              "- item\n"
                              "\n"
                              "| a | b |\n| --- | --- |\n| 1 | 2 |\n"
                              "\n"
                              "***\n"
                              "\n"
                              "##### Small\n");

  g_assert_cmpuint (n_children (GTK_WIDGET (view)), ==, 8);

  heading = nth_child (GTK_WIDGET (view), 0);
  g_assert_true (GTK_IS_LABEL (heading));
  g_assert_true (gtk_widget_has_css_class (heading, "title-1"));
  g_assert_cmpstr (gtk_label_get_text (GTK_LABEL (heading)), ==, "Title");
  g_assert_true (gtk_label_get_selectable (GTK_LABEL (heading)));

  para = nth_child (GTK_WIDGET (view), 1);
  g_assert_true (GTK_IS_LABEL (para));
  g_assert_true (gtk_label_get_use_markup (GTK_LABEL (para)));
  g_assert_true (gtk_label_get_wrap (GTK_LABEL (para)));
  g_assert_cmpint (gtk_label_get_wrap_mode (GTK_LABEL (para)), ==, PANGO_WRAP_WORD_CHAR);
  /* with a link: not selectable, so that Tab goes from link to link (text without links is) */
  g_assert_false (gtk_label_get_selectable (GTK_LABEL (para)));
  g_assert_true (gtk_widget_get_focusable (para));
  g_assert_cmpfloat (gtk_label_get_xalign (GTK_LABEL (para)), ==, 0.0f);
  g_assert_cmpstr (gtk_label_get_label (GTK_LABEL (para)), ==,
                   "Some <b>bold</b> &amp; &lt;|ref|&gt;x&lt;|/ref|&gt; "
                   "<a href=\"https://e.org\">link</a>");
  g_assert_cmpstr (gtk_label_get_text (GTK_LABEL (para)), ==, "Some bold & <|ref|>x<|/ref|> link");

  code = nth_child (GTK_WIDGET (view), 2);
  g_assert_true (GTK_IS_FRAME (code));
  g_assert_true (gtk_widget_has_css_class (code, "md-code"));
  {
    GtkWidget *scroller = find_widget (code, GTK_TYPE_SCROLLED_WINDOW);
    GtkWidget *label = find_widget (scroller, GTK_TYPE_LABEL);
    GtkWidget *button = find_widget (code, GTK_TYPE_BUTTON);

    g_assert_true (gtk_scrolled_window_get_propagate_natural_height (
                     GTK_SCROLLED_WINDOW (scroller)));
    g_assert_cmpstr (gtk_label_get_text (GTK_LABEL (label)), ==, "int x;");
    g_assert_false (gtk_label_get_use_markup (GTK_LABEL (label)));
    g_assert_false (gtk_label_get_wrap (GTK_LABEL (label)));
    g_assert_true (gtk_label_get_selectable (GTK_LABEL (label)));
    g_assert_true (gtk_widget_has_css_class (label, "monospace"));
    g_assert_cmpstr (gtk_button_get_icon_name (GTK_BUTTON (button)), ==, "edit-copy-symbolic");
    g_assert_cmpstr (gtk_widget_get_tooltip_text (button), ==, "Copy");
    g_assert_true (gtk_widget_has_css_class (button, "flat"));
  }

  quote = nth_child (GTK_WIDGET (view), 3);
  g_assert_true (GTK_IS_BOX (quote));
  g_assert_true (gtk_widget_has_css_class (quote, "quote"));
  g_assert_cmpstr (gtk_label_get_text (GTK_LABEL (nth_child (quote, 0))), ==, "quoted");

  list = nth_child (GTK_WIDGET (view), 4);
  g_assert_true (gtk_widget_has_css_class (list, "md-list"));

  table = nth_child (GTK_WIDGET (view), 5);
  g_assert_true (GTK_IS_GRID (table));
  grid = find_widget (table, GTK_TYPE_GRID);
  g_assert_true (gtk_widget_has_css_class (grid, "md-table"));

  rule = nth_child (GTK_WIDGET (view), 6);
  g_assert_true (GTK_IS_SEPARATOR (rule));

  h5 = nth_child (GTK_WIDGET (view), 7);
  g_assert_true (gtk_widget_has_css_class (h5, "heading"));
  g_assert_false (gtk_widget_has_css_class (h5, "title-4"));

  g_object_unref (view);
}

static void
test_heading_levels (void)
{
  AppMarkdownView *view = g_object_ref_sink (app_markdown_view_new ());

  app_markdown_view_set_text (view, "# 1\n## 2\n### 3\n#### 4\n");
  for (guint i = 0; i < 4; i++)
    {
      g_autofree char *class = g_strdup_printf ("title-%u", i + 1);

      g_assert_true (gtk_widget_has_css_class (nth_child (GTK_WIDGET (view), i), class));
    }

  g_object_unref (view);
}

static void
test_lists (void)
{
  AppMarkdownView *view = g_object_ref_sink (app_markdown_view_new ());
  GtkWidget *list, *row, *content, *nested, *tasks, *check;

  app_markdown_view_set_text (view,
                              "3. three\n"
                              "4. four\n"
                              "   - bullet\n"
                              "     - deeper\n"
                              "\n"
                              "text\n"
                              "\n"
                              "- [x] done\n"
                              "- [ ] todo\n");

  g_assert_cmpuint (n_children (GTK_WIDGET (view)), ==, 3);

  list = nth_child (GTK_WIDGET (view), 0);
  g_assert_cmpuint (n_children (list), ==, 2);
  row = nth_child (list, 1);
  g_assert_cmpstr (gtk_label_get_text (GTK_LABEL (nth_child (row, 0))), ==, "4.");
  g_assert_cmpstr (gtk_label_get_text (GTK_LABEL (nth_child (nth_child (list, 0), 0))), ==, "3.");

  /* the nested list is inside the item's content, after its text: indented by the marker */
  content = nth_child (row, 1);
  g_assert_cmpuint (n_children (content), ==, 2);
  g_assert_cmpstr (gtk_label_get_text (GTK_LABEL (nth_child (content, 0))), ==, "four");
  nested = nth_child (content, 1);
  g_assert_true (gtk_widget_has_css_class (nested, "md-list"));
  g_assert_cmpstr (gtk_label_get_text (GTK_LABEL (nth_child (nth_child (nested, 0), 0))), ==,
                   "◦");
  {
    GtkWidget *deeper = nth_child (nth_child (nth_child (nested, 0), 1), 1);

    g_assert_cmpstr (gtk_label_get_text (GTK_LABEL (nth_child (nth_child (deeper, 0), 0))), ==,
                     "▪");
  }

  tasks = nth_child (GTK_WIDGET (view), 2);
  g_assert_cmpuint (n_children (tasks), ==, 2);
  check = nth_child (nth_child (tasks, 0), 0);
  g_assert_true (GTK_IS_CHECK_BUTTON (check));
  g_assert_true (gtk_check_button_get_active (GTK_CHECK_BUTTON (check)));
  g_assert_false (gtk_widget_get_can_target (check));
  g_assert_false (gtk_widget_get_focusable (check));
  check = nth_child (nth_child (tasks, 1), 0);
  g_assert_false (gtk_check_button_get_active (GTK_CHECK_BUTTON (check)));

  /* a bulleted task item shows its box, not a bullet too */
  g_assert_cmpuint (n_children (nth_child (tasks, 0)), ==, 2);

  g_object_unref (view);
}

static void
test_table (void)
{
  AppMarkdownView *view = g_object_ref_sink (app_markdown_view_new ());
  GtkWidget *grid;
  GtkLabel *cell;

  app_markdown_view_set_text (view,
                              "| Left | Center | Right | Plain |\n"
                              "|:-----|:------:|------:|-------|\n"
                              "| a \\| b | *c* | 1 | `x` |\n"
                              "| e | | 2 |\n");

  grid = find_widget (GTK_WIDGET (view), GTK_TYPE_GRID);
  g_assert_nonnull (grid);
  g_assert_cmpuint (n_children (grid), ==, 12);

  cell = GTK_LABEL (gtk_grid_get_child_at (GTK_GRID (grid), 0, 0));
  g_assert_cmpstr (gtk_label_get_label (cell), ==, "<b>Left</b>");
  g_assert_true (gtk_widget_has_css_class (GTK_WIDGET (cell), "md-table-header"));

  cell = GTK_LABEL (gtk_grid_get_child_at (GTK_GRID (grid), 0, 1));
  g_assert_cmpstr (gtk_label_get_text (cell), ==, "a | b");
  g_assert_cmpfloat (gtk_label_get_xalign (cell), ==, 0.0f);
  g_assert_false (gtk_widget_has_css_class (GTK_WIDGET (cell), "md-table-header"));

  cell = GTK_LABEL (gtk_grid_get_child_at (GTK_GRID (grid), 1, 1));
  g_assert_cmpstr (gtk_label_get_label (cell), ==, "<i>c</i>");
  g_assert_cmpfloat (gtk_label_get_xalign (cell), ==, 0.5f);

  cell = GTK_LABEL (gtk_grid_get_child_at (GTK_GRID (grid), 2, 2));
  g_assert_cmpstr (gtk_label_get_text (cell), ==, "2");
  g_assert_cmpfloat (gtk_label_get_xalign (cell), ==, 1.0f);

  cell = GTK_LABEL (gtk_grid_get_child_at (GTK_GRID (grid), 3, 2));
  g_assert_cmpstr (gtk_label_get_text (cell), ==, "");
  g_assert_cmpfloat (gtk_label_get_xalign (cell), ==, 0.0f);

  g_object_unref (view);
}

static void
test_links (void)
{
  AppMarkdownView *view = g_object_ref_sink (app_markdown_view_new ());
  GtkWidget *label;
  gboolean handled = FALSE;

  app_markdown_view_set_text (view, "[ok](https://e.org) [bad](javascript:alert(1))");
  label = nth_child (GTK_WIDGET (view), 0);
  g_assert_cmpstr (gtk_label_get_label (GTK_LABEL (label)), ==,
                   "<a href=\"https://e.org\">ok</a> bad");

  /* the view handles link activation itself; a scheme it does not open is swallowed */
  g_signal_emit_by_name (label, "activate-link", "javascript:alert(1)", &handled);
  g_assert_true (handled);

  g_object_unref (view);
}

typedef struct
{
  GMainLoop *loop;
  char *text;
} ClipboardRead;

static void
on_clipboard_read (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  ClipboardRead *read = user_data;
  g_autoptr(GError) error = NULL;

  read->text = gdk_clipboard_read_text_finish (GDK_CLIPBOARD (source), result, &error);
  g_assert_no_error (error);
  g_main_loop_quit (read->loop);
}

static gboolean
quit_loop (gpointer user_data)
{
  g_main_loop_quit (user_data);
  return G_SOURCE_REMOVE;
}

static void
run_loop_for (guint ms)
{
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);

  g_timeout_add (ms, quit_loop, loop);
  g_main_loop_run (loop);
}

static void
test_copy (void)
{
  const char *code = "for i in range(3):\n    print(\"<tag> & \\\"x\\\"\")";
  g_autofree char *markdown = g_strdup_printf ("Intro\n\n```python\n%s\n```\n", code);
  AppMarkdownView *view = g_object_ref_sink (app_markdown_view_new ());
  GtkWidget *button;
  ClipboardRead read = { 0 };

  app_markdown_view_set_text (view, markdown);
  button = find_widget (GTK_WIDGET (view), GTK_TYPE_BUTTON);
  g_assert_nonnull (button);

  g_signal_emit_by_name (button, "clicked");
  g_assert_cmpstr (gtk_button_get_icon_name (GTK_BUTTON (button)), ==, "object-select-symbolic");

  read.loop = g_main_loop_new (NULL, FALSE);
  gdk_clipboard_read_text_async (gtk_widget_get_clipboard (button), NULL, on_clipboard_read,
                                 &read);
  g_main_loop_run (read.loop);
  g_assert_cmpstr (read.text, ==, code);
  g_free (read.text);
  g_main_loop_unref (read.loop);

  /* the check mark goes back to the copy icon */
  run_loop_for (1700);
  g_assert_cmpstr (gtk_button_get_icon_name (GTK_BUTTON (button)), ==, "edit-copy-symbolic");

  /* copying the code of a block that grew while streaming copies the new code */
  app_markdown_view_set_text (view, "Intro\n\n```python\nprint(1)\nprint(2)\n");
  g_assert_true (find_widget (GTK_WIDGET (view), GTK_TYPE_BUTTON) == button);
  g_signal_emit_by_name (button, "clicked");
  read.loop = g_main_loop_new (NULL, FALSE);
  gdk_clipboard_read_text_async (gtk_widget_get_clipboard (button), NULL, on_clipboard_read,
                                 &read);
  g_main_loop_run (read.loop);
  g_assert_cmpstr (read.text, ==, "print(1)\nprint(2)");
  g_free (read.text);
  g_main_loop_unref (read.loop);

  /* the view goes away while the check mark shows: the pending reset must not touch it */
  g_signal_emit_by_name (button, "clicked");
  g_object_unref (view);
  run_loop_for (1700);
}

static void
test_keeps_widgets (void)
{
  AppMarkdownView *view = g_object_ref_sink (app_markdown_view_new ());
  GtkWidget *heading, *para, *list, *first_row, *table, *first_cell;

  app_markdown_view_set_text (view, "# Title\n\nThe first par");
  g_assert_cmpuint (n_children (GTK_WIDGET (view)), ==, 2);
  heading = nth_child (GTK_WIDGET (view), 0);
  para = nth_child (GTK_WIDGET (view), 1);

  /* the paragraph being written is the same label with more text */
  app_markdown_view_set_text (view, "# Title\n\nThe first paragraph.");
  g_assert_true (nth_child (GTK_WIDGET (view), 0) == heading);
  g_assert_true (nth_child (GTK_WIDGET (view), 1) == para);
  g_assert_cmpstr (gtk_label_get_text (GTK_LABEL (para)), ==, "The first paragraph.");

  /* new blocks are appended after the kept ones */
  app_markdown_view_set_text (view, "# Title\n\nThe first paragraph.\n\n- one\n- tw");
  g_assert_cmpuint (n_children (GTK_WIDGET (view)), ==, 3);
  g_assert_true (nth_child (GTK_WIDGET (view), 0) == heading);
  g_assert_true (nth_child (GTK_WIDGET (view), 1) == para);
  list = nth_child (GTK_WIDGET (view), 2);
  first_row = nth_child (list, 0);

  /* a list that grows keeps its box and its finished items */
  app_markdown_view_set_text (view, "# Title\n\nThe first paragraph.\n\n- one\n- two\n- three");
  g_assert_true (nth_child (GTK_WIDGET (view), 2) == list);
  g_assert_true (nth_child (list, 0) == first_row);
  g_assert_cmpuint (n_children (list), ==, 3);

  /* a table that grows keeps its cells */
  app_markdown_view_set_text (view, "# Title\n\n| a | b |\n| --- | --- |\n| 1 | 2 |");
  g_assert_true (nth_child (GTK_WIDGET (view), 0) == heading);
  table = nth_child (GTK_WIDGET (view), 1);
  first_cell = gtk_grid_get_child_at (GTK_GRID (find_widget (table, GTK_TYPE_GRID)), 0, 1);
  app_markdown_view_set_text (view, "# Title\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n| 3 | 4 |");
  g_assert_true (nth_child (GTK_WIDGET (view), 1) == table);
  g_assert_true (gtk_grid_get_child_at (GTK_GRID (find_widget (table, GTK_TYPE_GRID)), 0, 1) ==
                 first_cell);
  g_assert_true (gtk_widget_has_css_class (first_cell, "md-table-divided"));

  /* a change in the first block rebuilds from there */
  app_markdown_view_set_text (view, "Title\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n| 3 | 4 |");
  g_assert_false (nth_child (GTK_WIDGET (view), 0) == heading);
  g_assert_true (GTK_IS_LABEL (nth_child (GTK_WIDGET (view), 0)));
  g_assert_false (gtk_widget_has_css_class (nth_child (GTK_WIDGET (view), 0), "title-1"));

  g_object_unref (view);
}

/* Growing the text however it grows gives the tree a fresh view builds from the final text. */
static void
test_streaming (void)
{
  AppMarkdownView *fresh = g_object_ref_sink (app_markdown_view_new ());
  gsize length = strlen (long_answer);
  g_autofree char *expected = NULL;
  GtkWidget *first = NULL;
  guint steps[] = { 1, 3, 17 };

  app_markdown_view_set_text (fresh, long_answer);
  expected = dump_view (fresh);
  g_assert_cmpuint (n_children (GTK_WIDGET (fresh)), ==, 10);

  for (gsize s = 0; s < G_N_ELEMENTS (steps); s++)
    {
      AppMarkdownView *view = g_object_ref_sink (app_markdown_view_new ());
      g_autofree char *actual = NULL;

      for (gsize end = 0; end <= length; end += steps[s])
        {
          g_autofree char *prefix = NULL;

          /* a stream delivers whole characters */
          while (end < length && (long_answer[end] & 0xC0) == 0x80)
            end++;
          prefix = g_strndup (long_answer, end);
          app_markdown_view_set_text (view, prefix);

          /* once the heading is complete, its widget stays for the rest of the stream */
          if (end > strlen ("# Analysis of the image\n"))
            {
              if (first == NULL)
                first = nth_child (GTK_WIDGET (view), 0);
              g_assert_true (nth_child (GTK_WIDGET (view), 0) == first);
            }
        }
      app_markdown_view_set_text (view, long_answer);
      g_assert_true (nth_child (GTK_WIDGET (view), 0) == first);
      first = NULL;

      actual = dump_view (view);
      g_assert_cmpstr (actual, ==, expected);
      g_object_unref (view);
    }

  g_object_unref (fresh);
}

static gboolean
window_is_mapped (GtkWidget *window)
{
  return gtk_widget_get_mapped (window);
}

/* Lays the answer out in a real window, wide and narrow: GTK warns (fatal here) about widgets
 * that cannot be given the size they ask for. */
static void
test_layout (void)
{
  GtkWidget *window = gtk_window_new ();
  GtkWidget *scroller = gtk_scrolled_window_new ();
  AppMarkdownView *view = app_markdown_view_new ();
  int widths[] = { 800, 360, 200 };

  gtk_scrolled_window_set_policy (GTK_SCROLLED_WINDOW (scroller),
                                  GTK_POLICY_NEVER, GTK_POLICY_AUTOMATIC);
  gtk_scrolled_window_set_child (GTK_SCROLLED_WINDOW (scroller), GTK_WIDGET (view));
  gtk_window_set_child (GTK_WINDOW (window), scroller);
  gtk_window_set_default_size (GTK_WINDOW (window), widths[0], 600);
  app_markdown_view_set_text (view, long_answer);
  gtk_window_present (GTK_WINDOW (window));

  for (guint i = 0; i < 200 && !window_is_mapped (window); i++)
    run_loop_for (10);
  g_assert_true (window_is_mapped (window));

  for (gsize i = 0; i < G_N_ELEMENTS (widths); i++)
    {
      int min, nat;

      gtk_window_set_default_size (GTK_WINDOW (window), widths[i], 600);
      run_loop_for (100);

      /* the answer wraps, tables and code scroll: it never needs the whole width */
      gtk_widget_measure (GTK_WIDGET (view), GTK_ORIENTATION_HORIZONTAL, -1, &min, &nat,
                          NULL, NULL);
      g_assert_cmpint (min, <, 200);

      /* streaming into a shown view */
      app_markdown_view_set_text (view, i % 2 ? long_answer : "# Analysis of the image\n\nThe");
      run_loop_for (50);
    }

  gtk_window_destroy (GTK_WINDOW (window));
  run_loop_for (50);
}

int
main (int   argc,
      char *argv[])
{
  /* a test machine has no session bus for the accessibility bridge, and GTK warns (fatally,
   * under GTest) when it cannot reach one; nothing here needs it */
  g_setenv ("GTK_A11Y", "none", FALSE);
  gtk_test_init (&argc, &argv, NULL);

  g_test_add_func ("/app/markdown-view/text-property", test_text_property);
  g_test_add_func ("/app/markdown-view/blocks", test_blocks);
  g_test_add_func ("/app/markdown-view/heading-levels", test_heading_levels);
  g_test_add_func ("/app/markdown-view/lists", test_lists);
  g_test_add_func ("/app/markdown-view/table", test_table);
  g_test_add_func ("/app/markdown-view/links", test_links);
  g_test_add_func ("/app/markdown-view/copy", test_copy);
  g_test_add_func ("/app/markdown-view/keeps-widgets", test_keeps_widgets);
  g_test_add_func ("/app/markdown-view/streaming", test_streaming);
  g_test_add_func ("/app/markdown-view/layout", test_layout);

  return g_test_run ();
}
