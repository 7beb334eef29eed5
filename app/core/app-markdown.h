/* app-markdown.h - Markdown (CommonMark + GitHub tables and strikethrough) -> a block tree whose
 * text is Pango markup, ready for GtkLabel. Parsing is md4c's; this file only shapes its events.
 *
 * No GTK here, so the tree is unit-tested without a display; app/ui/app-markdown-view.c turns
 * it into widgets. Raw HTML in the input is shown as text, never interpreted.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
  APP_MD_PARAGRAPH,  /* markup */
  APP_MD_HEADING,    /* markup, level 1..6 */
  APP_MD_CODE,       /* code (raw text, no trailing newline), language (the info string's first
                        word, entities decoded, or NULL) */
  APP_MD_QUOTE,      /* children */
  APP_MD_LIST,       /* children (APP_MD_LIST_ITEM), ordered, start (0 when unordered) */
  APP_MD_LIST_ITEM,  /* children (the text of a tight item is an APP_MD_PARAGRAPH child too);
                        checked = -1 (no task box), 0 or 1 */
  APP_MD_TABLE,      /* n_columns, n_rows (header row included), cells (markup, row-major),
                        align (n_columns of 'l', 'c', 'r' or '-') */
  APP_MD_RULE,       /* a thematic break */
} AppMdKind;

typedef struct _AppMdBlock AppMdBlock;

struct _AppMdBlock {
  AppMdKind kind;
  char *markup;
  int level;
  char *code;
  char *language;
  gboolean ordered;
  int start;
  int checked;
  GPtrArray *children;   /* AppMdBlock*, owned; non-NULL exactly for quotes, lists and items */
  int n_columns, n_rows;
  GPtrArray *cells;      /* char*, owned; non-NULL exactly for tables, n_rows * n_columns long */
  char *align;
};

/* The blocks of `text` (AppMdBlock*, owned by the array). Never fails: any input gives blocks. */
GPtrArray       *app_markdown_parse            (const char      *text);
void             app_md_block_free             (AppMdBlock      *block);
/* Structural equality, used to keep the widgets of unchanged blocks while an answer streams. */
gboolean         app_md_block_equal            (const AppMdBlock *a,
                                                const AppMdBlock *b);

G_END_DECLS
