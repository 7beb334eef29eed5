/* pull.h - `vl2 pull` (pull.c). */
#pragma once

/* argv[0] is "pull". Returns the process exit status. */
int vl2_cmd_pull(int argc, char **argv);
