/* engine-wait.h - waiting for AppEngine's asynchronous calls in tests, on the main context. */
#pragma once

#include <gio/gio.h>

/* What a finished call gave: pass it as user_data to the callbacks below. */
typedef struct
{
  gboolean done;
  gboolean ok;
  GError *error;
} EngineResult;

/* Runs the thread-default main context until *flag is set; a test that waits longer than two
 * minutes fails there, naming `what`. */
void engine_wait         (gboolean     *flag,
                          const char   *what);

void engine_load_cb      (GObject      *source,
                          GAsyncResult *res,
                          gpointer      result);
void engine_connect_cb   (GObject      *source,
                          GAsyncResult *res,
                          gpointer      result);
void engine_generate_cb  (GObject      *source,
                          GAsyncResult *res,
                          gpointer      result);
