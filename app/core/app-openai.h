/* app-openai.h - OpenAI's chat-completions wire format, both ways, with json-glib.
 *
 * The server side (vl2-server) parses a request into an AppOpenAIRequest, and writes
 * completions, stream chunks and errors; the client side (the app's remote backend) writes
 * requests and reads a stream of Server-Sent Events into deltas. No HTTP here: app/server and
 * app-remote.c carry the bytes. The format is OpenAI's API reference for
 * `POST /v1/chat/completions`, with the extensions vLLM and SGLang accept (top_k,
 * repetition_penalty, skip_special_tokens, continue_final_message) and one of this project's
 * own: the boxes of a grounded answer (see app_openai_grounding_json()).
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define APP_OPENAI_ERROR (app_openai_error_quark ())
GQuark app_openai_error_quark (void);

/* What went wrong with a request, each with its HTTP status, OpenAI error type and code
 * (app_openai_error_status(), _type(), _code()). */
typedef enum {
  APP_OPENAI_ERROR_INVALID_JSON,       /* 400 invalid_request_error invalid_json */
  APP_OPENAI_ERROR_INVALID_REQUEST,    /* 400 invalid_request_error invalid_request */
  APP_OPENAI_ERROR_INVALID_IMAGE,      /* 400 invalid_request_error invalid_image */
  APP_OPENAI_ERROR_IMAGE_URL,          /* 400 invalid_request_error image_url_not_allowed */
  APP_OPENAI_ERROR_TOO_MANY_IMAGES,    /* 400 invalid_request_error too_many_images */
  APP_OPENAI_ERROR_IMAGE_TOO_LARGE,    /* 400 invalid_request_error image_too_large */
  APP_OPENAI_ERROR_CONTEXT_LENGTH,     /* 400 invalid_request_error context_length_exceeded */
  APP_OPENAI_ERROR_MAX_TOKENS,         /* 400 invalid_request_error max_tokens_too_large */
  APP_OPENAI_ERROR_UNAUTHORIZED,       /* 401 authentication_error invalid_api_key */
  APP_OPENAI_ERROR_MODEL_NOT_FOUND,    /* 404 invalid_request_error model_not_found */
  APP_OPENAI_ERROR_NOT_FOUND,          /* 404 invalid_request_error not_found */
  APP_OPENAI_ERROR_METHOD,             /* 405 invalid_request_error method_not_allowed */
  APP_OPENAI_ERROR_BODY_TOO_LARGE,     /* 413 invalid_request_error request_too_large */
  APP_OPENAI_ERROR_OVERLOADED,         /* 503 server_error server_overloaded */
  APP_OPENAI_ERROR_SERVER,             /* 500 server_error server_error */
  APP_OPENAI_ERROR_SHUTTING_DOWN,      /* 503 server_error server_shutting_down */
} AppOpenAIError;

guint            app_openai_error_status       (AppOpenAIError   code);
const char      *app_openai_error_type         (AppOpenAIError   code);
const char      *app_openai_error_code         (AppOpenAIError   code);

/* `{"error": {"message", "type", "param", "code"}}` for `error` (APP_OPENAI_ERROR; any other
 * domain is a server_error). *status (may be NULL) receives the HTTP status. */
char            *app_openai_error_json         (const GError    *error,
                                                guint           *status);

/* ---------------------------------------------------------------------------------------------
 * Requests
 */

typedef enum {
  APP_OPENAI_ROLE_SYSTEM,
  APP_OPENAI_ROLE_USER,
  APP_OPENAI_ROLE_ASSISTANT,
} AppOpenAIRole;

typedef struct {
  GBytes *data;      /* the image file's bytes (from a data: URL), or NULL ... */
  char *url;         /* ... an http(s) URL still to fetch */
} AppOpenAIImage;

typedef struct {
  AppOpenAIRole role;
  /* The text parts in order, with "<image>\n" where each image part stood (user messages);
   * a string content as it is. */
  char *text;
  GPtrArray *images; /* AppOpenAIImage*, in order */
} AppOpenAIMessage;

typedef struct {
  gsize max_images;          /* image parts in the whole request */
  gsize max_messages;
  int max_tokens;            /* the largest max_tokens accepted */
  gboolean allow_image_urls; /* http(s) image URLs (fetched by the caller); data: URLs only
                                otherwise */
} AppOpenAILimits;

typedef struct {
  char *model;
  GPtrArray *messages;       /* AppOpenAIMessage*, system messages included */
  gboolean stream;
  gboolean include_usage;    /* stream_options.include_usage */
  double temperature;        /* NAN: not given */
  double top_p;              /* NAN: not given */
  int top_k;                 /* -1: not given (extension) */
  double repetition_penalty; /* NAN: not given (extension) */
  int max_tokens;            /* max_completion_tokens or max_tokens; 0: not given */
  GStrv stop;                /* NULL or up to 4 strings */
  gboolean has_seed;
  guint64 seed;
  GArray *logit_bias;        /* AppOpenAILogitBias */
  gboolean skip_special_tokens;   /* extension (vLLM's); default FALSE here: grounding tags stay */
  gboolean continue_final_message; /* extension (vLLM's): go on from a final assistant message */
} AppOpenAIRequest;

