/* app-preferences.h - the preferences window, bound to the app's GSettings. */
#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define APP_TYPE_PREFERENCES (app_preferences_get_type ())
G_DECLARE_FINAL_TYPE (AppPreferences, app_preferences, APP, PREFERENCES, AdwPreferencesWindow)

AppPreferences  *app_preferences_new           (GSettings       *settings);
/* Asks for a model folder over parent and stores the choice in the "model-folder" key; the
 * application loads the folder when the key changes. */
void             app_choose_model_folder       (GtkWindow       *parent,
                                                GSettings       *settings);

G_END_DECLS
