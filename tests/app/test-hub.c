/* test-hub.c - the model downloader against a Hub on loopback (hub-server.c).
 *
 * The real downloader (app/core/app-hub.c, app-download.c) and the real `vl2 pull` fetch the
 * mini-tiny fixture model over HTTP from servers this test starts on 127.0.0.1. Nothing
 * reaches the internet: every pull names the loopback endpoint, and HF_ENDPOINT is set to it
 * for the child processes.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>

#include "app-download.h"
#include "app-hub.h"
#include "hub-server.h"
#include "tree.h"

#define BIG "model.safetensors"
#define TOKENIZER "tokenizer.json"

static const char * const served[] = {
  "config.json", BIG, "special_tokens_map.json", TOKENIZER, "tokenizer_config.json", NULL,
};

static char *fixture_dir;

typedef struct {
  HubServer *server;
  char *tmp;
  char *dest;
  AppHubOptions options;
} Fixture;

static void
fixture_setup (Fixture       *fx,
               gconstpointer  data)
{
  fx->server = hub_server_new (fixture_dir, served);
  fx->tmp = g_dir_make_tmp ("hub-test-XXXXXX", NULL);
  g_assert_nonnull (fx->tmp);
  fx->dest = g_build_filename (fx->tmp, "models", "deepseek-ai--deepseek-vl2-tiny", NULL);
  fx->options.endpoint = hub_server_endpoint (fx->server);
  fx->options.token = "";          /* none: never the tester's own */
  fx->options.retry_delay_ms = 5;
  fx->options.max_attempts = 3;
}

static void
fixture_teardown (Fixture       *fx,
                  gconstpointer  data)
{
  hub_server_free (fx->server);
  tree_remove (fx->tmp);
  g_free (fx->tmp);
  g_free (fx->dest);
}

static gboolean
pull (Fixture  *fx,
      GError  **error)
{
  return app_hub_pull_sync (HUB_TEST_REPO, NULL, fx->dest, &fx->options, NULL, NULL, NULL, error);
}

/* Every served file is in dest with the source's bytes, and the marker says so. */
static void
assert_complete (Fixture *fx)
{
  g_autofree char *commit = NULL;
  g_autofree char *repo = NULL;
  g_autofree char *partial = g_build_filename (fx->dest, ".partial", NULL);

  for (guint i = 0; served[i]; i++)
    {
      g_autofree char *want_path = g_build_filename (fixture_dir, served[i], NULL);
      g_autofree char *got_path = g_build_filename (fx->dest, served[i], NULL);
      g_autofree char *want = NULL, *got = NULL;
      gsize want_len, got_len;

      g_assert_true (g_file_get_contents (want_path, &want, &want_len, NULL));
      g_assert_true (g_file_get_contents (got_path, &got, &got_len, NULL));
      g_assert_cmpmem (got, got_len, want, want_len);
    }
  g_assert_true (app_hub_is_installed (fx->dest, &repo, &commit));
  g_assert_cmpstr (repo, ==, HUB_TEST_REPO);
  g_assert_cmpstr (commit, ==, HUB_TEST_COMMIT);
  g_assert_false (g_file_test (partial, G_FILE_TEST_EXISTS));
}

static guint64
partial_size (Fixture    *fx,
              const char *name)
{
  g_autofree char *path = g_build_filename (fx->dest, ".partial", name, NULL);
  GStatBuf st;

  return g_stat (path, &st) == 0 ? (guint64) st.st_size : 0;
}

/* ------------------------------------------------------------------------------------------ */

typedef struct {
  guint64 last_done;
  guint64 total;
  gboolean monotonic;
  guint calls;
  GCancellable *cancel_at_half;
} Progress;

