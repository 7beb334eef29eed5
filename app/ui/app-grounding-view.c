/* app-grounding-view.c - an image with the boxes of a grounded answer drawn over it.
 *
 * Coordinates go grid -> image pixels -> widget: app_grounding_box_to_pixels() maps the model's
 * 0..999 grid onto the image as displayed (EXIF orientation applied, the picture the model
 * saw) exactly as the official demo does, so a box is drawn on the same pixels that
 * "Copy Boxes" reports; then one scale and offset place the image in the widget, fitted or
 * zoomed. Everything is drawn in logical pixels with GtkSnapshot, so HiDPI screens get sharp
 * lines for free, and the same drawing code renders the export at the image's own size.
 *
 * Each label has its colour (app_grounding_color); boxes are outlined, the label sits on a tab
 * above the box's top-left corner (inside the box when there is no room above). A highlighted
 * ref is filled lightly and the others fade, so pointing at a chip in the text, or at a box,
 * shows what belongs together.
 */
#define G_LOG_DOMAIN "sightline-grounding-view"

#include "app-grounding-view.h"

#include <adwaita.h>
#include <glib/gi18n.h>

#include "app-thumbnail.h"

/* Outline width and label size in logical pixels at scale 1. */
#define STROKE 2.0
#define STROKE_HIGHLIGHT 3.0
#define LABEL_PAD_X 4.0
#define LABEL_PAD_Y 1.0
#define FADED_ALPHA 0.3f
#define FILL_ALPHA 0.2f

struct _AppGroundingView
{
  GtkWidget parent_instance;

  GdkTexture *texture;
  char *answer;
  gboolean streaming;
  AppGrounding *grounding;
  int highlight;      /* set by the owner */
  int hovered;        /* under the pointer, -1 off every box */
  double zoom;
  int natural_height;
  gboolean fit_upscale;
};

G_DEFINE_FINAL_TYPE (AppGroundingView, app_grounding_view, GTK_TYPE_WIDGET)

