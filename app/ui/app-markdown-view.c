/* app-markdown-view.c - turns the block tree of app/core/app-markdown.c into widgets.
 *
 * Each top-level block becomes one child of the view: a wrapping, selectable GtkLabel for
 * paragraphs and headings (one with links is not selectable, so that Tab reaches each link),
 * a framed monospace label with a copy button for code, nested boxes for quotes and lists, a
 * GtkGrid for tables, a separator for rules. The inline formatting is already Pango markup,
 * escaped and with links filtered, so labels take it as it is.
 *
 * While an answer streams, set_text is called with a slightly longer text every few tokens.
 * Rebuilding every widget each time would make a long answer stutter and would reset the
 * scroll position and any selection, so the view keeps the widgets of the leading blocks that
 * are unchanged, updates the first changed block in place when it is still the same kind of
 * thing (the paragraph, code block, list item or table being written, recursively inside
 * quotes and lists), and rebuilds only what follows.
 */

#define G_LOG_DOMAIN "sightline-markdown-view"

#include "app-markdown-view.h"

#include <glib/gi18n.h>
#include <string.h>

#include "app-grounding.h"
#include "app-markdown.h"

/* How long the copy button shows its check mark before it is a copy button again. */
#define COPY_FEEDBACK_MS 1500

struct _AppMarkdownView
{
  GtkWidget parent_instance;

  char *text;
  GPtrArray *blocks;    /* AppMdBlock* of text, owned; the view has one child per block */
  int hovered_chip;     /* the grounding chip under the pointer, -1 for none */
};

G_DEFINE_FINAL_TYPE (AppMarkdownView, app_markdown_view, GTK_TYPE_WIDGET)

enum {
  PROP_0,
  PROP_TEXT,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

enum {
  CHIP_HOVERED,
  CHIP_ACTIVATED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

/* Keys of the object data that let a code block be updated in place and its button copy. */
#define DATA_CODE_LABEL   "app-md-code-label"
#define DATA_COPY_BUTTON  "app-md-copy-button"
#define DATA_CODE_TEXT    "app-md-code-text"
#define DATA_COPY_RESET   "app-md-copy-reset"
#define DATA_LIST_MARKER  "app-md-list-marker"
#define DATA_LIST_CONTENT "app-md-list-content"

static GtkWidget *build_block (const AppMdBlock *block,
                               int               list_depth);

static gboolean
on_activate_link (GtkLabel   *label,
                  const char *uri,
                  gpointer    user_data)
{
  const char *scheme = g_uri_peek_scheme (uri);
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (label));
  int chip = app_grounding_ref_from_uri (uri);
  GtkWidget *view = gtk_widget_get_ancestor (GTK_WIDGET (label), APP_TYPE_MARKDOWN_VIEW);

  if (chip >= 0)
    {
      if (view)
        g_signal_emit (view, signals[CHIP_ACTIVATED], 0, chip);
      return TRUE;
    }

  /* the parser only writes links with these schemes; checking again costs nothing and keeps
   * anything else from reaching the desktop's URI handlers */
  if (g_strcmp0 (scheme, "http") == 0 || g_strcmp0 (scheme, "https") == 0 ||
      g_strcmp0 (scheme, "mailto") == 0)
    gtk_show_uri (GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL, uri, GDK_CURRENT_TIME);