static void
progress_cb (const AppHubProgress *p,
             gpointer              user_data)
{
  Progress *pr = user_data;

  pr->calls++;
  if (p->done_bytes < pr->last_done)
    pr->monotonic = FALSE;
  pr->last_done = p->done_bytes;
  pr->total = p->total_bytes;
  g_assert_cmpuint (p->done_bytes, <=, p->total_bytes);
  if (pr->cancel_at_half && p->file && !strcmp (p->file, BIG) &&
      p->done_bytes > p->total_bytes / 2)
    g_cancellable_cancel (pr->cancel_at_half);
}

static void
test_full (Fixture       *fx,
           gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  Progress pr = { .monotonic = TRUE };
  guint64 total = 0;

  for (guint i = 0; served[i]; i++)
    total += hub_server_file_size (fx->server, served[i]);
  hub_server_require_token (fx->server, "hf_test_token");
  fx->options.token = "hf_test_token";
  g_assert_true (app_hub_pull_sync (HUB_TEST_REPO, "main", fx->dest, &fx->options, progress_cb,
                                    &pr, NULL, &error));
  g_assert_no_error (error);
  assert_complete (fx);
  g_assert_true (pr.monotonic);
  g_assert_cmpuint (pr.total, ==, total);
  g_assert_cmpuint (pr.last_done, ==, total);
  g_assert_cmpuint (pr.calls, >, 2);
  /* each file once, in full; the token went to the Hub and not to the LFS host */
  for (guint i = 0; served[i]; i++)
    {
      g_assert_cmpuint (hub_server_requests (fx->server, served[i]), ==, 1);
      g_assert_cmpuint (hub_server_bytes_sent (fx->server, served[i]), ==,
                        hub_server_file_size (fx->server, served[i]));
    }
  g_assert_false (hub_server_cdn_saw_token (fx->server));

  /* pulled again: complete at the same commit, nothing is fetched */
  hub_server_reset_counts (fx->server);
  g_assert_true (pull (fx, &error));
  for (guint i = 0; served[i]; i++)
    g_assert_cmpuint (hub_server_requests (fx->server, served[i]), ==, 0);

  /* by commit too */
  g_assert_true (app_hub_pull_sync (HUB_TEST_REPO, HUB_TEST_COMMIT, fx->dest, &fx->options, NULL,
                                    NULL, NULL, &error));
  g_assert_no_error (error);
}

/* The connection drops in the middle of the big file: the downloader retries on its own and
 * asks for the rest only. */
static void
test_resume_after_cut (Fixture       *fx,
                       gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  guint64 size = hub_server_file_size (fx->server, BIG);
  guint64 cut = size * 2 / 5;

  hub_server_cut_after (fx->server, BIG, cut, 1);
  g_assert_true (pull (fx, &error));
  g_assert_no_error (error);
  assert_complete (fx);
  g_assert_cmpuint (hub_server_requests (fx->server, BIG), ==, 2);
  g_assert_cmpuint (hub_server_last_range (fx->server, BIG), ==, cut);
  /* the second request sent the rest only: the whole file, crossed once */
  g_assert_cmpuint (hub_server_bytes_sent (fx->server, BIG), ==, size);
}

/* The connection drops and the pull gives up (one attempt): the partial file stays, and the
 * next pull - a restart of the app - resumes it with Range, sending fewer bytes. */
static void
test_resume_next_pull (Fixture       *fx,
                       gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  guint64 size = hub_server_file_size (fx->server, BIG);
  guint64 cut = size / 3;

  fx->options.max_attempts = 1;
  hub_server_cut_after (fx->server, BIG, cut, 1);
  g_assert_false (pull (fx, &error));
  g_assert_error (error, APP_HUB_ERROR, APP_HUB_ERROR_NETWORK);
  g_assert_null (strchr (error->message, '\n'));
  g_assert_false (app_hub_is_installed (fx->dest, NULL, NULL));
  g_assert_cmpuint (partial_size (fx, BIG), ==, cut);
  g_clear_error (&error);

  hub_server_reset_counts (fx->server);
  g_assert_true (pull (fx, &error));
  g_assert_no_error (error);
  assert_complete (fx);
  g_assert_cmpuint (hub_server_last_range (fx->server, BIG), ==, cut);
  g_assert_cmpuint (hub_server_bytes_sent (fx->server, BIG), ==, size - cut);
  g_assert_cmpuint (hub_server_bytes_sent (fx->server, BIG), <, size);
  /* the files finished the first time are not fetched again */
  g_assert_cmpuint (hub_server_requests (fx->server, "config.json"), ==, 0);
}

