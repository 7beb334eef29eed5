/* app-chat.h - a conversation: a title and a GListModel of AppMessage.
 *
 * Saved as one JSON file per chat by AppChatStore. The model list is what the window's
 * GtkListView shows; appending a message appends a row.
 */
#pragma once

#include <json-glib/json-glib.h>

#include "app-message.h"

G_BEGIN_DECLS

#define APP_TYPE_CHAT (app_chat_get_type ())
G_DECLARE_FINAL_TYPE (AppChat, app_chat, APP, CHAT, GObject)

/* A new, empty chat with a fresh random id. */
AppChat         *app_chat_new                  (void);

const char      *app_chat_get_id               (AppChat         *self);
/* The person's title, or one derived from the first question ("New Chat" while empty). */
const char      *app_chat_get_title            (AppChat         *self);
void             app_chat_set_title            (AppChat         *self,
                                                const char      *title);
gboolean         app_chat_has_custom_title     (AppChat         *self);

gint64           app_chat_get_created          (AppChat         *self);
/* Last change, microseconds since the epoch; the chat list is sorted by it. */
gint64           app_chat_get_modified         (AppChat         *self);
void             app_chat_touch                (AppChat         *self);

/* The messages (AppMessage), oldest first. get_message returns a new reference (or NULL past
 * the end), like g_list_model_get_item(). */
GListModel      *app_chat_get_messages         (AppChat         *self);
guint            app_chat_get_n_messages       (AppChat         *self);
AppMessage      *app_chat_get_message          (AppChat         *self,
                                                guint            position);
void             app_chat_append               (AppChat         *self,
                                                AppMessage      *message);
/* Removes the message at `position` and every later one (edit and resend, regenerate). */
void             app_chat_truncate             (AppChat         *self,
                                                guint            position);

/* Case-insensitive match of every word of `query` against the title and the messages. */
gboolean         app_chat_matches              (AppChat         *self,
                                                const char      *query);

/* Every image id any message of the chat refers to. */
GPtrArray       *app_chat_collect_images       (AppChat         *self);

/* JSON: {"version": 1, "id", "title", "custom_title", "created", "modified", "messages":
 * [{"role": "user"|"assistant", "text", "images": [...], "state", "error", "note", "n_tokens",
 * "first_token_seconds", "tokens_per_second", "created"}]}. A message saved while streaming
 * comes back as STOPPED. */
JsonNode        *app_chat_to_json              (AppChat         *self);
AppChat         *app_chat_new_from_json        (JsonNode        *node,
                                                GError         **error);

G_END_DECLS
