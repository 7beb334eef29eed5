/* ui-find.h - finding what a window shows: widgets that are on screen (mapped), by what they
 * say or do. For the UI tests, which look at the real window as a person would. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

typedef gboolean (*UiMatch) (GtkWidget *widget, gconstpointer data);

/* The first mapped widget under `root` (itself included) that `match` accepts, depth first. */
GtkWidget       *ui_find_mapped                (GtkWidget       *root,
                                                UiMatch          match,
                                                gconstpointer    data);
/* The first widget under `root` (itself included) that `match` accepts among those shown with
 * all their parents, mapped or not yet (a toast fading in), depth first. */
GtkWidget       *ui_find_visible               (GtkWidget       *root,
                                                UiMatch          match,
                                                gconstpointer    data);
/* Mapped: a label whose text holds `needle`; a button acting on `action` ("win.stop"); an
 * image showing the icon `icon_name`; a widget of `type` (a GType cast to a pointer). */
GtkWidget       *ui_find_label                 (GtkWidget       *root,
                                                const char      *needle);
GtkWidget       *ui_find_action_button         (GtkWidget       *root,
                                                const char      *action);
GtkWidget       *ui_find_icon                  (GtkWidget       *root,
                                                const char      *icon_name);
GtkWidget       *ui_find_type                  (GtkWidget       *root,
                                                GType            type);
/* Any widget of `type` under `root`, shown or not. */
GtkWidget       *ui_find_any                   (GtkWidget       *root,
                                                GType            type);
/* A visible label under `root` (mapped or not, as a toast's while it fades in) holds `text`. */
gboolean         ui_find_shows_text            (GtkWidget       *root,
                                                const char      *text);
/* The window `root`'s toast overlay shows a toast saying `text`. */
gboolean         ui_find_toast                 (GtkWidget       *root,
                                                const char      *text);
/* The sidebar's chat list: the list view whose model is a single selection. */
GtkListView     *ui_find_chat_list             (GtkWidget       *root);
/* The position of `chat` in the sidebar's chat list under `root`; fails when it is not there. */
guint            ui_find_chat_position         (GtkWidget       *root,
                                                gpointer         chat);
/* The first event controller of `type` on `widget` (the widget keeps it), or NULL. */
GtkEventController *ui_find_controller         (GtkWidget       *widget,
                                                GType            type);
/* The composer's send (or stop) button. */
GtkWidget       *ui_find_send_button           (GtkWidget       *composer);

G_END_DECLS
