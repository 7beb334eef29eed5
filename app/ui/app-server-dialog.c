/* app-server-dialog.c - see app-server-dialog.h. */
#include "app-server-dialog.h"

#include <glib/gi18n.h>
#include <string.h>

#include "app-remote.h"

typedef struct
{
  GtkWindow *window;               /* owns this */
  AppModelManager *manager;
  AppServerAddedFunc added;
  gpointer user_data;
  GDestroyNotify destroy;
  GCancellable *cancellable;
  AdwEntryRow *address;
  AdwPasswordEntryRow *key;
  AdwComboRow *model;
  GtkStringList *models;
  GtkLabel *status;
  GtkButton *action;               /* Connect, then Add */
  GtkSpinner *spinner;
  char *base_url;                  /* the address the models were listed for */
} Dialog;

static void
dialog_free (gpointer p)
{
  Dialog *d = p;

  g_cancellable_cancel (d->cancellable);
  g_clear_object (&d->cancellable);
  g_clear_object (&d->manager);
  if (d->destroy)
    d->destroy (d->user_data);
  g_free (d->base_url);
  g_free (d);
}

static void
set_busy (Dialog     *d,
          gboolean    busy,
          const char *status)
{
  gtk_widget_set_sensitive (GTK_WIDGET (d->action), !busy);
  gtk_spinner_set_spinning (d->spinner, busy);
  gtk_widget_set_visible (GTK_WIDGET (d->spinner), busy);
  gtk_label_set_text (d->status, status ? status : "");
  gtk_widget_set_visible (GTK_WIDGET (d->status), status != NULL);
}

/* Whatever is typed after a successful Connect makes the models stale: Connect again. */
static void
input_changed_cb (Dialog *d)
{
  if (!d->base_url)
    return;
  g_clear_pointer (&d->base_url, g_free);
  gtk_widget_set_visible (GTK_WIDGET (d->model), FALSE);
  gtk_button_set_label (d->action, _("C_onnect"));
}

static void
added_cb (GObject      *source,
          GAsyncResult *result,
          gpointer      user_data)
{
  Dialog *d = user_data;
  g_autoptr(GError) error = NULL;
  g_autofree char *warning = NULL;
  const char *model;

  if (!app_model_manager_add_server_finish (APP_MODEL_MANAGER (source), result, &warning,
                                            &error))
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        set_busy (d, FALSE, error->message);
      return;
    }
  model = gtk_string_list_get_string (d->models, adw_combo_row_get_selected (d->model));
  if (d->added)
    d->added (model, warning, d->user_data);
  gtk_window_destroy (d->window);
}

static void
add (Dialog *d)
{
  guint i = adw_combo_row_get_selected (d->model);
  const char *model = i == GTK_INVALID_LIST_POSITION ? NULL
                                                     : gtk_string_list_get_string (d->models, i);

  if (!model)
    return;
  set_busy (d, TRUE, NULL);
  app_model_manager_add_server_async (d->manager, d->base_url, model,
                                      gtk_editable_get_text (GTK_EDITABLE (d->key)),
                                      d->cancellable, added_cb, d);
}

static void
probed_cb (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  Dialog *d = user_data;
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) models = app_model_manager_probe_server_finish (APP_MODEL_MANAGER (source),
                                                                result, &error);
  guint preferred = 0;

  if (!models)
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        {
          g_clear_pointer (&d->base_url, g_free);
          set_busy (d, FALSE, error->message);
        }
      return;
    }
  if (!models[0])
    {
      g_clear_pointer (&d->base_url, g_free);
      set_busy (d, FALSE, _("The server serves no model."));
      return;
    }
  gtk_string_list_splice (d->models, 0, g_list_model_get_n_items (G_LIST_MODEL (d->models)),
                          (const char * const *) models);
  /* DeepSeek-VL2 is what Sightline is for: choose it when the server has it */
  for (guint i = 0; models[i]; i++)
    if (strstr (models[i], "vl2") || strstr (models[i], "VL2"))
      {
        preferred = i;
        break;
      }
  adw_combo_row_set_selected (d->model, preferred);
  gtk_widget_set_visible (GTK_WIDGET (d->model), TRUE);
  gtk_button_set_label (d->action, _("_Add"));
  set_busy (d, FALSE, NULL);
  /* one model: nothing to choose */
  if (!models[1])
    add (d);
}

static void
action_cb (Dialog *d)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *url = NULL;

  if (d->base_url)
    {
      add (d);
      return;
    }
  url = app_remote_normalize_url (gtk_editable_get_text (GTK_EDITABLE (d->address)), &error);
  if (!url)
    {
      set_busy (d, FALSE, error->message);
      return;
    }
  /* what is connected to, as it will be kept */
  g_signal_handlers_block_by_func (d->address, input_changed_cb, d);
  gtk_editable_set_text (GTK_EDITABLE (d->address), url);
  g_signal_handlers_unblock_by_func (d->address, input_changed_cb, d);
  d->base_url = g_strdup (url);
  set_busy (d, TRUE, NULL);
  app_model_manager_probe_server_async (d->manager, url,
                                        gtk_editable_get_text (GTK_EDITABLE (d->key)),
                                        d->cancellable, probed_cb, d);
}