/* A server that answers a Range request with the whole file: the partial file starts over
 * and the result is still the file, not the held bytes plus the whole file. */
static void
test_ignore_range (Fixture       *fx,
                   gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  guint64 size = hub_server_file_size (fx->server, BIG);

  fx->options.max_attempts = 1;
  hub_server_cut_after (fx->server, BIG, size / 2, 1);
  g_assert_false (pull (fx, &error));
  g_clear_error (&error);
  g_assert_cmpuint (partial_size (fx, BIG), ==, size / 2);

  hub_server_ignore_range (fx->server, TRUE);
  hub_server_reset_counts (fx->server);
  g_assert_true (pull (fx, &error));
  g_assert_no_error (error);
  assert_complete (fx);
  g_assert_cmpuint (hub_server_last_range (fx->server, BIG), ==, size / 2);
  g_assert_cmpuint (hub_server_bytes_sent (fx->server, BIG), ==, size);
}

/* Bytes that do not hash to the listed sha256 are rejected and the file is fetched again;
 * a server that keeps sending them ends the pull with an integrity error, no model. */
static void
test_bad_bytes (Fixture       *fx,
                gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  guint64 size = hub_server_file_size (fx->server, TOKENIZER);
  g_autofree char *final = g_build_filename (fx->dest, TOKENIZER, NULL);

  hub_server_corrupt (fx->server, TOKENIZER, 1);
  g_assert_true (pull (fx, &error));
  g_assert_no_error (error);
  assert_complete (fx);
  g_assert_cmpuint (hub_server_requests (fx->server, TOKENIZER), ==, 2);
  g_assert_cmpuint (hub_server_bytes_sent (fx->server, TOKENIZER), ==, 2 * size);

  /* the small files are checked against their git blob id */
  tree_remove (fx->dest);
  hub_server_corrupt (fx->server, "config.json", 1);
  hub_server_reset_counts (fx->server);
  g_assert_true (pull (fx, &error));
  g_assert_cmpuint (hub_server_requests (fx->server, "config.json"), ==, 2);
  assert_complete (fx);

  tree_remove (fx->dest);
  hub_server_corrupt (fx->server, TOKENIZER, 100);
  g_assert_false (pull (fx, &error));
  g_assert_error (error, APP_HUB_ERROR, APP_HUB_ERROR_INTEGRITY);
  g_assert_nonnull (strstr (error->message, TOKENIZER));
  g_assert_null (strchr (error->message, '\n'));
  g_assert_false (app_hub_is_installed (fx->dest, NULL, NULL));
  g_assert_false (g_file_test (final, G_FILE_TEST_EXISTS));
}

static void
assert_one_line_error (Fixture    *fx,
                       int         code,
                       const char *needle)
{
  g_autoptr(GError) error = NULL;

  g_assert_false (pull (fx, &error));
  g_assert_error (error, APP_HUB_ERROR, code);
  g_test_message ("%s", error->message);
  g_assert_null (strchr (error->message, '\n'));
  g_assert_nonnull (strstr (error->message, needle));
  g_assert_nonnull (strstr (error->message, HUB_TEST_REPO));
  g_assert_false (app_hub_is_installed (fx->dest, NULL, NULL));
}

