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
/* The path of the golden test image `name` ($VL2_GOLDEN_DIR/images/name). */
char            *ui_harness_golden_image       (const char      *name);
/* The grounding fixture: tests/app/fixtures/grounding-chat.json ($VL2_APP_FIXTURES) with its
 * two golden images, the last answer a grounded caption of the giraffes. */
void             ui_harness_add_grounding_chat (void);
/* The `n`th visible widget of `type` (0 = the first) in `root`, depth first, or NULL. */
GtkWidget       *ui_harness_find_widget        (GtkWidget       *root,
                                                GType            type,
                                                guint            n);
/* The shown row (an AppMessageRow) under `root` of `message`, or NULL while the conversation has
 * made none for it. */
GtkWidget       *ui_harness_message_row        (GtkWidget       *root,
                                                AppMessage      *message);
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
/* For ui_harness_wait, `data` the application: its active window is on screen. */
gboolean         ui_harness_window_mapped      (gpointer         app);
/* ui_harness_wait with the 120 s the UI tests give anything to happen. */
void             ui_harness_wait_for           (gboolean       (*done) (gpointer),
                                                gpointer         data,
                                                const char      *what);
/* Runs the main loop until the model is ready; fails on a load error or after timeout_s. */
void             ui_harness_wait_ready         (AppApplication  *app,
                                                int              timeout_s);
/* The newest chat of the application (the first in its store), a new reference; fails when
 * there is none. */
AppChat         *ui_harness_newest_chat        (AppApplication  *app);
/* The chat `id` of the application's store, or NULL; the store holds the reference. */
AppChat         *ui_harness_find_chat          (AppApplication  *app,
                                                const char      *id);
/* The last message of `chat`, a new reference, or NULL when the chat is empty. */
AppMessage      *ui_harness_last_message       (AppChat         *chat);
/* The last message of the newest chat, a new reference, or NULL. */
AppMessage      *ui_harness_newest_message     (AppApplication  *app);
/* `m` is an answer that has come to an end: complete, stopped or failed (an interrupted one
 * has not: it waits to be continued). */
gboolean         ui_harness_answer_ended       (AppMessage      *m);
/* `m` is an answer no longer pending nor streaming: ended, or interrupted. */
gboolean         ui_harness_answer_settled     (AppMessage      *m);
/* `m` is an answer streaming, with at least `min_bytes` of its text written. */
gboolean         ui_harness_answer_streaming   (AppMessage      *m,
                                                gsize            min_bytes);
/* For ui_harness_wait, `data` the application: the newest chat's last message is an answer
 * that has ended (as ui_harness_answer_ended), or one streaming with some text written. */
gboolean         ui_harness_newest_answer_ended (gpointer        app);
gboolean         ui_harness_newest_answer_streaming (gpointer    app);
/* For ui_harness_wait: the gboolean that `data` points to is TRUE. */
gboolean         ui_harness_flag_set           (gpointer         data);
/* The text on `clipboard`, read as a paste does, running the main loop until it comes; fails
 * on an error or after timeout_s. */
char            *ui_harness_clipboard_text     (GdkClipboard    *clipboard,
                                                int              timeout_s);
/* Renders a widget (a window: with its shadow) as it is now to a PNG, one pixel per logical
 * pixel. */
gboolean         ui_harness_render_png         (GtkWidget       *widget,
                                                const char      *path,
                                                GError         **error);

G_END_DECLS
