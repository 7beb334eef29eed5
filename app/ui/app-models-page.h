/* app-models-page.h - the Models page: get, choose, shrink and remove models.
 *
 * Installed models (with the one in use, its load progress, Use, Open Folder, 8- and 4-bit
 * copies, Delete), the published models to download (size, memory, whether they fit this
 * computer, the licence before the download, the download's progress, Pause, Resume and
 * Retry), and the options: keep in memory, the models folder, the Hugging Face token.
 * It is the first screen when there is no model, and the Models window otherwise.
 */
#pragma once

#include <adwaita.h>

#include "app-model-manager.h"

G_BEGIN_DECLS

#define APP_TYPE_MODELS_PAGE (app_models_page_get_type ())
G_DECLARE_FINAL_TYPE (AppModelsPage, app_models_page, APP, MODELS_PAGE, GtkWidget)

GtkWidget *app_models_page_new             (AppModelManager *manager,
                                            AppEngine       *engine,
                                            GSettings       *settings);
/* Shows the welcome at the top (the first screen). */
void       app_models_page_set_welcome     (AppModelsPage   *self,
                                            gboolean         welcome);
/* The memory the fit hints compare with; by default this computer's. */
void       app_models_page_set_machine_ram (AppModelsPage   *self,
                                            guint64          bytes);
guint64    app_models_page_get_machine_ram (AppModelsPage   *self);

/* A window holding a Models page, for `parent`'s application. */
GtkWindow *app_models_window_new           (GtkWindow       *parent,
                                            AppModelManager *manager,
                                            AppEngine       *engine,
                                            GSettings       *settings);

G_END_DECLS