enum {
  PROP_0,
  PROP_TEXTURE,
  PROP_ANSWER,
  PROP_HIGHLIGHT,
  PROP_ZOOM,
  PROP_NATURAL_HEIGHT,
  PROP_FIT_UPSCALE,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

enum {
  REF_HOVERED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

/* ------------------------------------------------------------------------------------------
 * Geometry
 */

/* The image's rectangle in a width x height area: fitted (contain) or zoomed, centred. */
static gboolean
image_rect (AppGroundingView *self,
            double            width,
            double            height,
            graphene_rect_t  *out)
{
  double tw, th, s;

  if (!self->texture)
    return FALSE;
  tw = gdk_texture_get_width (self->texture);
  th = gdk_texture_get_height (self->texture);
  if (self->zoom > 0)
    s = self->zoom;
  else
    s = MIN (width / tw, height / th);
  if (self->zoom <= 0 && !self->fit_upscale)
    s = MIN (s, 1);
  if (s <= 0)
    return FALSE;
  graphene_rect_init (out, MAX (0, (width - tw * s) / 2), MAX (0, (height - th * s) / 2),
                      tw * s, th * s);
  return TRUE;
}

/* What a drawing needs: the image's own size (boxes map onto its pixels), the refs, the one
 * that stands out, and a widget for fonts. */
typedef struct
{
  GtkWidget *widget;
  int width, height;
  const AppGrounding *grounding;
  int active;
} Drawing;

/* A box in the coordinates of `image` (the image drawn at that rectangle). */
static void
box_rect (const Drawing         *d,
          const AppGroundingBox *box,
          const graphene_rect_t *image,
          graphene_rect_t       *out)
{
  double s = image->size.width / d->width;
  int x, y, w, h;

  app_grounding_box_to_pixels (box, d->width, d->height, &x, &y, &w, &h);
  graphene_rect_init (out, image->origin.x + x * s, image->origin.y + y * s, w * s, h * s);
}

static Drawing
drawing (AppGroundingView *self)
{
  return (Drawing) {
    GTK_WIDGET (self),
    self->texture ? gdk_texture_get_width (self->texture) : 1,
    self->texture ? gdk_texture_get_height (self->texture) : 1,
    self->grounding,
    self->hovered >= 0 ? self->hovered : self->highlight,
  };
}

static const AppGroundingRef *
get_ref (const AppGrounding *g,
         guint               i)
{
  if (!g || i >= g->refs->len)
    return NULL;
  return g_ptr_array_index (g->refs, i);
}

/* ------------------------------------------------------------------------------------------
 * Drawing
 */

static GdkRGBA
ref_color (const AppGroundingRef *ref,
           float                  alpha)
{
  guint32 c = app_grounding_color (ref->color);

  return (GdkRGBA) { (c >> 16) / 255.f, ((c >> 8) & 0xff) / 255.f, (c & 0xff) / 255.f, alpha };
}

static void
draw_label (const Drawing         *d,
            GtkSnapshot           *snapshot,
            const AppGroundingRef *ref,
            const graphene_rect_t *box,
            const graphene_rect_t *image,
            double                 scale,
            float                  alpha)
{
  g_autoptr(PangoLayout) layout = gtk_widget_create_pango_layout (d->widget, ref->label);
  PangoFontDescription *font = pango_font_description_new ();
  GdkRGBA bg = ref_color (ref, alpha);
  guint32 c = app_grounding_color (ref->color);
  double luma = (0.2126 * (c >> 16) + 0.7152 * ((c >> 8) & 0xff) + 0.0722 * (c & 0xff)) / 255;
  GdkRGBA fg = luma > 0.5 ? (GdkRGBA) { 0, 0, 0, alpha } : (GdkRGBA) { 1, 1, 1, alpha };
  PangoRectangle ink, logical;
  double w, h, x, y;

  pango_font_description_set_weight (font, PANGO_WEIGHT_BOLD);
  pango_font_description_set_absolute_size (font, 12 * scale * PANGO_SCALE);
  pango_layout_set_font_description (layout, font);
  pango_font_description_free (font);
  pango_layout_set_ellipsize (layout, PANGO_ELLIPSIZE_END);
  pango_layout_set_width (layout, (int) (MAX (box->size.width, 80 * scale) * PANGO_SCALE));
  pango_layout_get_pixel_extents (layout, &ink, &logical);

  w = logical.width + 2 * LABEL_PAD_X * scale;
  h = logical.height + 2 * LABEL_PAD_Y * scale;
  x = MIN (box->origin.x, image->origin.x + image->size.width - w);
  x = MAX (x, image->origin.x);
  y = box->origin.y - h;
  if (y < image->origin.y)
    y = box->origin.y;
  gtk_snapshot_append_color (snapshot, &bg, &GRAPHENE_RECT_INIT (x, y, w, h));
  gtk_snapshot_save (snapshot);
  gtk_snapshot_translate (snapshot, &GRAPHENE_POINT_INIT (x + LABEL_PAD_X * scale - logical.x,
                                                          y + LABEL_PAD_Y * scale));
  gtk_snapshot_append_layout (snapshot, layout, &fg);
  gtk_snapshot_restore (snapshot);
}

/* Boxes and labels over `image`; `scale` sizes lines and text (1 on screen). */
static void
draw_boxes (const Drawing         *d,
            GtkSnapshot           *snapshot,
            const graphene_rect_t *image,
            double                 scale)
{
  if (!d->grounding)
    return;
  /* the highlighted ref last, on top of the others */
  for (guint pass = 0; pass < 2; pass++)
    for (guint i = 0; i < d->grounding->refs->len; i++)
      {
        const AppGroundingRef *ref = get_ref (d->grounding, i);
        gboolean on = (int) i == d->active;
        float alpha = d->active < 0 || on ? 1.f : FADED_ALPHA;
        double stroke = (on ? STROKE_HIGHLIGHT : STROKE) * scale;
        GdkRGBA color = ref_color (ref, alpha);
        GdkRGBA fill = ref_color (ref, FILL_ALPHA);

        if ((pass == 1) != on)
          continue;
        for (guint b = 0; b < ref->boxes->len; b++)
          {
            graphene_rect_t r;
            GskRoundedRect outline;
            float widths[4] = { stroke, stroke, stroke, stroke };
            GdkRGBA colors[4] = { color, color, color, color };

            box_rect (d, &g_array_index (ref->boxes, AppGroundingBox, b), image, &r);
            if (on)
              gtk_snapshot_append_color (snapshot, &fill, &r);
            gsk_rounded_rect_init_from_rect (&outline, &r, 0);
            gtk_snapshot_append_border (snapshot, &outline, widths, colors);
            if (ref->label && ref->label[0])
              draw_label (d, snapshot, ref, &r, image, scale, alpha);
          }
      }
}

static void
app_grounding_view_snapshot (GtkWidget   *widget,
                             GtkSnapshot *snapshot)
{
  AppGroundingView *self = APP_GROUNDING_VIEW (widget);
  Drawing d = drawing (self);
  graphene_rect_t image;

  if (!image_rect (self, gtk_widget_get_width (widget), gtk_widget_get_height (widget), &image))
    return;
  gtk_snapshot_append_texture (snapshot, self->texture, &image);
  draw_boxes (&d, snapshot, &image, 1);
}

GdkTexture *
app_grounding_render (GtkWidget          *widget,
                      GdkTexture         *texture,
                      const AppGrounding *grounding)
{
  GtkNative *native = gtk_widget_get_native (widget);
  Drawing d = { widget, 0, 0, grounding, -1 };
  GtkSnapshot *snapshot;
  g_autoptr(GskRenderNode) node = NULL;
  graphene_rect_t image;

  g_return_val_if_fail (GTK_IS_WIDGET (widget), NULL);
  g_return_val_if_fail (GDK_IS_TEXTURE (texture), NULL);
  if (!native || !gtk_native_get_renderer (native))
    return NULL;
  d.width = gdk_texture_get_width (texture);
  d.height = gdk_texture_get_height (texture);
  graphene_rect_init (&image, 0, 0, d.width, d.height);
  snapshot = gtk_snapshot_new ();
  gtk_snapshot_append_texture (snapshot, texture, &image);
  /* lines and labels in proportion to the image: a 4000-pixel photo gets thicker ones */
  draw_boxes (&d, snapshot, &image, MAX (1.0, MIN (d.width, d.height) / 400.0));
  node = gtk_snapshot_free_to_node (snapshot);
  return gsk_renderer_render_texture (gtk_native_get_renderer (native), node, &image);
}

/* ------------------------------------------------------------------------------------------
 * Size
 */

static void
app_grounding_view_measure (GtkWidget      *widget,
                            GtkOrientation  orientation,
                            int             for_size,
                            int            *minimum,
                            int            *natural,
                            int            *minimum_baseline,
                            int            *natural_baseline)
{
  AppGroundingView *self = APP_GROUNDING_VIEW (widget);
  double tw, th;

  *minimum = *natural = 0;
  if (!self->texture)
    return;
  tw = gdk_texture_get_width (self->texture);
  th = gdk_texture_get_height (self->texture);
  if (self->zoom > 0)
    {
      *minimum = *natural = (int) ceil ((orientation == GTK_ORIENTATION_HORIZONTAL ? tw : th) *
                                        self->zoom);
      return;
    }
  if (self->natural_height > 0)
    {
      double h = self->natural_height;

      if (orientation == GTK_ORIENTATION_VERTICAL && for_size >= 0)
        h = MIN (h, for_size * th / tw);
      *natural = (int) ceil (orientation == GTK_ORIENTATION_HORIZONTAL ? h * tw / th : h);
      /* a list view gives its rows their minimum height: the height for a width is exact */
      if (orientation == GTK_ORIENTATION_VERTICAL)
        {
          *minimum = *natural;
          return;
        }
    }
  else
    {
      *natural = (int) (orientation == GTK_ORIENTATION_HORIZONTAL ? tw : th);
    }
  *minimum = MIN (*natural, 32);
}

static GtkSizeRequestMode
app_grounding_view_get_request_mode (GtkWidget *widget)
{
  return GTK_SIZE_REQUEST_HEIGHT_FOR_WIDTH;
}

/* ------------------------------------------------------------------------------------------
 * Pointer
 */

static int
ref_at (AppGroundingView *self,
        double            x,
        double            y)
{
  Drawing d = drawing (self);
  graphene_rect_t image;
  int best = -1;
  double best_area = G_MAXDOUBLE;

  if (!self->grounding ||
      !image_rect (self, gtk_widget_get_width (GTK_WIDGET (self)),
                   gtk_widget_get_height (GTK_WIDGET (self)), &image))
    return -1;
  /* the smallest box under the pointer: a small thing inside a large one stays reachable */
  for (guint i = 0; i < self->grounding->refs->len; i++)
    {
      const AppGroundingRef *ref = get_ref (self->grounding, i);

      for (guint b = 0; b < ref->boxes->len; b++)
        {
          graphene_rect_t r;
          double area;

          box_rect (&d, &g_array_index (ref->boxes, AppGroundingBox, b), &image, &r);
          area = r.size.width * r.size.height;
          if (graphene_rect_contains_point (&r, &GRAPHENE_POINT_INIT (x, y)) && area < best_area)
            {
              best = (int) i;
              best_area = area;
            }
        }
    }
  return best;
}

static void
set_hovered (AppGroundingView *self,
             int               ref)
{
  if (self->hovered == ref)
    return;
  self->hovered = ref;
  gtk_widget_queue_draw (GTK_WIDGET (self));
  g_signal_emit (self, signals[REF_HOVERED], 0, ref);
}

static void
motion_cb (GtkEventControllerMotion *motion,
           double                    x,
           double                    y,
           AppGroundingView         *self)
{
  set_hovered (self, ref_at (self, x, y));
}

static void
leave_cb (GtkEventControllerMotion *motion,
          AppGroundingView         *self)
{
  set_hovered (self, -1);
}

/* ------------------------------------------------------------------------------------------
 * API
 */

AppGroundingView *
app_grounding_view_new (void)
{
  return g_object_new (APP_TYPE_GROUNDING_VIEW, NULL);
}

void
app_grounding_view_set_texture (AppGroundingView *self,
                                GdkTexture       *texture)
{
  g_return_if_fail (APP_IS_GROUNDING_VIEW (self));

  if (!g_set_object (&self->texture, texture))
    return;
  gtk_widget_queue_resize (GTK_WIDGET (self));
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_TEXTURE]);
}

