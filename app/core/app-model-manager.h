/* app-model-manager.h - the app's models: installed, downloading, being copied, in use.
 *
 * One per application, outliving windows. It keeps the list of installed models (rescanned
 * when something changes), the downloads (AppDownload, one per repository; a download left
 * unfinished by an earlier run is found in the models folder and offered for resuming), the
 * one 8- or 4-bit copy that may be under way, and the Hugging Face access token, which lives
 * in the keyring (libsecret), never in the settings.
 *
 * The model in use is the settings' "model-folder"; the application loads whatever it names.
 */
#pragma once

#include <gio/gio.h>

#include "app-download.h"
#include "app-engine.h"
#include "app-models.h"

G_BEGIN_DECLS

#define APP_TYPE_MODEL_MANAGER (app_model_manager_get_type ())
G_DECLARE_FINAL_TYPE (AppModelManager, app_model_manager, APP, MODEL_MANAGER, GObject)

AppModelManager *app_model_manager_new            (GSettings        *settings,
                                                   AppEngine        *engine);

/* The folder downloads and copies go to: "models-folder", or the default. */
char            *app_model_manager_get_folder     (AppModelManager  *self);
/* AppModelEntry items; changes after rescan(). */
GListModel      *app_model_manager_get_installed  (AppModelManager  *self);
void             app_model_manager_rescan         (AppModelManager  *self);
/* The installed entry for `path`, or NULL. */
AppModelEntry   *app_model_manager_find           (AppModelManager  *self,
                                                   const char       *path);
/* The entry in use ("model-folder"), or NULL. */
AppModelEntry   *app_model_manager_get_current    (AppModelManager  *self);
/* Uses the model in `path` (sets "model-folder"). */
void             app_model_manager_use            (AppModelManager  *self,
                                                   const char       *path);
/* Lists `path` among the installed models (and uses it). */
void             app_model_manager_add_folder     (AppModelManager  *self,
                                                   const char       *path);
/* Takes an added folder off the list; its files stay. */
void             app_model_manager_forget         (AppModelManager  *self,
                                                   AppModelEntry    *entry);
/* Deletes the entry's files (app_model_entry_get_delete_path) on a thread, then rescans.
 * The model in use is not deleted (G_IO_ERROR_BUSY). */
void             app_model_manager_delete_async   (AppModelManager  *self,
                                                   AppModelEntry    *entry,
                                                   GCancellable     *cancellable,
                                                   GAsyncReadyCallback callback,
                                                   gpointer          user_data);
gboolean         app_model_manager_delete_finish  (AppModelManager  *self,
                                                   GAsyncResult     *result,
                                                   GError          **error);

/* Downloads. "downloads-changed" is emitted when one is added. */
AppDownload     *app_model_manager_get_download   (AppModelManager  *self,
                                                   const char       *repo);
/* Starts (or resumes) downloading the published `repo` into the models folder, with the
 * keyring's token; the download appears at once (queued while the token is looked up). */
void             app_model_manager_download       (AppModelManager  *self,
                                                   const char       *repo);

/* The 8- or 4-bit copy under way: "copying" (boolean), "copy-source" (the entry's path),
 * "copy-q4", "copy-progress" (0..1); "copy-finished" (error message or NULL; cancelled: the
 * message NULL and nothing written) at its end. One at a time: FALSE if one runs. */
gboolean         app_model_manager_start_copy     (AppModelManager  *self,
                                                   AppModelEntry    *entry,
                                                   gboolean          q4);
void             app_model_manager_cancel_copy    (AppModelManager  *self);
gboolean         app_model_manager_get_copying    (AppModelManager  *self);
const char      *app_model_manager_get_copy_source (AppModelManager *self);
gboolean         app_model_manager_get_copy_q4    (AppModelManager  *self);
double           app_model_manager_get_copy_progress (AppModelManager *self);

/* The Hugging Face access token in the keyring, for the endpoint in use. An empty token
 * removes it. Fails when there is no keyring (then $HF_TOKEN still works). */
void             app_model_manager_store_token_async  (AppModelManager  *self,
                                                       const char       *token,
                                                       GCancellable     *cancellable,
                                                       GAsyncReadyCallback callback,
                                                       gpointer          user_data);
gboolean         app_model_manager_store_token_finish (AppModelManager  *self,
                                                       GAsyncResult     *result,
                                                       GError          **error);

/* Models on OpenAI-compatible servers (vLLM, SGLang, vl2-server).
 *
 * probe: the models a server serves (GET {base_url}/models, on a thread), to choose from.
 * add: lists the model (the settings' "servers"), keeps `api_key` (may be NULL) in the keyring
 * under the base URL, and uses it. Without a keyring the key is kept in memory until the app
 * closes, and the add still succeeds: the finish gives a warning in *warning (may be NULL).
 * lookup_key: the key kept for `base_url`, or NULL (none, or no keyring; an error only when
 * cancelled). Forgetting the last
 * model of a server also removes its key. */
void             app_model_manager_probe_server_async  (AppModelManager  *self,
                                                        const char       *base_url,
                                                        const char       *api_key,
                                                        GCancellable     *cancellable,
                                                        GAsyncReadyCallback callback,
                                                        gpointer          user_data);
GStrv            app_model_manager_probe_server_finish (AppModelManager  *self,
                                                        GAsyncResult     *result,
                                                        GError          **error);
void             app_model_manager_add_server_async    (AppModelManager  *self,
                                                        const char       *base_url,
                                                        const char       *model,
                                                        const char       *api_key,
                                                        GCancellable     *cancellable,
                                                        GAsyncReadyCallback callback,
                                                        gpointer          user_data);
gboolean         app_model_manager_add_server_finish   (AppModelManager  *self,
                                                        GAsyncResult     *result,
                                                        char            **warning,
                                                        GError          **error);
void             app_model_manager_lookup_key_async    (AppModelManager  *self,
                                                        const char       *base_url,
                                                        GCancellable     *cancellable,
                                                        GAsyncReadyCallback callback,
                                                        gpointer          user_data);
char            *app_model_manager_lookup_key_finish   (AppModelManager  *self,
                                                        GAsyncResult     *result,
                                                        GError          **error);

G_END_DECLS
