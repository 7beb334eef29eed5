/* test-chat-store.c - messages, chats and the chat store, against a scratch data directory.
 *
 * The store holds the person's whole history, so these tests dwell on what must never
 * happen: a file that cannot be read being changed in any way, a save leaving debris or
 * replacing a file it does not own, an image id reaching outside the images folder. Each
 * test gets its own data directory and removes it at the end.
 */
#include <glib/gstdio.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

#include "app-chat-store.h"
#include "app-enums.h"
#include "tree.h"

typedef struct
{
  char *data_dir;
  char *chats_dir;
  char *images_dir;
} Fixture;

static void
fixture_set_up (Fixture       *fixture,
                gconstpointer  user_data)
{
  g_autoptr(GError) error = NULL;

  fixture->data_dir = g_dir_make_tmp ("sightline-chat-store-XXXXXX", &error);
  g_assert_no_error (error);
  fixture->chats_dir = g_build_filename (fixture->data_dir, "chats", NULL);
  fixture->images_dir = g_build_filename (fixture->data_dir, "images", NULL);
}

static void
fixture_tear_down (Fixture       *fixture,
                   gconstpointer  user_data)
{
  tree_remove (fixture->data_dir);
  g_free (fixture->data_dir);
  g_free (fixture->chats_dir);
  g_free (fixture->images_dir);
}

/* ---------------------------------------------------------------------------------------------
 * Helpers
 */

static void
count_notify (GObject    *object,
              GParamSpec *pspec,
              guint      *count)
{
  (*count)++;
}

static AppMessage *
add_message (AppChat    *chat,
             AppRole     role,
             const char *text)
{
  AppMessage *message = app_message_new (role, text);

  app_chat_append (chat, message);
  g_object_unref (message);
  return message;   /* borrowed: the chat holds it */
}

/* Borrowed: the chat holds the message. */
static AppMessage *
message_at (AppChat *chat,
            guint    position)
{
  AppMessage *message = app_chat_get_message (chat, position);

  g_assert_nonnull (message);
  g_object_unref (message);
  return message;
}

static char *
chat_to_string (AppChat *chat)
{
  g_autoptr(JsonNode) node = app_chat_to_json (chat);

  return json_to_string (node, FALSE);
}

static AppChat *
chat_from_string (const char  *json,
                  GError     **error)
{
  g_autoptr(JsonNode) node = json_from_string (json, error);

  if (node == NULL)
    return NULL;
  return app_chat_new_from_json (node, error);
}

/* Borrowed: the store holds the chat. */
static AppChat *
chat_at (AppChatStore *store,
         guint         position)
{
  AppChat *chat = g_list_model_get_item (app_chat_store_get_chats (store), position);

  g_assert_nonnull (chat);
  g_object_unref (chat);
  return chat;
}

static char *
chat_path (Fixture    *fixture,
           const char *id)
{
  g_autofree char *name = g_strconcat (id, ".json", NULL);

  return g_build_filename (fixture->chats_dir, name, NULL);
}

static void
write_file (const char *path,
            const char *data,
            gssize      length)
{
  g_autoptr(GError) error = NULL;

  g_file_set_contents (path, data, length, &error);
  g_assert_no_error (error);
}

static GBytes *
read_file (const char *path)
{
  g_autoptr(GError) error = NULL;
  char *contents = NULL;
  gsize length = 0;

  g_file_get_contents (path, &contents, &length, &error);
  g_assert_no_error (error);
  return g_bytes_new_take (contents, length);
}

static int
compare_strings (gconstpointer a,
                 gconstpointer b)
{
  return strcmp (*(const char **)a, *(const char **)b);
}

/* Every entry of a directory, sorted. */
static GPtrArray *
list_dir (const char *path)
{
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  GDir *dir = g_dir_open (path, 0, NULL);
  const char *name;

  g_assert_nonnull (dir);
  while ((name = g_dir_read_name (dir)) != NULL)
    g_ptr_array_add (names, g_strdup (name));
  g_dir_close (dir);

  g_ptr_array_sort (names, compare_strings);
  return names;
}

static AppChat *
make_chat (const char *question,
           const char *answer)
{
  AppChat *chat = app_chat_new ();
  AppMessage *reply;

  add_message (chat, APP_ROLE_USER, question);
  reply = add_message (chat, APP_ROLE_ASSISTANT, answer);
  app_message_set_stats (reply, 12, 0.5, 20.25);
  return chat;
}

/* ---------------------------------------------------------------------------------------------
 * AppMessage
 */

static void
test_message_properties (void)
{
  static const char * const images[] = {
    "0000000000000000000000000000000000000000000000000000000000000000.png",
    "1111111111111111111111111111111111111111111111111111111111111111.jpg",
    NULL
  };
  static const char * const same_images[] = {
    "0000000000000000000000000000000000000000000000000000000000000000.png",
    "1111111111111111111111111111111111111111111111111111111111111111.jpg",
    NULL
  };
  g_autoptr(AppMessage) message = NULL;
  g_auto(GStrv) images_value = NULL;
  gint64 before = g_get_real_time ();
  guint text_notifies = 0;
  guint images_notifies = 0;
  guint state_notifies = 0;
  guint error_notifies = 0;
  guint note_notifies = 0;
  guint stats_notifies = 0;
  guint created_notifies = 0;
  AppMessageState state;
  AppRole role;
  guint n_tokens;
  double tokens_per_second;
  char *text = NULL;

  message = app_message_new (APP_ROLE_ASSISTANT, NULL);
  g_assert_cmpint (app_message_get_role (message), ==, APP_ROLE_ASSISTANT);
  g_assert_cmpstr (app_message_get_text (message), ==, "");
  g_assert_nonnull (app_message_get_images (message));
  g_assert_null (app_message_get_images (message)[0]);
  g_assert_cmpint (app_message_get_state (message), ==, APP_MESSAGE_COMPLETE);
  g_assert_null (app_message_get_error (message));
  g_assert_null (app_message_get_note (message));
  g_assert_cmpuint (app_message_get_n_tokens (message), ==, 0);
  g_assert_cmpfloat (app_message_get_first_token_seconds (message), ==, 0);
  g_assert_cmpfloat (app_message_get_tokens_per_second (message), ==, 0);
  g_assert_cmpint (app_message_get_created (message), >=, before);
  g_assert_cmpint (app_message_get_created (message), <=, g_get_real_time ());

  g_signal_connect (message, "notify::text", G_CALLBACK (count_notify), &text_notifies);
  g_signal_connect (message, "notify::images", G_CALLBACK (count_notify), &images_notifies);
  g_signal_connect (message, "notify::state", G_CALLBACK (count_notify), &state_notifies);
  g_signal_connect (message, "notify::error", G_CALLBACK (count_notify), &error_notifies);
  g_signal_connect (message, "notify::note", G_CALLBACK (count_notify), &note_notifies);
  g_signal_connect (message, "notify::n-tokens", G_CALLBACK (count_notify), &stats_notifies);
  g_signal_connect (message, "notify::first-token-seconds", G_CALLBACK (count_notify), &stats_notifies);
  g_signal_connect (message, "notify::tokens-per-second", G_CALLBACK (count_notify), &stats_notifies);
  g_signal_connect (message, "notify::created", G_CALLBACK (count_notify), &created_notifies);

  /* Streaming: one notification per piece, and the pieces add up. */
  app_message_append_text (message, "Hel");
  app_message_append_text (message, "lo, ");
  app_message_append_text (message, "wörld 🌍");
  g_assert_cmpuint (text_notifies, ==, 3);
  g_assert_cmpstr (app_message_get_text (message), ==, "Hello, wörld 🌍");
  app_message_append_text (message, "");
  app_message_append_text (message, NULL);
  g_assert_cmpuint (text_notifies, ==, 3);

  app_message_set_text (message, "Hello, wörld 🌍");
  g_assert_cmpuint (text_notifies, ==, 3);
  app_message_set_text (message, "Replaced");
  g_assert_cmpuint (text_notifies, ==, 4);
  g_object_set (message, "text", "By property", NULL);
  g_assert_cmpuint (text_notifies, ==, 5);
  g_object_get (message, "text", &text, NULL);
  g_assert_cmpstr (text, ==, "By property");
  g_free (text);
  app_message_set_text (message, NULL);
  g_assert_cmpstr (app_message_get_text (message), ==, "");
  g_assert_cmpuint (text_notifies, ==, 6);

  app_message_set_images (message, images);
  g_assert_cmpuint (images_notifies, ==, 1);
  g_assert_true (g_strv_equal (app_message_get_images (message), images));
  g_assert_true (app_message_get_images (message) != images);   /* a copy */
  app_message_set_images (message, same_images);
  g_assert_cmpuint (images_notifies, ==, 1);
  g_object_get (message, "images", &images_value, NULL);
  g_assert_true (g_strv_equal ((const char * const *)images_value, images));
  app_message_set_images (message, NULL);
  g_assert_cmpuint (images_notifies, ==, 2);
  g_assert_null (app_message_get_images (message)[0]);

  app_message_set_state (message, APP_MESSAGE_STREAMING);
  app_message_set_state (message, APP_MESSAGE_STREAMING);
  g_assert_cmpuint (state_notifies, ==, 1);
  app_message_set_state (message, APP_MESSAGE_FAILED);
  g_assert_cmpuint (state_notifies, ==, 2);
  g_object_get (message, "state", &state, "role", &role, NULL);
  g_assert_cmpint (state, ==, APP_MESSAGE_FAILED);
  g_assert_cmpint (role, ==, APP_ROLE_ASSISTANT);

  app_message_set_error (message, "Out of memory");
  app_message_set_error (message, "Out of memory");
  g_assert_cmpuint (error_notifies, ==, 1);
  g_assert_cmpstr (app_message_get_error (message), ==, "Out of memory");
  app_message_set_error (message, NULL);
  g_assert_cmpuint (error_notifies, ==, 2);
  g_assert_null (app_message_get_error (message));

  app_message_set_note (message, "Early turns were left out.");
  app_message_set_note (message, "Early turns were left out.");
  g_assert_cmpuint (note_notifies, ==, 1);
  g_assert_cmpstr (app_message_get_note (message), ==, "Early turns were left out.");

  /* Each statistic notifies when it changes, and only then. */
  app_message_set_stats (message, 42, 1.5, 12.25);
  g_assert_cmpuint (stats_notifies, ==, 3);
  app_message_set_stats (message, 42, 1.5, 12.25);
  g_assert_cmpuint (stats_notifies, ==, 3);
  app_message_set_stats (message, 43, 1.5, 12.25);
  g_assert_cmpuint (stats_notifies, ==, 4);
  g_assert_cmpuint (app_message_get_n_tokens (message), ==, 43);
  g_assert_cmpfloat (app_message_get_first_token_seconds (message), ==, 1.5);
  g_assert_cmpfloat (app_message_get_tokens_per_second (message), ==, 12.25);
  g_object_get (message, "n-tokens", &n_tokens, "tokens-per-second", &tokens_per_second, NULL);
  g_assert_cmpuint (n_tokens, ==, 43);
  g_assert_cmpfloat (tokens_per_second, ==, 12.25);

  /* A statistic JSON cannot hold becomes 0 rather than making the chat file unreadable. */
  app_message_set_stats (message, 43, NAN, INFINITY);
  g_assert_cmpfloat (app_message_get_first_token_seconds (message), ==, 0);
  g_assert_cmpfloat (app_message_get_tokens_per_second (message), ==, 0);
  g_assert_cmpuint (stats_notifies, ==, 6);
  app_message_set_stats (message, 43, NAN, -1);
  g_assert_cmpuint (stats_notifies, ==, 6);

  app_message_set_created (message, 1234);
  app_message_set_created (message, 1234);
  g_assert_cmpuint (created_notifies, ==, 1);
  g_assert_cmpint (app_message_get_created (message), ==, 1234);

  g_assert_cmpuint (text_notifies, ==, 6);
}

/* ---------------------------------------------------------------------------------------------
 * AppChat
 */

static void
assert_title (const char *question,
              const char *expected)
{
  g_autoptr(AppChat) chat = app_chat_new ();

  add_message (chat, APP_ROLE_USER, question);
  g_assert_cmpstr (app_chat_get_title (chat), ==, expected);
  g_assert_true (g_utf8_validate (app_chat_get_title (chat), -1, NULL));
  g_assert_cmpint (g_utf8_strlen (app_chat_get_title (chat), -1), <=, 48);
}

static char *
repeat (const char *piece,
        guint       times)
{
  GString *string = g_string_new (NULL);

  for (guint i = 0; i < times; i++)
    g_string_append (string, piece);
  return g_string_free (string, FALSE);
}

static void
test_chat_title (void)
{
  g_autoptr(AppChat) chat = app_chat_new ();
  g_autofree char *cjk = repeat ("你好世界", 15);
  g_autofree char *cjk_expected = NULL;
  g_autofree char *emoji = repeat ("😀", 60);
  g_autofree char *emoji_expected = NULL;
  g_autofree char *a46 = repeat ("a", 46);
  g_autofree char *skin_tone = NULL;
  g_autofree char *skin_tone_expected = NULL;
  g_autofree char *accent = NULL;
  g_autofree char *accent_expected = NULL;
  g_autofree char *exact = repeat ("x", 48);
  g_autofree char *long_word = repeat ("y", 100);
  g_autofree char *y47 = repeat ("y", 47);
  g_autofree char *long_word_expected = NULL;
  AppMessage *question;
  guint title_notifies = 0;
  guint custom_notifies = 0;
  gboolean custom;
  char *title = NULL;

  /* Empty, and while only the assistant has spoken. */
  g_assert_cmpstr (app_chat_get_title (chat), ==, "New Chat");
  g_assert_false (app_chat_has_custom_title (chat));

  g_signal_connect (chat, "notify::title", G_CALLBACK (count_notify), &title_notifies);
  g_signal_connect (chat, "notify::custom-title", G_CALLBACK (count_notify), &custom_notifies);

  add_message (chat, APP_ROLE_ASSISTANT, "Welcome! Ask me anything.");
  g_assert_cmpstr (app_chat_get_title (chat), ==, "New Chat");
  g_assert_cmpuint (title_notifies, ==, 0);

  /* The first question names the chat; later ones do not. */
  question = add_message (chat, APP_ROLE_USER, "\n  \n\t What is   in\tthis  picture?  \nMore detail");
  g_assert_cmpstr (app_chat_get_title (chat), ==, "What is in this picture?");
  g_assert_cmpuint (title_notifies, ==, 1);
  add_message (chat, APP_ROLE_USER, "Another question");
  g_assert_cmpstr (app_chat_get_title (chat), ==, "What is in this picture?");
  g_assert_cmpuint (title_notifies, ==, 1);

  /* Editing the first question in place retitles the chat. */
  app_message_set_text (question, "Describe the image");
  g_assert_cmpstr (app_chat_get_title (chat), ==, "Describe the image");
  g_assert_cmpuint (title_notifies, ==, 2);
  app_message_append_text (question, " please");
  g_assert_cmpstr (app_chat_get_title (chat), ==, "Describe the image please");
  g_assert_cmpuint (title_notifies, ==, 3);

  /* A grounded question's tags are not part of the title. */
  app_message_set_text (question, "<|grounding|>Describe the image please");
  g_assert_cmpstr (app_chat_get_title (chat), ==, "Describe the image please");
  g_assert_cmpuint (title_notifies, ==, 3);
  app_message_set_text (question, "<|ref|>The giraffe at the back.<|/ref|>");
  g_assert_cmpstr (app_chat_get_title (chat), ==, "The giraffe at the back.");
  g_assert_cmpuint (title_notifies, ==, 4);
  app_message_set_text (question, "Describe the image please");
  g_assert_cmpuint (title_notifies, ==, 5);
  title_notifies = 3;   /* as before this digression */

  /* A custom title wins over the derived one, and stays through new questions. */
  app_chat_set_title (chat, "  Holiday photos ");
  g_assert_cmpstr (app_chat_get_title (chat), ==, "Holiday photos");
  g_assert_true (app_chat_has_custom_title (chat));
  g_assert_cmpuint (title_notifies, ==, 4);
  g_assert_cmpuint (custom_notifies, ==, 1);
  app_chat_set_title (chat, "Holiday photos");
  g_assert_cmpuint (title_notifies, ==, 4);
  app_message_set_text (question, "Changed question");
  app_chat_truncate (chat, 0);
  add_message (chat, APP_ROLE_USER, "Yet another question");
  g_assert_cmpstr (app_chat_get_title (chat), ==, "Holiday photos");
  g_assert_cmpuint (title_notifies, ==, 4);
  g_object_get (chat, "title", &title, "custom-title", &custom, NULL);
  g_assert_cmpstr (title, ==, "Holiday photos");
  g_assert_true (custom);
  g_free (title);

  /* Clearing it (NULL or blank) brings the derived title back. */
  app_chat_set_title (chat, "   ");
  g_assert_false (app_chat_has_custom_title (chat));
  g_assert_cmpstr (app_chat_get_title (chat), ==, "Yet another question");
  g_assert_cmpuint (title_notifies, ==, 5);
  g_assert_cmpuint (custom_notifies, ==, 2);
  g_object_set (chat, "title", "Set as a property", NULL);
  g_assert_cmpstr (app_chat_get_title (chat), ==, "Set as a property");
  app_chat_set_title (chat, NULL);
  g_assert_cmpstr (app_chat_get_title (chat), ==, "Yet another question");
  g_assert_cmpuint (title_notifies, ==, 7);

  /* Short enough: kept whole, even at exactly 48 characters. */
  assert_title ("Short question", "Short question");
  assert_title (exact, exact);

  /* Too long: cut at a word boundary, ellipsis included in the 48 characters. */
  assert_title ("The quick brown fox jumps over the lazy dog and keeps running far away",
                "The quick brown fox jumps over the lazy dog and…");
  assert_title ("The quick brown fox jumps over the lazy dog anders keeps running",
                "The quick brown fox jumps over the lazy dog…");
  assert_title ("   \n\n  The   quick brown fox jumps over the lazy dog anders keeps\nrunning",
                "The quick brown fox jumps over the lazy dog…");

  /* One long word, and scripts without spaces: cut at a character boundary. */
  long_word_expected = g_strconcat (y47, "…", NULL);
  assert_title (long_word, long_word_expected);
  cjk_expected = g_strdup_printf ("%.*s…", (int)(g_utf8_offset_to_pointer (cjk, 47) - cjk), cjk);
  assert_title (cjk, cjk_expected);
  emoji_expected = g_strdup_printf ("%.*s…", (int)(g_utf8_offset_to_pointer (emoji, 47) - emoji), emoji);
  assert_title (emoji, emoji_expected);

  /* Never between an emoji and its skin tone, or a letter and its accent. */
  skin_tone = g_strconcat (a46, "👍🏽", "bbbbbbbbbb", NULL);
  skin_tone_expected = g_strconcat (a46, "…", NULL);
  assert_title (skin_tone, skin_tone_expected);
  accent = g_strconcat (a46, "e\xcc\x81", "bbbbbbbbbb", NULL);
  accent_expected = g_strconcat (a46, "…", NULL);
  assert_title (accent, accent_expected);

  /* Nothing to read in the first question: "New Chat". */
  assert_title ("  \n\t\n ", "New Chat");
  assert_title ("", "New Chat");
}