GdkTexture *
app_grounding_view_get_texture (AppGroundingView *self)
{
  g_return_val_if_fail (APP_IS_GROUNDING_VIEW (self), NULL);

  return self->texture;
}

void
app_grounding_view_set_answer (AppGroundingView *self,
                               const char       *text,
                               gboolean          streaming)
{
  gboolean changed;

  g_return_if_fail (APP_IS_GROUNDING_VIEW (self));

  changed = g_strcmp0 (self->answer, text) != 0;
  if (!changed && self->streaming == streaming)
    return;
  g_free (self->answer);
  self->answer = g_strdup (text);
  self->streaming = streaming;
  g_clear_pointer (&self->grounding, app_grounding_free);
  if (text)
    self->grounding = app_grounding_parse (text, streaming);
  if (self->hovered >= 0 && !get_ref (self->grounding, (guint) self->hovered))
    self->hovered = -1;
  gtk_widget_queue_draw (GTK_WIDGET (self));
  if (changed)
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_ANSWER]);
}

const char *
app_grounding_view_get_answer (AppGroundingView *self)
{
  g_return_val_if_fail (APP_IS_GROUNDING_VIEW (self), NULL);

  return self->answer;
}

const AppGrounding *
app_grounding_view_get_grounding (AppGroundingView *self)
{
  g_return_val_if_fail (APP_IS_GROUNDING_VIEW (self), NULL);

  return self->grounding;
}