GtkWindow *
app_server_dialog_new (GtkWindow         *parent,
                       AppModelManager   *manager,
                       AppServerAddedFunc added,
                       gpointer           user_data,
                       GDestroyNotify     destroy)
{
  Dialog *d = g_new0 (Dialog, 1);
  GtkWidget *window = adw_window_new ();
  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 0);
  GtkWidget *header = adw_header_bar_new ();
  GtkWidget *cancel = gtk_button_new_with_mnemonic (_("_Cancel"));
  GtkWidget *clamp = adw_clamp_new ();
  GtkWidget *group = adw_preferences_group_new ();
  GtkWidget *list = gtk_list_box_new ();
  GtkWidget *status = gtk_label_new (NULL);
  GtkWidget *spinner = gtk_spinner_new ();
  GtkWidget *action = gtk_button_new_with_mnemonic (_("C_onnect"));

  d->window = GTK_WINDOW (window);
  d->manager = g_object_ref (manager);
  d->added = added;
  d->user_data = user_data;
  d->destroy = destroy;
  d->cancellable = g_cancellable_new ();
  d->models = gtk_string_list_new (NULL);
  g_object_set_data_full (G_OBJECT (window), "app-server-dialog", d, dialog_free);

  gtk_window_set_title (GTK_WINDOW (window), _("Add a Server"));
  gtk_window_set_modal (GTK_WINDOW (window), TRUE);
  gtk_window_set_transient_for (GTK_WINDOW (window), parent);
  gtk_window_set_destroy_with_parent (GTK_WINDOW (window), TRUE);
  gtk_window_set_default_size (GTK_WINDOW (window), 520, -1);

  adw_header_bar_set_show_end_title_buttons (ADW_HEADER_BAR (header), FALSE);
  adw_header_bar_set_show_start_title_buttons (ADW_HEADER_BAR (header), FALSE);
  g_signal_connect_swapped (cancel, "clicked", G_CALLBACK (gtk_window_destroy), window);
  adw_header_bar_pack_start (ADW_HEADER_BAR (header), cancel);
  gtk_widget_add_css_class (action, "suggested-action");
  adw_header_bar_pack_end (ADW_HEADER_BAR (header), action);
  adw_header_bar_pack_end (ADW_HEADER_BAR (header), spinner);
  gtk_widget_set_visible (spinner, FALSE);
  d->action = GTK_BUTTON (action);
  d->spinner = GTK_SPINNER (spinner);
  g_signal_connect_swapped (action, "clicked", G_CALLBACK (action_cb), d);

  adw_preferences_group_set_description (
    ADW_PREFERENCES_GROUP (group),
    _("A server that runs DeepSeek-VL2 with an OpenAI-compatible API: vLLM, SGLang, or "
      "vl2-server on another computer. Images are sent to it with your questions."));
  gtk_list_box_set_selection_mode (GTK_LIST_BOX (list), GTK_SELECTION_NONE);
  gtk_widget_add_css_class (list, "boxed-list");
  d->address = ADW_ENTRY_ROW (adw_entry_row_new ());
  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (d->address), _("Address"));
  gtk_widget_set_tooltip_text (GTK_WIDGET (d->address), _("For example http://gpu-box:8000/v1"));
  g_signal_connect_swapped (d->address, "changed", G_CALLBACK (input_changed_cb), d);
  g_signal_connect_swapped (d->address, "entry-activated", G_CALLBACK (action_cb), d);
  gtk_list_box_append (GTK_LIST_BOX (list), GTK_WIDGET (d->address));
  d->key = ADW_PASSWORD_ENTRY_ROW (adw_password_entry_row_new ());
  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (d->key), _("API Key (if it needs one)"));
  g_signal_connect_swapped (d->key, "changed", G_CALLBACK (input_changed_cb), d);
  g_signal_connect_swapped (d->key, "entry-activated", G_CALLBACK (action_cb), d);
  gtk_list_box_append (GTK_LIST_BOX (list), GTK_WIDGET (d->key));
  d->model = ADW_COMBO_ROW (adw_combo_row_new ());
  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (d->model), _("Model"));
  adw_combo_row_set_model (d->model, G_LIST_MODEL (d->models));
  g_object_unref (d->models); /* the row keeps it */
  gtk_widget_set_visible (GTK_WIDGET (d->model), FALSE);
  gtk_list_box_append (GTK_LIST_BOX (list), GTK_WIDGET (d->model));
  adw_preferences_group_add (ADW_PREFERENCES_GROUP (group), list);

  gtk_label_set_wrap (GTK_LABEL (status), TRUE);
  gtk_label_set_xalign (GTK_LABEL (status), 0);
  gtk_label_set_selectable (GTK_LABEL (status), TRUE);
  gtk_widget_add_css_class (status, "error");
  gtk_widget_set_margin_top (status, 12);
  gtk_widget_set_visible (status, FALSE);
  d->status = GTK_LABEL (status);
  adw_preferences_group_add (ADW_PREFERENCES_GROUP (group), status);

  /* no scrolling: the window grows with what it shows (the model row, an error) */
  adw_clamp_set_child (ADW_CLAMP (clamp), group);
  gtk_widget_set_margin_top (clamp, 18);
  gtk_widget_set_margin_bottom (clamp, 24);
  gtk_widget_set_margin_start (clamp, 12);
  gtk_widget_set_margin_end (clamp, 12);
  gtk_box_append (GTK_BOX (box), header);
  gtk_box_append (GTK_BOX (box), clamp);
  adw_window_set_content (ADW_WINDOW (window), box);
  gtk_widget_grab_focus (GTK_WIDGET (d->address));
  return GTK_WINDOW (window);
}
