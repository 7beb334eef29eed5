/* mkrandom.h - `vl2 mkrandom` (mkrandom.c). */
#pragma once

/* argv[0] is "mkrandom". Returns the process exit status: 0, 1 on errors, 2 on usage, 130 when
 * interrupted. */
int vl2_cmd_mkrandom(int argc, char **argv);
