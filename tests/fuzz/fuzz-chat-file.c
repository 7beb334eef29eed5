/* fuzz-chat-file.c - one chat file read by the chat store (app/core/app-chat-store.c), the way
 * the app reads its chats folder at launch: the input is written as the only chat file of a
 * temporary data folder and the store loads it. A chat that loads is written back to JSON,
 * read again (which must give the same JSON, from a tree and from text), compared with the
 * file read whole as a tree, searched and touched.
 *
 * The file is named after the id the seeds use, so that inputs mutated from them load as
 * chats rather than as misnamed files. */
#include "fuzz.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "app-chat-store.h"
#include "app-chat.h"
#include "app-json.h"

#define CHAT_ID "a6032475-84ba-4cf4-9cb2-2b99a75b6b26"

static char *data_dir, *chats_dir, *images_dir, *chat_path;
static AppChatStore *store;

static void
cleanup (void)
{
  g_clear_object (&store);
  g_unlink (chat_path);
  g_rmdir (chats_dir);
  g_rmdir (images_dir);
  g_rmdir (data_dir);
}

int
LLVMFuzzerInitialize (int    *argc,
                      char ***argv)
{
  g_autoptr(GError) error = NULL;

  fuzz_init_glib ();
  data_dir = g_dir_make_tmp ("fuzz-chat-file-XXXXXX", &error);
  if (!data_dir)
    {
      fprintf (stderr, "fuzz: %s\n", error->message);
      abort ();
    }
  chats_dir = g_build_filename (data_dir, "chats", NULL);
  images_dir = g_build_filename (data_dir, "images", NULL);
  chat_path = g_build_filename (chats_dir, CHAT_ID ".json", NULL);
  store = app_chat_store_new (data_dir);
  atexit (cleanup);
  return 0;
}

static void
write_file (const uint8_t *data,
            size_t         size)
{
  int fd = open (chat_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  size_t done = 0;

  if (fd < 0)
    {
      fprintf (stderr, "fuzz: %s: %s\n", chat_path, g_strerror (errno));
      abort ();
    }
  while (done < size)
    {
      ssize_t n = write (fd, data + done, size - done);

      if (n <= 0)
        abort ();
      done += (size_t) n;
    }
  close (fd);
}

static char *
to_text (AppChat *chat)
{
  g_autoptr(JsonNode) node = app_chat_to_json (chat);

  return app_json_to_data (node, FALSE, NULL);
}

/* to_text() without the chat's and its messages' times, which reading makes "now" when they
 * are implausible (two reads a moment apart differ there) */
static char *
to_text_untimed (AppChat *chat)
{
  g_autoptr(JsonNode) node = app_chat_to_json (chat);
  JsonObject *o = json_node_get_object (node);
  JsonArray *messages = json_object_get_array_member (o, "messages");

  json_object_remove_member (o, "created");
  json_object_remove_member (o, "modified");
  for (guint i = 0; i < json_array_get_length (messages); i++)
    json_object_remove_member (json_array_get_object_element (messages, i), "created");
  return app_json_to_data (node, FALSE, NULL);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  GListModel *chats;

  write_file (data, size);
  app_chat_store_load (store);
  chats = app_chat_store_get_chats (store);

  for (guint i = 0; i < g_list_model_get_n_items (chats); i++)
    {
      g_autoptr(AppChat) chat = g_list_model_get_item (chats, i);
      g_autofree char *text = to_text (chat);
      g_autoptr(JsonNode) again_node = json_from_string (text, NULL);
      g_autoptr(GError) error = NULL;
      g_autoptr(AppChat) again = NULL;
      g_autoptr(GPtrArray) images = NULL;

      /* what the store writes, it reads back as the same chat */
      FUZZ_CHECK (again_node, "the chat's JSON does not parse: %s", text);
      again = app_chat_new_from_json (again_node, &error);
      FUZZ_CHECK (again, "the chat's JSON is refused: %s", error->message);
      {
        g_autofree char *text_again = to_text (again);
        FUZZ_CHECK (strcmp (text, text_again) == 0, "JSON changed on a round trip:\n%s\n%s", text,
                    text_again);
      }

      /* read as the store reads it (member by member), the same text is the same chat */
      {
        g_autoptr(AppChat) streamed = app_chat_new_from_text (text, strlen (text), &error);
        g_autofree char *text_streamed = NULL;

        FUZZ_CHECK (streamed, "the chat's JSON is refused from text: %s", error->message);
        text_streamed = to_text (streamed);
        FUZZ_CHECK (strcmp (text, text_streamed) == 0, "JSON changed read from text:\n%s\n%s",
                    text, text_streamed);
      }
      /* and the file it loaded from, read whole as a tree, is that chat too */
      {
        g_autoptr(JsonParser) parser = json_parser_new ();
        g_autoptr(AppChat) whole = NULL;
        g_autofree char *text_whole = NULL;
        g_autofree char *text_untimed = to_text_untimed (chat);

        FUZZ_CHECK (json_parser_load_from_data (parser, (const char *) data, (gssize) size, NULL),
                    "a chat loaded from a file json-glib cannot parse");
        whole = app_chat_new_from_json (json_parser_get_root (parser), &error);
        FUZZ_CHECK (whole, "the file's tree is refused: %s", error->message);
        text_whole = to_text_untimed (whole);
        FUZZ_CHECK (strcmp (text_untimed, text_whole) == 0,
                    "the file read whole differs:\n%s\n%s", text_untimed, text_whole);
      }

      images = app_chat_collect_images (chat);
      (void) app_chat_matches (chat, "the a");
      (void) app_chat_get_title (chat);
      app_chat_touch (chat);
    }
  return 0;
}
