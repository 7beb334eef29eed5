/* app-engine.c - the engine adapter: one worker thread owns the model and the session.
 *
 * Requests (load, generate) are queued to the worker from the main thread; each carries a GTask
 * whose callback runs back in the caller's main context. Everything the UI sees - state,
 * progress, the growing answer - is changed on the main thread only: the worker hands updates
 * over as idle sources on that context. Streamed text goes through a small mailbox: the worker
 * appends to a string under a mutex and schedules one flush if none is pending; the flush takes
 * everything that arrived. A slow main loop therefore gets fewer, larger batches instead of a
 * backlog, and the worker never waits for the UI.
 *
 * The session lives as long as the model, so a follow-up question reuses the KV cache of the
 * conversation so far (the engine matches the shared prefix, images included).
 *
 * The model's files may change on disk while it is loaded (a `git lfs pull`, a new download or a
 * copy into the folder). The engine never crashes on that; it ends the answer being written
 * with VL2_ERR_MODEL_CHANGED (the text so far is kept, the reply FAILED with the reason), and
 * before every answer the worker asks it whether the files changed since they were loaded. If
 * they did, the worker loads the folder again before answering, and the reply's note says so;
 * when the new files cannot be loaded, the reply fails with the reason and the engine goes to
 * FAILED with it, as after any failed load.
 *
 * An image file of the chat that is gone (deleted by hand, a folder restored without it) does
 * not end the conversation: the prompt is built without it, as if it had never been attached,
 * and the answer's note says so. Any other unreadable image is an error, as it would silently
 * change what the model is asked about.
 */
#define G_LOG_DOMAIN "sightline-engine"

#include "app-engine.h"
#include "app-remote.h"

#include <float.h>
#include <glib/gi18n.h>
#include <string.h>

#include "app-config.h"
#include "app-enums.h"
#include "image-file.h"
#include "vl2.h"

/* Room kept free for the answer when deciding whether early turns must be left out. */
#define MIN_ANSWER_ROOM 256
/* Decoded images kept by the worker, so each turn does not decode the chat's images again. A
 * prompt being built holds every image of its conversation, however many: the cache shrinks
 * back after. */
#define IMAGE_CACHE_SIZE 8

G_DEFINE_QUARK (app-engine-error-quark, app_engine_error)

struct _AppEngine
{
  GObject parent_instance;

  /* main thread */
  AppEngineState state;
  double load_progress;
  char *model_dir;
  char *model_name;
  char *error;
  char *error_advice;
  gboolean busy;
  gboolean resident;             /* for the next load */
  gint fast_arithmetic;          /* atomic: bf16 compute for the next prefills */
  int last_tiles_read, last_tokens_reused; /* of the last answer */
  gint urgent_jobs;              /* atomic: jobs queued that reading ahead gives way to */
  gint prepare_serial;           /* atomic: the latest app_engine_prepare() */
  gboolean remote;               /* connected to a server, not a folder */

  /* the worker */
  GThread *thread;
  GAsyncQueue *jobs;

  /* worker thread only */
  vl2_model *model;
  vl2_session *session;
  char *loaded_dir;              /* what the model was loaded from, to load it again */
  int loaded_threads;
  gboolean loaded_resident;
  GQueue image_cache;            /* CachedImage*, most recent first */
  gboolean hold_images;          /* a prompt is reading the cached pixels: none may go */
  GHashTable *image_sizes;       /* path -> width << 32 | height, for counting */
  AppRemoteServer server;        /* base_url set: answers come from this server */
};

G_DEFINE_FINAL_TYPE (AppEngine, app_engine, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_STATE,
  PROP_LOAD_PROGRESS,
  PROP_MODEL_DIR,
  PROP_MODEL_NAME,
  PROP_ERROR,
  PROP_ERROR_ADVICE,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

/* The engine keeps its defaults in floats: 0.4f is 0.4000000059604645 as a double, which a
 * spin button showing two digits would round and store as a change. Going through the
 * float's shortest decimal form gives back the 0.4 the default was written as. */
static double
float_to_double (float value)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];

  g_ascii_formatd (buf, sizeof buf, "%." G_STRINGIFY (FLT_DIG) "g", value);
  return g_ascii_strtod (buf, NULL);
}

void
app_generate_params_init (AppGenerateParams *params)
{
  vl2_generate_params defaults = vl2_generate_default_params ();

  memset (params, 0, sizeof *params);
  params->temperature = float_to_double (defaults.temperature);
  params->top_p = float_to_double (defaults.top_p);
  params->top_k = defaults.top_k;
  params->repetition_penalty = float_to_double (defaults.repetition_penalty);
  params->max_new_tokens = defaults.max_new_tokens;
  params->seed = defaults.seed == VL2_SEED_RANDOM ? G_MAXUINT64 : defaults.seed;
}

void
app_generate_params_clear (AppGenerateParams *params)
{
  g_clear_pointer (&params->system_prompt, g_free);
}

/* ------------------------------------------------------------------------------------------
 * Jobs
 */

typedef enum { JOB_LOAD, JOB_CONNECT, JOB_GENERATE, JOB_COUNT, JOB_PREPARE, JOB_QUIT } JobKind;

typedef struct
{
  char *text;
  char **image_paths;            /* absolute, NULL-terminated */
  gboolean assistant;
} TurnSnapshot;

typedef struct
{
  gatomicrefcount ref;
  JobKind kind;
  AppEngine *engine;             /* borrowed: the task holds a reference */
  GTask *task;
  GMainContext *context;
  GCancellable *cancellable;

  /* load; connect */
  char *model_dir;
  AppRemoteServer server;
  int n_threads;
  gboolean resident;

  /* generate: a snapshot of the chat taken on the main thread */
  GArray *turns;                 /* TurnSnapshot */
  AppGenerateParams params;
  AppMessage *reply;             /* main thread only */

  /* the mailbox for streamed text, and what the worker reports at the end */
  GMutex lock;
  GString *pending;
  gboolean flush_scheduled;
  gboolean started;              /* first text seen: the reply is streaming */
  int dropped_messages;
  GHashTable *missing_images;    /* paths of the images left out: their files are gone */
  guint n_tokens;
  double first_token_seconds;
  double tokens_per_second;
  gboolean stopped;
  AppFinishReason finish;        /* why the model ended, when it did */
  guint n_tokens_before;         /* a continued answer's tokens so far */
  float progress;
  vl2_prefill_progress prefill;  /* what `progress` stands for while generating */
  gboolean progress_changed;

  /* count; and the images a generation left out to fit */
  AppTokenCount count;
  GError *count_error;
  int images_left_out;

  int serial;                    /* prepare: app_engine_prepare()'s count when queued */

  /* generate: what reading the prompt took (vl2_timings) */
  int tiles_read, tokens_reused;
} Job;

static void
turn_clear (gpointer p)
{
  TurnSnapshot *t = p;

  g_free (t->text);
  g_strfreev (t->image_paths);
}

static Job *
job_new (AppEngine    *self,
         JobKind       kind,
         GCancellable *cancellable,
         GAsyncReadyCallback callback,
         gpointer      user_data)
{
  Job *job = g_new0 (Job, 1);

  g_atomic_ref_count_init (&job->ref);
  job->kind = kind;
  job->engine = self;
  if (kind != JOB_QUIT)
    {
      job->task = g_task_new (self, cancellable, callback, user_data);
      /* a stopped answer is an outcome, not an error: the reply's state tells */
      g_task_set_check_cancellable (job->task, FALSE);
      job->context = g_main_context_ref_thread_default ();
    }
  job->cancellable = cancellable ? g_object_ref (cancellable) : NULL;
  g_mutex_init (&job->lock);
  job->pending = g_string_new (NULL);
  return job;
}

static Job *
job_ref (Job *job)
{
  g_atomic_ref_count_inc (&job->ref);
  return job;
}

/* Everything but counting and reading ahead: a question sent, a model to load, the end. */
static gboolean
is_urgent (const Job *job)
{
  return job->kind != JOB_COUNT && job->kind != JOB_PREPARE;
}

static void
push_job (AppEngine *self,
          Job       *job)
{
  if (is_urgent (job))
    g_atomic_int_inc (&self->urgent_jobs);
  g_async_queue_push (self->jobs, job);
}

static void
job_unref (gpointer p)
{
  Job *job = p;

  if (!g_atomic_ref_count_dec (&job->ref))
    return;
  g_clear_object (&job->task);
  g_clear_pointer (&job->context, g_main_context_unref);
  g_clear_object (&job->cancellable);
  g_free (job->model_dir);
  app_remote_server_clear (&job->server);
  g_clear_pointer (&job->turns, g_array_unref);
  g_clear_pointer (&job->missing_images, g_hash_table_unref);
  app_generate_params_clear (&job->params);
  g_clear_object (&job->reply);
  g_clear_error (&job->count_error);
  g_mutex_clear (&job->lock);
  g_string_free (job->pending, TRUE);
  g_free (job);
}

/* Runs `func` later on `context`. Never g_main_context_invoke() from the worker: when the
 * main context happens to be free it would run `func` right here, on the worker thread. */
static void
run_on (GMainContext   *context,
        GSourceFunc     func,
        gpointer        data,
        GDestroyNotify  destroy)
{
  GSource *source = g_idle_source_new ();

  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_set_callback (source, func, data, destroy);
  g_source_set_static_name (source, "[sightline] engine update");
  g_source_attach (source, context);
  g_source_unref (source);
}

/* Runs `func` on the job's main context, holding the job until it has run. */
static void
job_invoke (Job         *job,
            GSourceFunc  func)
{
  run_on (job->context, func, job_ref (job), job_unref);
}

/* ------------------------------------------------------------------------------------------
 * Main-thread state
 */

static void
set_state (AppEngine      *self,
           AppEngineState  state)
{
  if (self->state == state)
    return;
  self->state = state;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_STATE]);
}

