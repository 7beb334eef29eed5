/* hub-server.h - a Hugging Face Hub on loopback, for the downloader's tests.
 *
 * Two SoupServers on 127.0.0.1, on their own thread and main context: the "hub" answers the
 * model listing (/api/models/{repo}/revision/{rev}?blobs=true) and /{repo}/resolve/{commit}/
 * {path}; small files are served after a relative redirect, LFS files after a redirect to the
 * other server (the "cdn", another origin, as the Hub's LFS host is). Both honour Range unless
 * told not to, and count what they send, per file, so tests can check a resume on the server
 * side. Behaviours a test can switch on: cut the connection after N bytes of a file, ignore
 * Range, corrupt a file's bytes, answer a status (with the Hub's X-Error-Code), serve a
 * hostile listing.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define HUB_TEST_REPO "deepseek-ai/deepseek-vl2-tiny"
#define HUB_TEST_COMMIT "0123456789abcdef0123456789abcdef01234567"

typedef struct _HubServer HubServer;

/* Serves the files `names` (NULL-terminated) of folder `dir`; files of at least 1 MiB are LFS
 * files (sha256), the others have a git blob id. */
HubServer  *hub_server_new            (const char         *dir,
                                       const char * const *names);
void        hub_server_free           (HubServer          *server);
const char *hub_server_endpoint       (HubServer          *server);   /* http://127.0.0.1:PORT */

/* Behaviours; each applies to requests that arrive after it is set. */
void        hub_server_cut_after      (HubServer          *server,
                                       const char         *path,
                                       guint64             bytes,
                                       guint               times);    /* the next `times` GETs */
void        hub_server_ignore_range   (HubServer          *server,
                                       gboolean            ignore);
void        hub_server_corrupt        (HubServer          *server,
                                       const char         *path,
                                       guint               times);    /* the next `times` GETs */
/* Every request (listing and files) answers `status` with X-Error-Code `code` (NULL: none);
 * 0 turns it off. `times` 0: always. */
void        hub_server_fail           (HubServer          *server,
                                       guint               status,
                                       const char         *code,
                                       guint               times);
/* The listing's JSON, as is (NULL: the real one). */
void        hub_server_set_listing    (HubServer          *server,
                                       const char         *json);
/* Requires "Authorization: Bearer TOKEN" on the hub (401 otherwise); NULL: no check. */
void        hub_server_require_token  (HubServer          *server,
                                       const char         *token);

/* Counters since the last reset. */
void        hub_server_reset_counts   (HubServer          *server);
guint64     hub_server_bytes_sent     (HubServer          *server,
                                       const char         *path);
guint       hub_server_requests       (HubServer          *server,
                                       const char         *path);
guint64     hub_server_last_range     (HubServer          *server,
                                       const char         *path);   /* G_MAXUINT64: no Range */
/* Whether any request to the cdn carried an Authorization header. */
gboolean    hub_server_cdn_saw_token  (HubServer          *server);
guint64     hub_server_file_size      (HubServer          *server,
                                       const char         *path);

G_END_DECLS
