/* app-chat-private.h - what AppChat and AppChatStore share beyond the public contract.
 *
 * Image ids end up in file names, so the chat file reader and the store agree on one
 * definition of a well-formed id rather than each guessing.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* "<64 lowercase hex digits>.<1 to 8 lowercase letters or digits>", the only form
 * app_chat_store_import_image() produces; it can never name anything outside images/. */
gboolean         app_chat_image_id_is_valid    (const char      *image_id);

G_END_DECLS
