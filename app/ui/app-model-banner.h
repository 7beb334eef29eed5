/* app-model-banner.h - the model's state above the conversation: none, loading, failed. */
#pragma once

#include <adwaita.h>

#include "app-engine.h"

G_BEGIN_DECLS

#define APP_TYPE_MODEL_BANNER (app_model_banner_get_type ())
G_DECLARE_FINAL_TYPE (AppModelBanner, app_model_banner, APP, MODEL_BANNER, GtkWidget)

/* Follows `engine`, and the "model-folder" key of `settings` for the folder it names (the
 * "engine" and "settings" properties, set together). Its buttons act through window actions:
 * win.open-model, win.cancel-load, win.reload-model. */
AppModelBanner  *app_model_banner_new          (void);
void             app_model_banner_set_engine   (AppModelBanner  *self,
                                                AppEngine       *engine,
                                                GSettings       *settings);
AppEngine       *app_model_banner_get_engine   (AppModelBanner  *self);
GSettings       *app_model_banner_get_settings (AppModelBanner  *self);
/* Whether the banner is shown (the model is not ready). A property, "revealed". */
gboolean         app_model_banner_get_revealed (AppModelBanner  *self);

G_END_DECLS