  /* handled: GtkLabel's own handler would open any scheme */
  return TRUE;
}

/* ------------------------------------------------------------------------------------------
 * Grounding chips under the pointer
 *
 * Chips are links (see app-grounding.h). GTK 4.8 says which link has the keyboard cursor
 * (gtk_label_get_current_uri) but not which one is under the pointer, so each label keeps the
 * ranges of its chips in its text, read from the markup it was given the way GtkLabel reads
 * it, and the pointer's position goes through the label's Pango layout to a byte of that text.
 */

typedef struct
{
  int start, end;       /* bytes of the label's text */
  int chip;
} ChipRange;

typedef struct
{
  GArray *ranges;       /* ChipRange */
  int text_len;
  int open;             /* the chip of the link being read, -1 outside chips */
  int open_start;
  int depth;            /* of elements inside that link */
} ChipParse;

static void
chip_start_element (GMarkupParseContext  *context,
                    const char           *element,
                    const char          **names,
                    const char          **values,
                    gpointer              user_data,
                    GError              **error)
{
  ChipParse *p = user_data;

  if (p->depth > 0)
    {
      p->depth++;
      return;
    }
  if (!g_str_equal (element, "a"))
    return;
  p->depth = 1;
  p->open = -1;
  p->open_start = p->text_len;
  for (guint i = 0; names[i]; i++)
    if (g_str_equal (names[i], "href"))
      p->open = app_grounding_ref_from_uri (values[i]);
}

static void
chip_end_element (GMarkupParseContext  *context,
                  const char           *element,
                  gpointer              user_data,
                  GError              **error)
{
  ChipParse *p = user_data;

  if (p->depth == 0 || --p->depth > 0)
    return;
  if (p->open >= 0 && p->text_len > p->open_start)
    {
      ChipRange r = { p->open_start, p->text_len, p->open };

      g_array_append_val (p->ranges, r);
    }
  p->open = -1;
}

static void
chip_text (GMarkupParseContext  *context,
           const char           *text,
           gsize                 len,
           gpointer              user_data,
           GError              **error)
{
  ChipParse *p = user_data;

  /* entities come decoded: the length is that of the label's text */
  p->text_len += (int) len;
}

/* The chips of a label's markup, or NULL when it has none. */
static GArray *
chip_ranges (const char *markup)
{
  static const GMarkupParser parser = { chip_start_element, chip_end_element, chip_text,
                                        NULL, NULL };
  ChipParse p = { NULL, 0, -1, 0, 0 };
  g_autoptr(GMarkupParseContext) context = NULL;

  if (!strstr (markup, APP_GROUNDING_SCHEME ":"))
    return NULL;
  p.ranges = g_array_new (FALSE, FALSE, sizeof (ChipRange));
  context = g_markup_parse_context_new (&parser, 0, &p, NULL);
  if (!g_markup_parse_context_parse (context, "<markup>", -1, NULL) ||
      !g_markup_parse_context_parse (context, markup, -1, NULL) ||
      !g_markup_parse_context_parse (context, "</markup>", -1, NULL) ||
      !g_markup_parse_context_end_parse (context, NULL) || p.ranges->len == 0)
    g_clear_pointer (&p.ranges, g_array_unref);
  return p.ranges;
}

#define DATA_CHIP_RANGES "app-md-chip-ranges"

/* Every label of the view takes its markup here, so its chips are known.
 * Text with links (grounding chips too) is not selectable: GTK moves Tab from link to link
 * only in a label that is not, and a selectable label takes one Tab stop for all its links,
 * selecting its text. Text without links stays selectable, with one stop. */
static void
label_set_markup (GtkWidget  *label,
                  const char *markup)
{
  gtk_label_set_markup (GTK_LABEL (label), markup);
  gtk_label_set_selectable (GTK_LABEL (label), strstr (markup, "<a ") == NULL);
  g_object_set_data_full (G_OBJECT (label), DATA_CHIP_RANGES, chip_ranges (markup),
                          (GDestroyNotify) g_array_unref);
}

/* The chip at (x, y) of the label, or -1: on its text, not beside a line's end. */
static int
chip_at (GtkLabel *label,
         double    x,
         double    y)
{
  GArray *ranges = g_object_get_data (G_OBJECT (label), DATA_CHIP_RANGES);
  PangoLayout *layout;
  int lx, ly, index, trailing;

  if (!ranges)
    return -1;
  layout = gtk_label_get_layout (label);
  gtk_label_get_layout_offsets (label, &lx, &ly);
  if (!pango_layout_xy_to_index (layout, (int) ((x - lx) * PANGO_SCALE),
                                 (int) ((y - ly) * PANGO_SCALE), &index, &trailing))
    return -1;
  for (guint i = 0; i < ranges->len; i++)
    {
      const ChipRange *r = &g_array_index (ranges, ChipRange, i);

      if (index >= r->start && index < r->end)
        return r->chip;
    }
  return -1;
}

static void
set_hovered_chip (GtkWidget *label,
                  int        chip)
{
  AppMarkdownView *view = APP_MARKDOWN_VIEW (gtk_widget_get_ancestor (label,
                                                                      APP_TYPE_MARKDOWN_VIEW));

  if (!view || view->hovered_chip == chip)
    return;
  view->hovered_chip = chip;
  g_signal_emit (view, signals[CHIP_HOVERED], 0, chip);
}

static void
label_motion_cb (GtkEventControllerMotion *motion,
                 double                    x,
                 double                    y,
                 GtkLabel                 *label)
{
  set_hovered_chip (GTK_WIDGET (label), chip_at (label, x, y));
}

static void
label_leave_cb (GtkEventControllerMotion *motion,
                GtkLabel                 *label)
{
  set_hovered_chip (GTK_WIDGET (label), -1);
}

static GtkWidget *
markup_label_new (const char *markup)
{
  GtkWidget *label = gtk_label_new (NULL);
  GtkEventController *motion = gtk_event_controller_motion_new ();

  label_set_markup (label, markup);
  gtk_label_set_wrap (GTK_LABEL (label), TRUE);
  gtk_label_set_wrap_mode (GTK_LABEL (label), PANGO_WRAP_WORD_CHAR);
  gtk_label_set_xalign (GTK_LABEL (label), 0.0f);
  gtk_label_set_yalign (GTK_LABEL (label), 0.0f);
  gtk_widget_set_halign (label, GTK_ALIGN_FILL);
  g_signal_connect (label, "activate-link", G_CALLBACK (on_activate_link), NULL);
  g_signal_connect (motion, "motion", G_CALLBACK (label_motion_cb), label);
  g_signal_connect (motion, "leave", G_CALLBACK (label_leave_cb), label);
  gtk_widget_add_controller (label, motion);

  return label;
}

static GtkWidget *
heading_new (const AppMdBlock *block)
{
  /* libadwaita's type scale has four title sizes; the two smallest headings look like bold
   * body text, which is what its "heading" class is */
  const char *classes[] = { "title-1", "title-2", "title-3", "title-4", "heading", "heading" };
  GtkWidget *label = markup_label_new (block->markup);

  gtk_widget_add_css_class (label, "md-heading");
  gtk_widget_add_css_class (label, classes[CLAMP (block->level, 1, 6) - 1]);

  return label;
}

static void
remove_source (gpointer data)
{
  g_source_remove (GPOINTER_TO_UINT (data));
}

static gboolean
reset_copy_icon (gpointer user_data)
{
  GtkButton *button = user_data;

  /* the source is ending by itself: forget it without removing it */
  g_object_steal_data (G_OBJECT (button), DATA_COPY_RESET);
  gtk_button_set_icon_name (button, "edit-copy-symbolic");

  return G_SOURCE_REMOVE;
}

static void
on_copy_clicked (GtkButton *button,
                 gpointer   user_data)
{
  const char *code = g_object_get_data (G_OBJECT (button), DATA_CODE_TEXT);
  guint source;

  gdk_clipboard_set_text (gtk_widget_get_clipboard (GTK_WIDGET (button)), code ? code : "");
  gtk_button_set_icon_name (button, "object-select-symbolic");

  /* The button does not hold a reference for the timeout: the source is removed with the
   * button's data if the button goes first (the answer was rebuilt or the chat closed), and
   * a second click replaces the first click's source. */
  source = g_timeout_add (COPY_FEEDBACK_MS, reset_copy_icon, button);
  g_source_set_name_by_id (source, "[sightline] copy feedback");
  g_object_set_data_full (G_OBJECT (button), DATA_COPY_RESET, GUINT_TO_POINTER (source),
                          remove_source);
}

static GtkWidget *
code_block_new (const AppMdBlock *block)
{
  GtkWidget *frame, *box, *header, *language, *button, *scroller, *label;
  PangoAttrList *attrs;

  frame = gtk_frame_new (NULL);
  gtk_widget_add_css_class (frame, "md-code");
  gtk_widget_set_overflow (frame, GTK_OVERFLOW_HIDDEN);

  box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 0);
  gtk_frame_set_child (GTK_FRAME (frame), box);