void
app_grounding_view_set_highlight (AppGroundingView *self,
                                  int               ref)
{
  g_return_if_fail (APP_IS_GROUNDING_VIEW (self));

  if (self->highlight == ref)
    return;
  self->highlight = ref;
  gtk_widget_queue_draw (GTK_WIDGET (self));
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_HIGHLIGHT]);
}

int
app_grounding_view_get_highlight (AppGroundingView *self)
{
  g_return_val_if_fail (APP_IS_GROUNDING_VIEW (self), -1);

  return self->highlight;
}

void
app_grounding_view_set_zoom (AppGroundingView *self,
                             double            zoom)
{
  g_return_if_fail (APP_IS_GROUNDING_VIEW (self));

  zoom = MAX (zoom, 0);
  if (self->zoom == zoom)
    return;
  self->zoom = zoom;
  gtk_widget_queue_resize (GTK_WIDGET (self));
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_ZOOM]);
}

double
app_grounding_view_get_zoom (AppGroundingView *self)
{
  g_return_val_if_fail (APP_IS_GROUNDING_VIEW (self), 0);

  return self->zoom;
}

void
app_grounding_view_set_natural_height (AppGroundingView *self,
                                       int               height)
{
  g_return_if_fail (APP_IS_GROUNDING_VIEW (self));

  height = MAX (height, 0);
  if (self->natural_height == height)
    return;
  self->natural_height = height;
  gtk_widget_queue_resize (GTK_WIDGET (self));
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_NATURAL_HEIGHT]);
}

