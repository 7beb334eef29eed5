/* app-chat-store.h - every chat, saved under the XDG data directory.
 *
 *   <data-dir>/chats/<id>.json      one file per chat, written atomically
 *   <data-dir>/images/<sha256>.<ext> attached images, copied in and content-addressed, so a
 *                                    chat keeps its pictures when the originals move
 *
 * A file that cannot be read is reported (load_errors) and left untouched: never deleted, never
 * overwritten (a new chat always gets a fresh id). Deleting a chat is two steps so the window
 * can offer undo: app_chat_store_trash() hides it, app_chat_store_purge() removes its file.
 *
 * The window reads and writes through the _async calls, whose file work runs in worker threads
 * in the order it was asked for; app_chat_store_flush() waits for all of it (the app calls it
 * before it exits). The synchronous calls do the same work on the calling thread, for tools
 * and tests.
 *
 * Images are shared: the same picture attached twice, in two chats or a draft, is one file. An
 * image file is deleted once nothing refers to it any more: no message or draft of a chat the
 * store knows (trashed ones included, and any id written in a chat file it could not read),
 * and no hold. Whoever keeps an image id outside a chat, such as the composer while the person
 * is still writing, holds it (app_chat_store_hold_image()); an import returns its id held.
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

typedef enum {
  APP_CHAT_STORE_SAVE_DEFAULT = 0,
  /* A draft changed: the chat keeps its place in the list and its modification time. */
  APP_CHAT_STORE_SAVE_KEEP_PLACE = 1 << 0,
} AppChatStoreSaveFlags;

#define APP_TYPE_CHAT_STORE (app_chat_store_get_type ())
G_DECLARE_FINAL_TYPE (AppChatStore, app_chat_store, APP, CHAT_STORE, GObject)

/* `data_dir` is created if needed (the app passes g_get_user_data_dir()/sightline). */
AppChatStore    *app_chat_store_new            (const char      *data_dir);
const char      *app_chat_store_get_data_dir   (AppChatStore    *self);

/* Reads every chat file. Files that fail are listed by app_chat_store_get_load_errors().
 * load() starts over from what is on disk; load_async() reads in a worker thread and adds the
 * chats to those already in the list (a chat started meanwhile stays). Either sets "loaded". */
void             app_chat_store_load           (AppChatStore    *self);
void             app_chat_store_load_async     (AppChatStore    *self,
                                                GCancellable    *cancellable,
                                                GAsyncReadyCallback callback,
                                                gpointer         user_data);
gboolean         app_chat_store_load_finish    (AppChatStore    *self,
                                                GAsyncResult    *result,
                                                GError         **error);
/* The "loaded" property: TRUE once a load has finished. */
gboolean         app_chat_store_get_loaded     (AppChatStore    *self);
/* One line per unreadable file: "<path>: <why>". */
GPtrArray       *app_chat_store_get_load_errors (AppChatStore   *self);

/* The visible chats (AppChat), most recently modified first. */
GListModel      *app_chat_store_get_chats      (AppChatStore    *self);

/* Adds a new chat at the top (not saved until a person has put something in it). */
void             app_chat_store_add            (AppChatStore    *self,
                                                AppChat         *chat);
/* Writes the chat's file atomically and moves it to the top of the list. A blank chat (see
 * app_chat_is_blank()) gets no file, and loses the one it had. The chat is turned into JSON at
 * once, on the calling thread; the async version writes it in a worker thread, after any
 * earlier save or purge of the same chat, and a newer save of a chat makes an older one that
 * has not started yet unnecessary. Saving a purged chat does nothing. */
gboolean         app_chat_store_save           (AppChatStore    *self,
                                                AppChat         *chat,
                                                GError         **error);
void             app_chat_store_save_async     (AppChatStore    *self,
                                                AppChat         *chat,
                                                AppChatStoreSaveFlags flags,
                                                GCancellable    *cancellable,
                                                GAsyncReadyCallback callback,
                                                gpointer         user_data);
gboolean         app_chat_store_save_finish    (AppChatStore    *self,
                                                GAsyncResult    *result,
                                                GError         **error);
/* Waits until every write, deletion and image clean-up asked for so far is done. */
void             app_chat_store_flush          (AppChatStore    *self);
/* Hides a chat from the list; its file stays until purge. untrash brings it back. */
void             app_chat_store_trash          (AppChatStore    *self,
                                                AppChat         *chat);
void             app_chat_store_untrash        (AppChatStore    *self,
                                                AppChat         *chat);
/* Removes the chat's file for good; its images that nothing else refers to go too. */
gboolean         app_chat_store_purge          (AppChatStore    *self,
                                                AppChat         *chat,
                                                GError         **error);
void             app_chat_store_purge_async    (AppChatStore    *self,
                                                AppChat         *chat,
                                                GCancellable    *cancellable,
                                                GAsyncReadyCallback callback,
                                                gpointer         user_data);
gboolean         app_chat_store_purge_finish   (AppChatStore    *self,
                                                GAsyncResult    *result,
                                                GError         **error);

/* Copies an image into the store (if not there yet) and returns its id "<sha256>.<ext>",
 * held for the caller (release it once a chat refers to it, or when it is dropped). The
 * extension comes from the content type; unknown types keep ".img". Any thread. */
char            *app_chat_store_import_image   (AppChatStore    *self,
                                                GBytes          *bytes,
                                                GError         **error);
char            *app_chat_store_import_image_file (AppChatStore *self,
                                                GFile           *file,
                                                GError         **error);
/* The bytes of an image file to import: only a regular file, of at most
 * VL2_IMAGE_FILE_MAX_BYTES (vl2-input.h), is read; a named pipe is refused without waiting on
 * it, a device without reading it. Any thread. */
GBytes          *app_chat_store_read_image_file (GFile          *file,
                                                GCancellable    *cancellable,
                                                GError         **error);
/* Absolute path of an image id (the file may be missing if someone deleted it). */
char            *app_chat_store_get_image_path (AppChatStore    *self,
                                                const char      *image_id);

/* Holds count: a held image is never deleted. Releasing the last hold checks, on the store's
 * main context, whether anything still refers to the image, and deletes it when nothing does.
 * Any thread. */
void             app_chat_store_hold_image     (AppChatStore    *self,
                                                const char      *image_id);
void             app_chat_store_release_image  (AppChatStore    *self,
                                                const char      *image_id);
/* Deletes the image files nothing refers to, as above, except those changed in the last
 * minutes (another program on the same folder may be attaching them). The app runs it once
 * the chats are loaded; it does nothing before, nor when a chat file could not be read at all.
 * Finishes with the number of files deleted. */
void             app_chat_store_sweep_images_async (AppChatStore *self,
                                                GCancellable    *cancellable,
                                                GAsyncReadyCallback callback,
                                                gpointer         user_data);
guint            app_chat_store_sweep_images_finish (AppChatStore *self,
                                                GAsyncResult    *result,
                                                GError         **error);

G_END_DECLS