static void
count_items_changed (GListModel *model,
                     guint       position,
                     guint       removed,
                     guint       added,
                     guint      *count)
{
  (*count)++;
}

static void
test_chat_truncate (void)
{
  g_autoptr(AppChat) chat = app_chat_new ();
  g_autoptr(AppMessage) kept = NULL;
  guint title_notifies = 0;
  guint changes = 0;

  add_message (chat, APP_ROLE_USER, "First question");
  add_message (chat, APP_ROLE_ASSISTANT, "First answer");
  add_message (chat, APP_ROLE_USER, "Second question");
  add_message (chat, APP_ROLE_ASSISTANT, "Second answer");
  add_message (chat, APP_ROLE_USER, "Third question");
  g_assert_cmpuint (app_chat_get_n_messages (chat), ==, 5);
  g_assert_cmpuint (g_list_model_get_n_items (app_chat_get_messages (chat)), ==, 5);
  g_assert_cmpstr (app_message_get_text (message_at (chat, 3)), ==, "Second answer");
  g_assert_null (app_chat_get_message (chat, 5));

  /* get_message gives a reference of its own: the message outlives its removal. */
  kept = app_chat_get_message (chat, 3);
  g_signal_connect (chat, "notify::title", G_CALLBACK (count_notify), &title_notifies);
  g_signal_connect (app_chat_get_messages (chat), "items-changed",
                    G_CALLBACK (count_items_changed), &changes);

  /* Regenerate the second answer: it and everything after go, in one change. */
  app_chat_truncate (chat, 3);
  g_assert_cmpuint (app_chat_get_n_messages (chat), ==, 3);
  g_assert_cmpuint (changes, ==, 1);
  g_assert_cmpstr (app_message_get_text (message_at (chat, 2)), ==, "Second question");
  g_assert_cmpstr (app_chat_get_title (chat), ==, "First question");
  g_assert_cmpuint (title_notifies, ==, 0);

  /* Past the end: nothing happens. */
  app_chat_truncate (chat, 3);
  app_chat_truncate (chat, 100);
  g_assert_cmpuint (app_chat_get_n_messages (chat), ==, 3);
  g_assert_cmpuint (changes, ==, 1);

  /* The removed message was released by the chat, not destroyed under us. */
  g_assert_cmpstr (app_message_get_text (kept), ==, "Second answer");

  /* Edit the first question: the chat is empty again and the title goes back. */
  app_chat_truncate (chat, 0);
  g_assert_cmpuint (app_chat_get_n_messages (chat), ==, 0);
  g_assert_cmpstr (app_chat_get_title (chat), ==, "New Chat");
  g_assert_cmpuint (title_notifies, ==, 1);

  add_message (chat, APP_ROLE_USER, "Edited question");
  g_assert_cmpstr (app_chat_get_title (chat), ==, "Edited question");
  g_assert_cmpuint (title_notifies, ==, 2);
}

static void
test_chat_matches (void)
{
  g_autoptr(AppChat) chat = app_chat_new ();
  g_autoptr(AppChat) empty = app_chat_new ();

  add_message (chat, APP_ROLE_USER, "Hello World\nWhat is on the Straße sign?");
  add_message (chat, APP_ROLE_ASSISTANT, "The sign shows a Quick brown FOX and 日本語のテキスト.");

  g_assert_true (app_chat_matches (chat, ""));
  g_assert_true (app_chat_matches (chat, "   \t "));
  g_assert_true (app_chat_matches (chat, NULL));
  g_assert_true (app_chat_matches (empty, ""));

  g_assert_true (app_chat_matches (chat, "quick"));
  g_assert_true (app_chat_matches (chat, "QUICK"));
  g_assert_true (app_chat_matches (chat, "  fox   QUICK  "));
  g_assert_true (app_chat_matches (chat, "hello fox"));       /* question and answer */
  g_assert_true (app_chat_matches (chat, "STRASSE"));         /* full case folding */
  g_assert_true (app_chat_matches (chat, "日本語"));
  g_assert_true (app_chat_matches (chat, "テキスト 日本"));
  g_assert_true (app_chat_matches (chat, "ｑｕｉｃｋ"));        /* full-width letters */
  g_assert_false (app_chat_matches (chat, "quick giraffe"));
  g_assert_false (app_chat_matches (chat, "中文"));
  g_assert_false (app_chat_matches (chat, "quickbrown"));
  g_assert_false (app_chat_matches (empty, "hello"));

  /* The title counts, custom or derived. */
  g_assert_true (app_chat_matches (empty, "new chat"));
  app_chat_set_title (chat, "Vacation Plans");
  g_assert_true (app_chat_matches (chat, "vacation fox"));
  g_assert_false (app_chat_matches (empty, "vacation"));
}

/* ---------------------------------------------------------------------------------------------
 * JSON
 */

#define IMAGE_A "a3f1c9e2b4d6a8f0c1e3b5d7f9a2c4e6b8d0f2a4c6e8b0d2f4a6c8e0b2d4f6a8.png"
#define IMAGE_B "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff.jpg"

static void
assert_messages_equal (AppMessage *a,
                       AppMessage *b)
{
  g_assert_cmpint (app_message_get_role (a), ==, app_message_get_role (b));
  g_assert_cmpstr (app_message_get_text (a), ==, app_message_get_text (b));
  g_assert_true (g_strv_equal (app_message_get_images (a), app_message_get_images (b)));
  g_assert_cmpstr (app_message_get_error (a), ==, app_message_get_error (b));
  g_assert_cmpstr (app_message_get_note (a), ==, app_message_get_note (b));
  g_assert_cmpstr (app_message_get_boxes_image (a), ==, app_message_get_boxes_image (b));
  g_assert_cmpuint (app_message_get_n_tokens (a), ==, app_message_get_n_tokens (b));
  g_assert_cmpfloat (app_message_get_first_token_seconds (a), ==,
                     app_message_get_first_token_seconds (b));
  g_assert_cmpfloat (app_message_get_tokens_per_second (a), ==,
                     app_message_get_tokens_per_second (b));
  g_assert_cmpint (app_message_get_created (a), ==, app_message_get_created (b));
  g_assert_cmpint (app_message_get_finish_reason (a), ==, app_message_get_finish_reason (b));
}

static void
assert_chats_equal (AppChat *a,
                    AppChat *b)
{
  g_assert_cmpstr (app_chat_get_id (a), ==, app_chat_get_id (b));
  g_assert_cmpstr (app_chat_get_title (a), ==, app_chat_get_title (b));
  g_assert_cmpint (app_chat_has_custom_title (a), ==, app_chat_has_custom_title (b));
  g_assert_cmpint (app_chat_get_created (a), ==, app_chat_get_created (b));
  g_assert_cmpint (app_chat_get_modified (a), ==, app_chat_get_modified (b));
  g_assert_cmpuint (app_chat_get_n_messages (a), ==, app_chat_get_n_messages (b));

  for (guint i = 0; i < app_chat_get_n_messages (a); i++)
    assert_messages_equal (message_at (a, i), message_at (b, i));
}

static void
test_json_round_trip (void)
{
  static const char * const images[] = { IMAGE_A, IMAGE_B, NULL };
  static const char * const one_image[] = { IMAGE_B, NULL };
  static const char *tricky = "He said \"hi\" \\ and left.\n\tLine two: üñíçødé 😀 中文 \u2028 end\r\n";
  static const AppMessageState states[] = {
    APP_MESSAGE_COMPLETE, APP_MESSAGE_PENDING, APP_MESSAGE_STREAMING,
    APP_MESSAGE_STOPPED, APP_MESSAGE_FAILED, APP_MESSAGE_INTERRUPTED,
  };
  /* an answer saved while it was being written was interrupted by whatever ended the app */
  static const AppMessageState loaded_states[] = {
    APP_MESSAGE_COMPLETE, APP_MESSAGE_INTERRUPTED, APP_MESSAGE_INTERRUPTED,
    APP_MESSAGE_STOPPED, APP_MESSAGE_FAILED, APP_MESSAGE_INTERRUPTED,
  };
  static const AppFinishReason finishes[] = {
    APP_FINISH_END, APP_FINISH_NONE, APP_FINISH_NONE,
    APP_FINISH_NONE, APP_FINISH_NONE, APP_FINISH_LENGTH,
  };
  g_autoptr(AppChat) chat = app_chat_new ();
  g_autoptr(AppChat) copy = NULL;
  g_autoptr(AppChat) custom_copy = NULL;
  g_autoptr(GPtrArray) collected = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) node = NULL;
  g_autofree char *json = NULL;
  g_autofree char *json_again = NULL;
  JsonObject *object;
  JsonObject *first;
  AppMessage *message;

  message = add_message (chat, APP_ROLE_USER, tricky);
  app_message_set_images (message, images);
  app_message_set_created (message, 1700000000000001);

  for (guint i = 0; i < G_N_ELEMENTS (states); i++)
    {
      g_autofree char *text = g_strdup_printf ("Answer %u: \"quoted\"\nnext line", i);

      message = add_message (chat, APP_ROLE_ASSISTANT, text);
      app_message_set_state (message, states[i]);
      app_message_set_finish_reason (message, finishes[i]);
      app_message_set_stats (message, 100 + i, 0.25 * (i + 1), 17.5 + i);
      app_message_set_created (message, 1700000000000002 + i);
      if (states[i] == APP_MESSAGE_FAILED)
        app_message_set_error (message, "The model ran out of memory");
      if (i == 0)
        app_message_set_note (message, "Early turns were left out to fit the context.");
      if (i == 1)
        app_message_set_boxes_image (message, IMAGE_A);
    }
  message = add_message (chat, APP_ROLE_USER, "");
  app_message_set_images (message, one_image);
  app_chat_touch (chat);

  node = app_chat_to_json (chat);
  object = json_node_get_object (node);
  g_assert_cmpint (json_object_get_int_member (object, "version"), ==, 2);
  g_assert_cmpstr (json_object_get_string_member (object, "id"), ==, app_chat_get_id (chat));
  g_assert_cmpstr (json_object_get_string_member (object, "title"), ==, app_chat_get_title (chat));
  g_assert_false (json_object_get_boolean_member (object, "custom_title"));
  g_assert_cmpint (json_object_get_int_member (object, "created"), ==, app_chat_get_created (chat));
  g_assert_cmpint (json_object_get_int_member (object, "modified"), ==, app_chat_get_modified (chat));
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (object, "messages")), ==, 8);
  first = json_array_get_object_element (json_object_get_array_member (object, "messages"), 0);
  g_assert_true (json_object_get_null_member (first, "parent"));
  g_assert_false (json_object_has_member (first, "selected"));
  g_assert_false (json_object_has_member (first, "finish"));
  g_assert_cmpstr (json_object_get_string_member (first, "role"), ==, "user");
  g_assert_cmpstr (json_object_get_string_member (first, "text"), ==, tricky);
  g_assert_cmpstr (json_object_get_string_member (first, "state"), ==, "complete");
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (first, "images")), ==, 2);

  /* Through text, as on disk. */
  json = json_to_string (node, TRUE);
  copy = chat_from_string (json, &error);
  g_assert_no_error (error);
  g_assert_nonnull (copy);

  g_assert_cmpstr (app_chat_get_id (copy), ==, app_chat_get_id (chat));
  g_assert_cmpstr (app_chat_get_title (copy), ==, "He said \"hi\" \\ and left.");
  g_assert_cmpint (app_chat_get_created (copy), ==, app_chat_get_created (chat));
  g_assert_cmpint (app_chat_get_modified (copy), ==, app_chat_get_modified (chat));
  g_assert_cmpuint (app_chat_get_n_messages (copy), ==, 8);
  {
    JsonObject *last = json_array_get_object_element (
      json_object_get_array_member (object, "messages"), 6);

    g_assert_cmpint (json_object_get_int_member (last, "parent"), ==, 5);
    g_assert_cmpstr (json_object_get_string_member (last, "state"), ==, "interrupted");
    g_assert_cmpstr (json_object_get_string_member (last, "finish"), ==, "length");
  }

  for (guint i = 0; i < 8; i++)
    {
      AppMessage *original = message_at (chat, i);
      AppMessage *loaded = message_at (copy, i);

      assert_messages_equal (original, loaded);
      if (i >= 1 && i <= G_N_ELEMENTS (states))
        g_assert_cmpint (app_message_get_state (loaded), ==, loaded_states[i - 1]);
      else
        g_assert_cmpint (app_message_get_state (loaded), ==, APP_MESSAGE_COMPLETE);
    }
  g_assert_cmpstr (app_message_get_error (message_at (copy, 5)), ==,
                   "The model ran out of memory");
  g_assert_cmpstr (app_message_get_note (message_at (copy, 1)), ==,
                   "Early turns were left out to fit the context.");
  g_assert_cmpuint (app_message_get_n_tokens (message_at (copy, 3)), ==, 102);
  g_assert_cmpfloat (app_message_get_first_token_seconds (message_at (copy, 3)), ==, 0.75);
  g_assert_cmpfloat (app_message_get_tokens_per_second (message_at (copy, 3)), ==, 19.5);

  /* Each image once, in order of first appearance. */
  collected = app_chat_collect_images (copy);
  g_assert_cmpuint (collected->len, ==, 2);
  g_assert_cmpstr (g_ptr_array_index (collected, 0), ==, IMAGE_A);
  g_assert_cmpstr (g_ptr_array_index (collected, 1), ==, IMAGE_B);

  /* Streaming is not a state a file can bring back; a second round trip is stable. */
  json_again = chat_to_string (copy);
  g_clear_pointer (&json, g_free);
  g_clear_object (&copy);
  copy = chat_from_string (json_again, &error);
  g_assert_no_error (error);
  assert_chats_equal (chat, copy);
  json = chat_to_string (copy);
  g_assert_cmpstr (json, ==, json_again);

  /* A custom title survives; a derived one is derived again. */
  app_chat_set_title (chat, "My “special” chat ✨");
  g_clear_pointer (&json, g_free);
  json = chat_to_string (chat);
  custom_copy = chat_from_string (json, &error);
  g_assert_no_error (error);
  g_assert_true (app_chat_has_custom_title (custom_copy));
  g_assert_cmpstr (app_chat_get_title (custom_copy), ==, "My “special” chat ✨");
  assert_chats_equal (chat, custom_copy);
}

