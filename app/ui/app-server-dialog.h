/* app-server-dialog.h - "Add a Server": a model on an OpenAI-compatible server as a model.
 *
 * The address and an optional API key; Connect asks the server which models it serves
 * (GET /v1/models) and says plainly what went wrong when it cannot; then the model to use is
 * chosen (a DeepSeek-VL2 one is preselected) and Add lists it among the models and uses it.
 */
#pragma once

#include <adwaita.h>

#include "app-model-manager.h"

G_BEGIN_DECLS

/* Called when a server's model was added, with a warning for a toast (NULL for none). */
typedef void (*AppServerAddedFunc) (const char *name,
                                    const char *warning,
                                    gpointer    user_data);

GtkWindow       *app_server_dialog_new         (GtkWindow         *parent,
                                                AppModelManager   *manager,
                                                AppServerAddedFunc added,
                                                gpointer           user_data,
                                                GDestroyNotify     destroy);

G_END_DECLS
