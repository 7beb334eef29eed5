/* image-file.h - image files -> 8-bit RGB pixels for the engine, through GdkPixbuf.
 *
 * Used by the vl2 command line and the desktop app; it does not include the engine header.
 * The result is what a person sees in an image viewer: EXIF orientation applied, the first
 * frame of an animation, alpha dropped the way Pillow's convert("RGB") drops it (the colour
 * under a transparent pixel is kept, not blended with a background).
 */
#pragma once

#include <glib.h>
#include <stdint.h>

/* Larger images are refused before their pixels are decoded (decompression bombs). They
 * equal the engine's VL2_MAX_IMAGE_SIDE and VL2_MAX_IMAGE_PIXELS. */
#define IMAGE_FILE_MAX_SIDE 32768
#define IMAGE_FILE_MAX_PIXELS 100000000

typedef struct {
    int width, height, stride; /* stride = 3 * width */
    uint8_t *rgb;              /* g_free() it, or image_rgb_clear() */
} image_rgb;

/* Decodes `path`. On failure returns FALSE and sets *error to one line naming the file. */
gboolean image_file_load(const char *path, image_rgb *out, char **error);

/* Decodes an image held in memory (a pasted or dropped image); `name` is used in messages. */
gboolean image_file_load_bytes(GBytes *bytes, const char *name, image_rgb *out, char **error);

void image_rgb_clear(image_rgb *im);
