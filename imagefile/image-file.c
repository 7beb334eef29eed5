/* image-file.c - see image-file.h.
 *
 * Decoding goes through a GdkPixbufLoader so that the image's size is known from its header
 * (the "size-prepared" signal) before any pixel memory exists: an oversized or zero-sized
 * image is refused there, and a decompression bomb never gets its buffer. Animations yield
 * their first frame, as Pillow's Image.open() does.
 *
 * A file that ends before its pixels do is an error (TRUNCATED), not a half-blank image, as
 * Pillow refuses it. The JPEG, WebP and BMP decoders fill what is missing without a word, so
 * those files are checked before decoding: a JPEG must reach its end-of-image marker, a WebP
 * its RIFF size, an uncompressed BMP its last row. The PNG decoder stops early instead, and
 * the rows it reports through "area-updated" must cover the image. GIF and TIFF decoders
 * fail on a short file themselves, which reads as CORRUPT, as any other decoder error does.
 */
#include "image-file.h"

#include <errno.h>
#include <fcntl.h>
#include <gdk-pixbuf/gdk-pixbuf.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vl2.h" /* the limits, VL2_MAX_IMAGE_SIDE and VL2_MAX_IMAGE_PIXELS */

G_DEFINE_QUARK(image-file-error-quark, image_file_error)

typedef struct {
    gint64 max_pixels;           /* at most VL2_MAX_IMAGE_PIXELS */
    char *refusal;               /* set by size-prepared when the image is not acceptable */
    ImageFileError refusal_code;
    gboolean sized;
    int height;
    int rows_done;               /* rows the decoder has delivered, from area-updated */
} load_state;