static void
test_http_errors (Fixture       *fx,
                  gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  /* a gated model with a wrong token */
  hub_server_require_token (fx->server, "right");
  fx->options.token = "wrong";
  assert_one_line_error (fx, APP_HUB_ERROR_UNAUTHORIZED, "401");
  hub_server_require_token (fx->server, NULL);
  fx->options.token = "";

  /* no such repository (the Hub answers 401 to anonymous requests for it, with a code) */
  hub_server_fail (fx->server, 401, "RepoNotFound", 0);
  assert_one_line_error (fx, APP_HUB_ERROR_NOT_FOUND, "no such model");
  hub_server_fail (fx->server, 404, "RepoNotFound", 0);
  assert_one_line_error (fx, APP_HUB_ERROR_NOT_FOUND, "404");
  hub_server_fail (fx->server, 0, NULL, 0);

  /* no such revision */
  g_assert_false (app_hub_pull_sync (HUB_TEST_REPO, "v9", fx->dest, &fx->options, NULL, NULL, NULL,
                                     &error));
  g_assert_error (error, APP_HUB_ERROR, APP_HUB_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "v9"));
  g_clear_error (&error);

  /* a server error that lasts: retried, then reported */
  hub_server_fail (fx->server, 503, NULL, 0);
  assert_one_line_error (fx, APP_HUB_ERROR_SERVER, "503");
  /* one that passes is retried through */
  hub_server_fail (fx->server, 503, NULL, 2);
  g_assert_true (pull (fx, &error));
  g_assert_no_error (error);
  assert_complete (fx);

  /* nothing listening */
  tree_remove (fx->dest);
  fx->options.endpoint = "http://127.0.0.1:9";
  assert_one_line_error (fx, APP_HUB_ERROR_NETWORK, "127.0.0.1");
}

/* A listing that names files outside the folder, or lacks what the downloader needs, is
 * refused before anything is written. */
static void
test_hostile_listing (Fixture       *fx,
                      gconstpointer  data)
{
  static const char *const listings[] = {
    "{\"sha\":\"" HUB_TEST_COMMIT "\",\"siblings\":[{\"rfilename\":\"../evil\",\"size\":1}]}",
    "{\"sha\":\"" HUB_TEST_COMMIT "\",\"siblings\":[{\"rfilename\":\"/etc/evil\",\"size\":1}]}",
    "{\"sha\":\"" HUB_TEST_COMMIT "\",\"siblings\":[{\"rfilename\":\"a/../../evil\",\"size\":1}]}",
    "{\"sha\":\"" HUB_TEST_COMMIT "\",\"siblings\":[{\"rfilename\":\".partial/x\",\"size\":1}]}",
    "{\"sha\":\"" HUB_TEST_COMMIT "\",\"siblings\":[{\"rfilename\":\"config.json\"}]}",
    "{\"sha\":\"" HUB_TEST_COMMIT "\",\"siblings\":[{\"rfilename\":\"config.json\",\"size\":-5}]}",
    "{\"sha\":\"" HUB_TEST_COMMIT "\",\"siblings\":[{\"rfilename\":\"a\",\"size\":1},"
      "{\"rfilename\":\"a\",\"size\":1}]}",
    "{\"sha\":\"../../x\",\"siblings\":[]}",
    "{\"sha\":\"" HUB_TEST_COMMIT "\",\"siblings\":[]}",
    "[1,2,3]",
    "not json",
  };
  g_autofree char *evil = g_build_filename (fx->tmp, "evil", NULL);

  for (guint i = 0; i < G_N_ELEMENTS (listings); i++)
    {
      g_autoptr(GError) error = NULL;

      hub_server_set_listing (fx->server, listings[i]);
      g_assert_false (pull (fx, &error));
      g_assert_error (error, APP_HUB_ERROR, APP_HUB_ERROR_INVALID);
      g_assert_false (g_file_test (fx->dest, G_FILE_TEST_EXISTS));
      g_assert_false (g_file_test (evil, G_FILE_TEST_EXISTS));
    }

  /* a listing larger than any real one */
  {
    g_autoptr(GString) big = g_string_new ("{\"sha\":\"" HUB_TEST_COMMIT "\",\"siblings\":[");
    g_autoptr(GError) error = NULL;

    while (big->len < (40u << 20))
      g_string_append (big, "{\"rfilename\":\"aaaaaaaaaaaaaaaaaaaa\",\"size\":1},");
    g_string_append (big, "{\"rfilename\":\"b\",\"size\":1}]}");
    hub_server_set_listing (fx->server, big->str);
    g_assert_false (pull (fx, &error));
    g_assert_error (error, APP_HUB_ERROR, APP_HUB_ERROR_INVALID);
  }

  /* names and revisions that are not the Hub's */
  {
    static const char *const repos[] = { "", "noslash", "a/b/c", "../etc", "a/..", "-a/b", "a/b.",
                                         "a--/b", "a/b c" };
    for (guint i = 0; i < G_N_ELEMENTS (repos); i++)
      {
        g_autoptr(GError) error = NULL;
        g_autofree char *dest = NULL;

        g_assert_false (app_hub_pull_sync (repos[i], NULL, fx->dest, &fx->options, NULL, NULL,
                                           NULL, &error));
        g_assert_error (error, APP_HUB_ERROR, APP_HUB_ERROR_INVALID);
        g_clear_error (&error);
        dest = app_hub_default_dest (fx->tmp, repos[i], &error);
        g_assert_null (dest);
        g_assert_error (error, APP_HUB_ERROR, APP_HUB_ERROR_INVALID);
      }
  }
  {
    g_autoptr(GError) error = NULL;

    g_assert_false (app_hub_pull_sync (HUB_TEST_REPO, "../../x", fx->dest, &fx->options, NULL,
                                       NULL, NULL, &error));
    g_assert_error (error, APP_HUB_ERROR, APP_HUB_ERROR_INVALID);
  }
}

