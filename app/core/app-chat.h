/* app-chat.h - a conversation: a title and a GListModel of AppMessage.
 *
 * Saved as one JSON file per chat by AppChatStore. The model list is what the window's
 * GtkListView shows; appending a message appends a row.
 *
 * Each place in the conversation can hold several versions of its message: an edited question
 * or an answer written again is added beside the old one, and each version keeps the
 * conversation that followed it. The model list is the conversation the chosen versions
 * make (the shown path); switching a version replaces the rows from there on.
 */
#pragma once

#include <json-glib/json-glib.h>

#include "app-grounding.h"
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

/* The messages (AppMessage) of the shown path, oldest first. get_message returns a new
 * reference (or NULL past the end), like g_list_model_get_item(). */
GListModel      *app_chat_get_messages         (AppChat         *self);
guint            app_chat_get_n_messages       (AppChat         *self);
AppMessage      *app_chat_get_message          (AppChat         *self,
                                                guint            position);
/* Appends to the shown path (a message may be in one chat once). */
void             app_chat_append               (AppChat         *self,
                                                AppMessage      *message);
/* Deletes the version shown at `position` with the conversation that followed it. When the
 * message had other versions, the one before it (or else the next) is shown in its place. */
void             app_chat_truncate             (AppChat         *self,
                                                guint            position);

/* Versions of the message shown at `position`: how many there are (0 past the end), which one
 * is shown (from 0), and showing another, with the conversation that followed it. */
guint            app_chat_get_n_versions       (AppChat         *self,
                                                guint            position);
guint            app_chat_get_version          (AppChat         *self,
                                                guint            position);
void             app_chat_select_version       (AppChat         *self,
                                                guint            position,
                                                guint            version);
/* Adds `version` as the newest version of `message` (any message of the chat, shown or not;
 * the same role) and shows it, with nothing after it yet: edit and resend, regenerate.
 * FALSE when `message` is not in the chat. */
gboolean         app_chat_add_version          (AppChat         *self,
                                                AppMessage      *message,
                                                AppMessage      *version);
/* Whether `message` is any version of any message of the chat. */
gboolean         app_chat_contains             (AppChat         *self,
                                                AppMessage      *message);

/* Case-insensitive match of every word of `query` against the title and the messages, every
 * version included. */
gboolean         app_chat_matches              (AppChat         *self,
                                                const char      *query);

/* Every image id the chat refers to: its messages' (every version included, and where their
 * boxes go), then its draft's. */
GPtrArray       *app_chat_collect_images       (AppChat         *self);

/* The question the person is writing and has not sent: its text, the composer's grounding
 * helper and the image ids attached so far. It belongs to the chat and is saved with it, so it
 * survives switching chats and restarting. An empty text and no images is no draft. */
const char      *app_chat_get_draft_text       (AppChat         *self);
AppPromptKind    app_chat_get_draft_kind       (AppChat         *self);
const char * const *app_chat_get_draft_images  (AppChat         *self);
gboolean         app_chat_has_draft            (AppChat         *self);
/* TRUE when the draft changed. */
gboolean         app_chat_set_draft            (AppChat         *self,
                                                const char      *text,
                                                AppPromptKind    kind,
                                                const char * const *images);
/* Nothing a person made is in it: no message, no draft, no title of their own. Such a chat is
 * not worth a file. */
/* The folder of the model that last answered in the chat (NULL: none yet), so coming back to
 * the chat can switch to it. TRUE when it changed. */
const char      *app_chat_get_model            (AppChat         *self);
gboolean         app_chat_set_model            (AppChat         *self,
                                                const char      *model_dir);
gboolean         app_chat_is_blank             (AppChat         *self);

/* JSON: {"version": 2, "id", "title", "model", "custom_title", "created", "modified", "messages":
 * [{"parent", "selected", "role": "user"|"assistant", "text", "images": [...], "state",
 * "finish", "error", "note", "boxes_image", "n_tokens", "first_token_seconds",
 * "tokens_per_second", "created"}], "draft": {"text", "kind": "plain"|"grounded-caption"|
 * "find", "images": [...]}}. "messages" lists every version of every message, each
 * after the message it follows: "parent" is that message's index in the list (null for the
 * first message of the chat), versions of one place come oldest first, and "selected" marks
 * the one shown where there are several (else the newest is). "finish" (absent while unknown)
 * is "end", "length" or "context". "draft" is there only when the chat has one. Files of
 * version 1 (one conversation, no "parent") are read too. A message saved while streaming
 * comes back as INTERRUPTED. */
JsonNode        *app_chat_to_json              (AppChat         *self);
AppChat         *app_chat_new_from_json        (JsonNode        *node,
                                                GError         **error);
/* The same from a chat file's text, read member by member and message by message so that the
 * file never stands whole in memory as a JSON tree; errors of the JSON itself are json-glib's
 * or vl2-input.h's. */
AppChat         *app_chat_new_from_text        (const char      *text,
                                                gsize            length,
                                                GError         **error);

G_END_DECLS