static void
test_json_invalid (void)
{
  static const char *id = "\"id\": \"0b6e2d8c-4b1f-4d5e-9a8b-3c2d1e0f9a8b\"";
  const char *top_level[] = {
    "[]",
    "42",
    "\"chat\"",
    "null",
    "{}",
    "{\"version\": 3, %s, \"messages\": []}",
    "{\"version\": 0, %s, \"messages\": []}",
    "{\"version\": \"1\", %s, \"messages\": []}",
    "{\"version\": 1.0, %s, \"messages\": []}",
    "{%s, \"messages\": []}",
    "{\"version\": 1, \"messages\": []}",
    "{\"version\": 1, \"id\": 7, \"messages\": []}",
    "{\"version\": 1, \"id\": \"not-a-uuid\", \"messages\": []}",
    "{\"version\": 1, \"id\": \"../../0b6e2d8c-4b1f-4d5e-9a8b-3c2d1e0f9a8b\", \"messages\": []}",
    "{\"version\": 1, %s}",
    "{\"version\": 1, %s, \"messages\": {}}",
    "{\"version\": 1, %s, \"messages\": [], \"title\": 3}",
    "{\"version\": 1, %s, \"messages\": [], \"custom_title\": \"yes\"}",
    "{\"version\": 1, %s, \"messages\": [], \"custom_title\": true}",
    "{\"version\": 1, %s, \"messages\": [], \"custom_title\": true, \"title\": \"  \"}",
    "{\"version\": 1, %s, \"messages\": [], \"created\": \"yesterday\"}",
    "{\"version\": 1, %s, \"messages\": [], \"modified\": 1.5}",
  };
  const char *messages[] = {
    "42",
    "[]",
    "{}",
    "{\"text\": \"hi\"}",
    "{\"role\": \"system\", \"text\": \"hi\"}",
    "{\"role\": \"USER\", \"text\": \"hi\"}",
    "{\"role\": 0, \"text\": \"hi\"}",
    "{\"role\": \"user\"}",
    "{\"role\": \"user\", \"text\": 5}",
    "{\"role\": \"user\", \"text\": [\"hi\"]}",
    "{\"role\": \"user\", \"text\": \"hi\", \"state\": \"done\"}",
    "{\"role\": \"user\", \"text\": \"hi\", \"state\": 1}",
    "{\"role\": \"user\", \"text\": \"hi\", \"images\": \"" IMAGE_A "\"}",
    "{\"role\": \"user\", \"text\": \"hi\", \"images\": [1]}",
    "{\"role\": \"user\", \"text\": \"hi\", \"images\": [null]}",
    "{\"role\": \"user\", \"text\": \"hi\", \"images\": [\"../" IMAGE_A "\"]}",
    "{\"role\": \"user\", \"text\": \"hi\", \"images\": [\"../../etc/passwd\"]}",
    "{\"role\": \"user\", \"text\": \"hi\", \"images\": [\"" IMAGE_A "/x\"]}",
    "{\"role\": \"user\", \"text\": \"hi\", \"images\": [\"A3F1C9E2B4D6A8F0C1E3B5D7F9A2C4E6B8D0F2A4C6E8B0D2F4A6C8E0B2D4F6A8.png\"]}",
    "{\"role\": \"user\", \"text\": \"hi\", \"images\": [\"a3f1.png\"]}",
    "{\"role\": \"user\", \"text\": \"hi\", \"images\": [\"" IMAGE_A "x/y\"]}",
    "{\"role\": \"user\", \"text\": \"hi\", \"error\": 1}",
    "{\"role\": \"user\", \"text\": \"hi\", \"note\": {}}",
    "{\"role\": \"assistant\", \"text\": \"hi\", \"boxes_image\": 3}",
    "{\"role\": \"assistant\", \"text\": \"hi\", \"boxes_image\": \"../" IMAGE_A "\"}",
    "{\"role\": \"user\", \"text\": \"hi\", \"n_tokens\": -1}",
    "{\"role\": \"user\", \"text\": \"hi\", \"n_tokens\": 1.5}",
    "{\"role\": \"user\", \"text\": \"hi\", \"n_tokens\": 99999999999}",
    "{\"role\": \"user\", \"text\": \"hi\", \"first_token_seconds\": \"fast\"}",
    "{\"role\": \"user\", \"text\": \"hi\", \"tokens_per_second\": -3.5}",
    "{\"role\": \"user\", \"text\": \"hi\", \"created\": true}",
    "{\"role\": \"assistant\", \"text\": \"hi\", \"finish\": \"tired\"}",
    "{\"role\": \"assistant\", \"text\": \"hi\", \"finish\": 2}",
  };
  /* version 2: where each message sits in the tree of versions */
  const char *tree_messages[] = {
    "{\"parent\": 1, \"role\": \"assistant\", \"text\": \"its own parent\"}",
    "{\"parent\": 2, \"role\": \"assistant\", \"text\": \"a parent further down\"}",
    "{\"parent\": -1, \"role\": \"assistant\", \"text\": \"hi\"}",
    "{\"parent\": \"0\", \"role\": \"assistant\", \"text\": \"hi\"}",
    "{\"parent\": 0.5, \"role\": \"assistant\", \"text\": \"hi\"}",
    "{\"parent\": 0, \"selected\": 1, \"role\": \"assistant\", \"text\": \"hi\"}",
    "{\"parent\": null, \"selected\": true, \"role\": \"user\", \"text\": \"a second "
    "version of the first question, both shown\"}",
  };

  for (guint i = 0; i < G_N_ELEMENTS (top_level); i++)
    {
      g_autofree char *json = g_strdup_printf (top_level[i], id);
      g_autoptr(GError) error = NULL;
      g_autoptr(AppChat) chat = NULL;

      g_test_message ("%s", json);
      chat = chat_from_string (json, &error);
      g_assert_null (chat);
      g_assert_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_CORRUPT);
    }

  for (guint i = 0; i < G_N_ELEMENTS (messages); i++)
    {
      g_autofree char *json = g_strdup_printf ("{\"version\": 1, %s, \"messages\": ["
                                               "{\"role\": \"user\", \"text\": \"fine\"}, %s]}",
                                               id, messages[i]);
      g_autoptr(GError) error = NULL;
      g_autoptr(AppChat) chat = NULL;

      g_test_message ("%s", json);
      chat = chat_from_string (json, &error);
      g_assert_null (chat);
      g_assert_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_CORRUPT);
      /* The message names where the problem is. */
      g_assert_nonnull (strstr (error->message, "messages[1]"));
    }

  for (guint i = 0; i < G_N_ELEMENTS (tree_messages); i++)
    {
      g_autofree char *json = g_strdup_printf ("{\"version\": 2, %s, \"messages\": ["
                                               "{\"parent\": null, \"selected\": true, "
                                               "\"role\": \"user\", \"text\": \"fine\"}, %s]}",
                                               id, tree_messages[i]);
      g_autoptr(GError) error = NULL;
      g_autoptr(AppChat) chat = NULL;

      g_test_message ("%s", json);
      chat = chat_from_string (json, &error);
      g_assert_null (chat);
      g_assert_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_CORRUPT);
      g_assert_nonnull (strstr (error->message, "messages[1]"));
    }

  /* Members this version does not know are ignored; absent optional ones take defaults. */
  {
    g_autofree char *json = g_strdup_printf ("{\"version\": 1, %s, \"future\": {\"x\": [1]}, "
                                             "\"error\": null, \"messages\": ["
                                             "{\"role\": \"user\", \"text\": \"Minimal\", \"mood\": 3}, "
                                             "{\"role\": \"assistant\", \"text\": \"\", "
                                             "\"state\": \"pending\", \"error\": null, "
                                             "\"note\": null, \"first_token_seconds\": 2}]}",
                                             id);
    g_autoptr(GError) error = NULL;
    g_autoptr(AppChat) chat = chat_from_string (json, &error);

    g_assert_no_error (error);
    g_assert_cmpuint (app_chat_get_n_messages (chat), ==, 2);
    g_assert_cmpstr (app_chat_get_title (chat), ==, "Minimal");
    g_assert_cmpint (app_message_get_state (message_at (chat, 0)), ==, APP_MESSAGE_COMPLETE);
    g_assert_null (app_message_get_images (message_at (chat, 0))[0]);
    g_assert_cmpint (app_message_get_state (message_at (chat, 1)), ==, APP_MESSAGE_INTERRUPTED);
    g_assert_null (app_message_get_error (message_at (chat, 1)));
    g_assert_cmpfloat (app_message_get_first_token_seconds (message_at (chat, 1)), ==, 2);
  }
}

/* ---------------------------------------------------------------------------------------------
 * Versions: edits and regenerations are kept beside what they replace
 */

/* The texts of the shown path, joined with " | ". */
static char *
shown_texts (AppChat *chat)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < app_chat_get_n_messages (chat); i++)
    g_string_append_printf (s, "%s%s", i > 0 ? " | " : "",
                            app_message_get_text (message_at (chat, i)));
  return g_string_free (s, FALSE);
}

static void
assert_shown (AppChat    *chat,
              const char *expected)
{
  g_autofree char *texts = shown_texts (chat);

  g_assert_cmpstr (texts, ==, expected);
}

/* The chat the version tests start from: two exchanges, with an image in the second
 * question. */
static AppChat *
make_versioned_chat (AppMessage **q1,
                     AppMessage **a2)
{
  static const char * const images[] = { IMAGE_A, NULL };
  AppChat *chat = app_chat_new ();
  AppMessage *q2;

  *q1 = add_message (chat, APP_ROLE_USER, "Q1");
  add_message (chat, APP_ROLE_ASSISTANT, "A1");
  q2 = add_message (chat, APP_ROLE_USER, "Q2");
  app_message_set_images (q2, images);
  *a2 = add_message (chat, APP_ROLE_ASSISTANT, "A2");
  return chat;
}

static void
test_chat_versions (void)
{
  static const char * const other_image[] = { IMAGE_B, NULL };
  AppMessage *q1, *a2;
  g_autoptr(AppChat) chat = make_versioned_chat (&q1, &a2);
  g_autoptr(AppMessage) a2b = app_message_new (APP_ROLE_ASSISTANT, "A2b");
  g_autoptr(AppMessage) q1b = app_message_new (APP_ROLE_USER, "Q1b edited");
  g_autoptr(AppMessage) a1b = app_message_new (APP_ROLE_ASSISTANT, "A1b");
  g_autoptr(AppMessage) stranger = app_message_new (APP_ROLE_USER, "Not in the chat");
  g_autoptr(AppMessage) other = app_message_new (APP_ROLE_USER, "x");
  g_autoptr(GPtrArray) images = NULL;
  AppMessage *a2c;
  guint changes = 0;
  guint title_notifies = 0;

  g_signal_connect (app_chat_get_messages (chat), "items-changed",
                    G_CALLBACK (count_items_changed), &changes);
  g_signal_connect (chat, "notify::title", G_CALLBACK (count_notify), &title_notifies);
  for (guint i = 0; i < 4; i++)
    {
      g_assert_cmpuint (app_chat_get_n_versions (chat, i), ==, 1);
      g_assert_cmpuint (app_chat_get_version (chat, i), ==, 0);
    }
  g_assert_cmpuint (app_chat_get_n_versions (chat, 4), ==, 0);

  /* Regenerate the last answer: a second version, shown, the first one kept. */
  g_assert_true (app_chat_add_version (chat, a2, a2b));
  assert_shown (chat, "Q1 | A1 | Q2 | A2b");
  g_assert_cmpuint (changes, ==, 1);
  g_assert_cmpuint (app_chat_get_n_versions (chat, 3), ==, 2);
  g_assert_cmpuint (app_chat_get_version (chat, 3), ==, 1);
  g_assert_cmpuint (app_chat_get_n_versions (chat, 2), ==, 1);
  g_assert_true (app_chat_contains (chat, a2));
  g_assert_false (app_chat_contains (chat, stranger));

  /* Edit the first question: the new version is shown with nothing after it yet, and the
   * title follows it; the answer to it continues that version. */
  g_assert_true (app_chat_add_version (chat, q1, q1b));
  assert_shown (chat, "Q1b edited");
  g_assert_cmpuint (changes, ==, 2);
  g_assert_cmpstr (app_chat_get_title (chat), ==, "Q1b edited");
  g_assert_cmpuint (title_notifies, ==, 1);
  app_chat_append (chat, a1b);
  app_message_set_images (q1b, other_image);
  assert_shown (chat, "Q1b edited | A1b");
  g_assert_cmpuint (app_chat_get_n_versions (chat, 0), ==, 2);
  g_assert_cmpuint (app_chat_get_version (chat, 0), ==, 1);
  g_assert_cmpuint (app_chat_get_n_versions (chat, 1), ==, 1);

  /* Back to the first version: its whole conversation, with the answer version chosen last. */
  changes = 0;
  app_chat_select_version (chat, 0, 0);
  assert_shown (chat, "Q1 | A1 | Q2 | A2b");
  g_assert_cmpuint (changes, ==, 1);
  g_assert_cmpstr (app_chat_get_title (chat), ==, "Q1");
  app_chat_select_version (chat, 3, 0);
  assert_shown (chat, "Q1 | A1 | Q2 | A2");
  g_assert_cmpuint (changes, ==, 2);
  /* the same version again, or one that does not exist: nothing happens */
  app_chat_select_version (chat, 3, 0);
  app_chat_select_version (chat, 3, 2);
  app_chat_select_version (chat, 9, 0);
  g_assert_cmpuint (changes, ==, 2);
  app_chat_select_version (chat, 0, 1);
  assert_shown (chat, "Q1b edited | A1b");
  app_chat_select_version (chat, 0, 0);
  assert_shown (chat, "Q1 | A1 | Q2 | A2");

  /* A version of a message not shown: the path to it is shown. */
  app_chat_select_version (chat, 0, 1);
  a2c = app_message_new (APP_ROLE_ASSISTANT, "A2c");
  g_assert_true (app_chat_add_version (chat, a2, a2c));
  assert_shown (chat, "Q1 | A1 | Q2 | A2c");
  g_assert_cmpuint (app_chat_get_n_versions (chat, 3), ==, 3);
  g_assert_cmpuint (app_chat_get_version (chat, 3), ==, 2);
  /* held by the test: the chat lets go of it further down */
  g_object_add_weak_pointer (G_OBJECT (a2c), (gpointer *)&a2c);
  g_object_unref (a2c);
  g_assert_nonnull (a2c);

  /* Not a message of this chat, or already one: refused. */
  g_assert_false (app_chat_add_version (chat, stranger, other));
  g_assert_false (app_chat_add_version (chat, a2, a2b));

  /* Every version is searched and its images count. */
  g_assert_true (app_chat_matches (chat, "A1b"));
  g_assert_true (app_chat_matches (chat, "edited"));
  images = app_chat_collect_images (chat);
  g_assert_cmpuint (images->len, ==, 2);
  g_assert_cmpstr (g_ptr_array_index (images, 0), ==, IMAGE_A);
  g_assert_cmpstr (g_ptr_array_index (images, 1), ==, IMAGE_B);

  /* Deleting a version shows the one before it, and the other versions stay. */
  app_chat_truncate (chat, 3);
  assert_shown (chat, "Q1 | A1 | Q2 | A2b");
  g_assert_cmpuint (app_chat_get_n_versions (chat, 3), ==, 2);
  g_assert_null (a2c);
  app_chat_truncate (chat, 0);
  assert_shown (chat, "Q1b edited | A1b");
  g_assert_cmpuint (app_chat_get_n_versions (chat, 0), ==, 1);
  g_assert_false (app_chat_contains (chat, a2));
}

