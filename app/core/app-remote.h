/* app-remote.h - an OpenAI-compatible server as the model: vLLM, SGLang, vl2-server.
 *
 * The engine adapter (app-engine.c) runs these on its worker thread, where a blocking call
 * is what the local engine's calls are too: cancelling `cancellable` ends them at once. The
 * conversation goes as OpenAI chat messages, images as data: URLs of the files' own bytes,
 * with skip_special_tokens false so that vLLM and SGLang keep DeepSeek-VL2's grounding tags
 * in the text (the app draws their boxes) and continue_final_message for an answer that is
 * continued. Text arrives as Server-Sent Events and goes to `text_func` as it comes.
 */
#pragma once

#include <gio/gio.h>

#include "app-openai.h"

G_BEGIN_DECLS

#define APP_REMOTE_ERROR (app_remote_error_quark ())
GQuark app_remote_error_quark (void);

typedef enum {
  APP_REMOTE_ERROR_URL,          /* the base URL is not an http(s) URL */
  APP_REMOTE_ERROR_CONNECT,      /* the server cannot be reached */
  APP_REMOTE_ERROR_TIMEOUT,      /* it stopped answering */
  APP_REMOTE_ERROR_AUTH,         /* 401/403: the API key is missing or wrong */
  APP_REMOTE_ERROR_NO_MODEL,     /* the server does not serve that model */
  APP_REMOTE_ERROR_REFUSED,      /* 4xx: the server refused the request (its message) */
  APP_REMOTE_ERROR_SERVER,       /* 5xx, or an error event in the stream */
  APP_REMOTE_ERROR_PROTOCOL,     /* not what an OpenAI-compatible server sends */
  APP_REMOTE_ERROR_IMAGE,        /* an image file cannot be read */
} AppRemoteError;

/* How long asking a server for its models may take: a server that does not answer is named
 * soon, while answers may take longer to start (AppRemoteServer.timeout). */
#define APP_REMOTE_PROBE_TIMEOUT 20

typedef struct
{
  char *base_url;                /* "http://gpu-box:8000/v1" */
  char *model;                   /* "deepseek-ai/deepseek-vl2" */
  char *api_key;                 /* NULL or "" for none */
  guint timeout;                 /* seconds without a byte before giving up; 0: 300 */
} AppRemoteServer;

void             app_remote_server_clear       (AppRemoteServer *server);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (AppRemoteServer, app_remote_server_clear)

/* The base URL as typed, made canonical: scheme and host required, no query, a trailing
 * slash dropped, "/v1" added when no path is given. NULL (APP_REMOTE_ERROR_URL) otherwise. */
char            *app_remote_normalize_url      (const char      *url,
                                                GError         **error);

/* GET {base}/models: the ids the server serves. */
GStrv            app_remote_list_models        (const AppRemoteServer *server,
                                                GCancellable    *cancellable,
                                                GError         **error);

/* One turn of the conversation, as the engine adapter snapshots it. */
typedef struct
{
  gboolean assistant;
  const char *text;
  const char * const *image_paths; /* may be NULL */
} AppRemoteTurn;

typedef struct
{
  double temperature;
  double top_p;
  int top_k;
  double repetition_penalty;
  int max_tokens;                /* 0: the server's default */
  gboolean has_seed;
  guint64 seed;
  const char *system_prompt;     /* NULL or "" for none */
} AppRemoteParams;

/* The request body for `turns` (the last may be an assistant turn with text: continued). */
char            *app_remote_request_json       (const AppRemoteServer *server,
                                                const AppRemoteTurn *turns,
                                                guint            n_turns,
                                                const AppRemoteParams *params,
                                                GError         **error);

typedef void (*AppRemoteTextFunc) (const char *text,
                                   gpointer    user_data);

/* POST {base}/chat/completions with `body`, streaming: each content delta goes to
 * `text_func`; *result receives the finish reason and usage. FALSE and an error when it
 * fails, also after some text (which stays the caller's); G_IO_ERROR_CANCELLED when
 * cancelled. */
gboolean         app_remote_chat               (const AppRemoteServer *server,
                                                const char      *body,
                                                AppRemoteTextFunc text_func,
                                                gpointer         user_data,
                                                AppOpenAIDelta  *result,
                                                GCancellable    *cancellable,
                                                GError         **error);

G_END_DECLS
