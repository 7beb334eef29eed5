/* ui-harness.h - what the UI test and the screenshot program share: a fresh user, the real
 * application with a golden mini model, and rendering a window to a PNG. */
#pragma once

#include <gtk/gtk.h>

#include "app-application.h"

G_BEGIN_DECLS

/* Points the XDG folders at a new temporary folder and the settings at memory, so nothing of
 * the person running the program is read or written. Returns the folder; call before GTK
 * starts. */
char            *ui_harness_isolate            (const char      *name);
/* The application, registered, with its settings aimed at the golden mini-tiny model in
 * $VL2_FIXTURE_DIR (the engine starts loading it at startup). */
AppApplication  *ui_harness_app_new            (void);
/* Runs the main loop for `seconds`. */
void             ui_harness_spin               (double           seconds);
/* Runs the main loop until the model is ready; fails on a load error or after timeout_s. */
void             ui_harness_wait_ready         (AppApplication  *app,
                                                int              timeout_s);
/* Renders the window as it is now to a PNG. */
gboolean         ui_harness_render_png         (GtkWidget       *window,
                                                const char      *path,
                                                GError         **error);

G_END_DECLS
