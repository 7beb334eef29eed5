/* app-drop-highlight.h - what shows over the window while images are dragged over it. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

#define APP_TYPE_DROP_HIGHLIGHT (app_drop_highlight_get_type ())
G_DECLARE_FINAL_TYPE (AppDropHighlight, app_drop_highlight, APP, DROP_HIGHLIGHT, GtkWidget)

AppDropHighlight *app_drop_highlight_new        (void);
/* Follows the drags that reach `target`'s widget: shown while one that offers `formats` (or
 * any, with NULL) is over it, until it leaves or drops. */
void              app_drop_highlight_track      (AppDropHighlight  *self,
                                                 GtkWidget         *target,
                                                 GdkContentFormats *formats);
/* Shown: the "active" property. */
void              app_drop_highlight_set_active (AppDropHighlight  *self,
                                                 gboolean           active);
gboolean          app_drop_highlight_get_active (AppDropHighlight  *self);

G_END_DECLS
