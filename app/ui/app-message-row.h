/* app-message-row.h - one message in the conversation view. */
#pragma once

#include <gtk/gtk.h>

#include "app-chat-store.h"

G_BEGIN_DECLS

#define APP_TYPE_MESSAGE_ROW (app_message_row_get_type ())
G_DECLARE_FINAL_TYPE (AppMessageRow, app_message_row, APP, MESSAGE_ROW, GtkWidget)

AppMessageRow   *app_message_row_new           (AppChatStore    *store);
/* Shows `message` of `chat` (NULL to unbind), answers under `assistant_name` (NULL for the
 * app's name): sets the "chat", "message" and "assistant-name" properties. The row follows the
 * message as it streams. */
void             app_message_row_bind          (AppMessageRow   *self,
                                                AppChat         *chat,
                                                AppMessage      *message,
                                                const char      *assistant_name);
AppChatStore    *app_message_row_get_store     (AppMessageRow   *self);
AppChat         *app_message_row_get_chat      (AppMessageRow   *self);
AppMessage      *app_message_row_get_message   (AppMessageRow   *self);
const char      *app_message_row_get_assistant_name
                                               (AppMessageRow   *self);

G_END_DECLS
