/* app-wrap-box.c - children in a row that wraps onto more rows when the width runs out.
 *
 * A message's images sit in one of these: as many side by side as the width allows, then the
 * next row. Each child gets its natural width, or the whole row's width when that is less (it
 * is never given less than its minimum). The box is height-for-width: its minimum width is
 * its widest child's minimum, so any number of images leaves the window as narrow as one of
 * them, and its height is what the rows need at the width it is given.
 */
#define G_LOG_DOMAIN "sightline-wrap-box"

#include "app-wrap-box.h"

struct _AppWrapBox
{
  GtkWidget parent_instance;

  int spacing;
};

G_DEFINE_FINAL_TYPE (AppWrapBox, app_wrap_box, GTK_TYPE_WIDGET)

enum {
  PROP_0,
  PROP_SPACING,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

/* Lays the children out in `width`: their boxes when `allocate`, the height needed always. */
static int
layout (AppWrapBox *self,
        int         width,
        gboolean    allocate)
{
  int x = 0, y = 0, line_height = 0;
  gboolean line_empty = TRUE;

  for (GtkWidget *c = gtk_widget_get_first_child (GTK_WIDGET (self)); c;
       c = gtk_widget_get_next_sibling (c))
    {
      int min_w, nat_w, min_h, nat_h, w;

      if (!gtk_widget_should_layout (c))
        continue;
      gtk_widget_measure (c, GTK_ORIENTATION_HORIZONTAL, -1, &min_w, &nat_w, NULL, NULL);
      w = MAX (min_w, MIN (nat_w, width));
      if (!line_empty && x + self->spacing + w > width)
        {
          y += line_height + self->spacing;
          x = 0;
          line_height = 0;
          line_empty = TRUE;
        }
      if (!line_empty)
        x += self->spacing;
      gtk_widget_measure (c, GTK_ORIENTATION_VERTICAL, w, &min_h, &nat_h, NULL, NULL);
      if (allocate)
        gtk_widget_size_allocate (c, &(GtkAllocation) { x, y, w, nat_h }, -1);
      x += w;
      line_height = MAX (line_height, nat_h);
      line_empty = FALSE;
    }
  return line_empty && y == 0 ? 0 : y + line_height;
}

static void
app_wrap_box_measure (GtkWidget      *widget,
                      GtkOrientation  orientation,
                      int             for_size,
                      int            *minimum,
                      int            *natural,
                      int            *minimum_baseline,
                      int            *natural_baseline)
{
  AppWrapBox *self = APP_WRAP_BOX (widget);

  if (orientation == GTK_ORIENTATION_HORIZONTAL)
    {
      int n = 0;

      *minimum = *natural = 0;
      for (GtkWidget *c = gtk_widget_get_first_child (widget); c;
           c = gtk_widget_get_next_sibling (c))
        {
          int min, nat;

          if (!gtk_widget_should_layout (c))
            continue;
          gtk_widget_measure (c, GTK_ORIENTATION_HORIZONTAL, -1, &min, &nat, NULL, NULL);
          *minimum = MAX (*minimum, min);
          *natural += nat + (n++ > 0 ? self->spacing : 0);
        }
    }
  else if (for_size >= 0)
    {
      *minimum = *natural = layout (self, for_size, FALSE);
    }
  else
    {
      int min_w, nat_w;

      /* with no width given: at the natural width, one row */
      app_wrap_box_measure (widget, GTK_ORIENTATION_HORIZONTAL, -1, &min_w, &nat_w, NULL, NULL);
      *minimum = *natural = layout (self, nat_w, FALSE);
    }
}

static GtkSizeRequestMode
app_wrap_box_get_request_mode (GtkWidget *widget)
{
  return GTK_SIZE_REQUEST_HEIGHT_FOR_WIDTH;
}

static void
app_wrap_box_size_allocate (GtkWidget *widget,
                            int        width,
                            int        height,
                            int        baseline)
{
  layout (APP_WRAP_BOX (widget), width, TRUE);
}

static void
app_wrap_box_dispose (GObject *object)
{
  app_wrap_box_remove_all (APP_WRAP_BOX (object));
  G_OBJECT_CLASS (app_wrap_box_parent_class)->dispose (object);
}

static void
app_wrap_box_get_property (GObject    *object,
                           guint       prop_id,
                           GValue     *value,
                           GParamSpec *pspec)
{
  switch (prop_id)
    {
    case PROP_SPACING:
      g_value_set_int (value, APP_WRAP_BOX (object)->spacing);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_wrap_box_set_property (GObject      *object,
                           guint         prop_id,
                           const GValue *value,
                           GParamSpec   *pspec)
{
  AppWrapBox *self = APP_WRAP_BOX (object);

  switch (prop_id)
    {
    case PROP_SPACING:
      if (self->spacing != g_value_get_int (value))
        {
          self->spacing = g_value_get_int (value);
          gtk_widget_queue_resize (GTK_WIDGET (self));
          g_object_notify_by_pspec (object, pspec);
        }
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_wrap_box_class_init (AppWrapBoxClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = app_wrap_box_dispose;
  object_class->get_property = app_wrap_box_get_property;
  object_class->set_property = app_wrap_box_set_property;
  widget_class->measure = app_wrap_box_measure;
  widget_class->get_request_mode = app_wrap_box_get_request_mode;
  widget_class->size_allocate = app_wrap_box_size_allocate;
  gtk_widget_class_set_css_name (widget_class, "wrapbox");

  properties[PROP_SPACING] =
    g_param_spec_int ("spacing", NULL, NULL, 0, G_MAXINT, 0,
                      G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
app_wrap_box_init (AppWrapBox *self)
{
}

GtkWidget *
app_wrap_box_new (int spacing)
{
  return g_object_new (APP_TYPE_WRAP_BOX, "spacing", spacing, NULL);
}

void
app_wrap_box_append (AppWrapBox *self,
                     GtkWidget  *child)
{
  g_return_if_fail (APP_IS_WRAP_BOX (self));
  g_return_if_fail (gtk_widget_get_parent (child) == NULL);

  gtk_widget_insert_before (child, GTK_WIDGET (self), NULL);
}

void
app_wrap_box_remove (AppWrapBox *self,
                     GtkWidget  *child)
{
  g_return_if_fail (APP_IS_WRAP_BOX (self));
  g_return_if_fail (gtk_widget_get_parent (child) == GTK_WIDGET (self));

  gtk_widget_unparent (child);
}

void
app_wrap_box_remove_all (AppWrapBox *self)
{
  GtkWidget *child;

  g_return_if_fail (APP_IS_WRAP_BOX (self));

  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self))))
    gtk_widget_unparent (child);
}
