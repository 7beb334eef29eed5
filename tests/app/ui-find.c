/* ui-find.c - see ui-find.h. */
#include "ui-find.h"

#include <adwaita.h>

#include <string.h>

/* The first widget under `root` that `match` accepts, looking only where `shown` says yes. */
static GtkWidget *
find_shown (GtkWidget     *root,
            gboolean     (*shown) (GtkWidget *),
            UiMatch        match,
            gconstpointer  data)
{
  if (!shown (root))
    return NULL;
  if (match (root, data))
    return root;
  for (GtkWidget *c = gtk_widget_get_first_child (root); c; c = gtk_widget_get_next_sibling (c))
    {
      GtkWidget *found = find_shown (c, shown, match, data);

      if (found)
        return found;
    }
  return NULL;
}

GtkWidget *
ui_find_mapped (GtkWidget     *root,
                UiMatch        match,
                gconstpointer  data)
{
  return find_shown (root, gtk_widget_get_mapped, match, data);
}

GtkWidget *
ui_find_visible (GtkWidget     *root,
                 UiMatch        match,
                 gconstpointer  data)
{
  return find_shown (root, gtk_widget_get_visible, match, data);
}

static gboolean
is_label_with (GtkWidget     *w,
               gconstpointer  needle)
{
  return GTK_IS_LABEL (w) && strstr (gtk_label_get_text (GTK_LABEL (w)), needle);
}

GtkWidget *
ui_find_label (GtkWidget  *root,
               const char *needle)
{
  return ui_find_mapped (root, is_label_with, needle);
}

static gboolean
is_action_button (GtkWidget     *w,
                  gconstpointer  action)
{
  return GTK_IS_BUTTON (w) &&
         g_strcmp0 (gtk_actionable_get_action_name (GTK_ACTIONABLE (w)), action) == 0;
}

GtkWidget *
ui_find_action_button (GtkWidget  *root,
                       const char *action)
{
  return ui_find_mapped (root, is_action_button, action);
}

static gboolean
is_icon (GtkWidget     *w,
         gconstpointer  name)
{
  return GTK_IS_IMAGE (w) && g_strcmp0 (gtk_image_get_icon_name (GTK_IMAGE (w)), name) == 0;
}

GtkWidget *
ui_find_icon (GtkWidget  *root,
              const char *icon_name)
{
  return ui_find_mapped (root, is_icon, icon_name);
}

static gboolean
is_type (GtkWidget     *w,
         gconstpointer  type)
{
  return G_TYPE_CHECK_INSTANCE_TYPE (w, GPOINTER_TO_SIZE (type));
}

GtkWidget *
ui_find_type (GtkWidget *root,
              GType      type)
{
  return ui_find_mapped (root, is_type, GSIZE_TO_POINTER (type));
}

GtkWidget *
ui_find_any (GtkWidget *root,
             GType      type)
{
  if (G_TYPE_CHECK_INSTANCE_TYPE (root, type))
    return root;
  for (GtkWidget *c = gtk_widget_get_first_child (root); c; c = gtk_widget_get_next_sibling (c))
    {
      GtkWidget *found = ui_find_any (c, type);

      if (found)
        return found;
    }
  return NULL;
}

gboolean
ui_find_shows_text (GtkWidget  *root,
                    const char *text)
{
  return ui_find_visible (root, is_label_with, text) != NULL;
}
gboolean
ui_find_toast (GtkWidget  *root,
               const char *text)
{
  return ui_find_shows_text (ui_find_any (root, ADW_TYPE_TOAST_OVERLAY), text);
}

GtkListView *
ui_find_chat_list (GtkWidget *root)
{
  if (GTK_IS_LIST_VIEW (root) &&
      GTK_IS_SINGLE_SELECTION (gtk_list_view_get_model (GTK_LIST_VIEW (root))))
    return GTK_LIST_VIEW (root);
  for (GtkWidget *c = gtk_widget_get_first_child (root); c; c = gtk_widget_get_next_sibling (c))
    {
      GtkListView *found = ui_find_chat_list (c);

      if (found)
        return found;
    }
  return NULL;
}

guint
ui_find_chat_position (GtkWidget *root,
                       gpointer   chat)
{
  GtkListView *list = ui_find_chat_list (root);
  GListModel *chats;

  g_assert_nonnull (list);
  chats = G_LIST_MODEL (gtk_list_view_get_model (list));
  for (guint i = 0; i < g_list_model_get_n_items (chats); i++)
    {
      g_autoptr(GObject) c = g_list_model_get_item (chats, i);

      if (c == chat)
        return i;
    }
  g_error ("the chat is not in the sidebar");
}

GtkEventController *
ui_find_controller (GtkWidget *widget,
                    GType      type)
{
  g_autoptr(GListModel) controllers = gtk_widget_observe_controllers (widget);
  GtkEventController *found = NULL;

  for (guint i = 0; i < g_list_model_get_n_items (controllers) && !found; i++)
    {
      g_autoptr(GtkEventController) c = g_list_model_get_item (controllers, i);

      if (G_TYPE_CHECK_INSTANCE_TYPE (c, type))
        found = c;   /* the widget keeps it */
    }
  return found;
}

static gboolean
is_send_button (GtkWidget     *w,
                gconstpointer  data)
{
  const char *icon = GTK_IS_BUTTON (w) ? gtk_button_get_icon_name (GTK_BUTTON (w)) : NULL;

  return g_strcmp0 (icon, "go-up-symbolic") == 0 ||
         g_strcmp0 (icon, "media-playback-stop-symbolic") == 0;
}

GtkWidget *
ui_find_send_button (GtkWidget *composer)
{
  return ui_find_mapped (composer, is_send_button, NULL);
}
