/* app-chat-store.h - every chat, saved under the XDG data directory.
 *
 *   <data-dir>/chats/<id>.json      one file per chat, written atomically
 *   <data-dir>/images/<sha256>.<ext> attached images, copied in and content-addressed, so a
 *                                    chat keeps its pictures when the originals move
 *
 * A file that cannot be read is reported (load_errors) and left untouched: never deleted, never
 * overwritten (a new chat always gets a fresh id). Deleting a chat is two steps so the window
 * can offer undo: app_chat_store_trash() hides it, app_chat_store_purge() removes its file.
 */
#pragma once

#include <gio/gio.h>

#include "app-chat.h"

G_BEGIN_DECLS

#define APP_CHAT_STORE_ERROR (app_chat_store_error_quark ())
GQuark app_chat_store_error_quark (void);

typedef enum {
  APP_CHAT_STORE_ERROR_CORRUPT,
  APP_CHAT_STORE_ERROR_IO,
} AppChatStoreError;

#define APP_TYPE_CHAT_STORE (app_chat_store_get_type ())
G_DECLARE_FINAL_TYPE (AppChatStore, app_chat_store, APP, CHAT_STORE, GObject)

/* `data_dir` is created if needed (the app passes g_get_user_data_dir()/sightline). */
AppChatStore    *app_chat_store_new            (const char      *data_dir);
const char      *app_chat_store_get_data_dir   (AppChatStore    *self);

/* Reads every chat file. Files that fail are listed by app_chat_store_get_load_errors(). */
void             app_chat_store_load           (AppChatStore    *self);
/* One line per unreadable file: "<path>: <why>". */
GPtrArray       *app_chat_store_get_load_errors (AppChatStore   *self);

/* The visible chats (AppChat), most recently modified first. */
GListModel      *app_chat_store_get_chats      (AppChatStore    *self);

/* Adds a new chat at the top (not saved until it has a message). */
void             app_chat_store_add            (AppChatStore    *self,
                                                AppChat         *chat);
/* Writes the chat's file atomically and moves it to the top of the list. */
gboolean         app_chat_store_save           (AppChatStore    *self,
                                                AppChat         *chat,
                                                GError         **error);
/* Hides a chat from the list; its file stays until purge. untrash brings it back. */
void             app_chat_store_trash          (AppChatStore    *self,
                                                AppChat         *chat);
void             app_chat_store_untrash        (AppChatStore    *self,
                                                AppChat         *chat);
gboolean         app_chat_store_purge          (AppChatStore    *self,
                                                AppChat         *chat,
                                                GError         **error);

/* Copies an image into the store (if not there yet) and returns its id "<sha256>.<ext>".
 * The extension comes from the content type; unknown types keep ".img". */
char            *app_chat_store_import_image   (AppChatStore    *self,
                                                GBytes          *bytes,
                                                GError         **error);
char            *app_chat_store_import_image_file (AppChatStore *self,
                                                GFile           *file,
                                                GError         **error);
/* Absolute path of an image id (the file may be missing if someone deleted it). */
char            *app_chat_store_get_image_path (AppChatStore    *self,
                                                const char      *image_id);

G_END_DECLS