static void
set_string (AppEngine   *self,
            char       **field,
            const char  *value,
            int          prop)
{
  if (g_strcmp0 (*field, value) == 0)
    return;
  g_free (*field);
  *field = g_strdup (value);
  g_object_notify_by_pspec (G_OBJECT (self), properties[prop]);
}

static GError *
error_from_status (vl2_status  status,
                   const char *message)
{
  AppEngineError code = APP_ENGINE_ERROR_FAILED;

  switch (status)
    {
    case VL2_ERR_IO:
    case VL2_ERR_FORMAT:
    case VL2_ERR_UNSUPPORTED:
      code = APP_ENGINE_ERROR_MODEL;
      break;
    case VL2_ERR_IMAGE:
      code = APP_ENGINE_ERROR_IMAGE;
      break;
    case VL2_ERR_INVALID_ARGUMENT:
    case VL2_ERR_CONTEXT_OVERFLOW:
      code = APP_ENGINE_ERROR_INPUT;
      break;
    case VL2_ERR_CANCELLED:
      return g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED, message);
    case VL2_ERR_MODEL_CHANGED:
      /* the answer so far stays; the next one loads the model again */
      return g_error_new (APP_ENGINE_ERROR, APP_ENGINE_ERROR_MODEL,
                          _("The answer stopped because the model's files changed on disk; it "
                            "will be loaded again for the next question. (%s)"), message);
    default:
      break;
    }
  return g_error_new_literal (APP_ENGINE_ERROR, code, message);
}

/* ------------------------------------------------------------------------------------------
 * Loading (worker, then main thread)
 */

static gboolean
load_progress_main (gpointer data)
{
  Job *job = data;
  AppEngine *self = job->engine;
  double p;

  g_mutex_lock (&job->lock);
  p = job->progress;
  job->flush_scheduled = FALSE;
  g_mutex_unlock (&job->lock);
  if (self->load_progress != p)
    {
      self->load_progress = p;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LOAD_PROGRESS]);
    }
  return G_SOURCE_REMOVE;
}

static bool
load_progress_cb (float  fraction,
                  void  *user_data)
{
  Job *job = user_data;

  g_mutex_lock (&job->lock);
  /* hand over at most every whole percent */
  if (fraction - job->progress >= 0.01f || fraction >= 1.0f)
    {
      job->progress = fraction;
      if (!job->flush_scheduled)
        {
          job->flush_scheduled = TRUE;
          job_invoke (job, load_progress_main);
        }
    }
  g_mutex_unlock (&job->lock);
  return !g_cancellable_is_cancelled (job->cancellable);
}

typedef struct
{
  Job *job;
  char *name;
  GError *error;
  char *advice;
} LoadResult;

static gboolean
load_done_main (gpointer data)
{
  LoadResult *r = data;
  AppEngine *self = r->job->engine;

  self->busy = FALSE;
  if (g_error_matches (r->error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      /* the person stopped it: no model, and nothing went wrong */
      self->remote = FALSE;
      set_string (self, &self->error, NULL, PROP_ERROR);
      set_string (self, &self->error_advice, NULL, PROP_ERROR_ADVICE);
      set_state (self, APP_ENGINE_EMPTY);
      g_task_return_error (r->job->task, g_steal_pointer (&r->error));
    }
  else if (r->error)
    {
      self->remote = FALSE;
      set_string (self, &self->error, r->error->message, PROP_ERROR);
      set_string (self, &self->error_advice, r->advice, PROP_ERROR_ADVICE);
      set_state (self, APP_ENGINE_FAILED);
      g_task_return_error (r->job->task, g_steal_pointer (&r->error));
    }
  else
    {
      self->remote = r->job->kind == JOB_CONNECT;
      set_string (self, &self->model_dir, r->job->model_dir, PROP_MODEL_DIR);
      set_string (self, &self->model_name, r->name, PROP_MODEL_NAME);
      set_string (self, &self->error, NULL, PROP_ERROR);
      set_string (self, &self->error_advice, NULL, PROP_ERROR_ADVICE);
      self->load_progress = 1.0;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LOAD_PROGRESS]);
      set_state (self, APP_ENGINE_READY);
      g_task_return_boolean (r->job->task, TRUE);
    }
  /* The task holds the engine: drop it here, on the main thread. Were the worker to drop the
   * last reference, the engine would be disposed there and join its own thread. */
  g_clear_object (&r->job->task);
  job_unref (r->job);
  g_free (r->name);
  g_free (r->advice);
  g_free (r);
  return G_SOURCE_REMOVE;
}

typedef struct
{
  char *path;
  ImageRgb image;
} CachedImage;

static void
cached_image_free (gpointer p)
{
  CachedImage *c = p;

  image_rgb_clear (&c->image);
  g_free (c->path);
  g_free (c);
}

static void
worker_unload (AppEngine *self)
{
  app_remote_server_clear (&self->server);
  g_clear_pointer (&self->session, vl2_session_free);
  g_clear_pointer (&self->model, vl2_model_free);
  g_clear_pointer (&self->loaded_dir, g_free);
  g_queue_clear_full (&self->image_cache, cached_image_free);
}

static const char *
variant_name (const char *variant)
{
  if (g_strcmp0 (variant, "tiny") == 0)
    return "DeepSeek-VL2 Tiny";
  if (g_strcmp0 (variant, "small") == 0)
    return "DeepSeek-VL2 Small";
  return "DeepSeek-VL2";
}

/* What the person can do about a folder that did not load, in a sentence: the engine's
 * message says what is wrong, with paths; this says what to do about it. Runs on the worker:
 * it looks into the folder. */
static char *
load_advice (const char *dir,
             vl2_status  status,
             const char *message)
{
  g_autofree char *config = g_build_filename (dir, "config.json", NULL);
  g_autofree char *tokenizer = g_build_filename (dir, "tokenizer.json", NULL);
  g_autoptr(GDir) d = NULL;
  g_autoptr(GPtrArray) missing = NULL;
  gboolean has_config, has_tokenizer, has_weights = FALSE;
  const char *name;

  if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
    return g_strdup_printf (_("The folder “%s” is not there any more. Choose the model folder "
                              "again."), dir);
  d = g_dir_open (dir, 0, NULL);
  while (d && (name = g_dir_read_name (d)))
    has_weights = has_weights || g_str_has_suffix (name, ".safetensors") ||
                  g_str_equal (name, "model.safetensors.index.json");
  has_config = g_file_test (config, G_FILE_TEST_IS_REGULAR);
  has_tokenizer = g_file_test (tokenizer, G_FILE_TEST_IS_REGULAR);
  if (!has_config && !has_weights)
    return g_strdup (_("This folder does not hold a model. Choose the folder that holds "
                       "config.json and the .safetensors files of a DeepSeek-VL2 checkpoint."));
  /* The engine names these two in its message (tests/engine/test-weights.c holds it to it). */
  if (strstr (message, "Git LFS pointer"))
    return g_strdup (_("The model’s files were not downloaded: the folder holds Git LFS "
                       "pointers in their place. Run “git lfs pull” in the folder, then try "
                       "again."));
  if (strstr (message, "is incomplete"))
    return g_strdup (_("The download is incomplete: a file of the model is shorter than it "
                       "should be. Download the model again, then try again."));
  if (!has_config || !has_tokenizer || !has_weights)
    {
      g_autofree char *list = NULL;

      missing = g_ptr_array_new ();
      if (!has_config)
        g_ptr_array_add (missing, (char *) "config.json");
      if (!has_tokenizer)
        g_ptr_array_add (missing, (char *) "tokenizer.json");
      if (!has_weights)
        g_ptr_array_add (missing, _("the .safetensors weights"));
      g_ptr_array_add (missing, NULL);
      list = g_strjoinv (", ", (char **) missing->pdata);
      return g_strdup_printf (_("Files of the model are missing: %s. Download the model again, "
                                "or choose the folder that holds all of its files."), list);
    }
  switch (status)
    {
    case VL2_ERR_NO_MEMORY:
      return g_strdup (_("There is not enough memory for this model. Close other programs, or "
                         "choose a smaller or quantized model."));
    case VL2_ERR_UNSUPPORTED:
      return g_strdup (_("Sightline cannot run this checkpoint. Choose a DeepSeek-VL2 Tiny, "
                         "Small or full checkpoint."));
    default:
      return g_strdup (_("Choose a folder with a DeepSeek-VL2 checkpoint: config.json, "
                         "tokenizer.json and the .safetensors weights."));
    }
}

/* The session answers come from: keeps the caches of the chats put aside last, up to
 * SESSION_CACHE_BUDGET, so that coming back to a chat does not read its images again. */
#define SESSION_CACHE_BUDGET ((size_t) 1 << 30)

static gboolean
new_session (AppEngine *self,
             vl2_error *err)
{
  vl2_session_params sp = vl2_session_default_params ();

  sp.cache_budget = SESSION_CACHE_BUDGET;
  return vl2_session_new (self->model, &sp, &self->session, err) == VL2_OK;
}

static void
worker_load (AppEngine *self,
             Job       *job)
{
  LoadResult *r = g_new0 (LoadResult, 1);
  vl2_model_params mp = vl2_model_default_params ();
  vl2_error err;

  worker_unload (self);
  mp.n_threads = job->n_threads;
  mp.resident = job->resident;
  mp.progress = load_progress_cb;
  mp.progress_user_data = job;
  if (vl2_model_load (job->model_dir, &mp, &self->model, &err) != VL2_OK ||
      !new_session (self, &err))
    {
      worker_unload (self);
      r->error = error_from_status (err.code, err.message);
      if (err.code != VL2_ERR_CANCELLED)
        r->advice = load_advice (job->model_dir, err.code, err.message);
    }
  else if (g_cancellable_is_cancelled (job->cancellable))
    {
      /* cancelled after the engine's last word: the person asked for no model */
      worker_unload (self);
      r->error = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                      _("Loading was cancelled."));
    }
  else
    {
      vl2_model_info info;

      vl2_model_get_info (self->model, &info);
      r->name = g_strdup (variant_name (info.variant));
      self->loaded_dir = g_strdup (job->model_dir);
      self->loaded_threads = job->n_threads;
      self->loaded_resident = job->resident;
    }
  r->job = job_ref (job);
  run_on (job->context, load_done_main, r, NULL);
}

