/* cli-util.h - what the vl2 subcommands share: reporting errors and usage the same way. */
#pragma once

#include <glib.h>

/* Prints "vl2: <message>" to stderr; returns 1, the exit status of a failed command. */
int vl2_cli_fail(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

/* Prints "vl2: <msg>" and the option help of ctx to stderr; returns 2, the exit status of a
 * usage error. */
int vl2_cli_usage(GOptionContext *ctx, const char *msg);

/* Reads all of standard input. NULL (with *error) when it cannot be read. */
GString *vl2_cli_read_stdin(char **error);
