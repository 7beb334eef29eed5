/* app-grounding.h - the boxes in a grounded answer, and the text around them.
 *
 * DeepSeek-VL2 localises things by writing `<|ref|>label<|/ref|><|det|>[[x1, y1, x2, y2], ...]<|/det|>`
 * into its answer, with coordinates on a 0..999 grid over the whole image. This file finds those
 * spans (also while the answer is still streaming, and when the model writes them badly), pairs
 * each `<|det|>` with its label, and turns the text into Markdown where every label is a chip
 * (a link to `sightline-ref:INDEX`) and the raw coordinates are hidden. Plain functions, no GTK:
 * the view in app/ui draws what this file computes.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The grid the model writes coordinates on: 0..APP_GROUNDING_GRID, mapped to pixels as
 * `v / APP_GROUNDING_GRID * size` (the official demo's mapping). */
#define APP_GROUNDING_GRID 999

/* A link to this scheme in the Markdown of app_grounding_parse() is a chip, drawn by
 * app-markdown.c as a pill in the label's colour: `sightline-ref:3?color=e01b24` is the chip of
 * refs[3], `sightline-ref:3?color=e01b24&active=1` the same chip highlighted. */
#define APP_GROUNDING_SCHEME "sightline-ref"

/* A box on the grid, normalised: 0 <= x1 < x2 <= 999 and 0 <= y1 < y2 <= 999. */
typedef struct {
  double x1, y1, x2, y2;
} AppGroundingBox;

/* One `<|ref|>` (with the boxes of the `<|det|>` that follows it), or a `<|det|>` without one. */
typedef struct {
  char *label;      /* the label text, trimmed; NULL for a `<|det|>` without a label or an
                       empty `<|ref|><|/ref|>` */
  guint color;      /* palette index: one per distinct label, in order of first appearance
                       (unlabelled boxes get one each) */
  GArray *boxes;    /* AppGroundingBox; may be empty (a label the model gave no box) */
  gboolean partial; /* still being written: the label or its boxes are not closed yet */
} AppGroundingRef;

typedef struct _AppGroundingPrivate AppGroundingPrivate;

typedef struct {
  char *markdown;     /* the text with every label as a chip link
                         `[label](sightline-ref:N?color=RRGGBB)` (label escaped for Markdown),
                         every `<|det|>` span, every stray tag and `<|grounding|>` removed; a
                         `!` or odd backslash before a chip and a tag that removing another
                         would join together are backslash-escaped */
  GPtrArray *refs;    /* AppGroundingRef*, in text order; the chip of refs[N] links to N */
  guint n_boxes;      /* all boxes of all refs */
  gboolean grounding; /* the text holds `<|grounding|>` (a grounded-caption request) */
  AppGroundingPrivate *priv;
} AppGrounding;

/* Parses a model answer (or a question). `streaming`: the text may end in the middle of a tag,
 * a label or a box list; that tail is hidden rather than shown raw, and an unfinished box is
 * left out until it is finished. Never fails; text without tags gives its own text back (as
 * Markdown) and no refs. Malformed coordinates are repaired where the intent is clear (values
 * above 999 clamped, corners swapped) and dropped otherwise (not four numbers, zero area). */
AppGrounding    *app_grounding_parse           (const char      *text,
                                                gboolean         streaming);
void             app_grounding_free            (AppGrounding    *grounding);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (AppGrounding, app_grounding_free)

/* The Markdown again with the chip of refs[active] highlighted (`&active=1`); -1 for none
 * (then equal to grounding->markdown). */
char            *app_grounding_markdown        (const AppGrounding *grounding,
                                                int              active);

/* Whether `text` holds any grounding tag: cheap, for skipping the parser. */
gboolean         app_grounding_has_tags        (const char      *text);

/* The ref index of a chip link (`sightline-ref:N`, with or without a query), or -1 for any
 * other URI. */
int              app_grounding_ref_from_uri    (const char      *uri);

/* A box in pixels of an image `width` x `height` (as displayed: EXIF orientation applied),
 * the official demo's way: `(int) (v / 999 * size)`, then clamped to the image and widened
 * to at least one pixel, so a tiny image still shows every box. x, y, width, height. */
void             app_grounding_box_to_pixels   (const AppGroundingBox *box,
                                                int              image_width,
                                                int              image_height,
                                                int             *x,
                                                int             *y,
                                                int             *width,
                                                int             *height);

/* The boxes as JSON for the clipboard: an array of `{"label": "...", "box": [x1, y1, x2, y2]}`
 * in pixels of the image (x2, y2 exclusive), unlabelled boxes with "label": null. Pretty. */
char            *app_grounding_to_json         (const AppGrounding *grounding,
                                                int              image_width,
                                                int              image_height);

/* The palette: one colour per label, as 0xRRGGBB; the index wraps around. */
guint32          app_grounding_color           (guint            index);

typedef enum {
  APP_PROMPT_PLAIN,
  APP_PROMPT_GROUNDED_CAPTION,  /* `<|grounding|>` + text */
  APP_PROMPT_FIND,              /* `<|ref|>` + phrase + `<|/ref|>`, what the official demo asks */
} AppPromptKind;

/* The text a question is sent as. Surrounding white space is trimmed; NULL when there is
 * nothing to send (PLAIN and FIND need text; a grounded caption without text asks for
 * "Describe the image in detail.", in English like the official examples). */
char            *app_grounding_wrap_prompt     (AppPromptKind    kind,
                                                const char      *text);

/* The reverse of app_grounding_wrap_prompt(), for editing a sent question: the text the person
 * typed and, in *kind, the helper it was sent with (PLAIN for anything else). */
char            *app_grounding_unwrap_prompt   (const char      *prompt,
                                                AppPromptKind   *kind);

/* `text` without its grounding: tags removed, `<|det|>` spans removed, labels kept as text,
 * trimmed. For titles and questions. */
char            *app_grounding_plain_text      (const char      *text);

G_END_DECLS