/* What to do about a server that did not answer as it should, in a sentence. */
static char *
connect_advice (const GError *error,
                GStrv         models)
{
  if (g_error_matches (error, APP_REMOTE_ERROR, APP_REMOTE_ERROR_AUTH))
    return g_strdup (_("Check the server’s API key."));
  if (g_error_matches (error, APP_REMOTE_ERROR, APP_REMOTE_ERROR_NO_MODEL) && models
      && models[0])
    {
      g_autofree char *list = g_strjoinv (", ", models);

      return g_strdup_printf (_("The server serves: %s. Choose one of these as the model."),
                              list);
    }
  if (g_error_matches (error, APP_REMOTE_ERROR, APP_REMOTE_ERROR_PROTOCOL)
      || g_error_matches (error, APP_REMOTE_ERROR, APP_REMOTE_ERROR_REFUSED))
    return g_strdup (_("Check the address: it is the server’s OpenAI API, which usually ends "
                       "in /v1."));
  return g_strdup (_("Check the address, and that the server is running and reachable from "
                     "this computer."));
}

static void
worker_connect (AppEngine *self,
                Job       *job)
{
  LoadResult *r = g_new0 (LoadResult, 1);
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) models = NULL;
  AppRemoteServer probe = job->server;

  probe.timeout = MIN (job->server.timeout ? job->server.timeout : G_MAXUINT,
                       APP_REMOTE_PROBE_TIMEOUT);
  worker_unload (self);
  models = app_remote_list_models (&probe, job->cancellable, &error);
  if (models && !g_strv_contains ((const char * const *) models, job->server.model))
    error = g_error_new (APP_REMOTE_ERROR, APP_REMOTE_ERROR_NO_MODEL,
                         _("The server at %s does not serve “%s”."), job->server.base_url,
                         job->server.model);
  if (error)
    {
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        r->error = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                        _("Connecting was cancelled."));
      else
        {
          r->error = g_error_new_literal (APP_ENGINE_ERROR, APP_ENGINE_ERROR_MODEL,
                                          error->message);
          r->advice = connect_advice (error, models);
        }
    }
  else
    {
      self->server.base_url = g_strdup (job->server.base_url);
      self->server.model = g_strdup (job->server.model);
      self->server.api_key = g_strdup (job->server.api_key);
      self->server.timeout = job->server.timeout;
      r->name = g_strdup (job->server.model);
    }
  r->job = job_ref (job);
  run_on (job->context, load_done_main, r, NULL);
}

/* ------------------------------------------------------------------------------------------
 * Generating (worker, with text flushed to the main thread)
 */

/* "Reading image 2 of 3, tile 4 of 7": the tile being read, counted from 1. */
static char *
prefill_text (const vl2_prefill_progress *p)
{
  int tile = MIN (p->tiles_done + 1, p->n_tiles);

  if (p->image == 0)
    return g_strdup (_("Reading the conversation"));
  if (p->n_images > 1 && p->n_tiles > 1)
    return g_strdup_printf (_("Reading image %d of %d, tile %d of %d"), p->image, p->n_images,
                            tile, p->n_tiles);
  if (p->n_images > 1)
    return g_strdup_printf (_("Reading image %d of %d"), p->image, p->n_images);
  if (p->n_tiles > 1)
    return g_strdup_printf (_("Reading the image, tile %d of %d"), tile, p->n_tiles);
  return g_strdup (_("Reading the image"));
}

static gboolean
flush_main (gpointer data)
{
  Job *job = data;
  g_autofree char *text = NULL;
  g_autofree char *progress_text = NULL;
  gboolean started;
  double progress = 0;

  g_mutex_lock (&job->lock);
  job->flush_scheduled = FALSE;
  started = job->started;
  if (job->pending->len)
    text = g_string_free (g_steal_pointer (&job->pending), FALSE);
  if (!job->pending)
    job->pending = g_string_new (NULL);
  if (job->progress_changed)
    {
      progress = job->progress;
      progress_text = prefill_text (&job->prefill);
      job->progress_changed = FALSE;
    }
  g_mutex_unlock (&job->lock);

  if (progress_text && app_message_get_state (job->reply) == APP_MESSAGE_PENDING)
    app_message_set_progress (job->reply, progress, progress_text);
  if (started && app_message_get_state (job->reply) == APP_MESSAGE_PENDING)
    app_message_set_state (job->reply, APP_MESSAGE_STREAMING);
  if (text)
    app_message_append_text (job->reply, text);
  return G_SOURCE_REMOVE;
}

/* Worker side of the mailbox: `text` (may be "") marks the answer as started. */
static void
post_text (Job        *job,
           const char *text)
{
  g_mutex_lock (&job->lock);
  g_string_append (job->pending, text);
  job->started = TRUE;
  if (!job->flush_scheduled)
    {
      job->flush_scheduled = TRUE;
      job_invoke (job, flush_main);
    }
  g_mutex_unlock (&job->lock);
}

typedef struct
{
  Job *job;
  GError *error;
  gboolean reloaded;             /* the model's files had changed: it was loaded again */
  char *reload_error;            /* ... and could not be: the engine has no model now */
  char *reload_advice;           /* what to do about it */
  char *name;                    /* the model's name after loading it again */
} GenerateResult;

static gboolean
generate_done_main (gpointer data)
{
  GenerateResult *r = data;
  Job *job = r->job;
  AppEngine *self = job->engine;
  guint n_missing;

  /* whatever text is still in the mailbox belongs before the end */
  flush_main (job);
  self->last_tiles_read = job->tiles_read;
  self->last_tokens_reused = job->tokens_reused;
  n_missing = job->missing_images ? g_hash_table_size (job->missing_images) : 0;
  if (job->dropped_messages > 0 || n_missing > 0)
    {
      g_autoptr(GString) note = g_string_new (NULL);

      if (job->dropped_messages > 0)
        g_string_append_printf (note,
                                g_dngettext (GETTEXT_PACKAGE,
                                             "The earliest message was left out to fit the "
                                             "model's context.",
                                             "The %d earliest messages were left out to fit the "
                                             "model's context.",
                                             job->dropped_messages),
                                job->dropped_messages);
      if (n_missing > 0)
        {
          if (note->len)
            g_string_append_c (note, ' ');
          g_string_append_printf (note,
                                  g_dngettext (GETTEXT_PACKAGE,
                                               "An image of this chat is missing: the answer "
                                               "was written without it.",
                                               "%u images of this chat are missing: the answer "
                                               "was written without them.",
                                               n_missing),
                                  n_missing);
        }
      app_message_set_note (job->reply, note->str);
    }
  if (r->reloaded)
    {
      const char *dropped = job->dropped_messages > 0 || n_missing > 0
                              ? app_message_get_note (job->reply) : NULL;
      g_autofree char *note =
        g_strjoin (dropped ? " " : "", _("The model's files had changed on disk, so it was "
                                         "loaded again for this answer."), dropped, NULL);

      set_string (self, &self->model_name, r->name, PROP_MODEL_NAME);
      app_message_set_note (job->reply, note);
    }
  else if (r->reload_error)
    {
      app_message_set_note (job->reply, NULL); /* no longer "loading it again" */
    }
  if (job->images_left_out > 0)
    {
      g_autofree char *images =
        g_strdup_printf (g_dngettext (GETTEXT_PACKAGE,
                                      "The oldest image was left out to fit the model's context.",
                                      "The %d oldest images were left out to fit the model's "
                                      "context.",
                                      job->images_left_out),
                         job->images_left_out);
      g_autofree char *note = app_message_get_note (job->reply)
                                ? g_strconcat (app_message_get_note (job->reply), " ", images,
                                               NULL)
                                : g_strdup (images);

      app_message_set_note (job->reply, note);
    }
  app_message_set_stats (job->reply, job->n_tokens_before + job->n_tokens,
                         job->first_token_seconds, job->tokens_per_second);
  app_message_set_finish_reason (job->reply, job->finish);
  if (app_message_get_state (job->reply) == APP_MESSAGE_INTERRUPTED)
    {
      /* the app closed meanwhile and said so: the answer stays interrupted, with the text
       * that came in after */
    }
  else if (r->error)
    {
      app_message_set_error (job->reply, r->error->message);
      app_message_set_state (job->reply, APP_MESSAGE_FAILED);
    }
  else
    {
      app_message_set_state (job->reply,
                             job->stopped ? APP_MESSAGE_STOPPED : APP_MESSAGE_COMPLETE);
    }
  self->busy = FALSE;
  if (r->reload_error)
    {
      /* no model any more: as after a failed load, the window says why */
      set_string (self, &self->error, r->reload_error, PROP_ERROR);
      set_string (self, &self->error_advice, r->reload_advice, PROP_ERROR_ADVICE);
      set_state (self, APP_ENGINE_FAILED);
    }
  else
    {
      set_state (self, APP_ENGINE_READY);
    }
  if (r->error)
    g_task_return_error (job->task, g_steal_pointer (&r->error));
  else
    g_task_return_boolean (job->task, TRUE);
  g_clear_object (&job->task); /* on the main thread: see load_done_main() */
  job_unref (job);
  g_free (r->reload_error);
  g_free (r->reload_advice);
  g_free (r->name);
  g_free (r);
  return G_SOURCE_REMOVE;
}

