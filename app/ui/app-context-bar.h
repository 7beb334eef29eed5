/* app-context-bar.h - what the next question costs of the model's context, shown before it is
 * sent, and what to leave out when it does not fit. */
#pragma once

#include <gtk/gtk.h>

#include "app-chat.h"
#include "app-engine.h"

G_BEGIN_DECLS

#define APP_TYPE_CONTEXT_BAR (app_context_bar_get_type ())
G_DECLARE_FINAL_TYPE (AppContextBar, app_context_bar, APP, CONTEXT_BAR, GtkWidget)

/* Properties (read-only): "n-tokens" (the prompt the next question makes, with what is left
 * out; -1 until counted), "n-ctx" (the model's context; 0 until counted), "fits" (FALSE only
 * once a count says the question cannot be sent as it is), "leave-out-images" and
 * "leave-out-turns" (what the person chose to leave out of this chat to fit). */
AppContextBar   *app_context_bar_new           (void);
/* The engine that counts, the settings whose system prompt and answer length count too, and
 * the folder of the images' files. */
void             app_context_bar_set_engine    (AppContextBar   *self,
                                                AppEngine       *engine,
                                                GSettings       *settings,
                                                const char      *image_dir);
AppEngine       *app_context_bar_get_engine    (AppContextBar   *self);
/* The chat the question follows (NULL: a new chat). A new chat leaves nothing out. */
void             app_context_bar_set_chat      (AppContextBar   *self,
                                                AppChat         *chat);
AppChat         *app_context_bar_get_chat      (AppContextBar   *self);
/* The question of the chat that the next one replaces (an edit), or NULL: the prompt is then
 * the messages before it and the question. */
void             app_context_bar_set_replacing (AppContextBar   *self,
                                                AppMessage      *question);
AppMessage      *app_context_bar_get_replacing (AppContextBar   *self);
/* The next question as it would be sent (NULL: nothing to send), and its images' store ids.
 * Counted a moment later, so typing does not count every key. */
void             app_context_bar_set_question  (AppContextBar   *self,
                                                const char      *prompt,
                                                const char * const *images);
int              app_context_bar_get_n_tokens  (AppContextBar   *self);
gboolean         app_context_bar_get_fits      (AppContextBar   *self);
gboolean         app_context_bar_get_leave_out_images (AppContextBar *self);

G_END_DECLS