/* Every version, the one shown of each, and what followed each, through JSON and back. */
static void
test_chat_versions_json (void)
{
  AppMessage *q1, *a2;
  g_autoptr(AppChat) chat = make_versioned_chat (&q1, &a2);
  g_autoptr(AppMessage) a2b = app_message_new (APP_ROLE_ASSISTANT, "A2b");
  g_autoptr(AppMessage) q1b = app_message_new (APP_ROLE_USER, "Q1b");
  g_autoptr(AppMessage) a1b = app_message_new (APP_ROLE_ASSISTANT, "A1b");
  g_autoptr(AppChat) copy = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) node = NULL;
  g_autofree char *json = NULL;
  g_autofree char *json_again = NULL;
  JsonArray *messages;

  app_chat_add_version (chat, a2, a2b);
  app_chat_add_version (chat, q1, q1b);
  app_chat_append (chat, a1b);
  app_message_set_finish_reason (a1b, APP_FINISH_LENGTH);
  /* shown: the first question, with the first answer to its follow-up */
  app_chat_select_version (chat, 0, 0);
  app_chat_select_version (chat, 3, 0);
  assert_shown (chat, "Q1 | A1 | Q2 | A2");

  node = app_chat_to_json (chat);
  messages = json_object_get_array_member (json_node_get_object (node), "messages");
  g_assert_cmpuint (json_array_get_length (messages), ==, 7);
  /* parents first, versions oldest first: Q1 A1 Q2 A2 A2b Q1b A1b */
  {
    static const struct { const char *text; int parent; int selected; } expected[] = {
      { "Q1", -1, TRUE }, { "A1", 0, -1 }, { "Q2", 1, -1 }, { "A2", 2, TRUE },
      { "A2b", 2, FALSE }, { "Q1b", -1, FALSE }, { "A1b", 5, -1 },
    };

    for (guint i = 0; i < G_N_ELEMENTS (expected); i++)
      {
        JsonObject *m = json_array_get_object_element (messages, i);

        g_assert_cmpstr (json_object_get_string_member (m, "text"), ==, expected[i].text);
        if (expected[i].parent < 0)
          g_assert_true (json_object_get_null_member (m, "parent"));
        else
          g_assert_cmpint (json_object_get_int_member (m, "parent"), ==, expected[i].parent);
        if (expected[i].selected < 0)
          g_assert_false (json_object_has_member (m, "selected"));
        else
          g_assert_cmpint (json_object_get_boolean_member (m, "selected"), ==,
                           expected[i].selected);
      }
  }

  json = json_to_string (node, FALSE);
  copy = chat_from_string (json, &error);
  g_assert_no_error (error);
  assert_chats_equal (chat, copy);
  assert_shown (copy, "Q1 | A1 | Q2 | A2");
  g_assert_cmpuint (app_chat_get_n_versions (copy, 0), ==, 2);
  g_assert_cmpuint (app_chat_get_version (copy, 0), ==, 0);
  g_assert_cmpuint (app_chat_get_n_versions (copy, 3), ==, 2);
  g_assert_cmpuint (app_chat_get_version (copy, 3), ==, 0);
  app_chat_select_version (copy, 3, 1);
  assert_shown (copy, "Q1 | A1 | Q2 | A2b");
  app_chat_select_version (copy, 0, 1);
  assert_shown (copy, "Q1b | A1b");
  g_assert_cmpint (app_message_get_finish_reason (message_at (copy, 1)), ==, APP_FINISH_LENGTH);
  /* the choices made on the copy are what it writes */
  app_chat_select_version (copy, 0, 0);
  json_again = chat_to_string (copy);
  {
    g_autoptr(AppChat) again = chat_from_string (json_again, &error);

    g_assert_no_error (error);
    assert_shown (again, "Q1 | A1 | Q2 | A2b");
  }

  /* Without a choice written, a place shows its newest version. */
  {
    g_autofree char *plain = g_strdup_printf (
      "{\"version\": 2, \"id\": \"%s\", \"messages\": ["
      "{\"role\": \"user\", \"text\": \"Q\"}, "
      "{\"parent\": 0, \"role\": \"assistant\", \"text\": \"old\"}, "
      "{\"parent\": 0, \"role\": \"assistant\", \"text\": \"new\"}, "
      "{\"parent\": 1, \"role\": \"user\", \"text\": \"after old\"}]}",
      app_chat_get_id (chat));
    g_autoptr(AppChat) loaded = chat_from_string (plain, &error);

    g_assert_no_error (error);
    assert_shown (loaded, "Q | new");
    app_chat_select_version (loaded, 1, 0);
    assert_shown (loaded, "Q | old | after old");
  }
}

/* A chat file of the first format: one conversation, read as it was and written anew. */
static void
test_store_version_1 (Fixture       *fixture,
                      gconstpointer  user_data)
{
  static const char *id = "0b6e2d8c-4b1f-4d5e-9a8b-3c2d1e0f9a8b";
  g_autoptr(AppChatStore) store = app_chat_store_new (fixture->data_dir);
  g_autoptr(AppChatStore) reloaded = NULL;
  g_autofree char *path = chat_path (fixture, id);
  g_autofree char *json = g_strdup_printf (
    "{\"version\": 1, \"id\": \"%s\", \"title\": \"First question\", \"custom_title\": false, "
    "\"created\": 1700000000000000, \"modified\": 1700000000000001, \"messages\": ["
    "{\"role\": \"user\", \"text\": \"First question\", \"images\": [\"" IMAGE_A "\"], "
    "\"state\": \"complete\"}, "
    "{\"role\": \"assistant\", \"text\": \"First answer\", \"state\": \"complete\", "
    "\"n_tokens\": 3}, "
    "{\"role\": \"user\", \"text\": \"Second question\", \"state\": \"complete\"}, "
    "{\"role\": \"assistant\", \"text\": \"Half an ans\", \"state\": \"streaming\"}]}", id);
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) on_disk = NULL;
  g_autofree char *contents = NULL;
  AppMessage *reply;
  AppChat *chat;

  g_assert_no_errno (g_mkdir_with_parents (fixture->chats_dir, 0700));
  write_file (path, json, -1);
  app_chat_store_load (store);
  g_assert_cmpuint (app_chat_store_get_load_errors (store)->len, ==, 0);
  chat = chat_at (store, 0);
  assert_shown (chat, "First question | First answer | Second question | Half an ans");
  for (guint i = 0; i < 4; i++)
    g_assert_cmpuint (app_chat_get_n_versions (chat, i), ==, 1);
  g_assert_cmpint (app_message_get_state (message_at (chat, 3)), ==, APP_MESSAGE_INTERRUPTED);
  g_assert_cmpstr (app_message_get_images (message_at (chat, 0))[0], ==, IMAGE_A);

  /* the file is left as it is until the chat changes */
  g_file_get_contents (path, &contents, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (contents, ==, json);

  /* Regenerating the interrupted answer keeps it as the first version, in the new format. */
  reply = app_message_new (APP_ROLE_ASSISTANT, "A whole answer");
  g_assert_true (app_chat_add_version (chat, message_at (chat, 3), reply));
  g_object_unref (reply);
  app_chat_store_save (store, chat, &error);
  g_assert_no_error (error);
  g_clear_pointer (&contents, g_free);
  g_file_get_contents (path, &contents, NULL, &error);
  g_assert_no_error (error);
  on_disk = json_from_string (contents, &error);
  g_assert_no_error (error);
  g_assert_cmpint (json_object_get_int_member (json_node_get_object (on_disk), "version"), ==, 2);

  reloaded = app_chat_store_new (fixture->data_dir);
  app_chat_store_load (reloaded);
  chat = chat_at (reloaded, 0);
  assert_shown (chat, "First question | First answer | Second question | A whole answer");
  app_chat_select_version (chat, 3, 0);
  assert_shown (chat, "First question | First answer | Second question | Half an ans");
  g_assert_cmpint (app_message_get_state (message_at (chat, 3)), ==, APP_MESSAGE_INTERRUPTED);
  g_assert_cmpuint (app_message_get_n_tokens (message_at (chat, 1)), ==, 3);
}

/* ---------------------------------------------------------------------------------------------
 * AppChatStore
 */

static void
test_store_persistence (Fixture       *fixture,
                        gconstpointer  user_data)
{
  g_autoptr(AppChatStore) store = app_chat_store_new (fixture->data_dir);
  g_autoptr(AppChatStore) reloaded = NULL;
  g_autoptr(AppChat) first = make_chat ("First chat", "First answer");
  g_autoptr(AppChat) second = make_chat ("Second chat", "Second answer");
  g_autoptr(AppChat) third = make_chat ("Third chat", "Third answer");
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) on_disk = NULL;
  g_autofree char *path = NULL;
  g_autofree char *contents = NULL;
  GListModel *chats;
  guint modified_notifies = 0;
  gint64 modified_before;

  g_assert_cmpstr (app_chat_store_get_data_dir (store), ==, fixture->data_dir);
  g_assert_true (g_file_test (fixture->chats_dir, G_FILE_TEST_IS_DIR));
  g_assert_true (g_file_test (fixture->images_dir, G_FILE_TEST_IS_DIR));

  app_chat_store_load (store);
  chats = app_chat_store_get_chats (store);
  g_assert_cmpuint (g_list_model_get_n_items (chats), ==, 0);
  g_assert_cmpuint (app_chat_store_get_load_errors (store)->len, ==, 0);

  /* add() shows a chat at the top without writing it. */
  app_chat_store_add (store, first);
  g_assert_cmpuint (g_list_model_get_n_items (chats), ==, 1);
  path = chat_path (fixture, app_chat_get_id (first));
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));

  g_signal_connect (first, "notify::modified", G_CALLBACK (count_notify), &modified_notifies);
  modified_before = app_chat_get_modified (first);
  g_assert_true (app_chat_store_save (store, first, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_test (path, G_FILE_TEST_IS_REGULAR));
  g_assert_cmpint (app_chat_get_modified (first), >, modified_before);
  g_assert_cmpuint (modified_notifies, ==, 1);

  /* Saving a chat not added yet adds it; each save moves the chat to the top. */
  g_assert_true (app_chat_store_save (store, second, &error));
  g_assert_true (app_chat_store_save (store, third, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (g_list_model_get_n_items (chats), ==, 3);
  g_assert_true (chat_at (store, 0) == third);
  g_assert_true (chat_at (store, 1) == second);
  g_assert_true (chat_at (store, 2) == first);

  g_assert_true (app_chat_store_save (store, first, &error));
  g_assert_no_error (error);
  g_assert_true (chat_at (store, 0) == first);
  g_assert_true (chat_at (store, 1) == third);
  g_assert_true (chat_at (store, 2) == second);
  g_assert_cmpint (app_chat_get_modified (first), >, app_chat_get_modified (third));
  g_assert_cmpint (app_chat_get_modified (third), >, app_chat_get_modified (second));

  /* The file is the documented format. */
  g_file_get_contents (path, &contents, NULL, &error);
  g_assert_no_error (error);
  on_disk = json_from_string (contents, &error);
  g_assert_no_error (error);
  g_assert_cmpint (json_object_get_int_member (json_node_get_object (on_disk), "version"), ==, 2);
  g_assert_cmpstr (json_object_get_string_member (json_node_get_object (on_disk), "id"), ==,
                   app_chat_get_id (first));
  g_assert_cmpint (json_object_get_int_member (json_node_get_object (on_disk), "modified"), ==,
                   app_chat_get_modified (first));

  /* A new store finds the same chats, in the same order, with the same contents. */
  reloaded = app_chat_store_new (fixture->data_dir);
  app_chat_store_load (reloaded);
  g_assert_cmpuint (app_chat_store_get_load_errors (reloaded)->len, ==, 0);
  g_assert_cmpuint (g_list_model_get_n_items (app_chat_store_get_chats (reloaded)), ==, 3);
  assert_chats_equal (chat_at (reloaded, 0), first);
  assert_chats_equal (chat_at (reloaded, 1), third);
  assert_chats_equal (chat_at (reloaded, 2), second);
  g_assert_cmpstr (app_chat_get_title (chat_at (reloaded, 0)), ==, "First chat");
  g_assert_cmpuint (app_message_get_n_tokens (message_at (chat_at (reloaded, 0), 1)), ==, 12);

  /* Loading again starts over rather than doubling the list. */
  app_chat_store_load (reloaded);
  g_assert_cmpuint (g_list_model_get_n_items (app_chat_store_get_chats (reloaded)), ==, 3);

  /* The reloaded store may save over the files it read. */
  add_message (chat_at (reloaded, 2), APP_ROLE_USER, "Follow-up");
  g_assert_true (app_chat_store_save (reloaded, chat_at (reloaded, 2), &error));
  g_assert_no_error (error);
  g_assert_cmpstr (app_chat_get_id (chat_at (reloaded, 0)), ==, app_chat_get_id (second));
  g_assert_cmpuint (app_chat_get_n_messages (chat_at (reloaded, 0)), ==, 3);
}

/* Writes `object` as a chat file named after `name_id`. */
static char *
write_chat_object (Fixture    *fixture,
                   const char *name_id,
                   JsonObject *object)
{
  g_autoptr(JsonNode) node = json_node_new (JSON_NODE_OBJECT);
  g_autofree char *json = NULL;
  char *path = chat_path (fixture, name_id);

  json_node_set_object (node, object);
  json = json_to_string (node, TRUE);
  write_file (path, json, -1);
  return path;
}

/* A valid chat as a JSON object, to be spoiled. */
static JsonObject *
chat_object (AppChat *chat)
{
  g_autoptr(JsonNode) node = app_chat_to_json (chat);

  return json_object_ref (json_node_get_object (node));
}

static guint
count_reports (GPtrArray  *errors,
               const char *path)
{
  g_autofree char *prefix = g_strconcat (path, ": ", NULL);
  guint count = 0;

  for (guint i = 0; i < errors->len; i++)
    {
      const char *line = g_ptr_array_index (errors, i);

      if (g_str_has_prefix (line, prefix) && strlen (line) > strlen (prefix))
        count++;
    }

  return count;
}

static void
assert_unchanged (GHashTable *snapshots)
{
  GHashTableIter iter;
  gpointer path;
  gpointer bytes;

  g_hash_table_iter_init (&iter, snapshots);
  while (g_hash_table_iter_next (&iter, &path, &bytes))
    {
      g_autoptr(GBytes) now = read_file (path);

      g_assert_true (g_bytes_equal (now, bytes));
    }
}

static void
test_store_corrupt_files (Fixture       *fixture,
                          gconstpointer  user_data)
{
  g_autoptr(AppChatStore) writer = app_chat_store_new (fixture->data_dir);
  g_autoptr(AppChatStore) store = NULL;
  g_autoptr(AppChat) good_a = make_chat ("Good chat A", "Answer A");
  g_autoptr(AppChat) good_b = make_chat ("Good chat B", "Answer B");
  g_autoptr(AppChat) newcomer = make_chat ("A new chat", "New answer");
  g_autoptr(AppChat) intruder = NULL;
  g_autoptr(GHashTable) snapshots = NULL;
  g_autoptr(GPtrArray) bad_paths = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GRand) rand = g_rand_new_with_seed (42);
  g_autofree char *full = NULL;
  g_autofree char *mismatch_id = NULL;
  g_autofree char *version_id = NULL;
  GPtrArray *errors;
  GByteArray *garbage;
  JsonObject *object;
  JsonObject *message;
  JsonArray *images;

  g_assert_true (app_chat_store_save (writer, good_a, &error));
  g_assert_true (app_chat_store_save (writer, good_b, &error));
  g_assert_no_error (error);

  bad_paths = g_ptr_array_new_with_free_func (g_free);

  /* Cut short, as by a full disk. */
  {
    g_autoptr(AppChat) chat = make_chat ("Truncated", "Half of it");
    g_autofree char *json = chat_to_string (chat);
    char *path = chat_path (fixture, app_chat_get_id (chat));

    write_file (path, json, strlen (json) / 2);
    g_ptr_array_add (bad_paths, path);
  }

  /* Empty. */
  {
    g_autofree char *id = g_uuid_string_random ();
    char *path = chat_path (fixture, id);

    write_file (path, "", 0);
    g_ptr_array_add (bad_paths, path);
  }

  /* Valid JSON, but an array. */
  {
    g_autofree char *id = g_uuid_string_random ();
    char *path = chat_path (fixture, id);

    write_file (path, "[{\"version\": 1}, 2, 3]\n", -1);
    g_ptr_array_add (bad_paths, path);
  }

  /* A newer version of the format. */
  {
    g_autoptr(AppChat) chat = make_chat ("From the future", "Answer");

    version_id = g_strdup (app_chat_get_id (chat));
    object = chat_object (chat);
    json_object_set_int_member (object, "version", 3);
    g_ptr_array_add (bad_paths, write_chat_object (fixture, version_id, object));
    json_object_unref (object);
  }

  /* A role this version does not know. */
  {
    g_autoptr(AppChat) chat = make_chat ("Wrong role", "Answer");

    object = chat_object (chat);
    message = json_array_get_object_element (json_object_get_array_member (object, "messages"), 1);
    json_object_set_string_member (message, "role", "system");
    g_ptr_array_add (bad_paths, write_chat_object (fixture, app_chat_get_id (chat), object));
    json_object_unref (object);
  }

  /* An image id that climbs out of the images folder. */
  {
    g_autoptr(AppChat) chat = make_chat ("Sneaky image", "Answer");

    object = chat_object (chat);
    message = json_array_get_object_element (json_object_get_array_member (object, "messages"), 0);
    images = json_object_get_array_member (message, "images");
    json_array_add_string_element (images, "../" IMAGE_A);
    g_ptr_array_add (bad_paths, write_chat_object (fixture, app_chat_get_id (chat), object));
    json_object_unref (object);
  }

  /* A valid chat under another chat's name. */
  {
    g_autoptr(AppChat) chat = make_chat ("Misnamed", "Answer");

    mismatch_id = g_uuid_string_random ();
    object = chat_object (chat);
    g_ptr_array_add (bad_paths, write_chat_object (fixture, mismatch_id, object));
    json_object_unref (object);
  }

  /* Random bytes. */
  {
    g_autofree char *id = g_uuid_string_random ();
    char *path = chat_path (fixture, id);

    garbage = g_byte_array_new ();
    g_byte_array_append (garbage, (const guint8 *)"{\"version\": 1, \"id\": \"", 22);
    for (guint i = 0; i < 4096; i++)
      {
        guint8 byte = g_rand_int_range (rand, 0, 256);
        g_byte_array_append (garbage, &byte, 1);
      }
    write_file (path, (const char *)garbage->data, garbage->len);
    g_byte_array_unref (garbage);
    g_ptr_array_add (bad_paths, path);
  }

  snapshots = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify)g_bytes_unref);
  for (guint i = 0; i < bad_paths->len; i++)
    {
      const char *path = g_ptr_array_index (bad_paths, i);
      g_hash_table_insert (snapshots, (gpointer)path, read_file (path));
    }

  store = app_chat_store_new (fixture->data_dir);
  app_chat_store_load (store);

  /* The good chats load, newest first... */
  g_assert_cmpuint (g_list_model_get_n_items (app_chat_store_get_chats (store)), ==, 2);
  assert_chats_equal (chat_at (store, 0), good_b);
  assert_chats_equal (chat_at (store, 1), good_a);

  /* ...and each bad file is reported once, with its path and a reason. */
  errors = app_chat_store_get_load_errors (store);
  for (guint i = 0; i < errors->len; i++)
    g_test_message ("%s", (const char *)g_ptr_array_index (errors, i));
  g_assert_cmpuint (errors->len, ==, bad_paths->len);
  for (guint i = 0; i < bad_paths->len; i++)
    g_assert_cmpuint (count_reports (errors, g_ptr_array_index (bad_paths, i)), ==, 1);
  assert_unchanged (snapshots);

  /* Saving a new chat and the good ones again leaves the bad files alone. */
  g_assert_true (app_chat_store_save (store, newcomer, &error));
  g_assert_no_error (error);
  assert_unchanged (snapshots);
  g_assert_true (app_chat_store_save (store, chat_at (store, 1), &error));
  g_assert_true (app_chat_store_save (store, chat_at (store, 2), &error));
  g_assert_no_error (error);
  assert_unchanged (snapshots);

  /* A chat that claims the name of an unreadable file may not save over it, nor delete it. */
  object = chat_object (good_a);
  json_object_set_string_member (object, "id", mismatch_id);
  {
    g_autoptr(JsonNode) node = json_node_new (JSON_NODE_OBJECT);

    json_node_set_object (node, object);
    intruder = app_chat_new_from_json (node, &error);
    g_assert_no_error (error);
  }
  json_object_unref (object);
  g_assert_false (app_chat_store_save (store, intruder, &error));
  g_assert_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_IO);
  g_clear_error (&error);
  g_assert_true (app_chat_store_purge (store, intruder, &error));
  g_assert_no_error (error);
  assert_unchanged (snapshots);

  /* Nor may the newer-version chat, were it ever opened by id. */
  {
    g_autoptr(AppChat) chat = app_chat_new ();
    g_autoptr(JsonNode) node = NULL;

    object = chat_object (chat);
    json_object_set_string_member (object, "id", version_id);
    node = json_node_new (JSON_NODE_OBJECT);
    json_node_set_object (node, object);
    json_object_unref (object);
    g_clear_object (&chat);
    chat = app_chat_new_from_json (node, &error);
    g_assert_no_error (error);
    g_assert_false (app_chat_store_save (store, chat, &error));
    g_assert_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_IO);
    g_clear_error (&error);
  }
  assert_unchanged (snapshots);

  /* A later load reports the same files again, once each, and still changes nothing. */
  app_chat_store_load (store);
  g_assert_cmpuint (g_list_model_get_n_items (app_chat_store_get_chats (store)), ==, 3);
  g_assert_cmpuint (app_chat_store_get_load_errors (store)->len, ==, bad_paths->len);
  for (guint i = 0; i < bad_paths->len; i++)
    g_assert_cmpuint (count_reports (app_chat_store_get_load_errors (store),
                                     g_ptr_array_index (bad_paths, i)), ==, 1);
  assert_unchanged (snapshots);
}