/* The decoded pixels of an image file, from the worker's small cache. */
static const ImageRgb *
worker_image (AppEngine   *self,
              const char  *path,
              GError     **error)
{
  CachedImage *c;
  g_autoptr(GError) local_error = NULL;

  for (GList *l = self->image_cache.head; l; l = l->next)
    {
      c = l->data;
      if (g_strcmp0 (c->path, path) == 0)
        {
          g_queue_unlink (&self->image_cache, l);
          g_queue_push_head_link (&self->image_cache, l);
          return &c->image;
        }
    }
  c = g_new0 (CachedImage, 1);
  if (!image_file_load (path, &c->image, &local_error))
    {
      /* a missing file keeps its IMAGE_FILE_ERROR: the caller leaves it out */
      if (g_error_matches (local_error, IMAGE_FILE_ERROR, IMAGE_FILE_ERROR_NOT_FOUND))
        g_propagate_error (error, g_steal_pointer (&local_error));
      else
        g_set_error_literal (error, APP_ENGINE_ERROR, APP_ENGINE_ERROR_IMAGE,
                             local_error->message);
      g_free (c);
      return NULL;
    }
  c->path = g_strdup (path);
  g_queue_push_head (&self->image_cache, c);
  while (!self->hold_images && g_queue_get_length (&self->image_cache) > IMAGE_CACHE_SIZE)
    cached_image_free (g_queue_pop_tail (&self->image_cache));
  return &c->image;
}

static gboolean
reloading_main (gpointer data)
{
  Job *job = data;

  app_message_set_note (job->reply, _("The model's files changed on disk; loading it again…"));
  return G_SOURCE_REMOVE;
}

/* Before an answer: when the model's files changed on disk since they were loaded, loads the
 * folder again. FALSE (and r's errors set) when that fails: the engine has no model then. */
static gboolean
worker_reload_if_changed (AppEngine      *self,
                          Job            *job,
                          GenerateResult *r)
{
  vl2_model_params mp = vl2_model_default_params ();
  g_autofree char *dir = NULL;
  vl2_model_info info;
  vl2_error err;

  if (vl2_model_check_files (self->model, &err) == VL2_OK)
    return TRUE;
  g_debug ("loading the model again: %s", err.message);
  job_invoke (job, reloading_main);
  dir = g_strdup (self->loaded_dir);
  mp.n_threads = self->loaded_threads;
  mp.resident = self->loaded_resident;
  worker_unload (self);
  if (vl2_model_load (dir, &mp, &self->model, &err) != VL2_OK ||
      !new_session (self, &err))
    {
      worker_unload (self);
      r->reload_error = g_strdup (err.message);
      r->reload_advice = load_advice (dir, err.code, err.message);
      r->error = g_error_new (APP_ENGINE_ERROR, APP_ENGINE_ERROR_MODEL,
                              _("The model's files changed on disk and it could not be loaded "
                                "again: %s"), err.message);
      return FALSE;
    }
  self->loaded_dir = g_steal_pointer (&dir);
  self->loaded_threads = mp.n_threads;
  self->loaded_resident = mp.resident;
  vl2_model_get_info (self->model, &info);
  r->name = g_strdup (variant_name (info.variant));
  r->reloaded = TRUE;
  return TRUE;
}

/* Worker side: the latest progress waits in the mailbox with the text; a slow main loop sees
 * only the newest. */
static bool
prefill_progress_cb (float  fraction,
                     void  *user_data)
{
  Job *job = user_data;

  g_mutex_lock (&job->lock);
  job->progress = fraction;
  vl2_session_get_prefill_progress (job->engine->session, &job->prefill);
  job->progress_changed = TRUE;
  if (!job->flush_scheduled)
    {
      job->flush_scheduled = TRUE;
      job_invoke (job, flush_main);
    }
  g_mutex_unlock (&job->lock);
  return !g_cancellable_is_cancelled (job->cancellable);
}

/* `text` without the `<image>` placeholders of the images left out (missing[k] set: their files
 * are gone, or they are left out to fit), when it places each image with one; a text without
 * placeholders needs no change. */
static char *
drop_placeholders (const char     *text,
                   const gboolean *missing,
                   guint           n)
{
  static const char tag[] = "<image>";
  g_autoptr(GString) out = NULL;
  const char *p = text;
  guint k = 0;

  for (const char *q = text; (q = strstr (q, tag)); q += strlen (tag))
    k++;
  if (k != n)
    return g_strdup (text);

  out = g_string_new (NULL);
  for (k = 0; k < n; k++)
    {
      const char *q = strstr (p, tag);

      g_string_append_len (out, p, q - p);
      if (!missing[k])
        g_string_append (out, tag);
      p = q + strlen (tag);
      /* the placeholder's own line goes with it */
      if (missing[k] && *p == '\n')
        p++;
    }
  g_string_append (out, p);
  return g_string_free (g_steal_pointer (&out), FALSE);
}

/* Appends turn `t` to msgs with the n_kept images of imgs (of its n; NULL when none is
 * kept): its text loses the placeholders of the images left out (dropped[k]), and the text
 * made for that is added to `texts`, which must outlive msgs. */
static void
append_message (GArray             *msgs,
                GPtrArray          *texts,
                const TurnSnapshot *t,
                vl2_image          *imgs,
                guint               n_kept,
                const gboolean     *dropped,
                guint               n)
{
  vl2_message m = { t->assistant ? VL2_ROLE_ASSISTANT : VL2_ROLE_USER, t->text, NULL, 0 };

  if (n_kept < n)
    {
      char *text = drop_placeholders (t->text, dropped, n);

      g_ptr_array_add (texts, text);
      m.content = text;
    }
  m.images = n_kept ? imgs : NULL;
  m.n_images = (int) n_kept;
  g_array_append_val (msgs, m);
}

/* Builds the prompt from turns [first, n); returns NULL and sets error when it fails. Images
 * whose files are gone are left out and listed in job->missing_images. */
static vl2_prompt *
build_prompt (AppEngine  *self,
              Job        *job,
              guint       first,
              GError    **error)
{
  g_autoptr(GArray) msgs = g_array_new (FALSE, TRUE, sizeof (vl2_message));
  g_autoptr(GPtrArray) image_arrays = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GPtrArray) texts = g_ptr_array_new_with_free_func (g_free);
  vl2_conversation conv = { 0 };
  vl2_prompt *prompt = NULL;
  vl2_error err;
  guint last_user = 0;

  for (guint i = 0; i < job->turns->len; i++)
    if (!g_array_index (job->turns, TurnSnapshot, i).assistant)
      last_user = i;
  g_clear_pointer (&job->missing_images, g_hash_table_unref);
  job->missing_images = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  for (guint i = first; i < job->turns->len; i++)
    {
      TurnSnapshot *t = &g_array_index (job->turns, TurnSnapshot, i);
      guint n = t->image_paths ? g_strv_length (t->image_paths) : 0;

      if (n > 0)
        {
          vl2_image *imgs = g_new0 (vl2_image, n);
          g_autofree gboolean *missing = g_new0 (gboolean, n);
          guint n_found = 0;

          g_ptr_array_add (image_arrays, imgs);
          for (guint k = 0; k < n; k++)
            {
              g_autoptr(GError) local_error = NULL;
              const ImageRgb *im = worker_image (self, t->image_paths[k], &local_error);

              if (!im && g_error_matches (local_error, IMAGE_FILE_ERROR,
                                          IMAGE_FILE_ERROR_NOT_FOUND))
                {
                  missing[k] = TRUE;
                  g_hash_table_add (job->missing_images, g_strdup (t->image_paths[k]));
                  continue;
                }
              if (!im)
                {
                  g_propagate_error (error, g_steal_pointer (&local_error));
                  return NULL;
                }
              imgs[n_found++] = (vl2_image) { im->width, im->height, im->stride, im->rgb };
            }
          if (n_found < n)
            {
              g_autofree char *stripped = g_strstrip (g_strdup (t->text));

              /* images alone were the question, and they are gone */
              if (n_found == 0 && !stripped[0] && i == last_user)
                {
                  g_set_error_literal (error, APP_ENGINE_ERROR, APP_ENGINE_ERROR_INPUT,
                                       g_dngettext (GETTEXT_PACKAGE,
                                                    "The image of this question is missing: "
                                                    "there is nothing left to ask about.",
                                                    "The images of this question are missing: "
                                                    "there is nothing left to ask about.",
                                                    n));
                  return NULL;
                }
            }
          append_message (msgs, texts, t, imgs, n_found, missing, n);
        }
      else
        append_message (msgs, texts, t, NULL, 0, NULL, 0);
    }
  conv.messages = (const vl2_message *) msgs->data;
  conv.n_messages = (int) msgs->len;
  conv.system_prompt = job->params.system_prompt;
  if (vl2_prompt_new (self->model, &conv, &prompt, &err) != VL2_OK)
    {
      g_propagate_error (error, error_from_status (err.code, err.message));
      return NULL;
    }
  return prompt;
}

/* The first turn index of a conversation that fits the context with room for an answer:
 * whole exchanges are left out from the start, never the last question. */
