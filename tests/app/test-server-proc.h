/* test-server-proc.h - a real vl2-server for the app's tests: the golden mini-tiny model
 * ($VL2_FIXTURE_DIR/mini-tiny) on a free loopback port, run from $VL2_SERVER. */
#pragma once

#include <gio/gio.h>

typedef struct
{
  GSubprocess *proc;
  char *url;                       /* its API: "http://127.0.0.1:PORT/v1" */
} TestServer;

/* Starts it (with `api_key` required when not NULL) and waits until it listens. It gets a
 * kill signal when the test ends in any way, an abort included, so that nothing holds the
 * test's output open after it. */
void test_server_start (TestServer *server,
                        const char *api_key);
/* Stops it with SIGTERM and checks that it exits cleanly. */
void test_server_stop  (TestServer *server);
