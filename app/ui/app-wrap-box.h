/* app-wrap-box.h - children in a row that wraps onto more rows when the width runs out. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

#define APP_TYPE_WRAP_BOX (app_wrap_box_get_type ())
G_DECLARE_FINAL_TYPE (AppWrapBox, app_wrap_box, APP, WRAP_BOX, GtkWidget)

/* Property "spacing": pixels between children and between rows. */
GtkWidget       *app_wrap_box_new              (int              spacing);
void             app_wrap_box_append           (AppWrapBox      *self,
                                                GtkWidget       *child);
void             app_wrap_box_remove           (AppWrapBox      *self,
                                                GtkWidget       *child);
void             app_wrap_box_remove_all       (AppWrapBox      *self);

G_END_DECLS
