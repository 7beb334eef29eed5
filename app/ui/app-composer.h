/* app-composer.h - where the person writes a question and gathers the images to ask about. */
#pragma once

#include <gtk/gtk.h>

#include "app-chat-store.h"
#include "app-context-bar.h"
#include "app-enums.h"
#include "app-grounding.h"

G_BEGIN_DECLS

#define APP_TYPE_COMPOSER (app_composer_get_type ())
G_DECLARE_FINAL_TYPE (AppComposer, app_composer, APP, COMPOSER, GtkWidget)

/* Signals: "send" when the person presses Enter or the send button (and there is something to
 * send), "stop" when they press the stop button, "import-failed" (const char *message) when an
 * attached, dropped or pasted image cannot be used, "changed" when the question does.
 *
 * Properties (the accessors below): "store", "text", "prompt-kind", "generating", "can-send",
 * "cannot-send-reason"; each notifies when it changes. */
AppComposer     *app_composer_new              (void);
void             app_composer_set_store        (AppComposer     *self,
                                                AppChatStore    *store);
AppChatStore    *app_composer_get_store        (AppComposer     *self);

char            *app_composer_get_text         (AppComposer     *self);
void             app_composer_set_text         (AppComposer     *self,
                                                const char      *text);
/* What is sent: the text wrapped for the chosen grounding helper (a grounded caption, Find),
 * or NULL when there is nothing to send. set_prompt unwraps a sent question for editing. */
char            *app_composer_get_prompt       (AppComposer     *self);
void             app_composer_set_prompt       (AppComposer     *self,
                                                const char      *prompt);
void             app_composer_set_prompt_kind  (AppComposer     *self,
                                                AppPromptKind    kind);
AppPromptKind    app_composer_get_prompt_kind  (AppComposer     *self);

/* The attached images' store ids, in order (NULL-terminated, g_strfreev it). */
char           **app_composer_get_images       (AppComposer     *self);
gboolean         app_composer_has_images       (AppComposer     *self);
/* Images still being copied into the store; send waits for them. */
gboolean         app_composer_is_importing     (AppComposer     *self);
void             app_composer_clear            (AppComposer     *self);

/* Each chat keeps its own unsent question. `key` names the chat now shown (its id): what the
 * composer holds is put aside under the previous key, imports still running, and what was put
 * aside under `key` comes back (or the composer empties). Going from no key to a first one
 * keeps what is there. forget_draft drops what was put aside for a chat that is gone. */
void             app_composer_set_draft_key    (AppComposer     *self,
                                                const char      *key);
void             app_composer_forget_draft     (AppComposer     *self,
                                                const char      *key);
/* Whether something was put aside under `key`. */
gboolean         app_composer_has_draft        (AppComposer     *self,
                                                const char      *key);

/* Adds an already imported image (edit and resend). */
void             app_composer_add_image_id     (AppComposer     *self,
                                                const char      *image_id);
/* Imports files or image data (drop, paste, file chooser) in a worker thread. */
void             app_composer_add_files        (AppComposer     *self,
                                                GSList          *files);
/* The bytes of a picture pasted or dropped, read from `stream` and imported like a file (its
 * content decides whether it is an image the app reads); `name` is used in messages. */
void             app_composer_add_image_stream (AppComposer     *self,
                                                GInputStream    *stream,
                                                const char      *name);
/* The MIME types to ask a clipboard or a drop for, most wanted first (NULL-terminated). */
const char * const *app_composer_image_mime_types (void);

/* While generating, the send button becomes a stop button. */
void             app_composer_set_generating   (AppComposer     *self,
                                                gboolean         generating);
gboolean         app_composer_get_generating   (AppComposer     *self);
void             app_composer_set_can_send     (AppComposer     *self,
                                                gboolean         can_send);
gboolean         app_composer_get_can_send     (AppComposer     *self);
/* Why sending is not possible now ("No model is loaded"), shown on the send button while
 * can_send is FALSE. */
void             app_composer_set_cannot_send_reason (AppComposer *self,
                                                const char      *reason);
const char      *app_composer_get_cannot_send_reason (AppComposer *self);
void             app_composer_focus            (AppComposer     *self);
/* Under the question, what it costs of the model's context; Send is off while it does not
 * fit. The window gives it the engine and the chat. */
AppContextBar   *app_composer_get_context_bar  (AppComposer     *self);

G_END_DECLS
