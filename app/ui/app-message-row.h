/* app-message-row.h - one message in the conversation view. */
#pragma once

#include <gtk/gtk.h>

#include "app-chat-store.h"

G_BEGIN_DECLS

#define APP_TYPE_MESSAGE_ROW (app_message_row_get_type ())
G_DECLARE_FINAL_TYPE (AppMessageRow, app_message_row, APP, MESSAGE_ROW, GtkWidget)

AppMessageRow   *app_message_row_new           (AppChatStore    *store);
/* Shows `message` of `chat` (NULL to unbind). The row follows the message as it streams. */
void             app_message_row_bind          (AppMessageRow   *self,
                                                AppChat         *chat,
                                                AppMessage      *message,
                                                const char      *assistant_name);
AppMessage      *app_message_row_get_message   (AppMessageRow   *self);

G_END_DECLS