/* A chat file saying it was changed at the end of time: app_chat_touch() overflowed (its
 * "one microsecond later"), and every chat touched after it was dated after it too. */
static void
test_chat_far_future (void)
{
  const gint64 day = (gint64) G_USEC_PER_SEC * 60 * 60 * 24;
  g_autoptr(AppChat) chat = make_chat ("Question", "Answer");
  g_autoptr(AppChat) loaded = NULL;
  g_autoptr(AppChat) later = make_chat ("Another", "Answer");
  g_autoptr(JsonNode) node = json_node_new (JSON_NODE_OBJECT);
  g_autoptr(GError) error = NULL;
  JsonObject *object = chat_object (chat);
  gint64 before = g_get_real_time ();

  json_object_set_int_member (object, "created", G_MAXINT64);
  json_object_set_int_member (object, "modified", G_MAXINT64);
  json_node_take_object (node, object);
  loaded = app_chat_new_from_json (node, &error);
  g_assert_no_error (error);

  /* taken as changed now */
  g_assert_cmpint (app_chat_get_modified (loaded), >=, before);
  g_assert_cmpint (app_chat_get_modified (loaded), <=, g_get_real_time () + day);
  g_assert_cmpint (app_chat_get_created (loaded), <=, g_get_real_time () + day);

  app_chat_touch (loaded);
  g_assert_cmpint (app_chat_get_modified (loaded), >=, before);
  g_assert_cmpint (app_chat_get_modified (loaded), <=, g_get_real_time () + day);

  /* a chat touched afterwards is later, and not far from now */
  app_chat_touch (later);
  g_assert_cmpint (app_chat_get_modified (later), >, app_chat_get_modified (loaded));
  g_assert_cmpint (app_chat_get_modified (later), <=, g_get_real_time () + day);
}

/* Runs the calling test again in a child process killed after a minute: a read that waits
 * forever or never ends fails the test instead of stopping the suite. TRUE in the child. */
static gboolean
in_bounded_subprocess (void)
{
  if (g_test_subprocess ())
    return TRUE;
  g_test_trap_subprocess (NULL, 60 * G_USEC_PER_SEC,
                          G_TEST_SUBPROCESS_INHERIT_STDOUT | G_TEST_SUBPROCESS_INHERIT_STDERR);
  g_test_trap_assert_passed ();
  return FALSE;
}

/* Two good chats and the files in `bad_paths`: the good ones load, each bad one is reported
 * once, with the same index's string of `reasons` in its line, and saving leaves the bad ones
 * alone. */
static void
expect_refused (Fixture            *fixture,
                GPtrArray          *bad_paths,
                const char * const *reasons)
{
  g_autoptr(AppChatStore) writer = app_chat_store_new (fixture->data_dir);
  g_autoptr(AppChatStore) store = NULL;
  g_autoptr(AppChat) good_a = make_chat ("Good chat A", "Answer A");
  g_autoptr(AppChat) good_b = make_chat ("Good chat B", "Answer B");
  g_autoptr(AppChat) newcomer = make_chat ("A new chat", "New answer");
  g_autoptr(GError) error = NULL;
  GPtrArray *errors;

  g_assert_true (app_chat_store_save (writer, good_a, &error));
  g_assert_true (app_chat_store_save (writer, good_b, &error));
  g_assert_no_error (error);

  store = app_chat_store_new (fixture->data_dir);
  app_chat_store_load (store);
  g_assert_cmpuint (g_list_model_get_n_items (app_chat_store_get_chats (store)), ==, 2);
  assert_chats_equal (chat_at (store, 0), good_b);
  assert_chats_equal (chat_at (store, 1), good_a);

  errors = app_chat_store_get_load_errors (store);
  for (guint i = 0; i < errors->len; i++)
    g_test_message ("%s", (const char *)g_ptr_array_index (errors, i));
  g_assert_cmpuint (errors->len, ==, bad_paths->len);
  for (guint i = 0; i < bad_paths->len; i++)
    {
      g_autofree char *prefix = g_strconcat (g_ptr_array_index (bad_paths, i), ": ", NULL);

      g_assert_cmpuint (count_reports (errors, g_ptr_array_index (bad_paths, i)), ==, 1);
      for (guint j = 0; j < errors->len; j++)
        if (g_str_has_prefix (g_ptr_array_index (errors, j), prefix))
          g_assert_nonnull (strstr (g_ptr_array_index (errors, j), reasons[i]));
    }

  g_assert_true (app_chat_store_save (store, newcomer, &error));
  g_assert_true (app_chat_store_save (store, chat_at (store, 1), &error));
  g_assert_no_error (error);
  app_chat_store_flush (store);
}

/* A chat file nested 100,000 deep (200 KB) overflowed the stack of json-glib's recursive
 * parser: the app crashed at every launch. It is refused and left exactly as it is. */
static void
test_store_deep_json (Fixture       *fixture,
                      gconstpointer  user_data)
{
  g_autoptr(GPtrArray) bad_paths = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GHashTable) snapshots = NULL;
  GString *json;

  if (!in_bounded_subprocess ())
    return;

  g_assert_cmpint (g_mkdir_with_parents (fixture->chats_dir, 0700), ==, 0);
  json = g_string_new ("{\"version\": 1, \"messages\": ");
  for (guint i = 0; i < 100000; i++)
    g_string_append (json, "[{\"a\":");
  {
    g_autofree char *id = g_uuid_string_random ();
    char *path = chat_path (fixture, id);

    write_file (path, json->str, json->len);
    g_ptr_array_add (bad_paths, path);
  }
  g_string_free (json, TRUE);

  snapshots = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify)g_bytes_unref);
  for (guint i = 0; i < bad_paths->len; i++)
    g_hash_table_insert (snapshots, g_ptr_array_index (bad_paths, i),
                         read_file (g_ptr_array_index (bad_paths, i)));

  expect_refused (fixture, bad_paths, (const char *[]){ "nested more than" });
  assert_unchanged (snapshots);
}

/* A named pipe among the chats: open() waited for a writer forever, and the app hung at
 * launch before its window appeared. */
static void
test_store_fifo (Fixture       *fixture,
                 gconstpointer  user_data)
{
  g_autoptr(GPtrArray) bad_paths = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *id = g_uuid_string_random ();
  GStatBuf st;

  if (!in_bounded_subprocess ())
    return;

  g_assert_cmpint (g_mkdir_with_parents (fixture->chats_dir, 0700), ==, 0);
  g_ptr_array_add (bad_paths, chat_path (fixture, id));
  g_assert_cmpint (mkfifo (g_ptr_array_index (bad_paths, 0), 0600), ==, 0);

  expect_refused (fixture, bad_paths, (const char *[]){ "not a regular file" });
  g_assert_cmpint (g_lstat (g_ptr_array_index (bad_paths, 0), &st), ==, 0);
  g_assert_true (S_ISFIFO (st.st_mode));
}

/* A chat that is a link to /dev/zero was read until memory ran out; a sparse one of 3 GB cost
 * 3 GB (and half a minute). Both are refused, from what they are, before anything is read. */
static void
test_store_endless_files (Fixture       *fixture,
                          gconstpointer  user_data)
{
  g_autoptr(GPtrArray) bad_paths = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *zero_id = g_uuid_string_random ();
  g_autofree char *sparse_id = g_uuid_string_random ();
  char *zero;
  char *sparse;
  GStatBuf st;
  int fd;

  if (!in_bounded_subprocess ())
    return;

  g_assert_cmpint (g_mkdir_with_parents (fixture->chats_dir, 0700), ==, 0);
  zero = chat_path (fixture, zero_id);
  g_assert_cmpint (symlink ("/dev/zero", zero), ==, 0);
  g_ptr_array_add (bad_paths, zero);
  sparse = chat_path (fixture, sparse_id);
  fd = open (sparse, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (ftruncate (fd, (off_t)3 << 30), ==, 0);
  close (fd);
  g_ptr_array_add (bad_paths, sparse);

  expect_refused (fixture, bad_paths,
                  (const char *[]){ "not a regular file", "larger than a chat file may be" });
  g_assert_cmpint (g_lstat (zero, &st), ==, 0);
  g_assert_true (S_ISLNK (st.st_mode));
  g_assert_cmpint (g_stat (sparse, &st), ==, 0);
  g_assert_cmpint (st.st_size, ==, (off_t)3 << 30);
}

/* An image to attach that is a named pipe waited forever in open(); one that is a link to
 * /dev/zero was read until memory ran out. Both are refused, naming the file, and nothing is
 * added to the store. */
static void
test_store_import_not_a_file (Fixture       *fixture,
                              gconstpointer  user_data)
{
  g_autoptr(AppChatStore) store = NULL;
  g_autofree char *fifo = NULL;
  g_autofree char *zero = NULL;
  const char *paths[2];

  if (!in_bounded_subprocess ())
    return;

  store = app_chat_store_new (fixture->data_dir);
  g_assert_cmpint (g_mkdir_with_parents (fixture->data_dir, 0700), ==, 0);
  fifo = g_build_filename (fixture->data_dir, "pipe.png", NULL);
  g_assert_cmpint (mkfifo (fifo, 0600), ==, 0);
  zero = g_build_filename (fixture->data_dir, "zero.png", NULL);
  g_assert_cmpint (symlink ("/dev/zero", zero), ==, 0);
  paths[0] = fifo;
  paths[1] = zero;
  for (guint i = 0; i < G_N_ELEMENTS (paths); i++)
    {
      g_autoptr(GFile) file = g_file_new_for_path (paths[i]);
      g_autoptr(GError) error = NULL;
      g_autofree char *id = app_chat_store_import_image_file (store, file, &error);

      g_assert_null (id);
      g_assert_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_IO);
      g_assert_nonnull (strstr (error->message, paths[i]));
      g_assert_nonnull (strstr (error->message, "not a regular file"));
    }
  {
    g_autoptr(GDir) dir = g_dir_open (fixture->images_dir, 0, NULL);

    g_assert_true (dir == NULL || g_dir_read_name (dir) == NULL);
  }
}

