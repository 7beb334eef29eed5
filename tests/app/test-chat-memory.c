/* test-chat-memory.c - a large chat file costs the memory of the chat it holds, not of a JSON
 * tree of its whole text (which was about 60 times the file: a 21 MB chat of a million messages
 * took 1.2 GB at launch). The heap is followed by tests/heap/heap-peak.c. */
#include <glib/gstdio.h>
#include <string.h>

#include "../heap/heap-peak.h"
#include "app-chat-store.h"
#include "app-chat.h"
#include "tree.h"

#define CHAT_ID "0c7f0a9e-2a35-4e8e-9d0b-6d2f1b7c5a11"

/* A version-1 chat of n short messages, as a person might pile up over years. */
static GString *
many_messages (guint n)
{
  GString *json = g_string_new ("{\"version\": 1, \"id\": \"" CHAT_ID "\", \"title\": \"Long\", "
                                "\"custom_title\": false, \"created\": 1795000000000000, "
                                "\"modified\": 1795000060000000, \"messages\": [");

  for (guint i = 0; i < n; i++)
    g_string_append_printf (json, "%s{\"role\": \"%s\", \"text\": \"message %u\", "
                            "\"images\": [], \"state\": \"complete\"}",
                            i ? ", " : "", i % 2 ? "assistant" : "user", i);
  g_string_append (json, "]}");
  return json;
}

static void
test_many_messages (void)
{
  const guint n = 100000;
  g_autofree char *dir = g_dir_make_tmp ("chat-memory-XXXXXX", NULL);
  g_autofree char *chats = g_build_filename (dir, "chats", NULL);
  g_autofree char *path = g_build_filename (chats, CHAT_ID ".json", NULL);
  g_autoptr(GString) json = many_messages (n);
  g_autoptr(AppChatStore) store = NULL;
  GListModel *list;
  g_autoptr(AppChat) chat = NULL;
  long base, kept, extra;

  g_assert_cmpint (g_mkdir_with_parents (chats, 0700), ==, 0);
  g_assert_true (g_file_set_contents (path, json->str, json->len, NULL));

  store = app_chat_store_new (dir);
  base = heap_peak_begin ();
  app_chat_store_load (store);
  kept = heap_live () - base;
  extra = heap_peak () - base;
  g_test_message ("file %zu bytes; heap kept %ld, peak %ld above the start", json->len, kept,
                  extra);

  list = app_chat_store_get_chats (store);
  g_assert_cmpuint (g_list_model_get_n_items (list), ==, 1);
  chat = g_list_model_get_item (list, 0);
  g_assert_cmpuint (app_chat_get_n_messages (chat), ==, n);
  /* the chat itself (about 520 bytes a message here; the tree of the whole file left about 1.2 KB
   * a message behind in GLib's slice allocator) */
  g_assert_cmpint (kept, <, 800L * n);
  /* and while it is read, the file's text and working space of a few MB */
  g_assert_cmpint (extra, <, kept + 2 * (long) json->len + (8L << 20));

  g_clear_object (&store);
  tree_remove (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/app/chat-memory/many-messages", test_many_messages);
  return g_test_run ();
}