  header = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
  gtk_widget_add_css_class (header, "md-code-header");
  gtk_box_append (GTK_BOX (box), header);

  language = gtk_label_new (block->language);
  gtk_label_set_xalign (GTK_LABEL (language), 0.0f);
  gtk_label_set_ellipsize (GTK_LABEL (language), PANGO_ELLIPSIZE_END);
  gtk_widget_set_hexpand (language, TRUE);
  gtk_widget_add_css_class (language, "dim-label");
  gtk_widget_add_css_class (language, "caption");
  gtk_box_append (GTK_BOX (header), language);

  button = gtk_button_new_from_icon_name ("edit-copy-symbolic");
  gtk_widget_add_css_class (button, "flat");
  gtk_widget_add_css_class (button, "md-code-copy");
  /* in a conversation, a button that took the focus would have the list scroll to its row */
  gtk_widget_set_focus_on_click (button, FALSE);
  gtk_widget_set_valign (button, GTK_ALIGN_CENTER);
  gtk_widget_set_tooltip_text (button, _("Copy"));
  gtk_accessible_update_property (GTK_ACCESSIBLE (button),
                                  GTK_ACCESSIBLE_PROPERTY_LABEL, _("Copy code"),
                                  -1);
  g_object_set_data_full (G_OBJECT (button), DATA_CODE_TEXT, g_strdup (block->code), g_free);
  g_signal_connect (button, "clicked", G_CALLBACK (on_copy_clicked), NULL);
  gtk_box_append (GTK_BOX (header), button);

