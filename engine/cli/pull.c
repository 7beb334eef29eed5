/* pull.c - `vl2 pull REPO [--revision REV] [--dest DIR]`: a model from the Hugging Face Hub.
 *
 * The app's downloader (app/core/app-hub.h) on the command line: the same listing, resume,
 * verification and install marker, so a model pulled here is one the app lists as installed,
 * and a pull the app started resumes here (and the other way round). The default folder is
 * the app's: $XDG_DATA_HOME/sightline/models/OWNER--NAME.
 *
 * Progress goes to stderr (one line rewritten in place on a terminal, a line per 10 % when
 * not); the folder is printed on stdout when the model is complete. HF_ENDPOINT names a
 * mirror, HF_TOKEN (or huggingface_hub's token file) a token for gated models.
 */
#include <glib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "app-hub.h"
#include "cli-util.h"
#include "pull.h"

typedef struct {
    gboolean tty;
    int last_tenth;
    gint64 start_us;
    guint64 start_bytes;
    gboolean started;
    gint64 last_draw;
} PullDisplay;

static void show_pull_progress(const AppHubProgress *p, gpointer user_data)
{
    PullDisplay *d = user_data;
    gint64 now = g_get_monotonic_time();
    if (!d->started && p->state == APP_DOWNLOAD_DOWNLOADING) {
        d->started = TRUE;
        d->start_us = now;
        d->start_bytes = p->done_bytes;
    }
    int tenth = p->total_bytes ? (int)(p->done_bytes * 10 / p->total_bytes) : 0;
    g_autofree char *done = g_format_size(p->done_bytes);
    g_autofree char *total = g_format_size(p->total_bytes);
    if (d->tty) {
        if (now - d->last_draw < 100000 && p->done_bytes < p->total_bytes)
            return;
        d->last_draw = now;
        double secs = (now - d->start_us) / 1e6;
        g_autofree char *rate = g_format_size(secs > 0.5 && p->done_bytes > d->start_bytes
                                                  ? (guint64)((p->done_bytes - d->start_bytes) / secs)
                                                  : 0);
        fprintf(stderr, "\r\033[K%s %s / %s  %s/s  file %u of %u: %s",
                p->state == APP_DOWNLOAD_VERIFYING ? "verifying" : "downloading", done, total, rate,
                p->file_index + 1 > p->n_files ? p->n_files : p->file_index + 1, p->n_files,
                p->file ? p->file : "");
    } else if (tenth > d->last_tenth) {
        d->last_tenth = tenth;
        fprintf(stderr, "%d %%  %s / %s\n", tenth * 10, done, total);
    }
}

int vl2_cmd_pull(int argc, char **argv)
{
    g_autofree char *revision = NULL, *dest = NULL;
    GOptionEntry entries[] = {
        { "revision", 0, 0, G_OPTION_ARG_STRING, &revision, "branch, tag or commit (main)", "REV" },
        { "dest", 0, 0, G_OPTION_ARG_FILENAME, &dest,
          "folder to download into (the app's models folder)", "DIR" },
        { NULL },
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("REPO - download a model from the Hugging "
                                                         "Face Hub, resumable and verified");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_option_context_set_description(ctx,
        "Example: vl2 pull deepseek-ai/deepseek-vl2-tiny\n"
        "Running it again resumes an interrupted download. HF_ENDPOINT names a mirror,\n"
        "HF_TOKEN a token for gated models.");
    g_autoptr(GError) gerr = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr))
        return vl2_cli_usage(ctx, gerr->message);
    if (argc != 2)
        return vl2_cli_usage(ctx, "pull needs one model id, like deepseek-ai/deepseek-vl2-tiny");

    if (!dest) {
        g_autofree char *models = g_build_filename(g_get_user_data_dir(), "sightline", "models", NULL);
        dest = app_hub_default_dest(models, argv[1], &gerr);
        if (!dest)
            return vl2_cli_fail("%s", gerr->message);
    }
    /* A file-size limit (ulimit -f) is a full disk to the downloader, not a reason to die. */
    signal(SIGXFSZ, SIG_IGN);

    PullDisplay display = { .tty = isatty(STDERR_FILENO), .last_tenth = 0 };
    gboolean ok = app_hub_pull_sync(argv[1], revision, dest, NULL, show_pull_progress, &display,
                                    NULL, &gerr);
    if (display.tty)
        fputs("\r\033[K", stderr);
    if (!ok)
        return vl2_cli_fail("%s", gerr->message);
    g_autofree char *commit = NULL;
    app_hub_is_installed(dest, NULL, &commit);
    fprintf(stderr, "%s at %.12s: complete and verified\n", argv[1], commit ? commit : "?");
    printf("%s\n", dest);
    return 0;
}