/* Not enough room to start: said before anything is fetched. The file system fills up
 * during the download: RLIMIT_FSIZE makes writing past a size fail with EFBIG, as a
 * full disk fails with ENOSPC. The pull stops with a resumable error and no model; with room
 * again, the next pull resumes. */
static void
test_disk_full (Fixture       *fx,
                gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  guint64 size = hub_server_file_size (fx->server, BIG);
  struct rlimit old, small;
  void (*old_handler) (int);
  gboolean ok;

  /* checked before the first byte: a margin no disk has */
  fx->options.free_space_margin = G_MAXUINT64 / 4;
  g_assert_false (pull (fx, &error));
  g_assert_error (error, APP_HUB_ERROR, APP_HUB_ERROR_NO_SPACE);
  g_assert_nonnull (strstr (error->message, "Not enough free space"));
  g_assert_cmpuint (hub_server_requests (fx->server, BIG), ==, 0);
  g_assert_cmpuint (hub_server_requests (fx->server, "config.json"), ==, 0);
  g_clear_error (&error);
  fx->options.free_space_margin = 0;

  g_assert_cmpint (getrlimit (RLIMIT_FSIZE, &old), ==, 0);
  small = old;
  small.rlim_cur = size / 2;
  old_handler = signal (SIGXFSZ, SIG_IGN);
  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &small), ==, 0);
  ok = pull (fx, &error);
  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &old), ==, 0);
  signal (SIGXFSZ, old_handler);

  g_assert_false (ok);
  g_assert_error (error, APP_HUB_ERROR, APP_HUB_ERROR_NO_SPACE);
  g_test_message ("%s", error->message);
  g_assert_null (strchr (error->message, '\n'));
  g_assert_false (app_hub_is_installed (fx->dest, NULL, NULL));
  g_assert_cmpuint (partial_size (fx, BIG), ==, size / 2);
  g_clear_error (&error);

  hub_server_reset_counts (fx->server);
  g_assert_true (pull (fx, &error));
  g_assert_no_error (error);
  assert_complete (fx);
  g_assert_cmpuint (hub_server_bytes_sent (fx->server, BIG), ==, size - size / 2);
}

