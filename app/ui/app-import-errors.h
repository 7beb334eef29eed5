/* app-import-errors.h - the images that could not be added, told in one toast.
 *
 * Several files added at once can fail one by one, each as its import thread ends. Each told
 * in a toast of its own would queue one toast per file; this object gathers them while its
 * toast is shown: one failure shows its message, more show "3 files could not be added" with
 * a Details button that lists every file and why. */
#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define APP_TYPE_IMPORT_ERRORS (app_import_errors_get_type ())
G_DECLARE_FINAL_TYPE (AppImportErrors, app_import_errors, APP, IMPORT_ERRORS, GObject)

/* Toasts go to `overlay` (not referenced: it outlives what it shows). */
AppImportErrors *app_import_errors_new          (AdwToastOverlay *overlay);
/* A file that could not be added: `message` names it and says why. */
void             app_import_errors_add          (AppImportErrors *self,
                                                 const char      *message);
/* The failures the toast shown tells of (0 when none is shown): the "n-errors" property. */
guint            app_import_errors_get_n_errors (AppImportErrors *self);

G_END_DECLS