int
app_grounding_view_get_natural_height (AppGroundingView *self)
{
  g_return_val_if_fail (APP_IS_GROUNDING_VIEW (self), 0);

  return self->natural_height;
}

void
app_grounding_view_set_fit_upscale (AppGroundingView *self,
                                    gboolean          upscale)
{
  g_return_if_fail (APP_IS_GROUNDING_VIEW (self));

  upscale = !!upscale;
  if (self->fit_upscale == upscale)
    return;
  self->fit_upscale = upscale;
  gtk_widget_queue_draw (GTK_WIDGET (self));
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_FIT_UPSCALE]);
}

gboolean
app_grounding_view_get_fit_upscale (AppGroundingView *self)
{
  g_return_val_if_fail (APP_IS_GROUNDING_VIEW (self), TRUE);

  return self->fit_upscale;
}

gboolean
app_grounding_view_get_image_bounds (AppGroundingView *self,
                                     graphene_rect_t  *bounds)
{
  g_return_val_if_fail (APP_IS_GROUNDING_VIEW (self), FALSE);

  return image_rect (self, gtk_widget_get_width (GTK_WIDGET (self)),
                     gtk_widget_get_height (GTK_WIDGET (self)), bounds);
}

gboolean
app_grounding_view_get_box_bounds (AppGroundingView *self,
                                   guint             ref,
                                   guint             box,
                                   graphene_rect_t  *bounds)
{
  Drawing d = drawing (self);
  const AppGroundingRef *r;
  graphene_rect_t image;

  g_return_val_if_fail (APP_IS_GROUNDING_VIEW (self), FALSE);

  r = get_ref (self->grounding, ref);
  if (!r || box >= r->boxes->len || !app_grounding_view_get_image_bounds (self, &image))
    return FALSE;
  box_rect (&d, &g_array_index (r->boxes, AppGroundingBox, box), &image, bounds);
  return TRUE;
}

/* ------------------------------------------------------------------------------------------
 * GObject
 */

static void
app_grounding_view_dispose (GObject *object)
{
  AppGroundingView *self = APP_GROUNDING_VIEW (object);

  g_clear_object (&self->texture);
  g_clear_pointer (&self->grounding, app_grounding_free);
  g_clear_pointer (&self->answer, g_free);
  G_OBJECT_CLASS (app_grounding_view_parent_class)->dispose (object);
}