static void
test_space_check (void)
{
  g_autoptr(GError) error = NULL;
  AppHubOptions opts = { .free_space_margin = 100 };

  g_assert_true (app_hub_check_space (1000, 1100, &opts, "/x", &error));
  g_assert_false (app_hub_check_space (1000, 1099, &opts, "/x", &error));
  g_assert_error (error, APP_HUB_ERROR, APP_HUB_ERROR_NO_SPACE);
  g_assert_nonnull (strstr (error->message, "/x"));
  g_clear_error (&error);
  g_assert_false (app_hub_check_space (1000, 10, &opts, "/x", &error));
  g_clear_error (&error);
  /* the default margin: 256 MiB plus 1 % */
  g_assert_false (app_hub_check_space (6700000000ull, 6700000000ull + (200ull << 20), NULL, "/x",
                                       &error));
  g_clear_error (&error);
  g_assert_true (app_hub_check_space (6700000000ull, 6700000000ull + (400ull << 20), NULL, "/x",
                                      &error));
  g_assert_no_error (error);
}

/* Cancelled in the middle (the app's Pause, or quitting): the partial file stays and the next
 * pull resumes it. */
static void
test_cancel_resume (Fixture       *fx,
                    gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  Progress pr = { .monotonic = TRUE, .cancel_at_half = cancellable };
  guint64 size = hub_server_file_size (fx->server, BIG);
  guint64 held;

  g_assert_false (app_hub_pull_sync (HUB_TEST_REPO, NULL, fx->dest, &fx->options, progress_cb, &pr,
                                     cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);
  held = partial_size (fx, BIG);
  g_assert_cmpuint (held, >, 0);
  g_assert_cmpuint (held, <, size);
  g_assert_false (app_hub_is_installed (fx->dest, NULL, NULL));

  hub_server_reset_counts (fx->server);
  g_assert_true (pull (fx, &error));
  g_assert_no_error (error);
  assert_complete (fx);
  g_assert_cmpuint (hub_server_last_range (fx->server, BIG), ==, held);
  g_assert_cmpuint (hub_server_bytes_sent (fx->server, BIG), ==, size - held);
}

/* Two pulls into one folder: the second says so and leaves the first's files alone. */
static void
test_busy (Fixture       *fx,
           gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  int fd;

  g_assert_cmpint (g_mkdir_with_parents (fx->dest, 0755), ==, 0);
  fd = g_open (fx->dest, O_RDONLY | O_DIRECTORY, 0);
  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (flock (fd, LOCK_EX), ==, 0);
  g_assert_false (pull (fx, &error));
  g_assert_error (error, APP_HUB_ERROR, APP_HUB_ERROR_BUSY);
  g_assert_cmpuint (hub_server_requests (fx->server, BIG), ==, 0);
  g_clear_error (&error);
  close (fd);
  g_assert_true (pull (fx, &error));
  g_assert_no_error (error);
  assert_complete (fx);
}

/* `vl2 pull` on the same server, as a person runs it (HF_ENDPOINT, default options). */
static void
test_vl2_pull (Fixture       *fx,
               gconstpointer  data)
{
  const char *cli = g_getenv ("VL2_CLI");
  g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                                                                       G_SUBPROCESS_FLAGS_STDERR_PIPE);
  g_autoptr(GSubprocess) proc = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *out = NULL, *err = NULL;
  g_autofree char *data_home = g_build_filename (fx->tmp, "data", NULL);
  g_autofree char *default_dest = g_build_filename (data_home, "sightline", "models",
                                                    "deepseek-ai--deepseek-vl2-tiny", NULL);
  guint64 size = hub_server_file_size (fx->server, BIG);

  g_assert_nonnull (cli);
  g_subprocess_launcher_setenv (launcher, "HF_ENDPOINT", hub_server_endpoint (fx->server), TRUE);
  g_subprocess_launcher_setenv (launcher, "HF_TOKEN", "", TRUE);
  g_subprocess_launcher_setenv (launcher, "XDG_DATA_HOME", data_home, TRUE);

  /* cut once: vl2 pull retries by itself */
  hub_server_cut_after (fx->server, BIG, size / 4, 1);
  proc = g_subprocess_launcher_spawn (launcher, &error, cli, "pull", HUB_TEST_REPO, NULL);
  g_assert_no_error (error);
  g_assert_true (g_subprocess_communicate_utf8 (proc, NULL, NULL, &out, &err, &error));
  g_test_message ("stderr: %s", err);
  g_assert_true (g_subprocess_get_if_exited (proc));
  g_assert_cmpint (g_subprocess_get_exit_status (proc), ==, 0);
  g_assert_cmpstr (g_strstrip (out), ==, default_dest);
  g_assert_nonnull (strstr (err, "complete and verified"));
  g_free (fx->dest);
  fx->dest = g_strdup (default_dest);
  assert_complete (fx);
  g_assert_cmpuint (hub_server_bytes_sent (fx->server, BIG), ==, size);
  g_clear_object (&proc);
  g_clear_pointer (&out, g_free);
  g_clear_pointer (&err, g_free);

  /* an error is one line and exit status 1 */
  hub_server_fail (fx->server, 404, "RepoNotFound", 0);
  proc = g_subprocess_launcher_spawn (launcher, &error, cli, "pull", "deepseek-ai/nothing",
                                      "--dest", fx->tmp, NULL);
  g_assert_true (g_subprocess_communicate_utf8 (proc, NULL, NULL, &out, &err, &error));
  g_assert_cmpint (g_subprocess_get_exit_status (proc), ==, 1);
  g_assert_cmpstr (out, ==, "");
  g_assert_true (g_str_has_prefix (err, "vl2: deepseek-ai/nothing"));
  g_assert_true (strchr (err, '\n') == err + strlen (err) - 1);
}