static void
test_store_duplicate_ids (Fixture       *fixture,
                          gconstpointer  user_data)
{
  g_autoptr(AppChatStore) store = app_chat_store_new (fixture->data_dir);
  g_autoptr(AppChat) chat = make_chat ("Original", "Answer");
  g_autoptr(GBytes) before = NULL;
  g_autoptr(GBytes) after = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *upper_id = g_ascii_strup (app_chat_get_id (chat), -1);
  g_autofree char *lower_path = chat_path (fixture, app_chat_get_id (chat));
  g_autofree char *upper_path = chat_path (fixture, upper_id);
  GPtrArray *errors;
  JsonObject *object;

  /* The same UUID twice, once in capitals: one chat, and one report. */
  g_assert_true (app_chat_store_save (store, chat, &error));
  g_assert_no_error (error);
  object = chat_object (chat);
  json_object_set_string_member (object, "id", upper_id);
  g_free (write_chat_object (fixture, upper_id, object));
  json_object_unref (object);
  before = read_file (upper_path);

  app_chat_store_load (store);
  errors = app_chat_store_get_load_errors (store);
  g_assert_cmpuint (g_list_model_get_n_items (app_chat_store_get_chats (store)), ==, 1);
  g_assert_cmpuint (errors->len, ==, 1);
  g_assert_cmpuint (count_reports (errors, upper_path) + count_reports (errors, lower_path), ==, 1);

  after = read_file (upper_path);
  g_assert_true (g_bytes_equal (before, after));
  g_assert_true (g_file_test (lower_path, G_FILE_TEST_IS_REGULAR));
}

static void
test_store_atomic_save (Fixture       *fixture,
                        gconstpointer  user_data)
{
  g_autoptr(AppChatStore) store = app_chat_store_new (fixture->data_dir);
  g_autoptr(AppChat) chat = make_chat ("Atomic", "Answer");
  g_autoptr(AppChat) other = make_chat ("Other", "Answer");
  g_autoptr(GPtrArray) names = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *path = chat_path (fixture, app_chat_get_id (chat));
  g_autofree char *other_path = chat_path (fixture, app_chat_get_id (other));
  GStatBuf buf;

  for (guint i = 0; i < 20; i++)
    {
      g_autofree char *text = g_strdup_printf ("Piece %u\n", i);

      app_message_append_text (message_at (chat, 1), text);
      g_assert_true (app_chat_store_save (store, chat, &error));
      g_assert_no_error (error);
    }
  g_assert_true (app_chat_store_save (store, other, &error));
  g_assert_no_error (error);

  names = list_dir (fixture->chats_dir);
  g_assert_cmpuint (names->len, ==, 2);
  for (guint i = 0; i < names->len; i++)
    {
      const char *name = g_ptr_array_index (names, i);
      g_autofree char *child = g_build_filename (fixture->chats_dir, name, NULL);

      g_assert_true (g_str_has_suffix (name, ".json"));
      g_assert_true (strcmp (child, path) == 0 || strcmp (child, other_path) == 0);
    }

  /* Private: the chats are the person's conversations. */
  g_assert_no_errno (g_stat (path, &buf));
  g_assert_cmpint (buf.st_mode & 0777, ==, 0600);
  g_assert_no_errno (g_stat (fixture->chats_dir, &buf));
  g_assert_cmpint (buf.st_mode & 0777, ==, 0700);
  g_assert_no_errno (g_stat (fixture->images_dir, &buf));
  g_assert_cmpint (buf.st_mode & 0777, ==, 0700);

  /* The last save is the one on disk. */
  {
    g_autoptr(AppChatStore) reloaded = app_chat_store_new (fixture->data_dir);

    app_chat_store_load (reloaded);
    g_assert_cmpuint (g_list_model_get_n_items (app_chat_store_get_chats (reloaded)), ==, 2);
    assert_chats_equal (chat_at (reloaded, 1), chat);
    g_assert_true (g_str_has_suffix (app_message_get_text (message_at (chat_at (reloaded, 1), 1)),
                                     "Piece 19\n"));
  }

  /* A save that cannot be written reports why and leaves the old file whole. Root may
   * write into a read-only folder, so there is nothing to see then. */
  if (geteuid () != 0)
    {
      g_autoptr(GBytes) before = read_file (path);
      g_autoptr(GBytes) after = NULL;

      g_assert_no_errno (g_chmod (fixture->chats_dir, 0500));
      app_message_append_text (message_at (chat, 1), "Lost");
      g_assert_false (app_chat_store_save (store, chat, &error));
      g_assert_error (error, G_FILE_ERROR, G_FILE_ERROR_ACCES);
      g_clear_error (&error);
      g_assert_no_errno (g_chmod (fixture->chats_dir, 0700));

      after = read_file (path);
      g_assert_true (g_bytes_equal (before, after));
    }

  g_clear_pointer (&names, g_ptr_array_unref);
  names = list_dir (fixture->chats_dir);
  g_assert_cmpuint (names->len, ==, 2);
}

static guint
position_of (AppChatStore *store,
             AppChat      *chat)
{
  guint position;

  if (!g_list_store_find (G_LIST_STORE (app_chat_store_get_chats (store)), chat, &position))
    return G_MAXUINT;
  return position;
}

