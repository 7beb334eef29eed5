/* cli-util.c - see cli-util.h. */
#include "cli-util.h"

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
