/* app-markdown-view.h - a widget that shows Markdown text (a model's answer) as labels, code
 * blocks, lists and tables.
 *
 * Set the whole text each time it grows; the view reparses it and rebuilds only the blocks
 * from the first one that changed, so a streamed answer can be bound to "text" directly.
 */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

#define APP_TYPE_MARKDOWN_VIEW (app_markdown_view_get_type ())

G_DECLARE_FINAL_TYPE (AppMarkdownView, app_markdown_view, APP, MARKDOWN_VIEW, GtkWidget)

AppMarkdownView *app_markdown_view_new      (void);
void             app_markdown_view_set_text (AppMarkdownView *self,
                                             const char      *markdown);
const char      *app_markdown_view_get_text (AppMarkdownView *self);

G_END_DECLS
