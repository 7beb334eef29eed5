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
/* Puts a chat file and its images into the data folder, as the app keeps them (images named
 * by their sha256), before the application starts. Fails the program when it cannot. */
void             ui_harness_add_chat           (const char      *chat_file,
                                                const char * const *image_files);
/* The grounding fixture: tests/app/fixtures/grounding-chat.json ($VL2_APP_FIXTURES) with its
 * two golden images, the last answer a grounded caption of the giraffes. */
void             ui_harness_add_grounding_chat (void);
/* The `n`th visible widget of `type` (0 = the first) in `root`, depth first, or NULL. */
GtkWidget       *ui_harness_find_widget        (GtkWidget       *root,
                                                GType            type,
                                                guint            n);
/* Aims the settings at the golden mini model `name` in $VL2_FIXTURE_DIR ("mini-tiny"), or at
 * no model when NULL (the welcome page); a running application loads it at once. */
void             ui_harness_set_model          (const char      *name);
/* The application, registered, with its settings aimed at the golden mini-tiny model in
 * $VL2_FIXTURE_DIR (the engine starts loading it at startup). */
AppApplication  *ui_harness_app_new            (void);
/* Runs the main loop for `seconds`. */
void             ui_harness_spin               (double           seconds);
/* Runs the main loop until done (data) is TRUE; fails naming `what` after timeout_s. */
void             ui_harness_wait               (gboolean       (*done) (gpointer),
                                                gpointer         data,
                                                const char      *what,
                                                int              timeout_s);
/* Runs the main loop until the model is ready; fails on a load error or after timeout_s. */
void             ui_harness_wait_ready         (AppApplication  *app,
                                                int              timeout_s);
/* Renders a widget (a window: with its shadow) as it is now to a PNG, one pixel per logical
 * pixel. */
gboolean         ui_harness_render_png         (GtkWidget       *widget,
                                                const char      *path,
                                                GError         **error);

G_END_DECLS
