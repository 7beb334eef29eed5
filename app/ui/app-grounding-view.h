/* app-grounding-view.h - an image with the boxes of a grounded answer drawn over it. */
#pragma once

#include <gtk/gtk.h>

#include "app-grounding.h"

G_BEGIN_DECLS

#define APP_TYPE_GROUNDING_VIEW (app_grounding_view_get_type ())
G_DECLARE_FINAL_TYPE (AppGroundingView, app_grounding_view, APP, GROUNDING_VIEW, GtkWidget)

/* Signals: "ref-hovered" (int ref) when the pointer moves onto the boxes of another ref (-1:
 * off every box). */
AppGroundingView *app_grounding_view_new             (void);

/* The image as displayed (EXIF orientation applied), at its own size. */
void              app_grounding_view_set_texture     (AppGroundingView *self,
                                                      GdkTexture       *texture);
GdkTexture       *app_grounding_view_get_texture     (AppGroundingView *self);

/* The raw answer whose boxes are drawn; `streaming` as for app_grounding_parse(). The parsed
 * answer belongs to the view and lasts until the answer changes. The "answer" property is the
 * text; setting it sets a finished answer. */
void              app_grounding_view_set_answer      (AppGroundingView *self,
                                                      const char       *text,
                                                      gboolean          streaming);
const char       *app_grounding_view_get_answer      (AppGroundingView *self);
const AppGrounding *app_grounding_view_get_grounding (AppGroundingView *self);

/* The ref whose boxes stand out (the others fade); -1 for none. Hovering a box overrides it
 * while the pointer is there. */
void              app_grounding_view_set_highlight   (AppGroundingView *self,
                                                      int               ref);
int               app_grounding_view_get_highlight   (AppGroundingView *self);

/* 0 fits the image into the widget; otherwise logical pixels per image pixel (1 = 100 %), and
 * the view asks for the zoomed size (put it in a scrolled window). */
void              app_grounding_view_set_zoom        (AppGroundingView *self,
                                                      double            zoom);
double            app_grounding_view_get_zoom        (AppGroundingView *self);
/* When fitting: the height the view asks for, its width following the image (0: the image's
 * own size). */
void              app_grounding_view_set_natural_height (AppGroundingView *self,
                                                      int               height);
int               app_grounding_view_get_natural_height (AppGroundingView *self);
/* When fitting, whether an image smaller than the widget is drawn larger than its own size
 * (TRUE, the default) or at 100 %. */
void              app_grounding_view_set_fit_upscale (AppGroundingView *self,
                                                      gboolean          upscale);
gboolean          app_grounding_view_get_fit_upscale (AppGroundingView *self);

/* Where the image and box `box` of refs[ref] are drawn, in widget coordinates. FALSE when
 * there is no such box or no image yet. */
gboolean          app_grounding_view_get_image_bounds (AppGroundingView *self,
                                                      graphene_rect_t  *bounds);
gboolean          app_grounding_view_get_box_bounds  (AppGroundingView *self,
                                                      guint             ref,
                                                      guint             box,
                                                      graphene_rect_t  *bounds);

/* `texture` at its own size with the boxes and labels of `grounding` drawn on it, for saving;
 * rendered with the renderer of `widget`'s window (so `widget` must be realized), its fonts. */
GdkTexture       *app_grounding_render               (GtkWidget        *widget,
                                                      GdkTexture       *texture,
                                                      const AppGrounding *grounding);

/* Copy the boxes of `answer` over the image at `image_path` as JSON (pixels of the image at
 * its own size), or ask where to save the image with the boxes drawn on it as PNG. Both report
 * in a toast of the window around `widget`. */
void              app_grounding_copy_boxes           (GtkWidget        *widget,
                                                      const char       *image_path,
                                                      const char       *answer);
void              app_grounding_save_image           (GtkWidget        *widget,
                                                      const char       *image_path,
                                                      const char       *answer);

G_END_DECLS
