/* cli-util.c - see cli-util.h. */
#include "cli-util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

int vl2_cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("vl2: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int vl2_cli_usage(GOptionContext *ctx, const char *msg)
{
    fprintf(stderr, "vl2: %s\n", msg);
    g_autofree char *help = g_option_context_get_help(ctx, TRUE, NULL);
    fputs(help, stderr);
    return 2;
}

GString *vl2_cli_read_stdin(char **error)
{
    GString *s = g_string_new(NULL);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0)
        g_string_append_len(s, buf, (gssize)n);
    if (ferror(stdin)) {
        *error = g_strdup_printf("cannot read standard input: %s", g_strerror(errno));
        g_string_free(s, TRUE);
        return NULL;
    }
    return s;
}
