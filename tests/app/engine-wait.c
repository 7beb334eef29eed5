/* engine-wait.c - see engine-wait.h. */
#include "engine-wait.h"

#include "app-engine.h"

#define TIMEOUT_S 120

void
engine_wait (gboolean   *flag,
             const char *what)
{
  gint64 end = g_get_monotonic_time () + TIMEOUT_S * G_USEC_PER_SEC;

  while (!*flag)
    {
      if (g_get_monotonic_time () > end)
        g_error ("timed out waiting for %s", what);
      g_main_context_iteration (NULL, TRUE);
    }
}

void
engine_load_cb (GObject      *source,
                GAsyncResult *res,
                gpointer      result)
{
  EngineResult *r = result;

  r->ok = app_engine_load_finish (APP_ENGINE (source), res, &r->error);
  r->done = TRUE;
}

void
engine_connect_cb (GObject      *source,
                   GAsyncResult *res,
                   gpointer      result)
{
  EngineResult *r = result;

  r->ok = app_engine_connect_finish (APP_ENGINE (source), res, &r->error);
  r->done = TRUE;
}

void
engine_generate_cb (GObject      *source,
                    GAsyncResult *res,
                    gpointer      result)
{
  EngineResult *r = result;

  r->ok = app_engine_generate_finish (APP_ENGINE (source), res, &r->error);
  r->done = TRUE;
}