typedef struct {
  gint32 id;
  float bias;                /* -100..100; -100 bans the token */
} AppOpenAILogitBias;

/* Parses a request body. Checks types, ranges and the limits; decodes data: URLs (base64 or
 * percent-encoded); refuses n != 1, unknown roles and content part types, and tools. The
 * model name is not checked here. */
AppOpenAIRequest *app_openai_request_parse     (const char      *body,
                                                gsize            length,
                                                const AppOpenAILimits *limits,
                                                GError         **error);
void             app_openai_request_free       (AppOpenAIRequest *request);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (AppOpenAIRequest, app_openai_request_free)

/* Decodes a `data:[<mediatype>][;base64],<data>` URL. NULL (and APP_OPENAI_ERROR_INVALID_IMAGE)
 * for anything else. */
GBytes          *app_openai_decode_data_url    (const char      *url,
                                                GError         **error);

/* ---------------------------------------------------------------------------------------------
 * Responses (server side)
 */

typedef struct {
  int prompt_tokens;
  int completion_tokens;
  int cached_tokens;         /* prompt tokens taken from the KV cache of an earlier request */
} AppOpenAIUsage;

/* `[{"label": "cat", "boxes": [[x1, y1, x2, y2], ...]}, ...]`: the labelled boxes of a
 * grounded answer, on the model's 0..999 grid (app-grounding.h), or NULL when the text has
 * none. The response carries them as `grounding` beside `content`. */
JsonNode        *app_openai_grounding_json     (const char      *text);

/* A `chat.completion` object. */
char            *app_openai_completion_json    (const char      *id,
                                                gint64           created,
                                                const char      *model,
                                                const char      *content,
                                                const char      *finish_reason,
                                                const AppOpenAIUsage *usage);

/* A `chat.completion.chunk` object: `role` (may be NULL) and `content` (may be NULL) in the
 * delta, `finish_reason` (may be NULL), `grounding` (may be NULL: app_openai_grounding_json()
 * of the whole answer, sent with the finish reason) in the delta; with `usage` (may be NULL)
 * and no choices, the usage chunk. */
char            *app_openai_chunk_json         (const char      *id,
                                                gint64           created,
                                                const char      *model,
                                                const char      *role,
                                                const char      *content,
                                                const char      *finish_reason,
                                                JsonNode        *grounding,
                                                const AppOpenAIUsage *usage);

/* ---------------------------------------------------------------------------------------------
 * The client side: reading Server-Sent Events
 */

typedef struct _AppOpenAISse AppOpenAISse;

/* Called once per event with the event's data (its `data:` lines joined by "\n"). */
typedef void (*AppOpenAISseFunc) (const char *data,
                                  gpointer    user_data);

AppOpenAISse    *app_openai_sse_new            (AppOpenAISseFunc func,
                                                gpointer         user_data);
void             app_openai_sse_free           (AppOpenAISse    *sse);
/* Feeds bytes as they arrive (any split; "\r\n", "\n" or "\r" line ends). FALSE when the
 * stream exceeds `max_line` bytes in one line (a broken or hostile server). */
gboolean         app_openai_sse_feed           (AppOpenAISse    *sse,
                                                const char      *data,
                                                gsize            length,
                                                gsize            max_line);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (AppOpenAISse, app_openai_sse_free)

/* What one chunk (or a whole completion) says. */
typedef struct {
  char *content;             /* the content delta (or message content); NULL for none */
  char *finish_reason;       /* NULL until the last chunk */
  gboolean has_usage;
  AppOpenAIUsage usage;
} AppOpenAIDelta;

void             app_openai_delta_clear        (AppOpenAIDelta  *delta);

/* Parses a `chat.completion.chunk` (or a `chat.completion`) into *delta. An `{"error": ...}`
 * object, as servers send when a stream fails, becomes an error with its message. */
gboolean         app_openai_parse_chunk        (const char      *json,
                                                AppOpenAIDelta  *delta,
                                                GError         **error);

/* The message of an `{"error": {"message": ...}}` body (or the body itself, shortened, when it
 * is not one), for showing an HTTP error from a server. */
char            *app_openai_error_message      (const char      *body,
                                                gsize            length);

/* The model ids of a `GET /v1/models` response. */
GStrv            app_openai_parse_models       (const char      *json,
                                                gsize            length,
                                                GError         **error);

G_END_DECLS