  /* code keeps its lines: long ones scroll sideways instead of wrapping */
  scroller = gtk_scrolled_window_new ();
  gtk_scrolled_window_set_policy (GTK_SCROLLED_WINDOW (scroller),
                                  GTK_POLICY_AUTOMATIC, GTK_POLICY_NEVER);
  gtk_scrolled_window_set_propagate_natural_height (GTK_SCROLLED_WINDOW (scroller), TRUE);
  gtk_box_append (GTK_BOX (box), scroller);

  label = gtk_label_new (block->code);
  gtk_label_set_selectable (GTK_LABEL (label), TRUE);
  gtk_label_set_wrap (GTK_LABEL (label), FALSE);
  gtk_label_set_xalign (GTK_LABEL (label), 0.0f);
  gtk_label_set_yalign (GTK_LABEL (label), 0.0f);
  gtk_widget_add_css_class (label, "monospace");
  gtk_widget_add_css_class (label, "md-code-text");
  /* the attribute, not only the class, so the code is monospace whatever the style sheet */
  attrs = pango_attr_list_new ();
  pango_attr_list_insert (attrs, pango_attr_family_new ("monospace"));
  gtk_label_set_attributes (GTK_LABEL (label), attrs);
  pango_attr_list_unref (attrs);
  gtk_scrolled_window_set_child (GTK_SCROLLED_WINDOW (scroller), label);

  g_object_set_data (G_OBJECT (frame), DATA_CODE_LABEL, label);
  g_object_set_data (G_OBJECT (frame), DATA_COPY_BUTTON, button);

  return frame;
}

static void
append_blocks (GtkWidget *parent,
               GPtrArray *blocks,
               guint      first,
               int        list_depth)
{
  for (guint i = first; i < blocks->len; i++)
    gtk_widget_insert_before (build_block (g_ptr_array_index (blocks, i), list_depth),
                              parent, NULL);
}

static GtkWidget *
quote_new (const AppMdBlock *block,
           int               list_depth)
{
  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 8);

  gtk_widget_add_css_class (box, "quote");
  append_blocks (box, block->children, 0, list_depth);

  return box;
}

/* Numbers are right-aligned in a column as wide as the widest of them. */
static int
list_marker_chars (const AppMdBlock *list)
{
  g_autofree char *last = NULL;

  if (!list->ordered)
    return 1;

  last = g_strdup_printf ("%" G_GINT64_FORMAT ".",
                          (gint64) list->start + MAX (list->children->len, 1) - 1);
  return (int) strlen (last);
}