static vl2_prompt *
fit_prompt (AppEngine  *self,
            Job        *job,
            GError    **error)
{
  vl2_model_info info;
  guint first = 0, last_user = 0;
  int room;

  vl2_model_get_info (self->model, &info);
  room = CLAMP (job->params.max_new_tokens, MIN_ANSWER_ROOM, info.n_ctx_max / 4);
  for (guint i = 0; i < job->turns->len; i++)
    if (!g_array_index (job->turns, TurnSnapshot, i).assistant)
      last_user = i;

  for (;;)
    {
      vl2_prompt *prompt;
      guint next;

      /* the images stay decoded until the prompt has its tiles, then the cache shrinks */
      self->hold_images = TRUE;
      prompt = build_prompt (self, job, first, error);
      self->hold_images = FALSE;
      while (g_queue_get_length (&self->image_cache) > IMAGE_CACHE_SIZE)
        cached_image_free (g_queue_pop_tail (&self->image_cache));

      if (!prompt)
        return NULL;
      if ((int) vl2_prompt_n_tokens (prompt) + room <= info.n_ctx_max)
        {
          job->dropped_messages = (int) first;
          return prompt;
        }
      vl2_prompt_free (prompt);
      /* drop up to the next user turn */
      next = first + 1;
      while (next < last_user && g_array_index (job->turns, TurnSnapshot, next).assistant)
        next++;
      if (first >= last_user || next > last_user)
        {
          g_set_error (error, APP_ENGINE_ERROR, APP_ENGINE_ERROR_INPUT,
                       _("This message is too long for the model: it needs more than its "
                         "context of %d tokens."), info.n_ctx_max);
          return NULL;
        }
      first = next;
    }
}

static AppFinishReason
finish_reason (vl2_stop_reason stop)
{
  switch (stop)
    {
    case VL2_STOP_LENGTH:
      return APP_FINISH_LENGTH;
    case VL2_STOP_CONTEXT:
      return APP_FINISH_CONTEXT;
    case VL2_STOP_EOS:
    case VL2_STOP_STRING:
      return APP_FINISH_END;
    case VL2_STOP_NONE:
    default:
      return APP_FINISH_NONE;
    }
}

/* The answer from a server: the same snapshot, mailbox and end as the local engine's. */
static void
remote_text_cb (const char *text,
                gpointer    user_data)
{
  Job *job = user_data;

  if (job->n_tokens++ == 0)
    job->first_token_seconds = (double) g_get_monotonic_time ();
  post_text (job, text);
}

/* The arithmetic of the next read: bf16 where the person allows it and the CPU does it natively. */
static void
apply_compute (AppEngine *self)
{
  vl2_session_set_compute (self->session,
                           g_atomic_int_get (&self->fast_arithmetic) && vl2_compute_bf16_native ()
                             ? VL2_COMPUTE_BF16 : VL2_COMPUTE_F32, NULL);
}

static void
worker_generate_remote (AppEngine      *self,
                        Job            *job,
                        GenerateResult *r)
{
  g_autoptr(GArray) turns = g_array_new (FALSE, TRUE, sizeof (AppRemoteTurn));
  g_autoptr(GPtrArray) kept = g_ptr_array_new_with_free_func (g_free);
  AppRemoteParams rp = { 0 };
  AppOpenAIDelta result = { 0 };
  g_autoptr(GError) error = NULL;
  g_autofree char *body = NULL;
  gint64 t0 = g_get_monotonic_time ();

  job->missing_images = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  for (guint i = 0; i < job->turns->len; i++)
    {
      TurnSnapshot *t = &g_array_index (job->turns, TurnSnapshot, i);
      AppRemoteTurn rt = { t->assistant, t->text, NULL };
      GPtrArray *paths = g_ptr_array_new ();

      /* images whose files are gone are left out, as the local engine leaves them out */
      for (guint k = 0; t->image_paths && t->image_paths[k]; k++)
        if (g_file_test (t->image_paths[k], G_FILE_TEST_EXISTS))
          g_ptr_array_add (paths, t->image_paths[k]);
        else
          g_hash_table_add (job->missing_images, g_strdup (t->image_paths[k]));
      g_ptr_array_add (paths, NULL);
      rt.image_paths = (const char * const *) paths->pdata;
      g_ptr_array_add (kept, g_ptr_array_free (paths, FALSE));
      g_array_append_val (turns, rt);
    }
  rp.temperature = job->params.temperature;
  rp.top_p = job->params.top_p;
  rp.top_k = job->params.top_k;
  rp.repetition_penalty = job->params.repetition_penalty;
  rp.max_tokens = job->params.max_new_tokens;
  rp.has_seed = job->params.seed != G_MAXUINT64;
  rp.seed = job->params.seed;
  rp.system_prompt = job->params.system_prompt;

  body = app_remote_request_json (&self->server, (const AppRemoteTurn *) turns->data,
                                  turns->len, &rp, &error);
  if (body)
    app_remote_chat (&self->server, body, remote_text_cb, job, &result, job->cancellable,
                     &error);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    job->stopped = TRUE;
  else if (error)
    r->error = g_error_new_literal (APP_ENGINE_ERROR,
                                    g_error_matches (error, APP_REMOTE_ERROR,
                                                     APP_REMOTE_ERROR_IMAGE)
                                      ? APP_ENGINE_ERROR_IMAGE : APP_ENGINE_ERROR_FAILED,
                                    error->message);
  else if (g_strcmp0 (result.finish_reason, "length") == 0)
    job->finish = APP_FINISH_LENGTH;
  else if (result.finish_reason)
    job->finish = APP_FINISH_END;
  if (job->n_tokens > 0)
    {
      gint64 t_first = (gint64) job->first_token_seconds, t_end = g_get_monotonic_time ();
      guint n = result.has_usage && result.usage.completion_tokens > 0
                  ? (guint) result.usage.completion_tokens : job->n_tokens;

      job->n_tokens = n;
      job->first_token_seconds = (double) (t_first - t0) / G_USEC_PER_SEC;
      job->tokens_per_second = n > 1 && t_end > t_first
                                 ? (double) (n - 1) * G_USEC_PER_SEC / (double) (t_end - t_first)
                                 : 0.0;
    }
  app_openai_delta_clear (&result);
}

static void leave_out_images (AppEngine *self,
                              Job       *job);

static void
worker_generate (AppEngine *self,
                 Job       *job)
{
  GenerateResult *r = g_new0 (GenerateResult, 1);
  vl2_generate_params gp = vl2_generate_default_params ();
  vl2_prompt *prompt = NULL;
  vl2_error err;
  gint64 t0 = g_get_monotonic_time (), t_first = 0;
  guint n = 0;
  vl2_status st;

  r->job = job_ref (job);
  if (self->server.base_url)
    {
      worker_generate_remote (self, job, r);
      run_on (job->context, generate_done_main, r, NULL);
      return;
    }
  if (!self->model)
    {
      r->error = g_error_new_literal (APP_ENGINE_ERROR, APP_ENGINE_ERROR_NO_MODEL,
                                      _("No model is loaded."));
      goto done;
    }
  if (!worker_reload_if_changed (self, job, r))
    goto done;
  if (job->params.leave_out_images)
    leave_out_images (self, job);
  prompt = fit_prompt (self, job, &r->error);
  if (!prompt)
    goto done;

  gp.temperature = (float) job->params.temperature;
  gp.top_p = (float) job->params.top_p;
  gp.top_k = job->params.top_k;
  gp.repetition_penalty = (float) job->params.repetition_penalty;
  gp.max_new_tokens = job->params.max_new_tokens;
  gp.seed = job->params.seed == G_MAXUINT64 ? VL2_SEED_RANDOM : job->params.seed;
  gp.progress = prefill_progress_cb;
  gp.progress_user_data = job;
  apply_compute (self);
  st = vl2_session_prefill (self->session, prompt, &gp, &err);
  {
    vl2_timings t;

    vl2_session_get_timings (self->session, &t);
    job->tiles_read = t.n_tiles;
    job->tokens_reused = t.n_reused_tokens;
  }
  if (st != VL2_OK)
    {
      if (err.code == VL2_ERR_CANCELLED)
        job->stopped = TRUE;
      else
        r->error = error_from_status (err.code, err.message);
      goto done;
    }

  for (;;)
    {
      vl2_step step;

      /* a stop takes effect here, within one decode step */
      if (g_cancellable_is_cancelled (job->cancellable))
        {
          job->stopped = TRUE;
          break;
        }
      if (vl2_session_step (self->session, &step, &err) != VL2_OK)
        {
          r->error = error_from_status (err.code, err.message);
          break;
        }
      if (n++ == 0)
        t_first = g_get_monotonic_time ();
      post_text (job, step.text);
      if (step.stop != VL2_STOP_NONE)
        {
          job->finish = finish_reason (step.stop);
          break;
        }
    }

done:
  if (n > 0)
    {
      gint64 t_end = g_get_monotonic_time ();

      job->n_tokens = n;
      job->first_token_seconds = (double) (t_first - t0) / G_USEC_PER_SEC;
      job->tokens_per_second =
        n > 1 && t_end > t_first ? (double) (n - 1) * G_USEC_PER_SEC / (double) (t_end - t_first)
                                 : 0.0;
    }
  vl2_prompt_free (prompt);
  run_on (job->context, generate_done_main, r, NULL);
}

/* ------------------------------------------------------------------------------------------
 * Counting (worker, then main thread)
 *
 * The count uses the engine's prompt builder without pixels (vl2_prompt_count_tokens): an
 * image costs what its width and height make it cost under the tiling rule. Sizes are kept by
 * path, since the store's image files never change (they are named by their content); the
 * first count of an image decodes it into the worker's image cache, where the answer finds it.
 */

static gboolean
worker_image_size (AppEngine  *self,
                   const char *path,
                   int        *width,
                   int        *height)
{
  gpointer size;
  const ImageRgb *im;

  if (!self->image_sizes)
    self->image_sizes = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  if (!g_hash_table_lookup_extended (self->image_sizes, path, NULL, &size))
    {
      g_autoptr(GError) error = NULL;

      im = worker_image (self, path, &error);
      if (!im)
        return FALSE;
      size = GSIZE_TO_POINTER (((gsize) im->width << 32) | (gsize) im->height);
      g_hash_table_insert (self->image_sizes, g_strdup (path), size);
    }
  *width = (int) (GPOINTER_TO_SIZE (size) >> 32);
  *height = (int) (GPOINTER_TO_SIZE (size) & 0xffffffff);
  return TRUE;
}

