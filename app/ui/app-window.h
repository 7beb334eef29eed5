/* app-window.h - the main window: the chat list beside the conversation. */
#pragma once

#include <adwaita.h>

#include "app-application.h"

G_BEGIN_DECLS

#define APP_TYPE_WINDOW (app_window_get_type ())
G_DECLARE_FINAL_TYPE (AppWindow, app_window, APP, WINDOW, AdwApplicationWindow)

AppWindow       *app_window_new                (AppApplication  *app);
/* Starts a new chat with these files attached, waiting for the question (`sightline FILE…`,
 * Open With). Files that are not on this computer are refused, with a toast each. */
void             app_window_open_files         (AppWindow       *self,
                                                GFile          **files,
                                                int              n_files);

G_END_DECLS
