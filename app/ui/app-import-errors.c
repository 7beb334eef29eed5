/* app-import-errors.c - see app-import-errors.h.
 *
 * The toast is updated in place as failures come (its title and its button), so a batch of
 * files read in parallel gives one toast whatever order their threads end in. The messages are
 * kept until the toast goes: the Details dialog lists them as they were when it opened.
 */
#define G_LOG_DOMAIN "sightline-import-errors"

#include "app-import-errors.h"

#include <glib/gi18n.h>

struct _AppImportErrors
{
  GObject parent_instance;

  AdwToastOverlay *overlay;      /* weak */
  AdwToast *toast;               /* shown or queued; the overlay owns it */
  GPtrArray *messages;           /* char*, what the toast tells of */
};

G_DEFINE_FINAL_TYPE (AppImportErrors, app_import_errors, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_N_ERRORS,
  PROP_OVERLAY,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

/* ------------------------------------------------------------------------------------------
 * Details
 */

static GtkWidget *
details_list (GPtrArray *messages)
{
  GtkWidget *scroller = gtk_scrolled_window_new ();
  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 8);

  for (guint i = 0; i < messages->len; i++)
    {
      GtkWidget *label = gtk_label_new (g_ptr_array_index (messages, i));

      gtk_label_set_wrap (GTK_LABEL (label), TRUE);
      gtk_label_set_wrap_mode (GTK_LABEL (label), PANGO_WRAP_WORD_CHAR);
      gtk_label_set_selectable (GTK_LABEL (label), TRUE);
      gtk_label_set_xalign (GTK_LABEL (label), 0);
      gtk_box_append (GTK_BOX (box), label);
    }
  gtk_scrolled_window_set_policy (GTK_SCROLLED_WINDOW (scroller), GTK_POLICY_NEVER,
                                  GTK_POLICY_AUTOMATIC);
  gtk_scrolled_window_set_propagate_natural_height (GTK_SCROLLED_WINDOW (scroller), TRUE);
  gtk_scrolled_window_set_max_content_height (GTK_SCROLLED_WINDOW (scroller), 320);
  gtk_scrolled_window_set_child (GTK_SCROLLED_WINDOW (scroller), box);
  return scroller;
}

static void
details_cb (AdwToast        *toast,
            AppImportErrors *self)
{
  GtkRoot *root = self->overlay ? gtk_widget_get_root (GTK_WIDGET (self->overlay)) : NULL;
  GtkWidget *dialog;

  dialog = adw_message_dialog_new (GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL,
                                   _("Files Not Added"), NULL);
  adw_message_dialog_set_body (ADW_MESSAGE_DIALOG (dialog),
                               _("These files could not be added to the question:"));
  adw_message_dialog_set_extra_child (ADW_MESSAGE_DIALOG (dialog),
                                      details_list (self->messages));
  adw_message_dialog_add_response (ADW_MESSAGE_DIALOG (dialog), "close", _("_Close"));
  gtk_window_present (GTK_WINDOW (dialog));
}

/* ------------------------------------------------------------------------------------------
 * The toast
 */

static void
dismissed_cb (AdwToast        *toast,
              AppImportErrors *self)
{
  if (self->toast != toast)
    return;
  self->toast = NULL;
  g_ptr_array_set_size (self->messages, 0);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_N_ERRORS]);
}

static void
update_toast (AppImportErrors *self)
{
  guint n = self->messages->len;
  g_autofree char *title = NULL;

  /* a toast's title is Pango markup: file names are shown as they are */
  if (n == 1)
    title = g_markup_escape_text (g_ptr_array_index (self->messages, 0), -1);
  else
    title = g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%u file could not be added",
                                          "%u files could not be added", n),
                             n);
  adw_toast_set_title (self->toast, title);
  adw_toast_set_button_label (self->toast, n > 1 ? _("_Details") : NULL);
}

void
app_import_errors_add (AppImportErrors *self,
                       const char      *message)
{
  g_return_if_fail (APP_IS_IMPORT_ERRORS (self));
  g_return_if_fail (message != NULL);

  g_ptr_array_add (self->messages, g_strdup (message));
  if (!self->toast && self->overlay)
    {
      self->toast = adw_toast_new ("");
      g_signal_connect_object (self->toast, "button-clicked", G_CALLBACK (details_cb), self, 0);
      g_signal_connect_object (self->toast, "dismissed", G_CALLBACK (dismissed_cb), self, 0);
      update_toast (self);
      adw_toast_overlay_add_toast (self->overlay, self->toast);
    }
  else if (self->toast)
    {
      update_toast (self);
    }
  else
    {
      g_warning ("%s", message);
    }
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_N_ERRORS]);
}

guint
app_import_errors_get_n_errors (AppImportErrors *self)
{
  g_return_val_if_fail (APP_IS_IMPORT_ERRORS (self), 0);

  return self->toast ? self->messages->len : 0;
}

/* ------------------------------------------------------------------------------------------
 * GObject
 */

AppImportErrors *
app_import_errors_new (AdwToastOverlay *overlay)
{
  g_return_val_if_fail (ADW_IS_TOAST_OVERLAY (overlay), NULL);

  return g_object_new (APP_TYPE_IMPORT_ERRORS, "overlay", overlay, NULL);
}

static void
app_import_errors_get_property (GObject    *object,
                                guint       prop_id,
                                GValue     *value,
                                GParamSpec *pspec)
{
  AppImportErrors *self = APP_IMPORT_ERRORS (object);

  switch (prop_id)
    {
    case PROP_N_ERRORS:
      g_value_set_uint (value, app_import_errors_get_n_errors (self));
      break;
    case PROP_OVERLAY:
      g_value_set_object (value, self->overlay);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_import_errors_set_property (GObject      *object,
                                guint         prop_id,
                                const GValue *value,
                                GParamSpec   *pspec)
{
  AppImportErrors *self = APP_IMPORT_ERRORS (object);

  switch (prop_id)
    {
    case PROP_OVERLAY:
      g_set_weak_pointer (&self->overlay, g_value_get_object (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_import_errors_dispose (GObject *object)
{
  AppImportErrors *self = APP_IMPORT_ERRORS (object);

  /* the toast may outlive this object in its overlay: its handlers go with this object */
  self->toast = NULL;
  g_clear_weak_pointer (&self->overlay);
  G_OBJECT_CLASS (app_import_errors_parent_class)->dispose (object);
}

static void
app_import_errors_finalize (GObject *object)
{
  AppImportErrors *self = APP_IMPORT_ERRORS (object);

  g_ptr_array_unref (self->messages);
  G_OBJECT_CLASS (app_import_errors_parent_class)->finalize (object);
}

static void
app_import_errors_class_init (AppImportErrorsClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->get_property = app_import_errors_get_property;
  object_class->set_property = app_import_errors_set_property;
  object_class->dispose = app_import_errors_dispose;
  object_class->finalize = app_import_errors_finalize;

  /**
   * AppImportErrors:n-errors:
   *
   * How many failures the toast shown tells of; 0 when there is no toast.
   */
  properties[PROP_N_ERRORS] =
    g_param_spec_uint ("n-errors", NULL, NULL, 0, G_MAXUINT, 0,
                       G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  /**
   * AppImportErrors:overlay:
   *
   * Where the toast is shown; not held, the overlay goes with its window.
   */
  properties[PROP_OVERLAY] =
    g_param_spec_object ("overlay", NULL, NULL, ADW_TYPE_TOAST_OVERLAY,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
app_import_errors_init (AppImportErrors *self)
{
  self->messages = g_ptr_array_new_with_free_func (g_free);
}