/* The turns from `first` on with their `skip` oldest images left out, as the engine counts
 * them; -1 when it cannot (an error message in *error). Unreadable images are not counted. */
static int
count_turns (AppEngine  *self,
             GArray     *turns,
             guint       first,
             guint       skip,
             const char *system_prompt,
             GError    **error)
{
  g_autoptr(GArray) msgs = g_array_new (FALSE, TRUE, sizeof (vl2_message));
  g_autoptr(GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
  vl2_conversation conv = { 0 };
  guint seen = 0;
  size_t n = 0;
  vl2_error err;

  for (guint i = first; i < turns->len; i++)
    {
      TurnSnapshot *t = &g_array_index (turns, TurnSnapshot, i);
      guint n_paths = t->image_paths ? g_strv_length (t->image_paths) : 0;

      if (n_paths > 0)
        {
          vl2_image *imgs = g_new0 (vl2_image, n_paths);
          gboolean *drop = g_new0 (gboolean, n_paths);
          guint n_kept = 0;

          g_ptr_array_add (keep, imgs);
          g_ptr_array_add (keep, drop);
          for (guint k = 0; k < n_paths; k++)
            {
              int w, h;

              drop[k] = seen++ < skip ||
                        !worker_image_size (self, t->image_paths[k], &w, &h);
              if (!drop[k])
                imgs[n_kept++] = (vl2_image) { w, h, 0, NULL };
            }
          append_message (msgs, keep, t, imgs, n_kept, drop, n_paths);
        }
      else
        append_message (msgs, keep, t, NULL, 0, NULL, 0);
    }
  conv.messages = (const vl2_message *) msgs->data;
  conv.n_messages = (int) msgs->len;
  conv.system_prompt = system_prompt;
  if (vl2_prompt_count_tokens (self->model, &conv, &n, &err) != VL2_OK)
    {
      g_propagate_error (error, error_from_status (err.code, err.message));
      return -1;
    }
  return (int) MIN (n, (size_t) G_MAXINT);
}

/* Room for the answer; what is left is the prompt's. As fit_prompt() reckons it. */
static int
answer_room (AppEngine  *self,
             Job        *job,
             int        *n_ctx)
{
  vl2_model_info info;

  vl2_model_get_info (self->model, &info);
  *n_ctx = info.n_ctx_max;
  return CLAMP (job->params.max_new_tokens, MIN_ANSWER_ROOM, info.n_ctx_max / 4);
}

/* The fewest oldest images before the question to leave out for the turns to fit (0: they fit
 * as they are, -1: no number does), and the tokens then. Leaving out images is not monotonic:
 * with two images left instead of three, the engine tiles them. */
static int
images_to_fit (AppEngine *self,
               Job       *job,
               int        limit,
               int       *n_tokens)
{
  guint n_before = 0;

  for (guint i = 0; i + 1 < job->turns->len; i++)
    {
      char **paths = g_array_index (job->turns, TurnSnapshot, i).image_paths;

      n_before += paths ? g_strv_length (paths) : 0;
    }
  for (guint k = 0; k <= n_before; k++)
    {
      int n = count_turns (self, job->turns, 0, k, job->params.system_prompt, NULL);

      if (n >= 0 && n <= limit)
        {
          *n_tokens = n;
          return (int) k;
        }
    }
  *n_tokens = -1;
  return -1;
}

/* The fewest earliest messages to leave out, whole exchanges as fit_prompt() leaves them. */
static int
turns_to_fit (AppEngine *self,
              Job       *job,
              int        limit,
              int       *n_tokens)
{
  guint last_user = 0, first = 0;

  for (guint i = 0; i < job->turns->len; i++)
    if (!g_array_index (job->turns, TurnSnapshot, i).assistant)
      last_user = i;
  for (;;)
    {
      int n = count_turns (self, job->turns, first, 0, job->params.system_prompt, NULL);

      if (n >= 0 && n <= limit)
        {
          *n_tokens = n;
          return (int) first;
        }
      if (first >= last_user)
        break;
      first++;
      while (first < last_user && g_array_index (job->turns, TurnSnapshot, first).assistant)
        first++;
    }
  *n_tokens = -1;
  return -1;
}

/* Before a generation asked to leave out images: the oldest ones go from the turns. */
static void
leave_out_images (AppEngine *self,
                  Job       *job)
{
  int n_ctx, room = answer_room (self, job, &n_ctx), n;
  int k = images_to_fit (self, job, n_ctx - room, &n);
  int seen = 0;

  if (k <= 0)
    return;
  for (guint i = 0; i < job->turns->len && seen < k; i++)
    {
      TurnSnapshot *t = &g_array_index (job->turns, TurnSnapshot, i);
      guint n_paths = t->image_paths ? g_strv_length (t->image_paths) : 0;
      g_autofree gboolean *drop = g_new0 (gboolean, MAX (n_paths, 1));
      GPtrArray *kept = g_ptr_array_new ();
      char *text;

      for (guint j = 0; j < n_paths; j++)
        {
          drop[j] = seen < k;
          if (drop[j])
            {
              seen++;
              g_free (t->image_paths[j]);
            }
          else
            {
              g_ptr_array_add (kept, t->image_paths[j]);
            }
        }
      g_ptr_array_add (kept, NULL);
      g_free (t->image_paths);
      t->image_paths = (char **) g_ptr_array_free (kept, FALSE);
      text = drop_placeholders (t->text, drop, n_paths);
      g_free (t->text);
      t->text = text;
    }
  job->images_left_out = k;
}

static gboolean
count_done_main (gpointer data)
{
  Job *job = data;

  if (job->count_error)
    g_task_return_error (job->task, g_steal_pointer (&job->count_error));
  else
    g_task_return_pointer (job->task, g_memdup2 (&job->count, sizeof job->count), g_free);
  g_clear_object (&job->task); /* on the main thread: see load_done_main() */
  return G_SOURCE_REMOVE;
}

static void
worker_count (AppEngine *self,
              Job       *job)
{
  AppTokenCount *c = &job->count;
  int limit;

  if (g_cancellable_set_error_if_cancelled (job->cancellable, &job->count_error))
    goto done;
  if (self->server.base_url)
    {
      /* the tokenizer is the server's: nothing to count with here */
      job->count_error = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                                              _("A server's model is not counted."));
      goto done;
    }
  if (!self->model)
    {
      job->count_error = g_error_new_literal (APP_ENGINE_ERROR, APP_ENGINE_ERROR_NO_MODEL,
                                              _("No model is loaded."));
      goto done;
    }
  c->n_answer = answer_room (self, job, &c->n_ctx);
  limit = c->n_ctx - c->n_answer;
  c->n_tokens = count_turns (self, job->turns, 0, 0, job->params.system_prompt,
                             &job->count_error);
  if (c->n_tokens < 0)
    goto done;
  if (c->n_tokens <= limit)
    {
      c->turns_tokens = c->images_tokens = c->n_tokens;
      goto done;
    }
  c->turns_left_out = turns_to_fit (self, job, limit, &c->turns_tokens);
  c->images_left_out = images_to_fit (self, job, limit, &c->images_tokens);

done:
  job_invoke (job, count_done_main);
}

/* Reading ahead (app_engine_prepare): gives way, between two tiles or two chunks of positions,
 * to any job that comes in, a question sent above all. */
static bool
prepare_progress_cb (float    fraction,
                     gpointer user_data)
{
  AppEngine *self = user_data;

  return g_atomic_int_get (&self->urgent_jobs) == 0;
}

static gboolean
prepare_done_main (gpointer data)
{
  Job *job = data;

  g_task_return_boolean (job->task, TRUE);
  g_clear_object (&job->task); /* on the main thread: see load_done_main() */
  return G_SOURCE_REMOVE;
}

static void
worker_prepare (AppEngine *self,
                Job       *job)
{
  vl2_generate_params gp = vl2_generate_default_params ();
  g_autoptr(GError) error = NULL;
  vl2_prompt *prompt;
  vl2_error err;

  /* only the latest draft matters, and a question sent goes first */
  if (!self->model || self->server.base_url || job->serial != g_atomic_int_get (&self->prepare_serial) ||
      g_atomic_int_get (&self->urgent_jobs) > 0)
    goto done;
  prompt = fit_prompt (self, job, &error);
  if (!prompt)
    {
      g_debug ("nothing to read ahead: %s", error->message);
      goto done;
    }
  gp.progress = prepare_progress_cb;
  gp.progress_user_data = self;
  apply_compute (self);
  if (vl2_session_prepare (self->session, prompt, &gp, &err) != VL2_OK &&
      err.code != VL2_ERR_CANCELLED)
    g_debug ("reading ahead failed: %s", err.message);
  vl2_prompt_free (prompt);
done:
  job_invoke (job, prepare_done_main);
}

static gpointer
worker_main (gpointer data)
{
  AppEngine *self = data;

  for (;;)
    {
      Job *job = g_async_queue_pop (self->jobs);

      if (is_urgent (job))
        g_atomic_int_dec_and_test (&self->urgent_jobs);

      if (job->kind == JOB_QUIT)
        {
          job_unref (job);
          break;
        }
      if (job->kind == JOB_LOAD)
        worker_load (self, job);
      else if (job->kind == JOB_CONNECT)
        worker_connect (self, job);
      else if (job->kind == JOB_COUNT)
        worker_count (self, job);
      else if (job->kind == JOB_PREPARE)
        worker_prepare (self, job);
      else
        worker_generate (self, job);
      job_unref (job);
    }
  worker_unload (self);
  return NULL;
}

/* ------------------------------------------------------------------------------------------
 * Public API (main thread)
 */

