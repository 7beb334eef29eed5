/* main.c - Sightline: chat with DeepSeek-VL2 about images, on this computer. */
#define G_LOG_DOMAIN "sightline"

#include <glib/gi18n.h>
#include <locale.h>

#include "app-application.h"
#include "app-config.h"

/* Where the translations are: the configured folder, unless this program runs from another
 * folder than the one it was installed to (a tree staged with DESTDIR, or moved) and that tree
 * has them beside it. */
static char *
locale_dir (void)
{
  g_autofree char *exe = g_file_read_link ("/proc/self/exe", NULL);
  g_autofree char *bindir = exe ? g_path_get_dirname (exe) : NULL;
  g_autofree char *beside = NULL;
  g_autofree char *canonical = NULL;

  if (!bindir || g_str_equal (bindir, BINDIR))
    return g_strdup (LOCALEDIR);
  beside = g_build_filename (bindir, BINDIR_TO_LOCALEDIR, NULL);
  canonical = g_canonicalize_filename (beside, NULL);
  if (g_file_test (canonical, G_FILE_TEST_IS_DIR))
    return g_steal_pointer (&canonical);
  return g_strdup (LOCALEDIR);
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr(AppApplication) app = NULL;
  g_autofree char *localedir = locale_dir ();

  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, localedir);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);

  app = app_application_new ();
  return g_application_run (G_APPLICATION (app), argc, argv);
}
