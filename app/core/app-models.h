/* app-models.h - the models Sightline offers and the ones this computer has.
 *
 * The catalog of published DeepSeek-VL2 models (what each costs to download and to run), the
 * hint whether one fits this computer's memory, and the installed models: the downloads and
 * copies in the models folder, the folders a person added, and the Hugging Face cache
 * (huggingface_hub's layout, models--deepseek-ai--NAME/snapshots/COMMIT). GLib only: the
 * Models page shows what this finds.
 */
#pragma once

#include <gio/gio.h>

#include "app-engine.h"

G_BEGIN_DECLS

/* How a model's weights are held, as its files say. */
typedef enum {
  APP_MODEL_WEIGHTS_BF16,   /* what the published checkpoints hold */
  APP_MODEL_WEIGHTS_Q8,     /* a copy written by vl2_quantize_checkpoint */
  APP_MODEL_WEIGHTS_Q4,
} AppModelWeights;

#define APP_MODEL_N_WEIGHTS 3

/* Whether a model of some size suits this computer's memory. */
typedef enum {
  APP_MODEL_FITS,           /* fits beside the desktop: at most 80 % of the RAM */
  APP_MODEL_SLOW,           /* up to 120 %: the weights are mapped, so the parts that do not fit
                             * are read from disk again for every token */
  APP_MODEL_TOO_BIG,        /* more: it will not run in useful time */
} AppModelFit;

typedef struct {
  const char *repo;             /* "deepseek-ai/deepseek-vl2-tiny" */
  const char *name;             /* "DeepSeek-VL2 Tiny" (a name, not translated) */
  const char *summary;          /* untranslated; show it with _() */
  guint64 download_bytes;       /* the repository's files, bf16 */
  guint64 ram_bytes[APP_MODEL_N_WEIGHTS];  /* peak memory to answer, per AppModelWeights */
} AppPublishedModel;

#define APP_MODELS_LICENCE_NAME "DeepSeek Model License"
#define APP_MODELS_LICENCE_URL \
  "https://github.com/deepseek-ai/DeepSeek-VL2/blob/main/LICENSE-MODEL"

/* The three published models, smallest first. */
const AppPublishedModel *app_models_published     (guint               *n_models);
const AppPublishedModel *app_models_find_published (const char         *repo);

/* Physical memory (0 if unknown). */
guint64                  app_models_machine_ram   (void);
AppModelFit              app_models_fit           (guint64              needed,
                                                   guint64              machine_ram);

/* The default models folder: $XDG_DATA_HOME/sightline/models (what Flatpak redirects). */
char                    *app_models_default_folder (void);
/* huggingface_hub's cache: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. */
char                    *app_models_hf_cache_folder (void);

typedef enum {
  APP_MODEL_SOURCE_DOWNLOAD,  /* downloaded into the models folder (its marker) */
  APP_MODEL_SOURCE_COPY,      /* an 8- or 4-bit copy written by the app */
  APP_MODEL_SOURCE_FOLDER,    /* another checkpoint folder: added by hand, or found in the
                               * models folder without a marker */
  APP_MODEL_SOURCE_HF_CACHE,  /* a snapshot in the Hugging Face cache */
  APP_MODEL_SOURCE_SERVER,    /* a model on an OpenAI-compatible server (vLLM, SGLang,
                               * vl2-server); its "path" is app_models_server_ref() */
} AppModelSource;

/* One installed model. Immutable once found. */
#define APP_TYPE_MODEL_ENTRY (app_model_entry_get_type ())
G_DECLARE_FINAL_TYPE (AppModelEntry, app_model_entry, APP, MODEL_ENTRY, GObject)

const char      *app_model_entry_get_path       (AppModelEntry *self);  /* the checkpoint folder */
const char      *app_model_entry_get_name       (AppModelEntry *self);  /* for people */
const char      *app_model_entry_get_repo       (AppModelEntry *self);  /* NULL if unknown */
AppModelSource   app_model_entry_get_source     (AppModelEntry *self);
AppModelWeights  app_model_entry_get_weights    (AppModelEntry *self);
guint64          app_model_entry_get_disk_bytes (AppModelEntry *self);
/* What deleting it removes: the folder itself, or for the Hugging Face cache the whole
 * models--OWNER--NAME folder (its snapshots share blobs); NULL for an added folder, which is
 * only forgotten, never deleted. */
const char      *app_model_entry_get_delete_path (AppModelEntry *self);

/* A model on a server is named by one string, kept in the settings ("servers", and
 * "model-folder" when in use) and in the chats it answered: "BASE_URL#MODEL", e.g.
 * "http://gpu-box:8000/v1#deepseek-ai/deepseek-vl2". Its API key is in the keyring. */
char            *app_models_server_ref          (const char          *base_url,
                                                 const char          *model);
/* Splits a server reference; FALSE for anything else (a folder's path). */
gboolean         app_models_parse_server_ref    (const char          *ref,
                                                 char               **base_url,
                                                 char               **model);
/* What `engine` has loaded, named as the settings and chats name it: its folder, or the server
 * reference of its remote model; NULL when empty. */
char            *app_models_engine_ref          (AppEngine           *engine);
/* The entry of a server reference: named "MODEL on HOST", no files; NULL if `ref` is not one. */
AppModelEntry   *app_models_server_entry        (const char          *ref);

/* The record an app-made copy carries, so the scan can name it. */
#define APP_MODELS_COPY_MARKER ".sightline-copy.json"

/* Every installed model, in a stable order (models folder, added folders, cache; then by
 * name). `models_folder` is scanned one level deep (folders holding config.json; downloads
 * still in progress, without their marker, are left out); `added` lists folders by hand (a
 * missing one is still listed, so it can be forgotten); `hf_cache` may be NULL. A folder found
 * twice is listed once. Cheap enough for the main thread: it stats files, reads a few small
 * JSON files and the first bytes of model.safetensors. */
GPtrArray       *app_models_scan                (const char          *models_folder,
                                                 const char * const  *added,
                                                 const char          *hf_cache);

/* Writes the copy marker into `copy_dir`: the name to show, and where the copy came from. */
gboolean         app_models_mark_copy           (const char          *copy_dir,
                                                 const char          *name,
                                                 const char          *source_dir,
                                                 GError             **error);

/* A folder name for a copy of `source` in `models_folder` with `weights` that does not exist
 * yet: "deepseek-ai--deepseek-vl2-tiny-q8", then "-q8-2", ... */
char            *app_models_copy_path           (const char          *models_folder,
                                                 const char          *source_dir,
                                                 AppModelWeights      weights);

/* Deletes `path` and everything under it, without following symbolic links; on failure
 * says which file could not be removed. Meant for a worker thread. */
gboolean         app_models_delete_tree         (const char          *path,
                                                 GCancellable        *cancellable,
                                                 GError             **error);

G_END_DECLS