static void size_prepared_cb(GdkPixbufLoader *loader, int width, int height, gpointer user_data)
{
    load_state *st = user_data;
    st->sized = TRUE;
    if (width <= 0 || height <= 0) {
        st->refusal = g_strdup_printf("the image is empty (%d x %d pixels)", width, height);
        st->refusal_code = IMAGE_FILE_ERROR_CORRUPT;
    } else if (width > VL2_MAX_IMAGE_SIDE || height > VL2_MAX_IMAGE_SIDE ||
               (gint64)width * height > st->max_pixels) {
        st->refusal = g_strdup_printf("the image is %d x %d pixels; Sightline reads images of at "
                                      "most %g megapixels and %d pixels a side",
                                      width, height, (double)st->max_pixels / 1e6,
                                      VL2_MAX_IMAGE_SIDE);
        st->refusal_code = IMAGE_FILE_ERROR_TOO_LARGE;
    } else {
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

static gboolean copy_rgb(GdkPixbuf *pixbuf, ImageRgb *out, ImageFileError *code)
{
    int w = gdk_pixbuf_get_width(pixbuf), h = gdk_pixbuf_get_height(pixbuf);
    int channels = gdk_pixbuf_get_n_channels(pixbuf), stride = gdk_pixbuf_get_rowstride(pixbuf);
    if (gdk_pixbuf_get_bits_per_sample(pixbuf) != 8 || channels < 3) {
        *code = IMAGE_FILE_ERROR_UNSUPPORTED_FORMAT;
        return FALSE;
    }
    const guint8 *src = gdk_pixbuf_read_pixels(pixbuf);
    out->rgb = g_try_malloc((gsize)w * h * 3);
    if (!out->rgb) {
        *code = IMAGE_FILE_ERROR_FAILED;
        return FALSE;
    }
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

static ImageFileError code_from_loader(const GError *gerr)
{
    if (gerr && gerr->domain == GDK_PIXBUF_ERROR) {
        switch (gerr->code) {
        case GDK_PIXBUF_ERROR_UNKNOWN_TYPE:
        case GDK_PIXBUF_ERROR_UNSUPPORTED_OPERATION:
            return IMAGE_FILE_ERROR_UNSUPPORTED_FORMAT;
        case GDK_PIXBUF_ERROR_INSUFFICIENT_MEMORY:
            return IMAGE_FILE_ERROR_FAILED;
        default:
            break;
        }
    }
    return IMAGE_FILE_ERROR_CORRUPT;
}

/* ------------------------------------------------------------------------------------------
 * Files cut short, in the formats whose decoders do not tell
 */

static guint32 le32(const guint8 *p)
{
    return (guint32)p[0] | (guint32)p[1] << 8 | (guint32)p[2] << 16 | (guint32)p[3] << 24;
}

/* The walk goes from marker to marker, over segments by their length and over entropy-coded
 * scans to the next marker that is not a restart, so an end marker inside an EXIF thumbnail
 * is not taken for the image's, and every scan of a progressive JPEG is crossed. Malformed
 * structure is left to the decoder: only running out of data counts. */
static gboolean jpeg_ends_early(const guint8 *d, gsize n)
{
    gsize i = 2; /* after SOI */
    for (;;) {
        if (i >= n)
            return TRUE;
        if (d[i] != 0xFF)
            return FALSE;
        while (i < n && d[i] == 0xFF) /* fill bytes */
            i++;
        if (i >= n)
            return TRUE;
        guint8 marker = d[i++];
        if (marker == 0xD9) /* EOI */
            return FALSE;
        if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) /* no length field */
            continue;
        if (n - i < 2)
            return TRUE;
        gsize len = (gsize)d[i] << 8 | d[i + 1];
        if (len < 2)
            return FALSE;
        if (n - i < len)
            return TRUE;
        i += len;
        if (marker != 0xDA) /* not SOS */
            continue;
        /* entropy-coded data: 0xFF is followed by 0x00 (a stuffed byte), a restart marker, a
         * fill byte, or the next marker */
        for (;;) {
            const guint8 *ff = memchr(d + i, 0xFF, n - i);
            if (!ff || (gsize)(ff - d) + 1 >= n)
                return TRUE;
            i = (gsize)(ff - d);
            guint8 next = d[i + 1];
            if (next == 0xFF)
                i += 1; /* a fill byte: the marker follows it */
            else if (next == 0x00 || (next >= 0xD0 && next <= 0xD7))
                i += 2;
            else
                break;
        }
    }
}

/* Uncompressed bitmaps only (BI_RGB, BI_BITFIELDS): their pixel array has a known size. An
 * unknown header size is left to the decoder. */
static gboolean bmp_ends_early(const guint8 *d, gsize n)
{
    if (n < 18)
        return FALSE;
    guint64 offset = le32(d + 10), header = le32(d + 14);
    gint64 width, height;
    guint bpp;
    if (header == 12) { /* OS/2 BITMAPCOREHEADER: 16-bit sizes, never compressed */
        if (n < 26)
            return TRUE;
        width = d[18] | d[19] << 8;
        height = d[20] | d[21] << 8;
        bpp = d[24] | d[25] << 8;
    } else if (header == 40 || header == 52 || header == 56 || header == 64 || header == 108 ||
               header == 124) {
        if (n < 34)
            return TRUE;
        guint32 compression = le32(d + 30);
        if (compression != 0 && compression != 3)
            return FALSE;
        width = (gint32)le32(d + 18);
        height = (gint32)le32(d + 22);
        bpp = d[28] | d[29] << 8;
    } else {
        return FALSE;
    }
    if (ABS(width) > VL2_MAX_IMAGE_SIDE || ABS(height) > VL2_MAX_IMAGE_SIDE)
        return FALSE; /* refused for its size, from its header */
    guint64 row = ((guint64)ABS(width) * bpp + 31) / 32 * 4;
    return n < offset + row * (guint64)ABS(height);
}

/* TRUE when `d` is a JPEG, WebP or uncompressed BMP file that stops before its end. */
static gboolean ends_early(const guint8 *d, gsize n)
{
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF)
        return jpeg_ends_early(d, n);
    if (n >= 12 && !memcmp(d, "RIFF", 4) && !memcmp(d + 8, "WEBP", 4))
        return n - 8 < le32(d + 4);
    if (n >= 2 && d[0] == 'B' && d[1] == 'M')
        return bmp_ends_early(d, n);
    return FALSE;
}

/* ------------------------------------------------------------------------------------------
 * Decoding
 */

static gboolean load(const guint8 *data, gsize len, const char *name, gint64 max_pixels,
                     ImageRgb *out, GError **error)
{
    memset(out, 0, sizeof *out);
    if (ends_early(data, len)) {
        g_set_error(error, IMAGE_FILE_ERROR, IMAGE_FILE_ERROR_TRUNCATED,
                    "%s: the file is truncated (it ends before its picture does)", name);
        return FALSE;
    }
    load_state st = { .max_pixels = max_pixels };
    g_autoptr(GdkPixbufLoader) loader = gdk_pixbuf_loader_new();
    g_autoptr(GError) gerr = NULL;
    g_signal_connect(loader, "size-prepared", G_CALLBACK(size_prepared_cb), &st);
    g_signal_connect(loader, "area-updated", G_CALLBACK(area_updated_cb), &st);

    gboolean ok = gdk_pixbuf_loader_write(loader, data, len, &gerr) && !st.refusal;
    /* close() reports what the decoder found wrong (a damaged PNG, a GIF or TIFF cut short);
     * it must run even after a refusal */
    gboolean closed = gdk_pixbuf_loader_close(loader, ok ? &gerr : NULL);
    if (st.refusal) {
        g_set_error(error, IMAGE_FILE_ERROR, st.refusal_code, "%s: %s", name, st.refusal);
        g_free(st.refusal);
        return FALSE;
    }
    if (!ok || !closed) {
        g_set_error(error, IMAGE_FILE_ERROR, code_from_loader(gerr),
                    "%s: cannot read this image: %s", name,
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
        g_set_error(error, IMAGE_FILE_ERROR, IMAGE_FILE_ERROR_CORRUPT,
                    "%s: cannot read this image: no picture in it", name);
        return FALSE;
    }
    /* The PNG decoder stops where the data does without an error, leaving the missing rows
     * blank; the rows it reported tell. */
    if (st.rows_done < st.height) {
        g_set_error(error, IMAGE_FILE_ERROR, IMAGE_FILE_ERROR_TRUNCATED,
                    "%s: the file is truncated (%d of %d rows)", name, st.rows_done, st.height);
        return FALSE;
    }
    /* EXIF orientation: the model should see the photo the way it is displayed, and boxes
     * drawn over it must line up. The reference does not do this (see engine/MODEL.md). */
    g_autoptr(GdkPixbuf) oriented = gdk_pixbuf_apply_embedded_orientation(pixbuf);
    ImageFileError code = IMAGE_FILE_ERROR_FAILED;
    if (!oriented || !copy_rgb(oriented, out, &code)) {
        g_set_error(error, IMAGE_FILE_ERROR, code, "%s: cannot convert this image to 8-bit RGB",
                    name);
        return FALSE;
    }
    return TRUE;
}

gboolean image_file_load(const char *path, ImageRgb *out, GError **error)
{
    g_return_val_if_fail(path != NULL && out != NULL, FALSE);
    g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
    memset(out, 0, sizeof *out);
    /* O_NONBLOCK: opening a named pipe must not wait for a writer; it is refused below. */
    int fd = g_open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0);
    if (fd < 0) {
        int e = errno;
        g_set_error(error, IMAGE_FILE_ERROR,
                    e == ENOENT || e == ENOTDIR ? IMAGE_FILE_ERROR_NOT_FOUND
                                                : IMAGE_FILE_ERROR_IO,
                    "%s: cannot open: %s", path, g_strerror(e));
        return FALSE;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        g_set_error(error, IMAGE_FILE_ERROR, IMAGE_FILE_ERROR_IO, "%s: cannot read: %s", path,
                    g_strerror(e));
        return FALSE;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        g_set_error(error, IMAGE_FILE_ERROR, IMAGE_FILE_ERROR_NOT_REGULAR,
                    S_ISDIR(sb.st_mode) ? "%s: cannot open: this is a folder, not an image file"
                                        : "%s: cannot open: this is not a regular file",
                    path);
        return FALSE;
    }
    g_autoptr(GError) gerr = NULL;
    g_autoptr(GMappedFile) file = g_mapped_file_new_from_fd(fd, FALSE, &gerr);
    close(fd);
    if (!file) {
        g_set_error(error, IMAGE_FILE_ERROR, IMAGE_FILE_ERROR_IO, "%s: cannot read: %s", path,
                    gerr->message);
        return FALSE;
    }
    if (g_mapped_file_get_length(file) == 0) {
        g_set_error(error, IMAGE_FILE_ERROR, IMAGE_FILE_ERROR_TRUNCATED, "%s: the file is empty",
                    path);
        return FALSE;
    }
    return load((const guint8 *)g_mapped_file_get_contents(file), g_mapped_file_get_length(file),
                path, VL2_MAX_IMAGE_PIXELS, out, error);
}

gboolean image_file_load_bytes(GBytes *bytes, const char *name, ImageRgb *out, GError **error)
{
    return image_file_load_bytes_max(bytes, name, VL2_MAX_IMAGE_PIXELS, out, error);
}

gboolean image_file_load_bytes_max(GBytes *bytes, const char *name, gint64 max_pixels,
                                   ImageRgb *out, GError **error)
{
    g_return_val_if_fail(bytes != NULL && name != NULL && out != NULL, FALSE);
    g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
    gsize len = 0;
    const guint8 *data = g_bytes_get_data(bytes, &len);
    memset(out, 0, sizeof *out);
    if (!len) {
        g_set_error(error, IMAGE_FILE_ERROR, IMAGE_FILE_ERROR_TRUNCATED, "%s: no image data",
                    name);
        return FALSE;
    }
    return load(data, len, name, CLAMP(max_pixels, 1, VL2_MAX_IMAGE_PIXELS), out, error);
}

void image_rgb_clear(ImageRgb *im)
{
    g_free(im->rgb);
    memset(im, 0, sizeof *im);
}
