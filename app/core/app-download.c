/* app-download.c - one model download on a worker thread, its progress as properties.
 *
 * Downloads share one worker thread (a GThreadPool of one): a second download waits as
 * "queued" until the first stops, so two models never split the bandwidth and the disk.
 *
 * The worker reports progress to a mutex-guarded snapshot and schedules one idle on the
 * download's main context when none is pending; the idle copies the snapshot into the
 * properties and notifies. So the UI sees at most one update per main loop iteration however
 * fast the bytes come, and never from another thread.
 *
 * Speed is an exponential moving average of bytes per second over the updates (time constant
 * about three seconds), so the estimate of time left does not jump with every packet.
 */
#define G_LOG_DOMAIN "sightline-download"

#include "app-download.h"

#include <math.h>

#define SPEED_TAU_S 3.0

struct _AppDownload
{
  GObject parent_instance;

  char *repo;
  char *revision;
  char *dest;
  char *endpoint;
  char *token;
  GMainContext *context;

  /* main thread */
  AppDownloadState state;
  guint64 done_bytes;
  guint64 total_bytes;
  double speed;
  gint64 seconds_left;
  char *error;
  GCancellable *cancellable;    /* of the run in progress; NULL when stopped */
  gint64 speed_time;            /* monotonic µs of the last speed sample */
  guint64 speed_bytes;

  /* shared with the worker */
  GMutex lock;
  AppHubProgress snapshot;
  gboolean snapshot_new;
  gboolean update_pending;
};

enum {
  PROP_0,
  PROP_REPO,
  PROP_REVISION,
  PROP_DEST,
  PROP_STATE,
  PROP_DONE_BYTES,
  PROP_TOTAL_BYTES,
  PROP_SPEED,
  PROP_SECONDS_LEFT,
  PROP_ERROR,
  N_PROPS
};

static GParamSpec *props[N_PROPS];

G_DEFINE_FINAL_TYPE (AppDownload, app_download, G_TYPE_OBJECT)

/* ------------------------------------------------------------------------------------------
 * Main-thread state
 */

static void
set_state (AppDownload      *self,
           AppDownloadState  state)
{
  if (self->state == state)
    return;
  self->state = state;
  if (state != APP_DOWNLOAD_DOWNLOADING)
    {
      self->speed = 0;
      self->seconds_left = -1;
      g_object_notify_by_pspec (G_OBJECT (self), props[PROP_SPEED]);
      g_object_notify_by_pspec (G_OBJECT (self), props[PROP_SECONDS_LEFT]);
    }
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_STATE]);
}

static void
set_error (AppDownload *self,
           const char  *error)
{
  if (!g_strcmp0 (self->error, error))
    return;
  g_free (self->error);
  self->error = g_strdup (error);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_ERROR]);
}

static void
apply_progress (AppDownload          *self,
                const AppHubProgress *p)
{
  gint64 now = g_get_monotonic_time ();

  g_object_freeze_notify (G_OBJECT (self));
  if (self->total_bytes != p->total_bytes)
    {
      self->total_bytes = p->total_bytes;
      g_object_notify_by_pspec (G_OBJECT (self), props[PROP_TOTAL_BYTES]);
    }
  if (p->state == APP_DOWNLOAD_DOWNLOADING && self->state == APP_DOWNLOAD_DOWNLOADING &&
      self->speed_time > 0 && now > self->speed_time && p->done_bytes >= self->speed_bytes)
    {
      double dt = (now - self->speed_time) / 1e6;
      double rate = (p->done_bytes - self->speed_bytes) / dt;
      double a = 1.0 - exp (-dt / SPEED_TAU_S);

      self->speed = self->speed > 0 ? self->speed + a * (rate - self->speed) : rate;
      self->seconds_left = self->speed > 1 ? (gint64) ((p->total_bytes - p->done_bytes) / self->speed + 0.5)
                                           : -1;
      g_object_notify_by_pspec (G_OBJECT (self), props[PROP_SPEED]);
      g_object_notify_by_pspec (G_OBJECT (self), props[PROP_SECONDS_LEFT]);
    }
  self->speed_time = now;
  self->speed_bytes = p->done_bytes;
  if (self->done_bytes != p->done_bytes)
    {
      self->done_bytes = p->done_bytes;
      g_object_notify_by_pspec (G_OBJECT (self), props[PROP_DONE_BYTES]);
    }
  set_state (self, p->state);
  g_object_thaw_notify (G_OBJECT (self));
}

