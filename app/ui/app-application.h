/* app-application.h - the Sightline application: settings, the chat store, the engine, the
 * models. */
#pragma once

#include <adwaita.h>

#include "app-chat-store.h"
#include "app-engine.h"
#include "app-model-manager.h"

G_BEGIN_DECLS

#define APP_TYPE_APPLICATION (app_application_get_type ())
G_DECLARE_FINAL_TYPE (AppApplication, app_application, APP, APPLICATION, AdwApplication)

AppApplication  *app_application_new           (void);
AppChatStore    *app_application_get_store     (AppApplication  *self);
AppEngine       *app_application_get_engine    (AppApplication  *self);
GSettings       *app_application_get_settings  (AppApplication  *self);
/* The models: installed, downloading, being copied. */
AppModelManager *app_application_get_models    (AppApplication  *self);
/* Loads the model folder from the settings (again), if one is set. */
void             app_application_load_model    (AppApplication  *self);
/* Stops the model's load under way: no model, the state back to EMPTY. */
void             app_application_cancel_load   (AppApplication  *self);

G_END_DECLS