static gboolean
check_idle (AppEngine *self,
            GTask     *task)
{
  if (!self->busy)
    return TRUE;
  g_task_return_new_error (task, APP_ENGINE_ERROR, APP_ENGINE_ERROR_BUSY,
                           _("The model is busy; wait for the current answer or stop it."));
  return FALSE;
}

/* Hands a load or connect job to the worker, unless another job is running. */
static void
start_loading (AppEngine *self,
               Job       *job)
{
  if (!check_idle (self, job->task))
    {
      job_unref (job);
      return;
    }
  self->busy = TRUE;
  self->load_progress = 0;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LOAD_PROGRESS]);
  set_state (self, APP_ENGINE_LOADING);
  push_job (self, job);
}

void
app_engine_load_async (AppEngine           *self,
                       const char          *model_dir,
                       int                  n_threads,
                       GCancellable        *cancellable,
                       GAsyncReadyCallback  callback,
                       gpointer             user_data)
{
  Job *job;

  g_return_if_fail (APP_IS_ENGINE (self));
  g_return_if_fail (model_dir != NULL);

  job = job_new (self, JOB_LOAD, cancellable, callback, user_data);
  g_task_set_source_tag (job->task, app_engine_load_async);
  job->model_dir = g_strdup (model_dir);
  job->n_threads = MAX (n_threads, 0);
  job->resident = self->resident;
  start_loading (self, job);
}