static gboolean
update_cb (gpointer data)
{
  AppDownload *self = data;
  AppHubProgress p;
  gboolean fresh;

  g_mutex_lock (&self->lock);
  p = self->snapshot;
  p.file = NULL;
  p.commit = NULL;
  fresh = self->snapshot_new;
  self->snapshot_new = FALSE;
  self->update_pending = FALSE;
  g_mutex_unlock (&self->lock);

  /* a report that arrives after pause() was pressed does not bring "downloading" back */
  if (fresh && self->cancellable && !g_cancellable_is_cancelled (self->cancellable))
    apply_progress (self, &p);
  return G_SOURCE_REMOVE;
}

/* ------------------------------------------------------------------------------------------
 * The worker
 */

typedef struct {
  AppDownload *self;          /* a reference */
  GCancellable *cancellable;
  GError *error;
} Job;

/* Calls `fn` on the download's main context, always later and never on this thread: not
 * g_main_context_invoke(), which calls at once on whichever thread can take a context that
 * nobody is running. */
static void
run_on_main (AppDownload    *self,
             GSourceFunc     fn,
             gpointer        data,
             GDestroyNotify  destroy)
{
  GSource *source = g_idle_source_new ();

  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_set_callback (source, fn, data, destroy);
  g_source_attach (source, self->context);
  g_source_unref (source);
}

static void
progress_cb (const AppHubProgress *p,
             gpointer              user_data)
{
  AppDownload *self = user_data;
  gboolean schedule;

  g_mutex_lock (&self->lock);
  self->snapshot = *p;
  self->snapshot_new = TRUE;
  schedule = !self->update_pending;
  self->update_pending = TRUE;
  g_mutex_unlock (&self->lock);
  if (schedule)
    run_on_main (self, update_cb, g_object_ref (self), g_object_unref);
}