/* ------------------------------------------------------------------------------------------
 * AppDownload: the states the UI shows
 */

typedef struct {
  GArray *states;
  AppDownload *download;
  gboolean pause_at_third;
  GMainLoop *loop;
} Watch;

static void
state_cb (AppDownload *d,
          GParamSpec  *pspec,
          Watch       *w)
{
  AppDownloadState s = app_download_get_state (d);

  g_array_append_val (w->states, s);
  if (s == APP_DOWNLOAD_INSTALLED || s == APP_DOWNLOAD_FAILED || s == APP_DOWNLOAD_PAUSED)
    g_main_loop_quit (w->loop);
}

static void
done_cb (AppDownload *d,
         GParamSpec  *pspec,
         Watch       *w)
{
  g_assert_cmpuint (app_download_get_done_bytes (d), <=, app_download_get_total_bytes (d));
  if (w->pause_at_third && app_download_get_done_bytes (d) > app_download_get_total_bytes (d) / 3)
    {
      w->pause_at_third = FALSE;
      app_download_pause (d);
    }
}

static gboolean
seen (Watch            *w,
      AppDownloadState  s)
{
  for (guint i = 0; i < w->states->len; i++)
    if (g_array_index (w->states, AppDownloadState, i) == s)
      return TRUE;
  return FALSE;
}

static gboolean
quit_cb (gpointer loop)
{
  g_main_loop_quit (loop);
  return G_SOURCE_CONTINUE;
}

static void
run_until_stopped (Watch *w)
{
  guint timeout = g_timeout_add_seconds (60, quit_cb, w->loop);

  g_main_loop_run (w->loop);
  g_source_remove (timeout);
}

