/* test-open-files.c - image files given to the application, under Xvfb, the way `sightline
 * FILE…` and Open With give them.
 *
 * The application runs as `sightline` does (g_application_run, unique on the test's own D-Bus
 * session), with no model, and is given two golden images (a path and a file:// URI) and a
 * text file: a new chat is selected with the two images in its composer, one toast names the
 * text file, and the images are still there once a model is chosen. g_application_open() with
 * a third image starts a second chat, while the first keeps its images. Last, a second
 * process started with a file:// URI and an http:// one hands them to this one over D-Bus, as
 * a second `sightline FILE` does: a third chat with the local image, and the other refused.
 */
#include <string.h>

#include "app-composer.h"
#include "ui-find.h"
#include "ui-harness.h"

#define TIMEOUT_S 120
#define BAD_FILE "notes & list.txt"
#define REMOTE_URI "http://example.com/photo.png?size=large&format=png"

static AppApplication *app;
static const char *test_program;
static gboolean checked;

static GtkWindow *
main_window (void)
{
  GList *windows = gtk_application_get_windows (GTK_APPLICATION (app));

  g_assert_cmpuint (g_list_length (windows), ==, 1);
  return windows->data;
}

static AppComposer *
composer (void)
{
  return APP_COMPOSER (ui_find_any (GTK_WIDGET (main_window ()), APP_TYPE_COMPOSER));
}

static GtkSingleSelection *
chat_selection (void)
{
  GtkListView *list = ui_find_chat_list (GTK_WIDGET (main_window ()));

  g_assert_nonnull (list);
  return GTK_SINGLE_SELECTION (gtk_list_view_get_model (list));
}

static guint
n_chats (void)
{
  return g_list_model_get_n_items (app_chat_store_get_chats (app_application_get_store (app)));
}

/* The newest chat: it must be the one shown and selected in the sidebar. */
static AppChat *
newest_chat_selected (void)
{
  AppChat *chat = g_list_model_get_item (app_chat_store_get_chats (app_application_get_store (app)),
                                         0);

  g_assert_nonnull (chat);
  g_assert_true (gtk_single_selection_get_selected_item (chat_selection ()) == chat);
  g_assert_cmpuint (app_chat_get_n_messages (chat), ==, 0);
  return chat;
}

static void
select_chat (AppChat *chat)
{
  gtk_single_selection_set_selected (chat_selection (),
                                     ui_find_chat_position (GTK_WIDGET (main_window ()), chat));
}

static guint wanted_images;

static gboolean
images_ready (gpointer data)
{
  g_auto(GStrv) ids = app_composer_get_images (composer ());

  return !app_composer_is_importing (composer ()) && g_strv_length (ids) == wanted_images;
}

static void
wait_images (guint       n,
             const char *what)
{
  wanted_images = n;
  ui_harness_wait_for (images_ready, NULL, what);
}

static gboolean
toast_shown (gpointer data)
{
  return ui_find_toast (GTK_WIDGET (main_window ()), data);
}

static gboolean
composer_mapped (gpointer data)
{
  return gtk_widget_get_mapped (GTK_WIDGET (composer ()));
}

/* Every image the composer could not use, from the start (the files are read before the
 * checks run). */
static GPtrArray *failures;

static gboolean
import_failed_hook (GSignalInvocationHint *hint,
                    guint                  n_values,
                    const GValue          *values,
                    gpointer               data)
{
  g_ptr_array_add (failures, g_value_dup_string (&values[1]));
  return TRUE;
}

typedef struct
{
  gboolean exited;
  int status;
} Child;

static void
child_exited_cb (GPid     pid,
                 int      status,
                 gpointer data)
{
  Child *child = data;

  child->exited = TRUE;
  child->status = status;
  g_spawn_close_pid (pid);
}

static gboolean
third_chat_opened (gpointer data)
{
  Child *child = data;

  return child->exited && n_chats () == 3;
}