static void
app_grounding_view_get_property (GObject    *object,
                                 guint       prop_id,
                                 GValue     *value,
                                 GParamSpec *pspec)
{
  AppGroundingView *self = APP_GROUNDING_VIEW (object);

  switch (prop_id)
    {
    case PROP_TEXTURE:
      g_value_set_object (value, self->texture);
      break;
    case PROP_ANSWER:
      g_value_set_string (value, self->answer);
      break;
    case PROP_HIGHLIGHT:
      g_value_set_int (value, self->highlight);
      break;
    case PROP_ZOOM:
      g_value_set_double (value, self->zoom);
      break;
    case PROP_NATURAL_HEIGHT:
      g_value_set_int (value, self->natural_height);
      break;
    case PROP_FIT_UPSCALE:
      g_value_set_boolean (value, self->fit_upscale);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_grounding_view_set_property (GObject      *object,
                                 guint         prop_id,
                                 const GValue *value,
                                 GParamSpec   *pspec)
{
  AppGroundingView *self = APP_GROUNDING_VIEW (object);

  switch (prop_id)
    {
    case PROP_TEXTURE:
      app_grounding_view_set_texture (self, g_value_get_object (value));
      break;
    case PROP_ANSWER:
      app_grounding_view_set_answer (self, g_value_get_string (value), FALSE);
      break;
    case PROP_HIGHLIGHT:
      app_grounding_view_set_highlight (self, g_value_get_int (value));
      break;
    case PROP_ZOOM:
      app_grounding_view_set_zoom (self, g_value_get_double (value));
      break;
    case PROP_NATURAL_HEIGHT:
      app_grounding_view_set_natural_height (self, g_value_get_int (value));
      break;
    case PROP_FIT_UPSCALE:
      app_grounding_view_set_fit_upscale (self, g_value_get_boolean (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_grounding_view_class_init (AppGroundingViewClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = app_grounding_view_dispose;
  object_class->get_property = app_grounding_view_get_property;
  object_class->set_property = app_grounding_view_set_property;
  widget_class->snapshot = app_grounding_view_snapshot;
  widget_class->measure = app_grounding_view_measure;
  widget_class->get_request_mode = app_grounding_view_get_request_mode;
  gtk_widget_class_set_css_name (widget_class, "groundingview");
  gtk_widget_class_set_accessible_role (widget_class, GTK_ACCESSIBLE_ROLE_IMG);

  properties[PROP_TEXTURE] =
    g_param_spec_object ("texture", NULL, NULL, GDK_TYPE_TEXTURE,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  /* a finished answer; app_grounding_view_set_answer() also takes one being written */
  properties[PROP_ANSWER] =
    g_param_spec_string ("answer", NULL, NULL, NULL,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_HIGHLIGHT] =
    g_param_spec_int ("highlight", NULL, NULL, -1, G_MAXINT, -1,
                      G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_ZOOM] =
    g_param_spec_double ("zoom", NULL, NULL, 0, G_MAXDOUBLE, 0,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_NATURAL_HEIGHT] =
    g_param_spec_int ("natural-height", NULL, NULL, 0, G_MAXINT, 0,
                      G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_FIT_UPSCALE] =
    g_param_spec_boolean ("fit-upscale", NULL, NULL, TRUE,
                          G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  signals[REF_HOVERED] = g_signal_new ("ref-hovered", G_TYPE_FROM_CLASS (klass),
                                       G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE, 1,
                                       G_TYPE_INT);
}

static void
app_grounding_view_init (AppGroundingView *self)
{
  GtkEventController *motion = gtk_event_controller_motion_new ();

  self->highlight = -1;
  self->hovered = -1;
  self->fit_upscale = TRUE;
  g_signal_connect (motion, "motion", G_CALLBACK (motion_cb), self);
  g_signal_connect (motion, "leave", G_CALLBACK (leave_cb), self);
  gtk_widget_add_controller (GTK_WIDGET (self), motion);
  gtk_widget_set_overflow (GTK_WIDGET (self), GTK_OVERFLOW_HIDDEN);
}

/* ------------------------------------------------------------------------------------------
 * Export: both load the image at its own size first (a cached texture when the viewer shows
 * it), so the JSON's pixels and the saved picture are those of the original.
 */

typedef struct
{
  GtkWidget *widget;
  char *answer;
  GFile *destination;   /* NULL: copy the boxes */
} Export;

static void
export_free (Export *e)
{
  g_object_unref (e->widget);
  g_free (e->answer);
  g_clear_object (&e->destination);
  g_free (e);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Export, export_free)

static void
toast (GtkWidget  *widget,
       const char *message)
{
  GtkWidget *overlay = gtk_widget_get_ancestor (widget, ADW_TYPE_TOAST_OVERLAY);

  if (overlay)
    adw_toast_overlay_add_toast (ADW_TOAST_OVERLAY (overlay), adw_toast_new (message));
  else
    g_warning ("%s", message);
}

static void
export_loaded_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(Export) e = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GdkTexture) image = app_thumbnail_load_finish (result, &error);
  g_autoptr(AppGrounding) grounding = app_grounding_parse (e->answer, FALSE);
  g_autoptr(GdkTexture) drawn = NULL;
  g_autofree char *path = NULL;

  if (!image)
    {
      toast (e->widget, error->message);
      return;
    }
  if (!e->destination)
    {
      g_autofree char *json = app_grounding_to_json (grounding, gdk_texture_get_width (image),
                                                     gdk_texture_get_height (image));

      gdk_clipboard_set_text (gtk_widget_get_clipboard (e->widget), json);
      toast (e->widget, _("Boxes copied"));
      return;
    }
  drawn = app_grounding_render (e->widget, image, grounding);
  path = g_file_get_path (e->destination);
  if (!drawn || !path || !gdk_texture_save_to_png (drawn, path))
    {
      g_autofree char *name = g_file_get_parse_name (e->destination);
      g_autofree char *message = g_strdup_printf (_("Cannot save “%s”"), name);

      toast (e->widget, message);
      return;
    }
  toast (e->widget, _("Image saved"));
}

void
app_grounding_copy_boxes (GtkWidget  *widget,
                          const char *image_path,
                          const char *answer)
{
  Export *e = g_new0 (Export, 1);

  e->widget = g_object_ref (widget);
  e->answer = g_strdup (answer);
  app_thumbnail_load_async (image_path, 0, NULL, export_loaded_cb, e);
}

static void
save_response_cb (GtkNativeDialog *dialog,
                  int              response,
                  Export          *e)
{
  const char *path = g_object_get_data (G_OBJECT (dialog), "image-path");

  if (response == GTK_RESPONSE_ACCEPT)
    {
      e->destination = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
      app_thumbnail_load_async (path, 0, NULL, export_loaded_cb, e);
    }
  else
    {
      export_free (e);
    }
  g_object_unref (dialog);
}

void
app_grounding_save_image (GtkWidget  *widget,
                          const char *image_path,
                          const char *answer)
{
  GtkRoot *root = gtk_widget_get_root (widget);
  GtkFileChooserNative *chooser =
    gtk_file_chooser_native_new (_("Save Image with Boxes"),
                                 GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL,
                                 GTK_FILE_CHOOSER_ACTION_SAVE, _("_Save"), _("_Cancel"));
  g_autoptr(GtkFileFilter) png = gtk_file_filter_new ();
  Export *e = g_new0 (Export, 1);

  e->widget = g_object_ref (widget);
  e->answer = g_strdup (answer);
  gtk_file_filter_set_name (png, _("PNG Image"));
  gtk_file_filter_add_mime_type (png, "image/png");
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (chooser), png);
  /* TRANSLATORS: the suggested file name of an image saved with its boxes drawn on it */
  gtk_file_chooser_set_current_name (GTK_FILE_CHOOSER (chooser), _("Image with boxes.png"));
  g_object_set_data_full (G_OBJECT (chooser), "image-path", g_strdup (image_path), g_free);
  g_signal_connect (chooser, "response", G_CALLBACK (save_response_cb), e);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (chooser));
}