static void
test_download_object (Fixture       *fx,
                      gconstpointer  data)
{
  g_autoptr(AppDownload) d = app_download_new (HUB_TEST_REPO, NULL, fx->dest,
                                               hub_server_endpoint (fx->server), "");
  Watch w = { g_array_new (FALSE, FALSE, sizeof (AppDownloadState)), d, TRUE,
              g_main_loop_new (NULL, FALSE) };
  guint64 size = hub_server_file_size (fx->server, BIG);

  g_signal_connect (d, "notify::state", G_CALLBACK (state_cb), &w);
  g_signal_connect (d, "notify::done-bytes", G_CALLBACK (done_cb), &w);
  /* The connection drops half way through the big file and the worker waits its backoff (a
   * second) before resuming: Pause, pressed at a third of the download, takes effect by then
   * however slowly this thread runs, and the resume below has something to resume. */
  hub_server_cut_after (fx->server, BIG, size / 2, 1);

  app_download_start (d);
  g_assert_cmpint (app_download_get_state (d), ==, APP_DOWNLOAD_QUEUED);
  /* Its properties change on this thread's main context only: while this thread does not
   * run it, however far the worker gets, the state stays as it was (even though the context
   * is free for any thread to take). */
  for (int i = 0; i < 500 && partial_size (fx, BIG) == 0; i++)
    g_usleep (10000);
  g_assert_cmpuint (partial_size (fx, BIG), >, 0);
  g_assert_cmpint (app_download_get_state (d), ==, APP_DOWNLOAD_QUEUED);
  g_assert_cmpuint (w.states->len, ==, 1);   /* QUEUED, from start() */
  run_until_stopped (&w);
  g_assert_cmpint (app_download_get_state (d), ==, APP_DOWNLOAD_PAUSED);
  g_assert_true (seen (&w, APP_DOWNLOAD_DOWNLOADING));
  g_assert_false (app_hub_is_installed (fx->dest, NULL, NULL));

  /* the worker stops within its backoff; until then the files are its own */
  for (int i = 0; i < 300 && partial_size (fx, BIG) < size / 2; i++)
    g_usleep (10000);
  g_usleep (100000);
  while (g_main_context_iteration (NULL, FALSE));

  hub_server_reset_counts (fx->server);
  g_array_set_size (w.states, 0);
  app_download_start (d);
  run_until_stopped (&w);
  g_assert_cmpint (app_download_get_state (d), ==, APP_DOWNLOAD_INSTALLED);
  g_assert_null (app_download_get_error (d));
  g_assert_cmpuint (app_download_get_done_bytes (d), ==, app_download_get_total_bytes (d));
  g_assert_cmpuint (hub_server_bytes_sent (fx->server, BIG), <, size);
  assert_complete (fx);

  /* a failure: the state and its one line */
  {
    g_autoptr(AppDownload) bad = app_download_new (HUB_TEST_REPO, "v9", fx->dest,
                                                   hub_server_endpoint (fx->server), "");

    g_signal_connect (bad, "notify::state", G_CALLBACK (state_cb), &w);
    app_download_start (bad);
    run_until_stopped (&w);
    g_assert_cmpint (app_download_get_state (bad), ==, APP_DOWNLOAD_FAILED);
    g_assert_nonnull (app_download_get_error (bad));
    g_assert_null (strchr (app_download_get_error (bad), '\n'));
  }
  g_array_unref (w.states);
  g_main_loop_unref (w.loop);
}

int
main (int   argc,
      char *argv[])
{
  /* a proxy from the environment must not stand between the test and its loopback servers */
  g_setenv ("no_proxy", "127.0.0.1,localhost", TRUE);
  g_setenv ("NO_PROXY", "127.0.0.1,localhost", TRUE);
  g_test_init (&argc, &argv, NULL);
  fixture_dir = g_build_filename (g_getenv ("VL2_FIXTURE_DIR"), "mini-tiny", NULL);

#define ADD(path, fn) g_test_add ("/app/hub/" path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("full", test_full);
  ADD ("resume-after-cut", test_resume_after_cut);
  ADD ("resume-next-pull", test_resume_next_pull);
  ADD ("ignore-range", test_ignore_range);
  ADD ("bad-bytes", test_bad_bytes);
  ADD ("http-errors", test_http_errors);
  ADD ("hostile-listing", test_hostile_listing);
  ADD ("disk-full", test_disk_full);
  ADD ("cancel-resume", test_cancel_resume);
  ADD ("busy", test_busy);
  ADD ("vl2-pull", test_vl2_pull);
  ADD ("download", test_download_object);
  g_test_add_func ("/app/hub/space-check", test_space_check);
  return g_test_run ();
}