static GtkWidget *
list_row_new (const AppMdBlock *list,
              guint             index,
              int               list_depth)
{
  /* a different bullet per level tells nested lists apart, as browsers do */
  const char *bullets[] = { "•", "◦", "▪" };
  const AppMdBlock *item = g_ptr_array_index (list->children, index);
  GtkWidget *row, *content;

  row = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
  gtk_widget_add_css_class (row, "md-list-item");

  /* a task item of a bulleted list shows its box instead of the bullet */
  if (list->ordered || item->checked < 0)
    {
      g_autofree char *number = NULL;
      GtkWidget *marker;

      if (list->ordered)
        number = g_strdup_printf ("%" G_GINT64_FORMAT ".", (gint64) list->start + index);
      marker = gtk_label_new (list->ordered ? number : bullets[list_depth % 3]);
      gtk_label_set_xalign (GTK_LABEL (marker), list->ordered ? 1.0f : 0.5f);
      gtk_label_set_width_chars (GTK_LABEL (marker), list_marker_chars (list));
      gtk_widget_set_valign (marker, GTK_ALIGN_START);
      gtk_widget_add_css_class (marker, "md-list-marker");
      gtk_box_append (GTK_BOX (row), marker);
      g_object_set_data (G_OBJECT (row), DATA_LIST_MARKER, marker);
    }

  if (item->checked >= 0)
    {
      /* shows the state and reads as a checkbox to a screen reader, but the answer is not a
       * form: clicks and focus pass it by */
      GtkWidget *check = gtk_check_button_new ();

      gtk_check_button_set_active (GTK_CHECK_BUTTON (check), item->checked > 0);
      gtk_widget_set_can_target (check, FALSE);
      gtk_widget_set_focusable (check, FALSE);
      gtk_widget_set_valign (check, GTK_ALIGN_START);
      gtk_widget_add_css_class (check, "md-task");
      gtk_box_append (GTK_BOX (row), check);
    }

  content = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);
  gtk_widget_set_hexpand (content, TRUE);
  append_blocks (content, item->children, 0, list_depth + 1);
  gtk_box_append (GTK_BOX (row), content);
  g_object_set_data (G_OBJECT (row), DATA_LIST_CONTENT, content);

  return row;
}

static GtkWidget *
list_new (const AppMdBlock *block,
          int               list_depth)
{
  GtkWidget *list = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);

  gtk_widget_add_css_class (list, "md-list");
  for (guint i = 0; i < block->children->len; i++)
    gtk_box_append (GTK_BOX (list), list_row_new (block, i, list_depth));

  return list;
}

static const char *
table_cell_markup (const AppMdBlock *table,
                   int               row,
                   int               col)
{
  guint index = (guint) (row * table->n_columns + col);

  return index < table->cells->len ? g_ptr_array_index (table->cells, index) : "";
}

static void
table_cell_set (GtkWidget        *label,
                const AppMdBlock *table,
                int               row,
                int               col)
{
  const char *cell = table_cell_markup (table, row, col);

  if (row == 0)
    {
      g_autofree char *header = g_strconcat ("<b>", cell, "</b>", NULL);

      label_set_markup (label, header);
    }
  else
    {
      label_set_markup (label, cell);
    }

  /* the header's bottom line is the same as the body's lines: only the last row has none */
  if (row < table->n_rows - 1)
    gtk_widget_add_css_class (label, "md-table-divided");
  else
    gtk_widget_remove_css_class (label, "md-table-divided");
}

static GtkWidget *
table_cell_new (const AppMdBlock *table,
                int               row,
                int               col)
{
  GtkWidget *label = markup_label_new ("");
  float xalign;

  /* long cells wrap rather than make the whole table as wide as their text */
  gtk_label_set_max_width_chars (GTK_LABEL (label), 40);

  switch (table->align[col])
    {
    case 'c':
      xalign = 0.5f;
      gtk_label_set_justify (GTK_LABEL (label), GTK_JUSTIFY_CENTER);
      break;
    case 'r':
      xalign = 1.0f;
      gtk_label_set_justify (GTK_LABEL (label), GTK_JUSTIFY_RIGHT);
      break;
    default:
      xalign = 0.0f;
      break;
    }
  gtk_label_set_xalign (GTK_LABEL (label), xalign);

  gtk_widget_add_css_class (label, "md-table-cell");
  if (row == 0)
    gtk_widget_add_css_class (label, "md-table-header");

  table_cell_set (label, table, row, col);

  return label;
}

