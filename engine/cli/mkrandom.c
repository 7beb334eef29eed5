/* mkrandom.c - `vl2 mkrandom`: a random-weight checkpoint with the published shapes.
 *
 *   vl2 mkrandom --preset tiny|small|base|CONFIG.json --dest DIR [--seed N] [--dry-run]
 *                [--threads N] [--force]
 *
 * A preset (or any config.json) and the tokenizer files go to the engine's
 * vl2_write_random_checkpoint(), which writes config.json, the bf16 shards and
 * model.safetensors.index.json into DIR; the folder then loads and runs like a downloaded
 * one, so speed can be measured without fetching 6.7 to 55 GB. The presets' configs and the
 * tokenizer files are compiled in from engine/deepseek-vl2/ (mkrandom.gresource.xml).
 * --dry-run prints the counts and writes nothing.
 *
 * Output: the counts as "key: value" lines on stdout (also for --dry-run, plus the seconds
 * after a write); progress in percent on stderr. Errors: exit status 1 (2 for usage, 130 when
 * interrupted, after the partial files are removed) and one line on stderr.
 */
#include <errno.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli-util.h"
#include "mkrandom.h"
#include "vl2-input.h"
#include "vl2.h"

/* glib-compile-resources' output for mkrandom.gresource.xml (c_name vl2_cli, registered by
 * hand: only this command uses it) */
GResource *vl2_cli_get_resource(void);
void vl2_cli_register_resource(void);
void vl2_cli_unregister_resource(void);

#define RESOURCE_PREFIX "/io/github/sightline/vl2/"
#define MAX_CONFIG_SIZE VL2_CONFIG_MAX_BYTES


static GBytes *resource(const char *path)
{
    g_autofree char *full = g_strconcat(RESOURCE_PREFIX, path, NULL);
    /* compiled in: a lookup cannot fail unless the build is broken */
    GBytes *b = g_resource_lookup_data(vl2_cli_get_resource(), full,
                                       G_RESOURCE_LOOKUP_FLAGS_NONE, NULL);
    g_assert(b);
    return b;
}

/* ---------------------------------------------------------------------------------------------
 * Presets
 */

/* The presets are the three configs in engine/deepseek-vl2/ (its README says where each comes
 * from). Small's is reconstructed: its total with the VL2 tokenizer's 129280-row vocabulary is
 * 16,258,449,984, while the published "16.1B" suggests DeepSeek-V2-Lite's 102400 rows
 * (16,148,349,504). That changes only the embedding and lm_head, 2% of a decoded token's bytes. */
static bool is_preset(const char *name)
{
    return !strcmp(name, "tiny") || !strcmp(name, "small") || !strcmp(name, "base");
}

/* A regular, not too large text file. */
static char *read_config(const char *path, char **error)
{
    GStatBuf st;
    if (g_stat(path, &st) != 0) {
        *error = g_strdup_printf("%s: %s", path, g_strerror(errno));
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        *error = g_strdup_printf("%s: not a regular file", path);
        return NULL;
    }
    if ((guint64)st.st_size > MAX_CONFIG_SIZE) {
        *error = g_strdup_printf("%s: %lld bytes, too large for a config.json", path,
                                 (long long)st.st_size);
        return NULL;
    }
    char *text;
    gsize len;
    g_autoptr(GError) gerr = NULL;
    /* and again on what is opened: a named pipe put there meanwhile is refused, not waited on */
    if (!vl2_input_read(path, MAX_CONFIG_SIZE, &text, &len, &gerr)) {
        *error = g_strdup(gerr->message);
        return NULL;
    }
    if (strlen(text) != len) {
        *error = g_strdup_printf("%s: not a text file", path);
        g_free(text);
        return NULL;
    }
    return text;
}

/* The config text of a preset name or a path; NULL with *error set. */
static char *preset_config(const char *preset, char **error)
{
    if (is_preset(preset)) {
        g_autofree char *name = g_strconcat("presets/", preset, ".json", NULL);
        g_autoptr(GBytes) b = resource(name);
        gsize len;
        const char *data = g_bytes_get_data(b, &len);
        return g_strndup(data, len);
    }
    if (!strchr(preset, '/') && !g_str_has_suffix(preset, ".json") &&
        !g_file_test(preset, G_FILE_TEST_EXISTS)) {
        *error = g_strdup_printf("unknown preset '%s': tiny, small, base or the path of a "
                                 "config.json", preset);
        return NULL;
    }
    return read_config(preset, error);
}

/* ---------------------------------------------------------------------------------------------
 * Progress and interruption
 */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

typedef struct {
    bool tty;
    int last;                    /* percent shown last */
} progress_state;

/* Every percent on a terminal, every 10 % into a log. */
static bool show_progress(float fraction, void *user_data)
{
    progress_state *p = user_data;
    int pct = (int)(fraction * 100);
    if (p->tty && pct != p->last) {
        fprintf(stderr, "\rwriting %3d%%", pct);
        if (pct >= 100)
            fputs("\r\033[K", stderr);
        fflush(stderr);
        p->last = pct;
    } else if (!p->tty && pct / 10 != p->last / 10) {
        fprintf(stderr, "writing %d%%\n", pct / 10 * 10);
        p->last = pct;
    }
    return !interrupted;
}

/* ---------------------------------------------------------------------------------------------
 * The command
 */

static const char *const checkpoint_files[] = {
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "processor_config.json",
};

static void print_counts(const char *what, const vl2_random_info *info)
{
    printf("%s\n", what);
    printf("tensors: %d\n", info->n_tensors);
    printf("parameters: %" G_GINT64_FORMAT " (%.2f B)\n", info->n_params,
           (double)info->n_params / 1e9);
    printf("bytes: %" G_GINT64_FORMAT " (%.2f GB)\n", info->n_bytes, (double)info->n_bytes / 1e9);
    printf("shards: %d\n", info->n_shards);
}

