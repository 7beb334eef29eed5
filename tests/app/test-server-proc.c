/* test-server-proc.c - see test-server-proc.h. */
#include "test-server-proc.h"

#include <signal.h>
#include <string.h>
#include <sys/prctl.h>

/* In the child, before exec: die with the test (the thread that started it, the main one). */
static void
die_with_parent (gpointer data)
{
  prctl (PR_SET_PDEATHSIG, SIGKILL);
}

void
test_server_start (TestServer *server,
                   const char *api_key)
{
  g_autofree char *model = g_build_filename (g_getenv ("VL2_FIXTURE_DIR"), "mini-tiny", NULL);
  g_autoptr(GSubprocessLauncher) launcher =
    g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE);
  g_autoptr(GError) error = NULL;
  g_autoptr(GDataInputStream) out = NULL;
  g_autofree char *line = NULL;
  const char *prefix = "vl2-server: listening on ";

  g_assert_nonnull (g_getenv ("VL2_SERVER"));
  g_subprocess_launcher_set_child_setup (launcher, die_with_parent, NULL, NULL);
  server->proc = g_subprocess_launcher_spawn (launcher, &error, g_getenv ("VL2_SERVER"),
                                              "--model", model, "--port", "0", "--threads", "1",
                                              api_key ? "--api-key" : NULL, api_key, NULL);
  g_assert_no_error (error);
  out = g_data_input_stream_new (g_subprocess_get_stdout_pipe (server->proc));
  line = g_data_input_stream_read_line_utf8 (out, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (line && g_str_has_prefix (line, prefix));
  /* "http://127.0.0.1:PORT/" -> its API */
  server->url = g_strconcat (line + strlen (prefix), "v1", NULL);
}

void
test_server_stop (TestServer *server)
{
  g_subprocess_send_signal (server->proc, SIGTERM);
  g_assert_true (g_subprocess_wait (server->proc, NULL, NULL));
  g_assert_true (g_subprocess_get_if_exited (server->proc));
  g_assert_cmpint (g_subprocess_get_exit_status (server->proc), ==, 0);
  g_clear_object (&server->proc);
  g_clear_pointer (&server->url, g_free);
}