/* The grid is not put in a sideways-scrolling window: GtkScrolledWindow measures its child's
 * height for no width, which for wrapping cells is the height of one-letter lines. The cells
 * wrap instead, so a table is as narrow as the answer needs. */
static GtkWidget *
table_new (const AppMdBlock *block)
{
  GtkWidget *grid = gtk_grid_new ();

  gtk_widget_add_css_class (grid, "md-table");
  gtk_widget_set_overflow (grid, GTK_OVERFLOW_HIDDEN);
  gtk_widget_set_halign (grid, GTK_ALIGN_START);

  for (int row = 0; row < block->n_rows; row++)
    for (int col = 0; col < block->n_columns; col++)
      gtk_grid_attach (GTK_GRID (grid), table_cell_new (block, row, col), col, row, 1, 1);

  return grid;
}

static GtkWidget *
rule_new (void)
{
  GtkWidget *separator = gtk_separator_new (GTK_ORIENTATION_HORIZONTAL);

  gtk_widget_add_css_class (separator, "md-rule");
  return separator;
}

static GtkWidget *
build_block (const AppMdBlock *block,
             int               list_depth)
{
  switch (block->kind)
    {
    case APP_MD_PARAGRAPH:
      return markup_label_new (block->markup);
    case APP_MD_HEADING:
      return heading_new (block);
    case APP_MD_CODE:
      return code_block_new (block);
    case APP_MD_QUOTE:
      return quote_new (block, list_depth);
    case APP_MD_LIST:
      return list_new (block, list_depth);
    case APP_MD_TABLE:
      return table_new (block);
    case APP_MD_RULE:
      return rule_new ();
    case APP_MD_LIST_ITEM:
    default:
      /* items only appear inside lists; an empty box keeps widgets and blocks in step */
      return gtk_box_new (GTK_ORIENTATION_VERTICAL, 0);
    }
}

static gboolean update_block (GtkWidget        *widget,
                              const AppMdBlock *old,
                              const AppMdBlock *block,
                              int               list_depth);

/* Brings `parent`, whose children were built one per block of `old`, to show `blocks`: the
 * leading children whose blocks are unchanged stay, the first changed one is updated in place
 * if it can be, and the rest is rebuilt. Returns the index of the first rebuilt block. */
static guint
update_children (GtkWidget *parent,
                 GPtrArray *old,
                 GPtrArray *blocks,
                 int        list_depth)
{
  GtkWidget *child = gtk_widget_get_first_child (parent);
  guint first = 0;

  while (child != NULL && first < old->len && first < blocks->len &&
         app_md_block_equal (g_ptr_array_index (old, first), g_ptr_array_index (blocks, first)))
    {
      child = gtk_widget_get_next_sibling (child);
      first++;
    }

  if (child != NULL && first < old->len && first < blocks->len &&
      update_block (child, g_ptr_array_index (old, first), g_ptr_array_index (blocks, first),
                    list_depth))
    {
      child = gtk_widget_get_next_sibling (child);
      first++;
    }

  while (child != NULL)
    {
      GtkWidget *next = gtk_widget_get_next_sibling (child);

      gtk_widget_unparent (child);
      child = next;
    }

  append_blocks (parent, blocks, first, list_depth);

  return first;
}