/* Runs inside g_application_run(), once the command line's files were opened. */
static gboolean
check_cb (gpointer data)
{
  g_autoptr(AppChat) first = NULL;
  g_autoptr(AppChat) second = NULL;
  g_autoptr(AppChat) third = NULL;
  g_auto(GStrv) first_images = NULL;
  g_auto(GStrv) second_images = NULL;

  /* 1. no model: a new chat, selected, its composer holding the two images; a toast says
   * where they wait, and one toast names the text file */
  g_assert_cmpint (app_engine_get_state (app_application_get_engine (app)), ==,
                   APP_ENGINE_EMPTY);
  g_assert_cmpuint (n_chats (), ==, 1);
  first = newest_chat_selected ();
  wait_images (2, "the two images of the command line");
  first_images = app_composer_get_images (composer ());
  g_assert_cmpstr (first_images[0], !=, first_images[1]);
  ui_harness_wait_for (toast_shown, (gpointer) "wait in a new chat", "the toast about the model");
  ui_harness_wait_for (toast_shown, (gpointer) BAD_FILE, "the toast naming the text file");
  g_assert_cmpuint (failures->len, ==, 1);
  g_assert_nonnull (strstr (g_ptr_array_index (failures, 0), BAD_FILE));

  /* 2. a model is chosen: the chat page shows the same chat with its images */
  ui_harness_set_model ("mini-tiny");
  ui_harness_wait_ready (app, TIMEOUT_S);
  ui_harness_wait_for (composer_mapped, NULL, "the chat page");
  g_assert_true (newest_chat_selected () == first);
  g_object_unref (first);
  {
    g_auto(GStrv) ids = app_composer_get_images (composer ());

    g_assert_true (g_strv_equal ((const char * const *) ids,
                                 (const char * const *) first_images));
  }

  /* 3. another file, as the running application receives it: a second chat with that image;
   * the first keeps its own */
  {
    g_autofree char *path = ui_harness_golden_image ("vqa_1.jpg");
    g_autoptr(GFile) file = g_file_new_for_path (path);

    g_application_open (G_APPLICATION (app), &file, 1, "");
  }
  g_assert_cmpuint (n_chats (), ==, 2);
  second = newest_chat_selected ();
  g_assert_true (second != first);
  wait_images (1, "the image opened in the second chat");
  second_images = app_composer_get_images (composer ());
  g_assert_false (g_strv_contains ((const char * const *) first_images, second_images[0]));
  select_chat (first);
  {
    g_auto(GStrv) ids = app_composer_get_images (composer ());

    g_assert_true (g_strv_equal ((const char * const *) ids,
                                 (const char * const *) first_images));
  }
  select_chat (second);
  {
    g_auto(GStrv) ids = app_composer_get_images (composer ());

    g_assert_true (g_strv_equal ((const char * const *) ids,
                                 (const char * const *) second_images));
  }

  /* 4. a second `sightline` with a file:// URI and an http:// one: it hands them over D-Bus to
   * this instance and exits; a third chat gets the local image, a toast refuses the other */
  {
    g_autofree char *path = ui_harness_golden_image ("multi_image_1.png");
    g_autofree char *uri = g_filename_to_uri (path, NULL, NULL);
    const char *argv[] = { test_program, "--remote", uri, REMOTE_URI, NULL };
    g_autoptr(GError) error = NULL;
    Child child = { FALSE, -1 };
    GPid pid;

    if (!g_spawn_async (NULL, (char **) argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL,
                        &pid, &error))
      g_error ("cannot start the second instance: %s", error->message);
    g_child_watch_add (pid, child_exited_cb, &child);
    ui_harness_wait_for (third_chat_opened, &child, "the second instance's files");
    g_assert_true (g_spawn_check_wait_status (child.status, NULL));
  }
  third = newest_chat_selected ();
  g_assert_true (third != first && third != second);
  wait_images (1, "the image forwarded by the second instance");
  ui_harness_wait_for (toast_shown, (gpointer) REMOTE_URI, "the toast refusing the http:// URI");
  g_assert_cmpuint (failures->len, ==, 1);

  checked = TRUE;
  g_application_quit (G_APPLICATION (app));
  return G_SOURCE_REMOVE;
}

static void
test_command_line (void)
{
  g_autofree char *image = ui_harness_golden_image ("multi_image_2.png");
  g_autofree char *other = ui_harness_golden_image ("visual_grounding_1.png");
  g_autofree char *other_uri = g_filename_to_uri (other, NULL, NULL);
  g_autofree char *bad = g_build_filename (g_get_user_data_dir (), BAD_FILE, NULL);
  char *argv[] = { (char *) "sightline", image, other_uri, bad, NULL };
  g_autoptr(GError) error = NULL;
  int status;

  if (!g_file_set_contents (bad, "Not an image, a shopping list.\n", -1, &error))
    g_error ("%s", error->message);
  failures = g_ptr_array_new_with_free_func (g_free);
  /* the application first: it registers the resources the composer's template is read from */
  app = app_application_new ();
  g_type_class_unref (g_type_class_ref (APP_TYPE_COMPOSER));
  g_signal_add_emission_hook (g_signal_lookup ("import-failed", APP_TYPE_COMPOSER), 0,
                              import_failed_hook, NULL, NULL);
  /* the files are opened before the main loop runs: the checks go first in it */
  g_idle_add (check_cb, NULL);
  status = g_application_run (G_APPLICATION (app), G_N_ELEMENTS (argv) - 1, argv);
  g_assert_cmpint (status, ==, 0);
  g_assert_true (checked);
}

/* The second instance: what `sightline FILE…` does while Sightline runs. */
static int
run_second_instance (int   argc,
                     char *argv[])
{
  g_autoptr(AppApplication) second = app_application_new ();
  g_autoptr(GError) error = NULL;

  if (!g_application_register (G_APPLICATION (second), NULL, &error))
    g_error ("cannot register: %s", error->message);
  if (!g_application_get_is_remote (G_APPLICATION (second)))
    g_error ("no running instance to hand the files to");
  argv[1] = argv[0];
  return g_application_run (G_APPLICATION (second), argc - 1, argv + 1);
}

int
main (int   argc,
      char *argv[])
{
  g_autofree char *home = NULL;

  if (argc > 1 && g_str_equal (argv[1], "--remote"))
    return run_second_instance (argc, argv);
  home = ui_harness_isolate ("open-files");
  test_program = argv[0];
  gtk_test_init (&argc, &argv, NULL);
  ui_harness_set_model (NULL);
  g_test_add_func ("/app/open-files/command-line", test_command_line);
  return g_test_run ();
}