gboolean
app_engine_load_finish (AppEngine     *self,
                        GAsyncResult  *result,
                        GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

void
app_engine_connect_async (AppEngine           *self,
                          const char          *base_url,
                          const char          *model,
                          const char          *api_key,
                          guint                timeout,
                          GCancellable        *cancellable,
                          GAsyncReadyCallback  callback,
                          gpointer             user_data)
{
  Job *job;

  g_return_if_fail (APP_IS_ENGINE (self));
  g_return_if_fail (base_url != NULL && model != NULL);

  job = job_new (self, JOB_CONNECT, cancellable, callback, user_data);
  g_task_set_source_tag (job->task, app_engine_connect_async);
  job->model_dir = g_strdup (base_url);
  job->server.base_url = g_strdup (base_url);
  job->server.model = g_strdup (model);
  job->server.api_key = g_strdup (api_key);
  job->server.timeout = timeout;
  start_loading (self, job);
}

gboolean
app_engine_connect_finish (AppEngine     *self,
                           GAsyncResult  *result,
                           GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

gboolean
app_engine_is_remote (AppEngine *self)
{
  g_return_val_if_fail (APP_IS_ENGINE (self), FALSE);
  return self->remote;
}

void
app_engine_generate_async (AppEngine               *self,
                           AppChat                 *chat,
                           AppMessage              *reply,
                           const char              *image_dir,
                           const AppGenerateParams *params,
                           GCancellable            *cancellable,
                           GAsyncReadyCallback      callback,
                           gpointer                 user_data)
{
  Job *job;
  guint n;

  g_return_if_fail (APP_IS_ENGINE (self));
  g_return_if_fail (APP_IS_CHAT (chat));
  g_return_if_fail (APP_IS_MESSAGE (reply));
  g_return_if_fail (params != NULL);

  job = job_new (self, JOB_GENERATE, cancellable, callback, user_data);
  g_task_set_source_tag (job->task, app_engine_generate_async);
  if (!check_idle (self, job->task))
    {
      job_unref (job);
      return;
    }
  if (self->state != APP_ENGINE_READY)
    {
      g_task_return_new_error (job->task, APP_ENGINE_ERROR, APP_ENGINE_ERROR_NO_MODEL,
                               _("No model is loaded."));
      job_unref (job);
      return;
    }

  /* The prompt builder strips an answer it continues, and the model goes on right after its
   * last visible character: what it writes next must not follow a space that is gone. */
  if (app_message_get_text (reply)[0] != '\0')
    {
      g_autofree char *text = g_strdup (app_message_get_text (reply));
      char *end = text + strlen (text);

      while (end > text && g_unichar_isspace (g_utf8_get_char (g_utf8_prev_char (end))))
        end = g_utf8_prev_char (end);
      *end = '\0';
      app_message_set_text (reply, text);
    }

  /* Snapshot the conversation before the reply: the worker must not touch GObjects that the
   * main thread may change meanwhile. */
  job->turns = g_array_new (FALSE, TRUE, sizeof (TurnSnapshot));
  g_array_set_clear_func (job->turns, turn_clear);
  n = app_chat_get_n_messages (chat);
  for (guint i = 0; i < n; i++)
    {
      g_autoptr(AppMessage) m = app_chat_get_message (chat, i);
      const char * const *images = app_message_get_images (m);
      TurnSnapshot t = { 0 };
      GPtrArray *paths;

      t.assistant = app_message_get_role (m) == APP_ROLE_ASSISTANT;
      if (m == reply)
        {
          /* an answer with text is continued: the prompt ends inside it */
          if (app_message_get_text (m)[0] != '\0')
            {
              t.text = g_strdup (app_message_get_text (m));
              t.image_paths = g_new0 (char *, 1);
              g_array_append_val (job->turns, t);
            }
          break;
        }
      paths = g_ptr_array_new ();
      for (guint k = 0; images && images[k]; k++)
        g_ptr_array_add (paths, g_build_filename (image_dir, images[k], NULL));
      /* a question without <image> tags gets them from the engine's prompt builder */
      t.text = g_strdup (app_message_get_text (m));
      g_ptr_array_add (paths, NULL);
      t.image_paths = (char **) g_ptr_array_free (paths, FALSE);
      g_array_append_val (job->turns, t);
    }
  job->params = *params;
  job->params.system_prompt = g_strdup (params->system_prompt);
  job->reply = g_object_ref (reply);
  job->n_tokens_before = app_message_get_text (reply)[0] != '\0'
                           ? app_message_get_n_tokens (reply) : 0;

  app_message_set_finish_reason (reply, APP_FINISH_NONE);
  app_message_set_error (reply, NULL);
  app_message_set_state (reply, APP_MESSAGE_PENDING);
  self->busy = TRUE;
  set_state (self, APP_ENGINE_BUSY);
  push_job (self, job);
}

gboolean
app_engine_generate_finish (AppEngine     *self,
                            GAsyncResult  *result,
                            GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* The conversation a draft would make: the chat's messages before `replacing` (all of them
 * without it), then the question with its images (file names in image_dir). */
static GArray *
draft_turns (AppChat            *chat,
             AppMessage         *replacing,
             const char         *question,
             const char * const *images,
             const char         *image_dir)
{
  GArray *turns = g_array_new (FALSE, TRUE, sizeof (TurnSnapshot));
  guint n = chat ? app_chat_get_n_messages (chat) : 0;
  TurnSnapshot q = { 0 };
  GPtrArray *paths = g_ptr_array_new ();

  g_array_set_clear_func (turns, turn_clear);
  for (guint i = 0; i < n; i++)
    {
      g_autoptr(AppMessage) m = app_chat_get_message (chat, i);
      const char * const *ids = app_message_get_images (m);
      TurnSnapshot t = { 0 };
      GPtrArray *p;

      if (m == replacing)
        break;
      p = g_ptr_array_new ();
      t.assistant = app_message_get_role (m) == APP_ROLE_ASSISTANT;
      for (guint k = 0; ids && ids[k]; k++)
        g_ptr_array_add (p, g_build_filename (image_dir, ids[k], NULL));
      g_ptr_array_add (p, NULL);
      t.image_paths = (char **) g_ptr_array_free (p, FALSE);
      t.text = g_strdup (app_message_get_text (m));
      g_array_append_val (turns, t);
    }
  for (guint k = 0; images && images[k]; k++)
    g_ptr_array_add (paths, g_build_filename (image_dir, images[k], NULL));
  g_ptr_array_add (paths, NULL);
  q.image_paths = (char **) g_ptr_array_free (paths, FALSE);
  q.text = g_strdup (question ? question : "");
  g_array_append_val (turns, q);
  return turns;
}

/* Queues a job about a draft (see draft_turns). */
static void
queue_draft_job (AppEngine               *self,
                 Job                     *job,
                 AppChat                 *chat,
                 AppMessage              *replacing,
                 const char              *question,
                 const char * const      *images,
                 const char              *image_dir,
                 const AppGenerateParams *params)
{
  job->turns = draft_turns (chat, replacing, question, images, image_dir);
  job->params = *params;
  job->params.system_prompt = g_strdup (params->system_prompt);
  push_job (self, job);
}

void
app_engine_count_tokens_async (AppEngine               *self,
                               AppChat                 *chat,
                               AppMessage              *replacing,
                               const char              *question,
                               const char * const      *images,
                               const char              *image_dir,
                               const AppGenerateParams *params,
                               GCancellable            *cancellable,
                               GAsyncReadyCallback      callback,
                               gpointer                 user_data)
{
  Job *job;

  g_return_if_fail (APP_IS_ENGINE (self));
  g_return_if_fail (chat == NULL || APP_IS_CHAT (chat));
  g_return_if_fail (params != NULL);

  job = job_new (self, JOB_COUNT, cancellable, callback, user_data);
  g_task_set_source_tag (job->task, app_engine_count_tokens_async);
  /* a count cancelled while it ran is stale: it finishes as cancelled */
  g_task_set_check_cancellable (job->task, TRUE);
  queue_draft_job (self, job, chat, replacing, question, images, image_dir, params);
}

void
app_engine_prepare (AppEngine               *self,
                    AppChat                 *chat,
                    AppMessage              *replacing,
                    const char              *question,
                    const char * const      *images,
                    const char              *image_dir,
                    const AppGenerateParams *params)
{
  Job *job;

  g_return_if_fail (APP_IS_ENGINE (self));
  g_return_if_fail (chat == NULL || APP_IS_CHAT (chat));
  g_return_if_fail (params != NULL);

  if (!images || !images[0] || self->state != APP_ENGINE_READY || self->remote)
    return;
  job = job_new (self, JOB_PREPARE, NULL, NULL, NULL);
  g_task_set_source_tag (job->task, app_engine_prepare);
  job->serial = g_atomic_int_add (&self->prepare_serial, 1) + 1;
  queue_draft_job (self, job, chat, replacing, question, images, image_dir, params);
}

gboolean
app_engine_count_tokens_finish (AppEngine      *self,
                                GAsyncResult   *result,
                                AppTokenCount  *count,
                                GError        **error)
{
  g_autofree AppTokenCount *c = NULL;

  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  c = g_task_propagate_pointer (G_TASK (result), error);
  if (!c)
    return FALSE;
  if (count)
    *count = *c;
  return TRUE;
}

AppEngineState
app_engine_get_state (AppEngine *self)
{
  g_return_val_if_fail (APP_IS_ENGINE (self), APP_ENGINE_EMPTY);
  return self->state;
}

double
app_engine_get_load_progress (AppEngine *self)
{
  g_return_val_if_fail (APP_IS_ENGINE (self), 0);
  return self->load_progress;
}

const char *
app_engine_get_model_dir (AppEngine *self)
{
  g_return_val_if_fail (APP_IS_ENGINE (self), NULL);
  return self->model_dir;
}

const char *
app_engine_get_model_name (AppEngine *self)
{
  g_return_val_if_fail (APP_IS_ENGINE (self), NULL);
  return self->model_name;
}

const char *
app_engine_get_error (AppEngine *self)
{
  g_return_val_if_fail (APP_IS_ENGINE (self), NULL);
  return self->error;
}

const char *
app_engine_get_error_advice (AppEngine *self)
{
  g_return_val_if_fail (APP_IS_ENGINE (self), NULL);
  return self->error_advice;
}

/* ------------------------------------------------------------------------------------------
 * GObject
 */

AppEngine *
app_engine_new (void)
{
  return g_object_new (APP_TYPE_ENGINE, NULL);
}

static void
app_engine_dispose (GObject *object)
{
  AppEngine *self = APP_ENGINE (object);

  if (self->thread)
    {
      push_job (self, job_new (self, JOB_QUIT, NULL, NULL, NULL));
      g_thread_join (g_steal_pointer (&self->thread));
    }
  G_OBJECT_CLASS (app_engine_parent_class)->dispose (object);
}

static void
app_engine_finalize (GObject *object)
{
  AppEngine *self = APP_ENGINE (object);

  g_async_queue_unref (self->jobs);
  g_clear_pointer (&self->image_sizes, g_hash_table_unref);
  g_free (self->model_dir);
  g_free (self->model_name);
  g_free (self->error);
  g_free (self->error_advice);
  G_OBJECT_CLASS (app_engine_parent_class)->finalize (object);
}

static void
app_engine_get_property (GObject    *object,
                         guint       prop_id,
                         GValue     *value,
                         GParamSpec *pspec)
{
  AppEngine *self = APP_ENGINE (object);

  switch (prop_id)
    {
    case PROP_STATE:
      g_value_set_enum (value, self->state);
      break;
    case PROP_LOAD_PROGRESS:
      g_value_set_double (value, self->load_progress);
      break;
    case PROP_MODEL_DIR:
      g_value_set_string (value, self->model_dir);
      break;
    case PROP_MODEL_NAME:
      g_value_set_string (value, self->model_name);
      break;
    case PROP_ERROR:
      g_value_set_string (value, self->error);
      break;
    case PROP_ERROR_ADVICE:
      g_value_set_string (value, self->error_advice);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_engine_class_init (AppEngineClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = app_engine_dispose;
  object_class->finalize = app_engine_finalize;
  object_class->get_property = app_engine_get_property;

  properties[PROP_STATE] =
    g_param_spec_enum ("state", NULL, NULL, APP_TYPE_ENGINE_STATE, APP_ENGINE_EMPTY,
                       G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_LOAD_PROGRESS] =
    g_param_spec_double ("load-progress", NULL, NULL, 0, 1, 0,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_MODEL_DIR] =
    g_param_spec_string ("model-dir", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_MODEL_NAME] =
    g_param_spec_string ("model-name", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_ERROR] =
    g_param_spec_string ("error", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_ERROR_ADVICE] =
    g_param_spec_string ("error-advice", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
app_engine_init (AppEngine *self)
{
  self->jobs = g_async_queue_new ();
  g_queue_init (&self->image_cache);
  self->thread = g_thread_new ("sightline-engine", worker_main, self);
}

/* ------------------------------------------------------------------------------------------
 * Resident weights, quantized copies
 */

void
app_engine_set_resident (AppEngine *self,
                         gboolean   resident)
{
  g_return_if_fail (APP_IS_ENGINE (self));
  self->resident = !!resident;
}

gboolean
app_engine_get_resident (AppEngine *self)
{
  g_return_val_if_fail (APP_IS_ENGINE (self), FALSE);
  return self->resident;
}

void
app_engine_set_fast_arithmetic (AppEngine *self,
                                gboolean   fast)
{
  g_return_if_fail (APP_IS_ENGINE (self));
  g_atomic_int_set (&self->fast_arithmetic, !!fast);
}

gboolean
app_engine_get_fast_arithmetic (AppEngine *self)
{
  g_return_val_if_fail (APP_IS_ENGINE (self), FALSE);
  return g_atomic_int_get (&self->fast_arithmetic);
}

void
app_engine_get_last_read (AppEngine *self,
                          int       *tiles_read,
                          int       *tokens_reused)
{
  g_return_if_fail (APP_IS_ENGINE (self));
  *tiles_read = self->last_tiles_read;
  *tokens_reused = self->last_tokens_reused;
}

gboolean
app_engine_fast_arithmetic_available (void)
{
  return vl2_compute_bf16_native ();
}

typedef struct
{
  char *src_dir;
  char *dest_dir;
  gboolean q4;
  AppQuantizeProgressFunc progress;
  gpointer progress_data;
  GMainContext *context;
  GCancellable *cancellable;
  /* the latest fraction in thousandths, and whether an idle is on its way to show it */
  gint permille;
  gint pending;
  /* set once the copy has ended: an idle that comes after the task's callback (idles have a
   * lower priority) must not call `progress`, whose data may be gone */
  gint done;
  gint refs;
} QuantizeJob;

static void
quantize_job_unref (gpointer data)
{
  QuantizeJob *q = data;

  if (!g_atomic_int_dec_and_test (&q->refs))
    return;
  g_free (q->src_dir);
  g_free (q->dest_dir);
  g_main_context_unref (q->context);
  g_clear_object (&q->cancellable);
  g_free (q);
}

static gboolean
quantize_progress_main (gpointer data)
{
  QuantizeJob *q = data;

  g_atomic_int_set (&q->pending, 0);
  if (q->progress && !g_atomic_int_get (&q->done) && !g_cancellable_is_cancelled (q->cancellable))
    q->progress (g_atomic_int_get (&q->permille) / 1000.0, q->progress_data);
  return G_SOURCE_REMOVE;
}

static bool
quantize_progress_cb (float  fraction,
                      void  *user_data)
{
  QuantizeJob *q = user_data;
  gint permille = (gint) CLAMP (fraction * 1000.0f, 0.0f, 1000.0f);

  if (permille != g_atomic_int_get (&q->permille))
    {
      g_atomic_int_set (&q->permille, permille);
      if (g_atomic_int_compare_and_exchange (&q->pending, 0, 1))
        {
          GSource *source = g_idle_source_new ();

          g_atomic_int_inc (&q->refs);
          g_source_set_callback (source, quantize_progress_main, q, quantize_job_unref);
          g_source_attach (source, q->context);
          g_source_unref (source);
        }
    }
  return !g_cancellable_is_cancelled (q->cancellable);
}

static void
quantize_thread (GTask        *task,
                 gpointer      source_object,
                 gpointer      task_data,
                 GCancellable *cancellable)
{
  QuantizeJob *q = task_data;
  vl2_status status;
  vl2_error err;

  status = vl2_quantize_checkpoint (q->src_dir, q->dest_dir,
                                    q->q4 ? VL2_WEIGHTS_Q4 : VL2_WEIGHTS_Q8,
                                    quantize_progress_cb, q, &err);
  g_atomic_int_set (&q->done, 1);
  if (status != VL2_OK)
    {
      if (err.code == VL2_ERR_CANCELLED)
        g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                 _("The copy was cancelled."));
      else
        g_task_return_error (task, error_from_status (err.code, err.message));
      return;
    }
  g_task_return_boolean (task, TRUE);
}

void
app_engine_quantize_async (AppEngine               *self,
                           const char              *src_dir,
                           const char              *dest_dir,
                           gboolean                 q4,
                           AppQuantizeProgressFunc  progress,
                           gpointer                 progress_data,
                           GCancellable            *cancellable,
                           GAsyncReadyCallback      callback,
                           gpointer                 user_data)
{
  g_autoptr(GTask) task = NULL;
  QuantizeJob *q;

  g_return_if_fail (APP_IS_ENGINE (self));
  g_return_if_fail (src_dir != NULL && dest_dir != NULL);

  q = g_new0 (QuantizeJob, 1);
  q->refs = 1;
  q->src_dir = g_strdup (src_dir);
  q->dest_dir = g_strdup (dest_dir);
  q->q4 = q4;
  q->progress = progress;
  q->progress_data = progress_data;
  q->context = g_main_context_ref_thread_default ();
  q->cancellable = cancellable ? g_object_ref (cancellable) : g_cancellable_new ();
  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, app_engine_quantize_async);
  g_task_set_task_data (task, q, quantize_job_unref);
  g_task_run_in_thread (task, quantize_thread);
}

gboolean
app_engine_quantize_finish (AppEngine     *self,
                            GAsyncResult  *result,
                            GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}