static gboolean
update_list (GtkWidget        *widget,
             const AppMdBlock *old,
             const AppMdBlock *list,
             int               list_depth)
{
  GtkWidget *row = gtk_widget_get_first_child (widget);
  guint first = 0;

  if (old->ordered != list->ordered || old->start != list->start)
    return FALSE;

  while (row != NULL && first < old->children->len && first < list->children->len &&
         app_md_block_equal (g_ptr_array_index (old->children, first),
                             g_ptr_array_index (list->children, first)))
    {
      row = gtk_widget_get_next_sibling (row);
      first++;
    }

  /* the item being written: the same box, new content */
  if (row != NULL && first < old->children->len && first < list->children->len)
    {
      const AppMdBlock *old_item = g_ptr_array_index (old->children, first);
      const AppMdBlock *item = g_ptr_array_index (list->children, first);
      GtkWidget *content = g_object_get_data (G_OBJECT (row), DATA_LIST_CONTENT);

      if (old_item->checked == item->checked && content != NULL)
        {
          update_children (content, old_item->children, item->children, list_depth + 1);
          row = gtk_widget_get_next_sibling (row);
          first++;
        }
    }

  while (row != NULL)
    {
      GtkWidget *next = gtk_widget_get_next_sibling (row);

      gtk_box_remove (GTK_BOX (widget), row);
      row = next;
    }

  for (guint i = first; i < list->children->len; i++)
    gtk_box_append (GTK_BOX (widget), list_row_new (list, i, list_depth));

  /* a tenth item widens the column of numbers of the first nine */
  if (list->ordered && list_marker_chars (list) != list_marker_chars (old))
    for (row = gtk_widget_get_first_child (widget); row; row = gtk_widget_get_next_sibling (row))
      {
        GtkWidget *marker = g_object_get_data (G_OBJECT (row), DATA_LIST_MARKER);

        if (marker != NULL)
          gtk_label_set_width_chars (GTK_LABEL (marker), list_marker_chars (list));
      }

  return TRUE;
}

static gboolean
update_table (GtkWidget        *widget,
              const AppMdBlock *old,
              const AppMdBlock *table)
{
  GtkWidget *grid = widget;

  /* a table only grows while it streams; anything else is rare enough to rebuild */
  if (old->n_columns != table->n_columns ||
      g_strcmp0 (old->align, table->align) != 0 || table->n_rows < old->n_rows)
    return FALSE;

  for (int row = 0; row < table->n_rows; row++)
    for (int col = 0; col < table->n_columns; col++)
      {
        GtkWidget *label = gtk_grid_get_child_at (GTK_GRID (grid), col, row);

        /* setting a label's markup again would drop its selection: only touch the cells
         * that changed, and the old last row, which now has a row below it */
        if (label == NULL)
          gtk_grid_attach (GTK_GRID (grid), table_cell_new (table, row, col), col, row, 1, 1);
        else if (row >= old->n_rows - 1 ||
                 g_strcmp0 (table_cell_markup (old, row, col),
                            table_cell_markup (table, row, col)) != 0)
          table_cell_set (label, table, row, col);
      }

  return TRUE;
}

/* Makes `widget`, built for `old`, show `block` without replacing it when it is still the
 * same kind of thing: most often the last block of a streaming answer, whose text grew. */
static gboolean
update_block (GtkWidget        *widget,
              const AppMdBlock *old,
              const AppMdBlock *block,
              int               list_depth)
{
  if (old->kind != block->kind)
    return FALSE;

  switch (block->kind)
    {
    case APP_MD_PARAGRAPH:
      label_set_markup (widget, block->markup);
      return TRUE;

    case APP_MD_HEADING:
      if (old->level != block->level)
        return FALSE;
      label_set_markup (widget, block->markup);
      return TRUE;

    case APP_MD_CODE:
      {
        GtkWidget *label = g_object_get_data (G_OBJECT (widget), DATA_CODE_LABEL);
        GtkWidget *button = g_object_get_data (G_OBJECT (widget), DATA_COPY_BUTTON);

        if (g_strcmp0 (old->language, block->language) != 0 || label == NULL || button == NULL)
          return FALSE;
        gtk_label_set_text (GTK_LABEL (label), block->code);
        g_object_set_data_full (G_OBJECT (button), DATA_CODE_TEXT, g_strdup (block->code),
                                g_free);
        return TRUE;
      }

    case APP_MD_QUOTE:
      update_children (widget, old->children, block->children, list_depth);
      return TRUE;

    case APP_MD_LIST:
      return update_list (widget, old, block, list_depth);

    case APP_MD_TABLE:
      return update_table (widget, old, block);

    case APP_MD_LIST_ITEM:
    case APP_MD_RULE:
    default:
      return FALSE;
    }
}