static gboolean
finish_cb (gpointer data)
{
  Job *job = data;
  AppDownload *self = job->self;

  /* a newer run (pause, then start again before this one noticed) owns the state now */
  if (self->cancellable == job->cancellable)
    {
      g_clear_object (&self->cancellable);
      update_cb (self);
      if (!job->error)
        {
          if (self->done_bytes != self->total_bytes)
            {
              self->done_bytes = self->total_bytes;
              g_object_notify_by_pspec (G_OBJECT (self), props[PROP_DONE_BYTES]);
            }
          set_error (self, NULL);
          set_state (self, APP_DOWNLOAD_INSTALLED);
        }
      else if (g_error_matches (job->error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        set_state (self, APP_DOWNLOAD_PAUSED);
      else
        {
          set_error (self, job->error->message);
          set_state (self, APP_DOWNLOAD_FAILED);
        }
    }
  g_clear_error (&job->error);
  g_object_unref (job->cancellable);
  g_object_unref (job->self);
  g_free (job);
  return G_SOURCE_REMOVE;
}

static void
run_job (gpointer data,
         gpointer pool_data)
{
  Job *job = data;
  AppDownload *self = job->self;
  AppHubOptions options = { .endpoint = self->endpoint, .token = self->token };

  if (!g_cancellable_set_error_if_cancelled (job->cancellable, &job->error))
    {
      AppHubProgress start = { .state = APP_DOWNLOAD_DOWNLOADING };

      g_mutex_lock (&self->lock);
      start.done_bytes = self->snapshot.done_bytes;
      start.total_bytes = self->snapshot.total_bytes;
      g_mutex_unlock (&self->lock);
      progress_cb (&start, self);
      app_hub_pull_sync (self->repo, self->revision, self->dest, &options, progress_cb, self,
                         job->cancellable, &job->error);
    }
  run_on_main (self, finish_cb, job, NULL);
}

static GThreadPool *
shared_pool (void)
{
  static GThreadPool *pool;

  if (g_once_init_enter (&pool))
    g_once_init_leave (&pool, g_thread_pool_new (run_job, NULL, 1, FALSE, NULL));
  return pool;
}

/* ------------------------------------------------------------------------------------------
 * API
 */

AppDownload *
app_download_new (const char *repo,
                  const char *revision,
                  const char *dest,
                  const char *endpoint,
                  const char *token)
{
  AppDownload *self;

  g_return_val_if_fail (repo != NULL && dest != NULL, NULL);

  self = g_object_new (APP_TYPE_DOWNLOAD, "repo", repo, "revision", revision, "dest", dest, NULL);
  self->endpoint = g_strdup (endpoint);
  self->token = g_strdup (token);
  return self;
}

void
app_download_set_token (AppDownload *self,
                        const char  *token)
{
  g_return_if_fail (APP_IS_DOWNLOAD (self));
  if (self->cancellable)
    return;                   /* the worker reads it */
  g_free (self->token);
  self->token = g_strdup (token);
}

void
app_download_start (AppDownload *self)
{
  Job *job;

  g_return_if_fail (APP_IS_DOWNLOAD (self));

  if (self->cancellable)
    return;                   /* queued or running */
  job = g_new0 (Job, 1);
  job->self = g_object_ref (self);
  job->cancellable = g_cancellable_new ();
  self->cancellable = g_object_ref (job->cancellable);
  self->speed_time = 0;
  set_error (self, NULL);
  set_state (self, APP_DOWNLOAD_QUEUED);
  g_mutex_lock (&self->lock);
  self->snapshot.done_bytes = self->done_bytes;
  self->snapshot.total_bytes = self->total_bytes;
  g_mutex_unlock (&self->lock);
  g_thread_pool_push (shared_pool (), job, NULL);
}

void
app_download_pause (AppDownload *self)
{
  g_return_if_fail (APP_IS_DOWNLOAD (self));

  if (!self->cancellable)
    return;
  g_cancellable_cancel (self->cancellable);
  /* the worker notices within a read; the state says so at once */
  set_state (self, APP_DOWNLOAD_PAUSED);
}

const char *
app_download_get_repo (AppDownload *self)
{
  g_return_val_if_fail (APP_IS_DOWNLOAD (self), NULL);
  return self->repo;
}

const char *
app_download_get_dest (AppDownload *self)
{
  g_return_val_if_fail (APP_IS_DOWNLOAD (self), NULL);
  return self->dest;
}

AppDownloadState
app_download_get_state (AppDownload *self)
{
  g_return_val_if_fail (APP_IS_DOWNLOAD (self), APP_DOWNLOAD_FAILED);
  return self->state;
}

guint64
app_download_get_done_bytes (AppDownload *self)
{
  g_return_val_if_fail (APP_IS_DOWNLOAD (self), 0);
  return self->done_bytes;
}

guint64
app_download_get_total_bytes (AppDownload *self)
{
  g_return_val_if_fail (APP_IS_DOWNLOAD (self), 0);
  return self->total_bytes;
}

double
app_download_get_speed (AppDownload *self)
{
  g_return_val_if_fail (APP_IS_DOWNLOAD (self), 0);
  return self->speed;
}

gint64
app_download_get_seconds_left (AppDownload *self)
{
  g_return_val_if_fail (APP_IS_DOWNLOAD (self), -1);
  return self->seconds_left;
}

const char *
app_download_get_error (AppDownload *self)
{
  g_return_val_if_fail (APP_IS_DOWNLOAD (self), NULL);
  return self->error;
}

/* ------------------------------------------------------------------------------------------
 * GObject
 */

static void
app_download_finalize (GObject *object)
{
  AppDownload *self = APP_DOWNLOAD (object);

  g_free (self->repo);
  g_free (self->revision);
  g_free (self->dest);
  g_free (self->endpoint);
  g_free (self->token);
  g_free (self->error);
  g_clear_object (&self->cancellable);
  g_main_context_unref (self->context);
  g_mutex_clear (&self->lock);
  G_OBJECT_CLASS (app_download_parent_class)->finalize (object);
}

static void
app_download_get_property (GObject    *object,
                           guint       prop_id,
                           GValue     *value,
                           GParamSpec *pspec)
{
  AppDownload *self = APP_DOWNLOAD (object);

  switch (prop_id)
    {
    case PROP_REPO:
      g_value_set_string (value, self->repo);
      break;
    case PROP_REVISION:
      g_value_set_string (value, self->revision);
      break;
    case PROP_DEST:
      g_value_set_string (value, self->dest);
      break;
    case PROP_STATE:
      g_value_set_enum (value, self->state);
      break;
    case PROP_DONE_BYTES:
      g_value_set_uint64 (value, self->done_bytes);
      break;
    case PROP_TOTAL_BYTES:
      g_value_set_uint64 (value, self->total_bytes);
      break;
    case PROP_SPEED:
      g_value_set_double (value, self->speed);
      break;
    case PROP_SECONDS_LEFT:
      g_value_set_int64 (value, self->seconds_left);
      break;
    case PROP_ERROR:
      g_value_set_string (value, self->error);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_download_set_property (GObject      *object,
                           guint         prop_id,
                           const GValue *value,
                           GParamSpec   *pspec)
{
  AppDownload *self = APP_DOWNLOAD (object);

  switch (prop_id)
    {
    case PROP_REPO:
      self->repo = g_value_dup_string (value);
      break;
    case PROP_REVISION:
      self->revision = g_value_dup_string (value);
      break;
    case PROP_DEST:
      self->dest = g_value_dup_string (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_download_class_init (AppDownloadClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GParamFlags ro = G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY;
  GParamFlags co = G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS;

  object_class->finalize = app_download_finalize;
  object_class->get_property = app_download_get_property;
  object_class->set_property = app_download_set_property;

  props[PROP_REPO] = g_param_spec_string ("repo", NULL, NULL, NULL, co);
  props[PROP_REVISION] = g_param_spec_string ("revision", NULL, NULL, NULL, co);
  props[PROP_DEST] = g_param_spec_string ("dest", NULL, NULL, NULL, co);
  props[PROP_STATE] = g_param_spec_enum ("state", NULL, NULL, APP_TYPE_DOWNLOAD_STATE,
                                         APP_DOWNLOAD_PAUSED, ro);
  props[PROP_DONE_BYTES] = g_param_spec_uint64 ("done-bytes", NULL, NULL, 0, G_MAXUINT64, 0, ro);
  props[PROP_TOTAL_BYTES] = g_param_spec_uint64 ("total-bytes", NULL, NULL, 0, G_MAXUINT64, 0, ro);
  props[PROP_SPEED] = g_param_spec_double ("speed", NULL, NULL, 0, G_MAXDOUBLE, 0, ro);
  props[PROP_SECONDS_LEFT] = g_param_spec_int64 ("seconds-left", NULL, NULL, -1, G_MAXINT64, -1, ro);
  props[PROP_ERROR] = g_param_spec_string ("error", NULL, NULL, NULL, ro);
  g_object_class_install_properties (object_class, N_PROPS, props);
}

static void
app_download_init (AppDownload *self)
{
  g_mutex_init (&self->lock);
  self->context = g_main_context_ref_thread_default ();
  self->state = APP_DOWNLOAD_PAUSED;
  self->seconds_left = -1;
}
