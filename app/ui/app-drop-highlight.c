/* app-drop-highlight.c - what shows over the window while images are dragged over it.
 *
 * The window takes drops anywhere, which nothing says while a file is dragged: this widget,
 * laid over the window's content, frames it in the accent colour and says what a drop does.
 * It follows the drag with a GtkDropControllerMotion on the window, beside the window's drop
 * target (which does the drop): shown when a drag of images comes in, hidden when it leaves
 * or is dropped. It never takes the pointer, so the drop still reaches the window.
 */
#define G_LOG_DOMAIN "sightline-drop-highlight"

#include "app-drop-highlight.h"

#include <glib/gi18n.h>

struct _AppDropHighlight
{
  GtkWidget parent_instance;

  GtkWidget *box;
  GdkContentFormats *formats;    /* what a drag must offer to show this; NULL: anything */
  gboolean active;
};

G_DEFINE_FINAL_TYPE (AppDropHighlight, app_drop_highlight, GTK_TYPE_WIDGET)

enum {
  PROP_0,
  PROP_ACTIVE,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

void
app_drop_highlight_set_active (AppDropHighlight *self,
                               gboolean          active)
{
  g_return_if_fail (APP_IS_DROP_HIGHLIGHT (self));

  active = !!active;
  if (self->active == active)
    return;
  self->active = active;
  gtk_widget_set_visible (GTK_WIDGET (self), active);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_ACTIVE]);
}

gboolean
app_drop_highlight_get_active (AppDropHighlight *self)
{
  g_return_val_if_fail (APP_IS_DROP_HIGHLIGHT (self), FALSE);

  return self->active;
}

/* A drag came over the window: shown if it brings something the window takes. (A drag always
 * has its drop here; without one, as when the signal is emitted by hand, it is shown.) */
static void
drag_enter_cb (GtkDropControllerMotion *motion,
               double                   x,
               double                   y,
               AppDropHighlight        *self)
{
  GdkDrop *drop = gtk_drop_controller_motion_get_drop (motion);

  if (drop && self->formats &&
      !gdk_content_formats_match (gdk_drop_get_formats (drop), self->formats))
    return;
  app_drop_highlight_set_active (self, TRUE);
}

static void
drag_leave_cb (GtkDropControllerMotion *motion,
               AppDropHighlight        *self)
{
  app_drop_highlight_set_active (self, FALSE);
}

void
app_drop_highlight_track (AppDropHighlight  *self,
                          GtkWidget         *target,
                          GdkContentFormats *formats)
{
  GtkEventController *motion;

  g_return_if_fail (APP_IS_DROP_HIGHLIGHT (self));
  g_return_if_fail (GTK_IS_WIDGET (target));

  g_clear_pointer (&self->formats, gdk_content_formats_unref);
  self->formats = formats ? gdk_content_formats_ref (formats) : NULL;
  motion = gtk_drop_controller_motion_new ();
  g_signal_connect_object (motion, "enter", G_CALLBACK (drag_enter_cb), self, 0);
  g_signal_connect_object (motion, "leave", G_CALLBACK (drag_leave_cb), self, 0);
  gtk_widget_add_controller (target, motion);
}

AppDropHighlight *
app_drop_highlight_new (void)
{
  return g_object_new (APP_TYPE_DROP_HIGHLIGHT, NULL);
}

static void
app_drop_highlight_get_property (GObject    *object,
                                 guint       prop_id,
                                 GValue     *value,
                                 GParamSpec *pspec)
{
  AppDropHighlight *self = APP_DROP_HIGHLIGHT (object);

  switch (prop_id)
    {
    case PROP_ACTIVE:
      g_value_set_boolean (value, self->active);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_drop_highlight_set_property (GObject      *object,
                                 guint         prop_id,
                                 const GValue *value,
                                 GParamSpec   *pspec)
{
  AppDropHighlight *self = APP_DROP_HIGHLIGHT (object);

  switch (prop_id)
    {
    case PROP_ACTIVE:
      app_drop_highlight_set_active (self, g_value_get_boolean (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_drop_highlight_dispose (GObject *object)
{
  AppDropHighlight *self = APP_DROP_HIGHLIGHT (object);

  g_clear_pointer (&self->box, gtk_widget_unparent);
  g_clear_pointer (&self->formats, gdk_content_formats_unref);
  G_OBJECT_CLASS (app_drop_highlight_parent_class)->dispose (object);
}

static void
app_drop_highlight_class_init (AppDropHighlightClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->get_property = app_drop_highlight_get_property;
  object_class->set_property = app_drop_highlight_set_property;
  object_class->dispose = app_drop_highlight_dispose;

  /**
   * AppDropHighlight:active:
   *
   * Whether a drag of images is over the window: the highlight is shown.
   */
  properties[PROP_ACTIVE] =
    g_param_spec_boolean ("active", NULL, NULL, FALSE,
                          G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "drophighlight");
}

static void
app_drop_highlight_init (AppDropHighlight *self)
{
  GtkWidget *icon, *label;

  self->box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 12);
  gtk_widget_set_halign (self->box, GTK_ALIGN_CENTER);
  gtk_widget_set_valign (self->box, GTK_ALIGN_CENTER);
  gtk_widget_set_parent (self->box, GTK_WIDGET (self));

  icon = gtk_image_new_from_icon_name ("image-x-generic-symbolic");
  gtk_image_set_pixel_size (GTK_IMAGE (icon), 64);
  gtk_box_append (GTK_BOX (self->box), icon);
  label = gtk_label_new (_("Drop images to ask about them"));
  gtk_label_set_wrap (GTK_LABEL (label), TRUE);
  gtk_label_set_justify (GTK_LABEL (label), GTK_JUSTIFY_CENTER);
  gtk_widget_add_css_class (label, "title-2");
  gtk_box_append (GTK_BOX (self->box), label);

  /* the drop goes through to the window */
  gtk_widget_set_can_target (GTK_WIDGET (self), FALSE);
  gtk_widget_set_visible (GTK_WIDGET (self), FALSE);
}
