/* bench.h - `vl2 bench` (bench.c). */
#pragma once

/* argv[0] is "bench". Returns the process exit status. */
int vl2_cmd_bench(int argc, char **argv);