static void
test_store_trash (Fixture       *fixture,
                  gconstpointer  user_data)
{
  g_autoptr(AppChatStore) store = app_chat_store_new (fixture->data_dir);
  g_autoptr(AppChat) first = make_chat ("First", "Answer");
  g_autoptr(AppChat) second = make_chat ("Second", "Answer");
  g_autoptr(AppChat) third = make_chat ("Third", "Answer");
  g_autoptr(AppChat) unsaved = app_chat_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *first_path = chat_path (fixture, app_chat_get_id (first));
  g_autofree char *second_path = chat_path (fixture, app_chat_get_id (second));
  g_autofree char *third_path = chat_path (fixture, app_chat_get_id (third));
  GListModel *chats = app_chat_store_get_chats (store);

  g_assert_true (app_chat_store_save (store, first, &error));
  g_assert_true (app_chat_store_save (store, second, &error));
  g_assert_true (app_chat_store_save (store, third, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (position_of (store, third), ==, 0);
  g_assert_cmpuint (position_of (store, second), ==, 1);
  g_assert_cmpuint (position_of (store, first), ==, 2);

  /* Trash hides; the file stays. Untrash puts it back where it was. */
  app_chat_store_trash (store, second);
  g_assert_cmpuint (g_list_model_get_n_items (chats), ==, 2);
  g_assert_cmpuint (position_of (store, second), ==, G_MAXUINT);
  g_assert_true (g_file_test (second_path, G_FILE_TEST_IS_REGULAR));
  app_chat_store_untrash (store, second);
  g_assert_cmpuint (g_list_model_get_n_items (chats), ==, 3);
  g_assert_cmpuint (position_of (store, third), ==, 0);
  g_assert_cmpuint (position_of (store, second), ==, 1);
  g_assert_cmpuint (position_of (store, first), ==, 2);

  /* Untrashing what is not in the trash changes nothing. */
  app_chat_store_untrash (store, second);
  g_assert_cmpuint (g_list_model_get_n_items (chats), ==, 3);

  /* The oldest chat goes back to the bottom, not the top. */
  app_chat_store_trash (store, first);
  app_chat_store_untrash (store, first);
  g_assert_cmpuint (position_of (store, first), ==, 2);

  /* A trashed chat saved (an answer finishing) stays hidden, and comes back at the top. */
  app_chat_store_trash (store, first);
  g_assert_true (app_chat_store_save (store, first, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (position_of (store, first), ==, G_MAXUINT);
  g_assert_cmpuint (g_list_model_get_n_items (chats), ==, 2);
  app_chat_store_untrash (store, first);
  g_assert_cmpuint (position_of (store, first), ==, 0);

  /* Purge removes the file, whether the chat is in the trash or still listed. */
  app_chat_store_trash (store, second);
  g_assert_true (app_chat_store_purge (store, second, &error));
  g_assert_no_error (error);
  g_assert_false (g_file_test (second_path, G_FILE_TEST_EXISTS));
  app_chat_store_untrash (store, second);
  g_assert_cmpuint (position_of (store, second), ==, G_MAXUINT);
  g_assert_true (app_chat_store_purge (store, third, &error));
  g_assert_no_error (error);
  g_assert_false (g_file_test (third_path, G_FILE_TEST_EXISTS));
  g_assert_cmpuint (g_list_model_get_n_items (chats), ==, 1);

  /* A chat that never was saved purges fine. */
  app_chat_store_add (store, unsaved);
  g_assert_cmpuint (position_of (store, unsaved), ==, 0);
  app_chat_store_trash (store, unsaved);
  g_assert_true (app_chat_store_purge (store, unsaved, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (g_list_model_get_n_items (chats), ==, 1);

  /* A new store sees only what is left; trashed but unpurged chats come back. */
  app_chat_store_trash (store, first);
  {
    g_autoptr(AppChatStore) reloaded = app_chat_store_new (fixture->data_dir);

    app_chat_store_load (reloaded);
    g_assert_cmpuint (g_list_model_get_n_items (app_chat_store_get_chats (reloaded)), ==, 1);
    g_assert_cmpstr (app_chat_get_id (chat_at (reloaded, 0)), ==, app_chat_get_id (first));
  }
  g_assert_true (g_file_test (first_path, G_FILE_TEST_IS_REGULAR));
}

/* The smallest files that are what they claim to be, up to what a sniffer looks at. */
static const guint8 png_bytes[] = {
  0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a,
  0x00, 0x00, 0x00, 0x0d, 'I', 'H', 'D', 'R',
  0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00,
  0x1f, 0x15, 0xc4, 0x89,
  0x00, 0x00, 0x00, 0x00, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82,
};
static const guint8 gif_bytes[] = {
  'G', 'I', 'F', '8', '9', 'a', 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
  ',', 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00,
  0x02, 0x02, 0x44, 0x01, 0x00, ';',
};
static const guint8 jpeg_bytes[] = {
  0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0x00,
  0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00,
  0xff, 0xd9,
};

static char *
expected_id (const guint8 *data,
             gsize         size,
             const char   *extension)
{
  g_autofree char *checksum = g_compute_checksum_for_data (G_CHECKSUM_SHA256, data, size);

  return g_strconcat (checksum, ".", extension, NULL);
}

static void
assert_import (AppChatStore *store,
               Fixture      *fixture,
               const guint8 *data,
               gsize         size,
               const char   *extension)
{
  g_autoptr(GBytes) bytes = g_bytes_new_static (data, size);
  g_autoptr(GBytes) stored = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *expected = expected_id (data, size, extension);
  g_autofree char *id = app_chat_store_import_image (store, bytes, &error);
  g_autofree char *path = NULL;
  GStatBuf buf;

  g_assert_no_error (error);
  g_assert_cmpstr (id, ==, expected);

  path = app_chat_store_get_image_path (store, id);
  g_assert_nonnull (path);
  stored = read_file (path);
  g_assert_true (g_bytes_equal (stored, bytes));
  g_assert_no_errno (g_stat (path, &buf));
  g_assert_cmpint (buf.st_mode & 0777, ==, 0600);
}

static void
test_store_import_image (Fixture       *fixture,
                         gconstpointer  user_data)
{
  static const char text_bytes[] = "this is not an image at all, just some words";
  g_autoptr(AppChatStore) store = app_chat_store_new (fixture->data_dir);
  g_autoptr(GBytes) png = g_bytes_new_static (png_bytes, sizeof png_bytes);
  g_autoptr(GBytes) empty = g_bytes_new_static ("", 0);
  g_autoptr(GPtrArray) names = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GFile) outside = NULL;
  g_autoptr(GFile) missing = NULL;
  g_autofree char *first = NULL;
  g_autofree char *second = NULL;
  g_autofree char *from_file = NULL;
  g_autofree char *outside_path = NULL;
  g_autofree char *path = NULL;
  GStatBuf before;
  GStatBuf after;

  assert_import (store, fixture, png_bytes, sizeof png_bytes, "png");
  assert_import (store, fixture, gif_bytes, sizeof gif_bytes, "gif");
  assert_import (store, fixture, jpeg_bytes, sizeof jpeg_bytes, "jpg");
  assert_import (store, fixture, (const guint8 *)text_bytes, strlen (text_bytes), "img");

  /* The same bytes twice: the same id, one file, not rewritten. */
  first = app_chat_store_import_image (store, png, &error);
  g_assert_no_error (error);
  path = app_chat_store_get_image_path (store, first);
  g_assert_no_errno (g_stat (path, &before));
  second = app_chat_store_import_image (store, png, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (first, ==, second);
  g_assert_no_errno (g_stat (path, &after));
  g_assert_cmpuint (before.st_ino, ==, after.st_ino);

  /* From a file elsewhere: copied in under the same id. */
  outside_path = g_build_filename (fixture->data_dir, "picture.png", NULL);
  write_file (outside_path, (const char *)png_bytes, sizeof png_bytes);
  outside = g_file_new_for_path (outside_path);
  from_file = app_chat_store_import_image_file (store, outside, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (from_file, ==, first);
  g_assert_no_errno (g_unlink (outside_path));
  g_assert_true (g_file_test (path, G_FILE_TEST_IS_REGULAR));   /* the copy stays */

  names = list_dir (fixture->images_dir);
  g_assert_cmpuint (names->len, ==, 4);   /* png, gif, jpg, img; no temporary files */

  /* Nothing to store. */
  g_assert_null (app_chat_store_import_image (store, empty, &error));
  g_assert_nonnull (error);
  g_clear_error (&error);
  missing = g_file_new_for_path ("/nonexistent/sightline/picture.png");
  g_assert_null (app_chat_store_import_image_file (store, missing, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&error);

  g_clear_pointer (&names, g_ptr_array_unref);
  names = list_dir (fixture->images_dir);
  g_assert_cmpuint (names->len, ==, 4);
}

static void
test_store_image_path (Fixture       *fixture,
                       gconstpointer  user_data)
{
  g_autoptr(AppChatStore) store = app_chat_store_new (fixture->data_dir);
  g_autofree char *expected = g_build_filename (fixture->images_dir, IMAGE_A, NULL);
  g_autofree char *path = app_chat_store_get_image_path (store, IMAGE_A);
  const char *rejected[] = {
    "",
    ".",
    "..",
    "../" IMAGE_A,
    "../../etc/passwd",
    "/etc/passwd",
    "sub/" IMAGE_A,
    IMAGE_A "/..",
    "a..b.png",
  };

  g_assert_cmpstr (path, ==, expected);

  g_assert_null (app_chat_store_get_image_path (store, NULL));
  for (guint i = 0; i < G_N_ELEMENTS (rejected); i++)
    {
      g_autofree char *bad = app_chat_store_get_image_path (store, rejected[i]);

      g_test_message ("%s", rejected[i]);
      g_assert_null (bad);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Drafts
 */

static void
test_chat_draft (void)
{
  static const char * const images[] = { IMAGE_A, IMAGE_B, NULL };
  static const char * const one_image[] = { IMAGE_B, NULL };
  g_autoptr(AppChat) chat = app_chat_new ();
  g_autoptr(AppChat) copy = NULL;
  g_autoptr(AppChat) blank_copy = NULL;
  g_autoptr(GPtrArray) collected = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) node = NULL;
  g_autofree char *json = NULL;
  JsonObject *draft;

  /* A new chat has no draft and nothing of a person's. */
  g_assert_cmpstr (app_chat_get_draft_text (chat), ==, "");
  g_assert_cmpint (app_chat_get_draft_kind (chat), ==, APP_PROMPT_PLAIN);
  g_assert_null (app_chat_get_draft_images (chat)[0]);
  g_assert_false (app_chat_has_draft (chat));
  g_assert_true (app_chat_is_blank (chat));
  node = app_chat_to_json (chat);
  g_assert_false (json_object_has_member (json_node_get_object (node), "draft"));
  g_clear_pointer (&node, json_node_unref);

  /* White space is no draft; the kind alone neither. */
  g_assert_true (app_chat_set_draft (chat, " \n\t", APP_PROMPT_FIND, NULL));
  g_assert_false (app_chat_has_draft (chat));
  g_assert_true (app_chat_is_blank (chat));
  g_assert_false (app_chat_set_draft (chat, " \n\t", APP_PROMPT_FIND, NULL));

  /* Text, a helper and images: kept through JSON. */
  g_assert_true (app_chat_set_draft (chat, "Where is the “cat”? 😀\n", APP_PROMPT_FIND, images));
  g_assert_true (app_chat_has_draft (chat));
  g_assert_false (app_chat_is_blank (chat));
  g_assert_false (app_chat_set_draft (chat, "Where is the “cat”? 😀\n", APP_PROMPT_FIND, images));
  node = app_chat_to_json (chat);
  draft = json_object_get_object_member (json_node_get_object (node), "draft");
  g_assert_nonnull (draft);
  g_assert_cmpstr (json_object_get_string_member (draft, "text"), ==, "Where is the “cat”? 😀\n");
  g_assert_cmpstr (json_object_get_string_member (draft, "kind"), ==, "find");
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (draft, "images")), ==, 2);
  json = json_to_string (node, FALSE);
  copy = chat_from_string (json, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (app_chat_get_draft_text (copy), ==, "Where is the “cat”? 😀\n");
  g_assert_cmpint (app_chat_get_draft_kind (copy), ==, APP_PROMPT_FIND);
  g_assert_true (g_strv_equal (app_chat_get_draft_images (copy), images));

  /* The draft's images are the chat's too, after its messages'. */
  add_message (copy, APP_ROLE_USER, "An earlier question");
  app_message_set_images (message_at (copy, 0), one_image);
  collected = app_chat_collect_images (copy);
  g_assert_cmpuint (collected->len, ==, 2);
  g_assert_cmpstr (g_ptr_array_index (collected, 0), ==, IMAGE_B);
  g_assert_cmpstr (g_ptr_array_index (collected, 1), ==, IMAGE_A);

  /* Images alone are a draft; clearing it leaves a blank chat again. */
  g_assert_true (app_chat_set_draft (chat, NULL, APP_PROMPT_PLAIN, one_image));
  g_assert_true (app_chat_has_draft (chat));
  g_assert_true (app_chat_set_draft (chat, NULL, APP_PROMPT_PLAIN, NULL));
  g_assert_true (app_chat_is_blank (chat));
  g_clear_pointer (&json, g_free);
  json = chat_to_string (chat);
  blank_copy = chat_from_string (json, &error);
  g_assert_no_error (error);
  g_assert_false (app_chat_has_draft (blank_copy));

  /* A title of the person's own is theirs too. */
  app_chat_set_title (chat, "Kept");
  g_assert_false (app_chat_is_blank (chat));

  /* A spoilt draft spoils the file, as any member does. */
  {
    static const char *bad[] = {
      "\"draft\": 3",
      "\"draft\": {\"text\": 3}",
      "\"draft\": {\"kind\": \"shout\"}",
      "\"draft\": {\"images\": \"x\"}",
      "\"draft\": {\"images\": [\"../../etc/passwd\"]}",
    };

    for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
      {
        g_autofree char *text = g_strdup_printf ("{\"version\": 1, \"id\": "
                                                 "\"0b6e2d8c-4b1f-4d5e-9a8b-3c2d1e0f9a8b\", "
                                                 "\"messages\": [], %s}", bad[i]);
        g_autoptr(AppChat) spoilt = NULL;

        g_test_message ("%s", bad[i]);
        spoilt = chat_from_string (text, &error);
        g_assert_null (spoilt);
        g_assert_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_CORRUPT);
        g_assert_true (strstr (error->message, "draft") != NULL);
        g_clear_error (&error);
      }
  }
}

/* Runs the main context until nothing is left to dispatch: finished requests report back. */
static void
drain_main_context (void)
{
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

static void
test_store_drafts (Fixture       *fixture,
                   gconstpointer  user_data)
{
  static const char * const images[] = { IMAGE_A, NULL };
  g_autoptr(AppChatStore) store = app_chat_store_new (fixture->data_dir);
  g_autoptr(AppChat) untouched = app_chat_new ();
  g_autoptr(AppChat) drafted = app_chat_new ();
  g_autoptr(AppChat) older = make_chat ("Older", "Answer");
  g_autoptr(AppChat) newer = make_chat ("Newer", "Answer");
  g_autoptr(GError) error = NULL;
  g_autofree char *untouched_path = chat_path (fixture, app_chat_get_id (untouched));
  g_autofree char *drafted_path = chat_path (fixture, app_chat_get_id (drafted));
  g_autofree char *older_path = chat_path (fixture, app_chat_get_id (older));
  gint64 modified;

  app_chat_store_load (store);
  g_assert_true (app_chat_store_save (store, older, &error));
  g_assert_true (app_chat_store_save (store, newer, &error));
  g_assert_no_error (error);

  /* A new chat nobody wrote in is shown but never written. */
  app_chat_store_add (store, untouched);
  g_assert_true (app_chat_store_save (store, untouched, &error));
  g_assert_no_error (error);
  g_assert_false (g_file_test (untouched_path, G_FILE_TEST_EXISTS));

  /* A new chat with only a draft is written, and comes back with it. */
  app_chat_store_add (store, drafted);
  app_chat_set_draft (drafted, "Half a question", APP_PROMPT_GROUNDED_CAPTION, images);
  app_chat_store_save_async (store, drafted, APP_CHAT_STORE_SAVE_KEEP_PLACE, NULL, NULL, NULL);
  app_chat_store_flush (store);
  g_assert_true (g_file_test (drafted_path, G_FILE_TEST_IS_REGULAR));

  /* A draft typed into an older chat neither bumps it nor changes its time. */
  modified = app_chat_get_modified (older);
  app_chat_set_draft (older, "Follow-up, not sent yet", APP_PROMPT_PLAIN, NULL);
  app_chat_store_save_async (store, older, APP_CHAT_STORE_SAVE_KEEP_PLACE, NULL, NULL, NULL);
  app_chat_store_flush (store);
  g_assert_cmpint (app_chat_get_modified (older), ==, modified);
  g_assert_true (chat_at (store, 3) == older);
  drain_main_context ();

  {
    g_autoptr(AppChatStore) reloaded = app_chat_store_new (fixture->data_dir);
    GListModel *chats;
    AppChat *found_drafted = NULL;
    AppChat *found_older = NULL;

    app_chat_store_load (reloaded);
    chats = app_chat_store_get_chats (reloaded);
    g_assert_cmpuint (g_list_model_get_n_items (chats), ==, 3);
    for (guint i = 0; i < 3; i++)
      {
        AppChat *chat = chat_at (reloaded, i);

        if (g_str_equal (app_chat_get_id (chat), app_chat_get_id (drafted)))
          found_drafted = chat;
        if (g_str_equal (app_chat_get_id (chat), app_chat_get_id (older)))
          found_older = chat;
      }
    g_assert_nonnull (found_drafted);
    g_assert_cmpuint (app_chat_get_n_messages (found_drafted), ==, 0);
    g_assert_cmpstr (app_chat_get_draft_text (found_drafted), ==, "Half a question");
    g_assert_cmpint (app_chat_get_draft_kind (found_drafted), ==, APP_PROMPT_GROUNDED_CAPTION);
    g_assert_true (g_strv_equal (app_chat_get_draft_images (found_drafted), images));
    g_assert_nonnull (found_older);
    g_assert_cmpstr (app_chat_get_draft_text (found_older), ==, "Follow-up, not sent yet");
    g_assert_cmpuint (app_chat_get_n_messages (found_older), ==, 2);
  }

  /* Its draft dropped, the chat is blank again and its file goes. */
  app_chat_set_draft (drafted, "", APP_PROMPT_PLAIN, NULL);
  app_chat_store_save_async (store, drafted, APP_CHAT_STORE_SAVE_KEEP_PLACE, NULL, NULL, NULL);
  app_chat_store_flush (store);
  g_assert_false (g_file_test (drafted_path, G_FILE_TEST_EXISTS));

  /* The older chat's draft sent: the question is a message, the draft gone. */
  add_message (older, APP_ROLE_USER, "Follow-up, not sent yet");
  app_chat_set_draft (older, "", APP_PROMPT_PLAIN, NULL);
  g_assert_true (app_chat_store_save (store, older, &error));
  g_assert_no_error (error);
  {
    g_autoptr(GBytes) bytes = read_file (older_path);

    g_assert_null (g_strstr_len (g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes),
                                 "\"draft\""));
  }
  drain_main_context ();
}

/* ---------------------------------------------------------------------------------------------
 * Off the main thread
 */

typedef struct
{
  guint finished;
  guint failed;
  GThread *thread;
} Callbacks;

/* Counts a store call that finished with `finish`, and whether it failed. */
static void
count_finished (Callbacks     *callbacks,
                gboolean     (*finish) (AppChatStore *, GAsyncResult *, GError **),
                GObject       *source,
                GAsyncResult  *result)
{
  g_autoptr(GError) error = NULL;

  if (!finish (APP_CHAT_STORE (source), result, &error))
    {
      g_test_message ("failed: %s", error->message);
      callbacks->failed++;
    }
  callbacks->finished++;
}

static void
saved_cb (GObject      *source,
          GAsyncResult *result,
          gpointer      user_data)
{
  Callbacks *callbacks = user_data;

  g_assert_true (g_thread_self () == callbacks->thread);
  count_finished (callbacks, app_chat_store_save_finish, source, result);
}

static void
purged_cb (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  count_finished (user_data, app_chat_store_purge_finish, source, result);
}

static void
loaded_cb (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  count_finished (user_data, app_chat_store_load_finish, source, result);
}

static void
wait_callbacks (Callbacks *callbacks,
                guint      n)
{
  while (callbacks->finished < n)
    g_main_context_iteration (NULL, TRUE);
}

static void
test_store_async (Fixture       *fixture,
                  gconstpointer  user_data)
{
  g_autoptr(AppChatStore) store = app_chat_store_new (fixture->data_dir);
  g_autoptr(AppChatStore) reloaded = NULL;
  g_autoptr(AppChat) chat = make_chat ("Written in order", "");
  g_autoptr(AppChat) doomed = make_chat ("Deleted while saving", "Answer");
  g_autoptr(AppChat) started = NULL;
  g_autofree char *path = chat_path (fixture, app_chat_get_id (chat));
  g_autofree char *doomed_path = chat_path (fixture, app_chat_get_id (doomed));
  Callbacks callbacks = { 0, 0, g_thread_self () };
  guint expected = 0;

  app_chat_store_load_async (store, NULL, loaded_cb, &callbacks);
  g_assert_false (app_chat_store_get_loaded (store));
  wait_callbacks (&callbacks, ++expected);
  g_assert_true (app_chat_store_get_loaded (store));

  /* Many saves asked for at once, none waited for: the last one is what stays. */
  for (guint i = 0; i < 40; i++)
    {
      g_autofree char *text = g_strdup_printf ("Piece %u\n", i);

      app_message_append_text (message_at (chat, 1), text);
      app_chat_store_save_async (store, chat, APP_CHAT_STORE_SAVE_DEFAULT, NULL, saved_cb,
                                 &callbacks);
      expected++;
    }
  /* The callbacks come from the main loop, never from inside the call. */
  g_assert_cmpuint (callbacks.finished, ==, 1);

  /* A purge right behind saves of the same chat is not undone by them. */
  for (guint i = 0; i < 10; i++)
    {
      app_chat_store_save_async (store, doomed, APP_CHAT_STORE_SAVE_DEFAULT, NULL, saved_cb,
                                 &callbacks);
      expected++;
    }
  app_chat_store_purge_async (store, doomed, NULL, purged_cb, &callbacks);
  expected++;
  /* A save after the purge (an answer finishing late) does nothing. */
  app_chat_store_save_async (store, doomed, APP_CHAT_STORE_SAVE_DEFAULT, NULL, saved_cb,
                             &callbacks);
  expected++;

  wait_callbacks (&callbacks, expected);
  g_assert_cmpuint (callbacks.failed, ==, 0);
  g_assert_false (g_file_test (doomed_path, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (path, G_FILE_TEST_IS_REGULAR));

  /* Read back in a thread: the same chat, its last text. */
  reloaded = app_chat_store_new (fixture->data_dir);
  app_chat_store_load_async (reloaded, NULL, loaded_cb, &callbacks);
  /* A chat started while the files are read stays, on top. */
  started = app_chat_new ();
  app_chat_store_add (reloaded, started);
  wait_callbacks (&callbacks, ++expected);
  g_assert_cmpuint (callbacks.failed, ==, 0);
  g_assert_cmpuint (g_list_model_get_n_items (app_chat_store_get_chats (reloaded)), ==, 2);
  g_assert_true (chat_at (reloaded, 0) == started);
  assert_chats_equal (chat_at (reloaded, 1), chat);
  g_assert_true (g_str_has_suffix (app_message_get_text (message_at (chat_at (reloaded, 1), 1)),
                                   "Piece 39\n"));

  /* A failed save is reported to its callback. (A folder where the file goes fails even
   * for root, who may write into read-only folders.) */
  {
    g_autoptr(GBytes) before = read_file (path);
    g_autofree char *moved = g_strconcat (path, ".moved", NULL);

    g_assert_no_errno (g_rename (path, moved));
    g_assert_no_errno (g_mkdir (path, 0700));
    app_message_append_text (message_at (chat, 1), "Lost");
    app_chat_store_save_async (store, chat, APP_CHAT_STORE_SAVE_DEFAULT, NULL, saved_cb,
                               &callbacks);
    wait_callbacks (&callbacks, ++expected);
    g_assert_cmpuint (callbacks.failed, ==, 1);
    g_assert_true (g_file_test (path, G_FILE_TEST_IS_DIR));
    g_assert_no_errno (g_rmdir (path));
    g_assert_no_errno (g_rename (moved, path));
  }
}

/* What the app does as it quits: the saves it asked for are on disk once flush returns,
 * without the main loop running again. */
static void
test_store_flush (Fixture       *fixture,
                  gconstpointer  user_data)
{
  g_autoptr(AppChatStore) store = app_chat_store_new (fixture->data_dir);
  g_autoptr(GPtrArray) chats = g_ptr_array_new_with_free_func (g_object_unref);
  Callbacks callbacks = { 0, 0, g_thread_self () };

  app_chat_store_load (store);
  for (guint i = 0; i < 12; i++)
    {
      g_autofree char *question = g_strdup_printf ("Question %u", i);
      AppChat *chat = make_chat (question, "Answer");

      g_ptr_array_add (chats, chat);
      for (guint k = 0; k < 5; k++)
        {
          g_autofree char *text = g_strdup_printf (" and %u", k);

          app_message_append_text (message_at (chat, 1), text);
          app_chat_store_save_async (store, chat, APP_CHAT_STORE_SAVE_DEFAULT, NULL, saved_cb,
                                     &callbacks);
        }
    }

  app_chat_store_flush (store);
  g_assert_cmpuint (callbacks.finished, ==, 0);

  {
    g_autoptr(AppChatStore) reloaded = app_chat_store_new (fixture->data_dir);

    app_chat_store_load (reloaded);
    g_assert_cmpuint (g_list_model_get_n_items (app_chat_store_get_chats (reloaded)), ==, 12);
    for (guint i = 0; i < 12; i++)
      {
        AppChat *chat = g_ptr_array_index (chats, 11 - i);

        assert_chats_equal (chat_at (reloaded, i), chat);
        g_assert_cmpstr (app_message_get_text (message_at (chat_at (reloaded, i), 1)), ==,
                         "Answer and 0 and 1 and 2 and 3 and 4");
      }
  }

  wait_callbacks (&callbacks, 60);
  g_assert_cmpuint (callbacks.failed, ==, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Images nothing refers to
 */

/* Imports `n` distinct small images; returns their ids, held as an import leaves them. */
static GPtrArray *
import_images (AppChatStore *store,
               guint         n)
{
  GPtrArray *ids = g_ptr_array_new_with_free_func (g_free);

  for (guint i = 0; i < n; i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GBytes) bytes = NULL;
      guint8 *data = g_malloc (sizeof png_bytes + 4);
      char *id;

      /* the same PNG with a different trailer each: another sha256, still a PNG */
      memcpy (data, png_bytes, sizeof png_bytes);
      memcpy (data + sizeof png_bytes, &i, 4);
      bytes = g_bytes_new_take (data, sizeof png_bytes + 4);
      id = app_chat_store_import_image (store, bytes, &error);
      g_assert_no_error (error);
      g_ptr_array_add (ids, id);
    }
  return ids;
}

static gboolean
image_exists (AppChatStore *store,
              const char   *id)
{
  g_autofree char *path = app_chat_store_get_image_path (store, id);

  return g_file_test (path, G_FILE_TEST_IS_REGULAR);
}

/* Lets the store do its checks and deletions. */
static void
settle (AppChatStore *store)
{
  drain_main_context ();
  app_chat_store_flush (store);
  drain_main_context ();
}

static AppChat *
chat_with_image (const char *question,
                 const char *image_id)
{
  const char *images[] = { image_id, NULL };
  AppChat *chat = make_chat (question, "Answer");

  app_message_set_images (message_at (chat, 0), images);
  return chat;
}

static void
test_store_image_gc (Fixture       *fixture,
                     gconstpointer  user_data)
{
  g_autoptr(AppChatStore) store = app_chat_store_new (fixture->data_dir);
  g_autoptr(GPtrArray) ids = NULL;
  g_autoptr(AppChat) first = NULL;
  g_autoptr(AppChat) second = NULL;
  g_autoptr(AppChat) drafted = app_chat_new ();
  g_autoptr(AppChat) edited = NULL;
  g_autoptr(GError) error = NULL;
  const char *shared, *draft_only, *attached, *in_bad_file, *edited_away, *kept_by_draft;

  app_chat_store_load (store);
  ids = import_images (store, 6);
  shared = g_ptr_array_index (ids, 0);
  draft_only = g_ptr_array_index (ids, 1);
  attached = g_ptr_array_index (ids, 2);
  in_bad_file = g_ptr_array_index (ids, 3);
  edited_away = g_ptr_array_index (ids, 4);
  kept_by_draft = g_ptr_array_index (ids, 5);

  /* Two chats share an image; the importer lets go once they refer to it. */
  first = chat_with_image ("First", shared);
  second = chat_with_image ("Second", shared);
  g_assert_true (app_chat_store_save (store, first, &error));
  g_assert_true (app_chat_store_save (store, second, &error));
  g_assert_no_error (error);
  app_chat_store_release_image (store, shared);
  settle (store);
  g_assert_true (image_exists (store, shared));

  /* In the trash, waiting for undo: kept. Undone: kept. */
  app_chat_store_trash (store, first);
  app_chat_store_trash (store, second);
  settle (store);
  g_assert_true (image_exists (store, shared));
  app_chat_store_untrash (store, first);
  app_chat_store_untrash (store, second);

  /* One of the two deleted for good: the other still shows it. Both: it is gone. */
  app_chat_store_trash (store, first);
  g_assert_true (app_chat_store_purge (store, first, &error));
  g_assert_no_error (error);
  settle (store);
  g_assert_true (image_exists (store, shared));
  app_chat_store_trash (store, second);
  app_chat_store_purge_async (store, second, NULL, NULL, NULL);
  settle (store);
  g_assert_false (image_exists (store, shared));

  /* A draft's image: kept while the draft has it, gone once the draft is dropped. */
  app_chat_store_add (store, drafted);
  {
    const char *images[] = { draft_only, kept_by_draft, NULL };

    app_chat_set_draft (drafted, "", APP_PROMPT_PLAIN, images);
  }
  app_chat_store_save_async (store, drafted, APP_CHAT_STORE_SAVE_KEEP_PLACE, NULL, NULL, NULL);
  app_chat_store_release_image (store, draft_only);
  app_chat_store_release_image (store, kept_by_draft);
  settle (store);
  g_assert_true (image_exists (store, draft_only));
  {
    const char *images[] = { kept_by_draft, NULL };

    app_chat_set_draft (drafted, "", APP_PROMPT_PLAIN, images);
  }
  app_chat_store_save_async (store, drafted, APP_CHAT_STORE_SAVE_KEEP_PLACE, NULL, NULL, NULL);
  settle (store);
  g_assert_false (image_exists (store, draft_only));
  g_assert_true (image_exists (store, kept_by_draft));

  /* An attachment removed before sending: held by the composer until then, gone after. */
  settle (store);
  g_assert_true (image_exists (store, attached));
  app_chat_store_release_image (store, attached);
  settle (store);
  g_assert_false (image_exists (store, attached));

  /* ... unless a chat shows it. */
  {
    g_autoptr(GPtrArray) again = import_images (store, 3);
    const char *reattached = g_ptr_array_index (again, 2);
    g_autoptr(AppChat) third = chat_with_image ("Third", reattached);

    g_assert_cmpstr (reattached, ==, attached);
    g_assert_true (app_chat_store_save (store, third, &error));
    g_assert_no_error (error);
    /* the first two were imported again too: let them go as well */
    app_chat_store_release_image (store, g_ptr_array_index (again, 0));
    app_chat_store_release_image (store, g_ptr_array_index (again, 1));
    app_chat_store_release_image (store, reattached);
    settle (store);
    g_assert_true (image_exists (store, reattached));
    g_assert_false (image_exists (store, shared));
  }

  /* A question edited away takes its image with it, once saved. */
  edited = chat_with_image ("Edited", edited_away);
  g_assert_true (app_chat_store_save (store, edited, &error));
  app_chat_store_release_image (store, edited_away);
  settle (store);
  g_assert_true (image_exists (store, edited_away));
  app_chat_truncate (edited, 0);
  add_message (edited, APP_ROLE_USER, "Asked again, without the picture");
  g_assert_true (app_chat_store_save (store, edited, &error));
  g_assert_no_error (error);
  settle (store);
  g_assert_false (image_exists (store, edited_away));

  /* A save that fails leaves a file that still names the image: kept until one succeeds. */
  {
    g_autoptr(GPtrArray) more = import_images (store, 7);
    const char *kept_on_failure = g_ptr_array_index (more, 6);
    g_autoptr(AppChat) failing = chat_with_image ("Fails to save", kept_on_failure);
    g_autofree char *path = chat_path (fixture, app_chat_get_id (failing));
    g_autofree char *moved = g_strconcat (path, ".moved", NULL);

    for (guint i = 0; i < 6; i++)
      app_chat_store_release_image (store, g_ptr_array_index (more, i));
    g_assert_true (app_chat_store_save (store, failing, &error));
    g_assert_no_error (error);
    app_chat_store_release_image (store, kept_on_failure);
    g_assert_no_errno (g_rename (path, moved));
    g_assert_no_errno (g_mkdir (path, 0700));
    app_chat_truncate (failing, 0);
    add_message (failing, APP_ROLE_USER, "Asked again, without the picture");
    g_assert_false (app_chat_store_save (store, failing, &error));
    g_clear_error (&error);
    settle (store);
    g_assert_true (image_exists (store, kept_on_failure));
    g_assert_no_errno (g_rmdir (path));
    g_assert_no_errno (g_rename (moved, path));
    g_assert_true (app_chat_store_save (store, failing, &error));
    g_assert_no_error (error);
    settle (store);
    g_assert_false (image_exists (store, kept_on_failure));
  }

  /* An image named in a chat file the store cannot read is that file's: kept. */
  {
    g_autofree char *bad_path = chat_path (fixture, "5c0ffee0-0000-4000-8000-000000000000");
    g_autofree char *bad = g_strdup_printf ("{\"version\": 9, \"images\": [\"%s\"", in_bad_file);
    g_autoptr(AppChatStore) reloaded = app_chat_store_new (fixture->data_dir);

    write_file (bad_path, bad, -1);
    app_chat_store_load (reloaded);
    g_assert_cmpuint (app_chat_store_get_load_errors (reloaded)->len, ==, 1);
    app_chat_store_hold_image (reloaded, in_bad_file);
    app_chat_store_release_image (reloaded, in_bad_file);
    settle (reloaded);
    g_assert_true (image_exists (reloaded, in_bad_file));
    g_assert_no_errno (g_unlink (bad_path));
    app_chat_store_release_image (store, in_bad_file);   /* the first store's import */
  }

  /* A store that has not read the chats yet knows nothing of them, and deletes nothing. */
  {
    g_autoptr(AppChatStore) unloaded = app_chat_store_new (fixture->data_dir);
    g_autoptr(GPtrArray) fresh = import_images (unloaded, 1);

    app_chat_store_release_image (unloaded, g_ptr_array_index (fresh, 0));
    settle (unloaded);
    g_assert_true (image_exists (unloaded, g_ptr_array_index (fresh, 0)));
    /* ... until it has */
    app_chat_store_load (unloaded);
    settle (unloaded);
    g_assert_false (image_exists (unloaded, g_ptr_array_index (fresh, 0)));
  }
  settle (store);
}

/* Makes a file look `seconds` old. */
static void
age_file (const char *path,
          gint64      seconds)
{
  struct utimbuf times;
  gint64 then = g_get_real_time () / G_USEC_PER_SEC - seconds;

  times.actime = then;
  times.modtime = then;
  g_assert_no_errno (g_utime (path, &times));
}

static void
swept_cb (GObject      *source,
          GAsyncResult *result,
          gpointer      user_data)
{
  guint *deleted = user_data;
  g_autoptr(GError) error = NULL;

  *deleted = app_chat_store_sweep_images_finish (APP_CHAT_STORE (source), result, &error);
  g_assert_no_error (error);
}

static guint
sweep (AppChatStore *store)
{
  guint deleted = G_MAXUINT;

  app_chat_store_sweep_images_async (store, NULL, swept_cb, &deleted);
  while (deleted == G_MAXUINT)
    g_main_context_iteration (NULL, TRUE);
  return deleted;
}

static void
test_store_sweep (Fixture       *fixture,
                  gconstpointer  user_data)
{
  g_autoptr(AppChatStore) writer = app_chat_store_new (fixture->data_dir);
  g_autoptr(AppChatStore) store = NULL;
  g_autoptr(GPtrArray) ids = NULL;
  g_autoptr(AppChat) chat = NULL;
  g_autoptr(AppChat) drafted = app_chat_new ();
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) names = NULL;
  g_autofree char *stranger = g_build_filename (fixture->images_dir, "notes.txt", NULL);
  g_autofree char *unfinished = NULL;
  g_autofree char *bad_path = chat_path (fixture, "5c0ffee0-0000-4000-8000-000000000000");
  g_autofree char *bad = NULL;
  const char *in_chat, *in_draft, *orphan, *recent, *importing, *in_bad_file;

  /* What an older version left: images of chats, and images of chats long deleted. */
  ids = import_images (writer, 6);
  in_chat = g_ptr_array_index (ids, 0);
  in_draft = g_ptr_array_index (ids, 1);
  orphan = g_ptr_array_index (ids, 2);
  recent = g_ptr_array_index (ids, 3);
  importing = g_ptr_array_index (ids, 4);
  in_bad_file = g_ptr_array_index (ids, 5);
  chat = chat_with_image ("Kept", in_chat);
  g_assert_true (app_chat_store_save (writer, chat, &error));
  {
    const char *images[] = { in_draft, NULL };

    app_chat_set_draft (drafted, "", APP_PROMPT_PLAIN, images);
    g_assert_true (app_chat_store_save (writer, drafted, &error));
  }
  g_assert_no_error (error);
  bad = g_strdup_printf ("{\"version\": 9, \"images\": [\"%s\"", in_bad_file);
  write_file (bad_path, bad, -1);
  write_file (stranger, "not the store's", -1);
  unfinished = g_strconcat (fixture->images_dir, G_DIR_SEPARATOR_S, orphan, ".K3W2Q1", NULL);
  write_file (unfinished, "a save cut short", -1);
  for (guint i = 0; i < ids->len; i++)
    {
      g_autofree char *path = app_chat_store_get_image_path (writer, g_ptr_array_index (ids, i));

      if (g_ptr_array_index (ids, i) != recent)
        age_file (path, 3600);
    }
  age_file (stranger, 3600);
  age_file (unfinished, 3600);

  /* A new start: nothing runs before the chats are read. */
  store = app_chat_store_new (fixture->data_dir);
  g_assert_cmpuint (sweep (store), ==, 0);
  app_chat_store_load (store);

  /* An image being attached right now is held by its import. */
  {
    g_autofree char *path = app_chat_store_get_image_path (store, importing);
    g_autoptr(GBytes) bytes = read_file (path);
    g_autofree char *id = app_chat_store_import_image (store, bytes, &error);

    g_assert_no_error (error);
    g_assert_cmpstr (id, ==, importing);
  }

  g_assert_cmpuint (sweep (store), ==, 1);
  g_assert_false (image_exists (store, orphan));
  g_assert_true (image_exists (store, in_chat));
  g_assert_true (image_exists (store, in_draft));
  g_assert_true (image_exists (store, recent));
  g_assert_true (image_exists (store, importing));
  g_assert_true (image_exists (store, in_bad_file));
  g_assert_true (g_file_test (stranger, G_FILE_TEST_IS_REGULAR));
  g_assert_true (g_file_test (unfinished, G_FILE_TEST_IS_REGULAR));

  /* Once the import is let go of, with nothing referring to it, it goes too. */
  app_chat_store_release_image (store, importing);
  settle (store);
  g_assert_false (image_exists (store, importing));

  /* A chat file that cannot be read at all might name any image: no sweep then. */
  {
    g_autoptr(AppChatStore) blind = app_chat_store_new (fixture->data_dir);
    g_autoptr(GPtrArray) more = import_images (writer, 8);
    const char *late_orphan = g_ptr_array_index (more, 7);
    g_autofree char *path = app_chat_store_get_image_path (writer, late_orphan);
    g_autofree char *unreadable = chat_path (fixture, "6d0ffee0-0000-4000-8000-000000000000");

    age_file (path, 3600);
    g_assert_no_errno (g_mkdir (unreadable, 0700));
    app_chat_store_load (blind);
    g_assert_cmpuint (app_chat_store_get_load_errors (blind)->len, ==, 2);
    g_assert_cmpuint (sweep (blind), ==, 0);
    g_assert_true (image_exists (blind, late_orphan));
    g_assert_no_errno (g_rmdir (unreadable));
    app_chat_store_load (blind);
    g_assert_cmpuint (sweep (blind), ==, 1);
    g_assert_false (image_exists (blind, late_orphan));
  }

  g_assert_no_errno (g_unlink (stranger));
  g_assert_no_errno (g_unlink (unfinished));
  settle (store);
  settle (writer);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/app/chat-store/message-properties", test_message_properties);
  g_test_add_func ("/app/chat-store/title", test_chat_title);
  g_test_add_func ("/app/chat-store/truncate", test_chat_truncate);
  g_test_add_func ("/app/chat-store/matches", test_chat_matches);
  g_test_add_func ("/app/chat-store/json-round-trip", test_json_round_trip);
  g_test_add_func ("/app/chat-store/json-invalid", test_json_invalid);
  g_test_add_func ("/app/chat-store/versions", test_chat_versions);
  g_test_add_func ("/app/chat-store/versions-json", test_chat_versions_json);
  g_test_add_func ("/app/chat-store/draft", test_chat_draft);
  g_test_add_func ("/app/chat-store/far-future", test_chat_far_future);

#define ADD_STORE_TEST(path, func) \
  g_test_add ("/app/chat-store/" path, Fixture, NULL, fixture_set_up, func, fixture_tear_down)

  ADD_STORE_TEST ("persistence", test_store_persistence);
  ADD_STORE_TEST ("version-1", test_store_version_1);
  ADD_STORE_TEST ("corrupt-files", test_store_corrupt_files);
  ADD_STORE_TEST ("duplicate-ids", test_store_duplicate_ids);
  ADD_STORE_TEST ("deep-json", test_store_deep_json);
  ADD_STORE_TEST ("fifo", test_store_fifo);
  ADD_STORE_TEST ("endless-files", test_store_endless_files);
  ADD_STORE_TEST ("import-not-a-file", test_store_import_not_a_file);
  ADD_STORE_TEST ("atomic-save", test_store_atomic_save);
  ADD_STORE_TEST ("trash", test_store_trash);
  ADD_STORE_TEST ("import-image", test_store_import_image);
  ADD_STORE_TEST ("image-path", test_store_image_path);
  ADD_STORE_TEST ("drafts", test_store_drafts);
  ADD_STORE_TEST ("async", test_store_async);
  ADD_STORE_TEST ("flush", test_store_flush);
  ADD_STORE_TEST ("image-gc", test_store_image_gc);
  ADD_STORE_TEST ("sweep", test_store_sweep);

  return g_test_run ();
}
