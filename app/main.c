/* main.c - Sightline: chat with DeepSeek-VL2 about images, on this computer. */
#include <glib/gi18n.h>
#include <locale.h>

#include "app-application.h"
#include "app-config.h"

int
main (int   argc,
      char *argv[])
{
  g_autoptr(AppApplication) app = NULL;

  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);

  app = app_application_new ();
  return g_application_run (G_APPLICATION (app), argc, argv);
}