void
app_markdown_view_set_text (AppMarkdownView *self,
                            const char      *markdown)
{
  g_autoptr(GPtrArray) blocks = NULL;

  g_return_if_fail (APP_IS_MARKDOWN_VIEW (self));

  if (markdown == NULL)
    markdown = "";

  if (g_strcmp0 (self->text, markdown) == 0)
    return;

  g_free (self->text);
  self->text = g_strdup (markdown);

  blocks = app_markdown_parse (self->text);
  update_children (GTK_WIDGET (self), self->blocks, blocks, 0);
  g_ptr_array_unref (self->blocks);
  self->blocks = g_steal_pointer (&blocks);

  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_TEXT]);
}

const char *
app_markdown_view_get_text (AppMarkdownView *self)
{
  g_return_val_if_fail (APP_IS_MARKDOWN_VIEW (self), NULL);

  return self->text;
}

AppMarkdownView *
app_markdown_view_new (void)
{
  return g_object_new (APP_TYPE_MARKDOWN_VIEW, NULL);
}

static void
app_markdown_view_get_property (GObject    *object,
                                guint       prop_id,
                                GValue     *value,
                                GParamSpec *pspec)
{
  AppMarkdownView *self = APP_MARKDOWN_VIEW (object);

  switch (prop_id)
    {
    case PROP_TEXT:
      g_value_set_string (value, self->text);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_markdown_view_set_property (GObject      *object,
                                guint         prop_id,
                                const GValue *value,
                                GParamSpec   *pspec)
{
  AppMarkdownView *self = APP_MARKDOWN_VIEW (object);

  switch (prop_id)
    {
    case PROP_TEXT:
      app_markdown_view_set_text (self, g_value_get_string (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_markdown_view_dispose (GObject *object)
{
  AppMarkdownView *self = APP_MARKDOWN_VIEW (object);
  GtkWidget *child;

  /* the children and the blocks stay in step, should the text be set again */
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self))) != NULL)
    gtk_widget_unparent (child);
  g_ptr_array_set_size (self->blocks, 0);

  G_OBJECT_CLASS (app_markdown_view_parent_class)->dispose (object);
}

static void
app_markdown_view_finalize (GObject *object)
{
  AppMarkdownView *self = APP_MARKDOWN_VIEW (object);

  g_free (self->text);
  g_ptr_array_unref (self->blocks);

  G_OBJECT_CLASS (app_markdown_view_parent_class)->finalize (object);
}

static void
app_markdown_view_class_init (AppMarkdownViewClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->get_property = app_markdown_view_get_property;
  object_class->set_property = app_markdown_view_set_property;
  object_class->dispose = app_markdown_view_dispose;
  object_class->finalize = app_markdown_view_finalize;

  /**
   * AppMarkdownView:text:
   *
   * The Markdown source shown, never %NULL. Setting it to a longer version of itself keeps
   * the widgets of the blocks that did not change.
   */
  properties[PROP_TEXT] =
    g_param_spec_string ("text", NULL, NULL,
                         "",
                         (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /* A grounding chip (a `sightline-ref:N` link) came under the pointer (N) or left it (-1),
   * or was clicked. */
  signals[CHIP_HOVERED] = g_signal_new ("chip-hovered", G_TYPE_FROM_CLASS (klass),
                                        G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE, 1,
                                        G_TYPE_INT);
  signals[CHIP_ACTIVATED] = g_signal_new ("chip-activated", G_TYPE_FROM_CLASS (klass),
                                          G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE,
                                          1, G_TYPE_INT);

  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BOX_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "markdownview");
}

static void
app_markdown_view_init (AppMarkdownView *self)
{
  GtkLayoutManager *layout = gtk_widget_get_layout_manager (GTK_WIDGET (self));

  gtk_orientable_set_orientation (GTK_ORIENTABLE (layout), GTK_ORIENTATION_VERTICAL);
  gtk_box_layout_set_spacing (GTK_BOX_LAYOUT (layout), 12);

  self->text = g_strdup ("");
  self->hovered_chip = -1;
  self->blocks = g_ptr_array_new_with_free_func ((GDestroyNotify) app_md_block_free);
}
