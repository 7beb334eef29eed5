/* image-file.h - image files -> 8-bit RGB pixels for the engine, through GdkPixbuf.
 *
 * Used by the vl2 command line and the desktop app; it does not include the engine header.
 * The result is what a person sees in an image viewer: EXIF orientation applied, the first
 * frame of an animation, alpha dropped the way Pillow's convert("RGB") drops it (the colour
 * under a transparent pixel is kept, not blended with a background).
 *
 * Images larger than the engine accepts (VL2_MAX_IMAGE_SIDE, VL2_MAX_IMAGE_PIXELS in vl2.h)
 * are refused from their header, before their pixels are decoded (decompression bombs), with
 * IMAGE_FILE_ERROR_TOO_LARGE and a message that states the limits; so are files and data
 * over VL2_IMAGE_FILE_MAX_BYTES (engine/input/vl2-input.h), before they are read.
 *
 * Only PNG, JPEG, WebP, GIF, BMP and TIFF are read, told by their content, not their name;
 * anything else (SVG, XPM, TGA, ICO...) is IMAGE_FILE_ERROR_UNSUPPORTED_FORMAT before any
 * decoder runs. A file cut short, or whose picture stops before its last row, is
 * IMAGE_FILE_ERROR_TRUNCATED (or _CORRUPT, see below), never a half-grey image.
 *
 *     g_auto(ImageRgb) im = { 0 };
 *     g_autoptr(GError) error = NULL;
 *     if (!image_file_load(path, &im, &error))
 *         ... error->message is one line naming the file; error->code says what went wrong
 */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

#define IMAGE_FILE_ERROR (image_file_error_quark())
GQuark image_file_error_quark(void);

/* Why an image could not be read, for callers that react differently ("the image is missing"
 * against "the image is damaged"). */
typedef enum {
    IMAGE_FILE_ERROR_NOT_FOUND,          /* no such file (or a folder on its path is missing) */
    IMAGE_FILE_ERROR_NOT_REGULAR,        /* a folder, a pipe, a device */
    IMAGE_FILE_ERROR_IO,                 /* it exists but cannot be opened or read */
    IMAGE_FILE_ERROR_UNSUPPORTED_FORMAT, /* not an image, or a format no installed loader reads */
    IMAGE_FILE_ERROR_TOO_LARGE,          /* over the engine's limits (vl2.h) */
    IMAGE_FILE_ERROR_TRUNCATED,          /* the data ends early: an empty file, a cut copy */
    IMAGE_FILE_ERROR_CORRUPT,            /* a known format, but damaged or with no picture;
                                          * also a GIF or TIFF cut short, whose decoders report
                                          * it as damage */
    IMAGE_FILE_ERROR_FAILED,             /* anything else (out of memory) */
} ImageFileError;

typedef struct {
    int width, height, stride; /* stride = 3 * width */
    uint8_t *rgb;              /* g_free() it, or image_rgb_clear() */
} ImageRgb;

/* Decodes `path` into *out (which needs no initialisation). On failure returns FALSE, leaves
 * *out empty and sets *error (IMAGE_FILE_ERROR, one line naming the file). */
gboolean image_file_load(const char *path, ImageRgb *out, GError **error);

/* The bytes of the image file at `path`, undecoded (the app keeps the file as it came), with
 * image_file_load()'s refusals: missing (NOT_FOUND), not a regular file (NOT_REGULAR: a pipe
 * is never waited on, a device never read), unreadable (IO), empty (TRUNCATED), over
 * VL2_IMAGE_FILE_MAX_BYTES (TOO_LARGE). */
GBytes *image_file_read(const char *path, GError **error);

/* Decodes an image held in memory (a pasted or dropped image); `name` is used in messages.
 * Never returns IMAGE_FILE_ERROR_NOT_FOUND, _NOT_REGULAR or _IO. */
gboolean image_file_load_bytes(GBytes *bytes, const char *name, ImageRgb *out, GError **error);

/* The same, refusing (IMAGE_FILE_ERROR_TOO_LARGE, from the header) images of more than
 * `max_pixels` pixels: a server's own limit, below the engine's. */
gboolean image_file_load_bytes_max(GBytes *bytes, const char *name, gint64 max_pixels,
                                   ImageRgb *out, GError **error);

/* Frees the pixels and zeroes *im; safe on a zeroed or already cleared ImageRgb. */
void image_rgb_clear(ImageRgb *im);

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(ImageRgb, image_rgb_clear)

G_END_DECLS