static int mkrandom(const char *preset, const char *dest, uint64_t seed, bool dry_run, bool force,
                    int threads)
{
    char *error = NULL;
    g_autofree char *config = preset_config(preset, &error);
    if (!config) {
        int r = vl2_cli_fail("%s", error);
        g_free(error);
        return r;
    }
    bool preset_named = is_preset(preset);
    g_autofree char *config_name = preset_named ? g_strdup_printf("the %s preset's config.json",
                                                                  preset)
                                                : g_strdup(preset);

    GBytes *blobs[G_N_ELEMENTS(checkpoint_files)];
    vl2_extra_file extra[G_N_ELEMENTS(checkpoint_files)];
    for (size_t i = 0; i < G_N_ELEMENTS(checkpoint_files); i++) {
        g_autofree char *path = g_strconcat("checkpoint/", checkpoint_files[i], NULL);
        blobs[i] = resource(path);
        gsize size;
        extra[i].name = checkpoint_files[i];
        extra[i].data = g_bytes_get_data(blobs[i], &size);
        extra[i].size = size;
    }

    progress_state ps = { isatty(fileno(stderr)) != 0, -1 };
    vl2_random_params rp = vl2_random_default_params();
    rp.seed = seed;
    rp.n_threads = threads;
    rp.dry_run = dry_run;
    rp.overwrite = force;
    rp.config_name = config_name;
    rp.extra_files = extra;
    rp.n_extra_files = (int)G_N_ELEMENTS(extra);
    rp.progress = show_progress;
    rp.progress_user_data = &ps;

    /* Ctrl-C cancels through the progress callback, so the engine removes what it wrote. */
    struct sigaction sa = { 0 }, old_int, old_term;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (!dry_run) {
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
    }
    vl2_error err;
    vl2_random_info info;
    gint64 t0 = g_get_monotonic_time();
    vl2_status st = vl2_write_random_checkpoint(config, dest, &rp, &info, &err);
    double seconds = (double)(g_get_monotonic_time() - t0) / 1e6;
    if (!dry_run) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(blobs); i++)
        g_bytes_unref(blobs[i]);

    if (ps.tty && ps.last >= 0 && ps.last < 100)
        fputs("\r\033[K", stderr);
    if (st == VL2_ERR_CANCELLED && interrupted) {
        vl2_cli_fail("interrupted; the partial checkpoint was removed");
        return 130;
    }
    if (st == VL2_ERR_INVALID_ARGUMENT && !force && strstr(err.message, "already holds"))
        return vl2_cli_fail("%s (--force replaces it)", err.message);
    if (st != VL2_OK)
        return vl2_cli_fail("%s", err.message);

    g_autofree char *what = g_strdup_printf("config: %s", preset_named ? preset : config_name);
    print_counts(what, &info);
    if (!dry_run) {
        printf("dest: %s\n", dest);
        printf("seconds: %.1f (%.0f MB/s)\n", seconds,
               seconds > 0 ? (double)info.n_bytes / 1e6 / seconds : 0.0);
    }
    return 0;
}

int vl2_cmd_mkrandom(int argc, char **argv)
{
    g_autofree char *preset = NULL, *dest = NULL, *seed_text = NULL;
    gboolean dry_run = FALSE, force = FALSE;
    int threads = 0;
    GOptionEntry entries[] = {
        { "preset", 0, 0, G_OPTION_ARG_FILENAME, &preset, "tiny (3.37B), small (16.3B), base "
          "(27.5B) or the path of a config.json", "NAME|CONFIG.json" },
        { "dest", 0, 0, G_OPTION_ARG_FILENAME, &dest, "Folder to write (created if missing)",
          "DIR" },
        { "seed", 0, 0, G_OPTION_ARG_STRING, &seed_text, "Random seed (default 0)", "N" },
        { "dry-run", 0, 0, G_OPTION_ARG_NONE, &dry_run, "Print the tensor, parameter and byte "
          "counts; write nothing", NULL },
        { "threads", 0, 0, G_OPTION_ARG_INT, &threads, "Worker threads (default: all CPUs)", "N" },
        { "force", 0, 0, G_OPTION_ARG_NONE, &force, "Replace a checkpoint already in DIR", NULL },
        { NULL },
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("- write a random-weight checkpoint "
                                                         "with the published shapes");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_option_context_set_description(ctx,
        "The folder holds config.json, the tokenizer files, bf16 weights in shards of at most\n"
        "4 GiB and model.safetensors.index.json, and loads like a downloaded checkpoint: use\n"
        "it to measure speed, not to read answers. Same seed, same bytes.\n");
    g_autoptr(GError) gerr = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr))
        return vl2_cli_usage(ctx, gerr->message);
    if (argc > 1)
        return vl2_cli_usage(ctx, "mkrandom takes no positional arguments");
    if (!preset || (!dest && !dry_run))
        return vl2_cli_usage(ctx, "mkrandom needs --preset and --dest (or --dry-run)");
    if (threads < 0)
        return vl2_cli_usage(ctx, "--threads must be >= 0");
    guint64 seed = 0;
    if (seed_text && !g_ascii_string_to_unsigned(seed_text, 10, 0, G_MAXUINT64, &seed, &gerr))
        return vl2_cli_usage(ctx, "--seed must be a non-negative integer");

    vl2_cli_register_resource();
    int rc = mkrandom(preset, dest, seed, dry_run, force, threads);
    vl2_cli_unregister_resource();
    return rc;
}
