/* image-file.c - see image-file.h.
 *
 * Decoding goes through a GdkPixbufLoader so that the image's size is known from its header
 * (the "size-prepared" signal) before any pixel memory exists: an oversized or zero-sized
 * image is refused there, and a decompression bomb never gets its buffer. A file that ends
 * before its pixels do is an error, not a half-blank image: the rows the decoder reports
 * through "area-updated" must cover the image. Animations yield their first frame, as
 * Pillow's Image.open() does.
 */
#include "image-file.h"

#include <errno.h>
#include <fcntl.h>
#include <gdk-pixbuf/gdk-pixbuf.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char *refusal;               /* set by size-prepared when the image is not acceptable */
    gboolean sized;
    int height;
    int rows_done;               /* rows the decoder has delivered, from area-updated */
} load_state;

static void size_prepared_cb(GdkPixbufLoader *loader, int width, int height, gpointer user_data)
{
    load_state *st = user_data;
    st->sized = TRUE;
    if (width <= 0 || height <= 0)
        st->refusal = g_strdup_printf("the image is empty (%d x %d pixels)", width, height);
    else if (width > IMAGE_FILE_MAX_SIDE || height > IMAGE_FILE_MAX_SIDE ||
             (gint64)width * height > IMAGE_FILE_MAX_PIXELS)
        st->refusal = g_strdup_printf("the image is %d x %d pixels; Sightline reads images of at "
                                      "most %d megapixels and %d pixels a side",
                                      width, height, IMAGE_FILE_MAX_PIXELS / 1000000,
                                      IMAGE_FILE_MAX_SIDE);
    else {
        st->height = height;
        return;
    }
    /* A 0 x 0 request makes the format module stop before it allocates the image. */
    gdk_pixbuf_loader_set_size(loader, 0, 0);
}

static void area_updated_cb(GdkPixbufLoader *loader, int x, int y, int width, int height,
                            gpointer user_data)
{
    load_state *st = user_data;
    if (y + height > st->rows_done)
        st->rows_done = y + height;
}

static gboolean copy_rgb(GdkPixbuf *pixbuf, image_rgb *out)
{
    int w = gdk_pixbuf_get_width(pixbuf), h = gdk_pixbuf_get_height(pixbuf);
    int channels = gdk_pixbuf_get_n_channels(pixbuf), stride = gdk_pixbuf_get_rowstride(pixbuf);
    if (gdk_pixbuf_get_bits_per_sample(pixbuf) != 8 || channels < 3)
        return FALSE;
    const guint8 *src = gdk_pixbuf_read_pixels(pixbuf);
    out->rgb = g_try_malloc((gsize)w * h * 3);
    if (!out->rgb)
        return FALSE;
    out->width = w;
    out->height = h;
    out->stride = w * 3;
    for (int y = 0; y < h; y++) {
        const guint8 *s = src + (gsize)y * stride;
        guint8 *d = out->rgb + (gsize)y * w * 3;
        if (channels == 3) {
            memcpy(d, s, (gsize)w * 3);
        } else {
            /* GdkPixbuf keeps straight (not premultiplied) alpha: dropping it keeps the
             * stored colour, exactly as Pillow's RGBA -> RGB conversion does. */
            for (int x = 0; x < w; x++) {
                d[x * 3] = s[x * channels];
                d[x * 3 + 1] = s[x * channels + 1];
                d[x * 3 + 2] = s[x * channels + 2];
            }
        }
    }
    return TRUE;
}

static gboolean load(const guint8 *data, gsize len, const char *name, image_rgb *out,
                     char **error)
{
    memset(out, 0, sizeof *out);
    load_state st = { 0 };
    g_autoptr(GdkPixbufLoader) loader = gdk_pixbuf_loader_new();
    g_autoptr(GError) gerr = NULL;
    g_signal_connect(loader, "size-prepared", G_CALLBACK(size_prepared_cb), &st);
    g_signal_connect(loader, "area-updated", G_CALLBACK(area_updated_cb), &st);

    gboolean ok = gdk_pixbuf_loader_write(loader, data, len, &gerr) && !st.refusal;
    /* close() reports a truncated file; it must run even after a refusal */
    gboolean closed = gdk_pixbuf_loader_close(loader, ok ? &gerr : NULL);
    if (st.refusal) {
        *error = g_strdup_printf("%s: %s", name, st.refusal);
        g_free(st.refusal);
        return FALSE;
    }
    if (!ok || !closed) {
        *error = g_strdup_printf("%s: cannot read this image: %s", name,
                                 gerr ? gerr->message : "unknown error");
        return FALSE;
    }
    GdkPixbuf *pixbuf = NULL;
    GdkPixbufAnimation *anim = gdk_pixbuf_loader_get_animation(loader);
    if (anim && !gdk_pixbuf_animation_is_static_image(anim))
        pixbuf = gdk_pixbuf_animation_get_static_image(anim); /* the first frame */
    else
        pixbuf = gdk_pixbuf_loader_get_pixbuf(loader);
    if (!pixbuf || !st.sized) {
        *error = g_strdup_printf("%s: cannot read this image: no picture in it", name);
        return FALSE;
    }
    /* Some decoders accept a file that ends early and leave the missing rows blank; the rows
     * they reported tell. */
    if (st.rows_done < st.height) {
        *error = g_strdup_printf("%s: the file is truncated (%d of %d rows)", name, st.rows_done,
                                 st.height);
        return FALSE;
    }
    /* EXIF orientation: the model should see the photo the way it is displayed, and boxes
     * drawn over it must line up. The reference does not do this (see engine/MODEL.md). */
    g_autoptr(GdkPixbuf) oriented = gdk_pixbuf_apply_embedded_orientation(pixbuf);
    if (!oriented || !copy_rgb(oriented, out)) {
        *error = g_strdup_printf("%s: cannot convert this image to 8-bit RGB", name);
        return FALSE;
    }
    return TRUE;
}

gboolean image_file_load(const char *path, image_rgb *out, char **error)
{
    memset(out, 0, sizeof *out);
    int fd = g_open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) {
        *error = g_strdup_printf("%s: cannot open: %s", path, g_strerror(errno));
        return FALSE;
    }
    g_autoptr(GError) gerr = NULL;
    g_autoptr(GMappedFile) file = g_mapped_file_new_from_fd(fd, FALSE, &gerr);
    close(fd);
    if (!file) {
        *error = g_strdup_printf("%s: cannot read: %s", path, gerr->message);
        return FALSE;
    }
    if (g_mapped_file_get_length(file) == 0) {
        *error = g_strdup_printf("%s: the file is empty", path);
        return FALSE;
    }
    return load((const guint8 *)g_mapped_file_get_contents(file), g_mapped_file_get_length(file),
                path, out, error);
}

gboolean image_file_load_bytes(GBytes *bytes, const char *name, image_rgb *out, char **error)
{
    gsize len = 0;
    const guint8 *data = g_bytes_get_data(bytes, &len);
    memset(out, 0, sizeof *out);
    if (!len) {
        *error = g_strdup_printf("%s: no image data", name);
        return FALSE;
    }
    return load(data, len, name, out, error);
}

void image_rgb_clear(image_rgb *im)
{
    g_free(im->rgb);
    memset(im, 0, sizeof *im);
}
