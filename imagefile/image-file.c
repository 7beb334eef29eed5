/* image-file.c - see image-file.h.
 *
 * Only the formats people send are decoded: PNG, JPEG, WebP, GIF, BMP and TIFF. The format is
 * told from the file's first bytes here, and the loader is created for that format by name, so
 * gdk-pixbuf's own guess (which runs any installed module, SVG and XPM included) is never
 * made: every other file is refused before a decoder sees it.
 *
 * Decoding goes through a GdkPixbufLoader so that the image's size is known from its header
 * (the "size-prepared" signal) before any pixel memory exists: an oversized or zero-sized
 * image is refused there, and a decompression bomb never gets its buffer. Animations yield
 * their first frame, as Pillow's Image.open() does.
 *
 * A file that ends before its pixels do is an error (TRUNCATED), not a half-blank image. The
 * loaders do not say so themselves: the JPEG, WebP and BMP ones fill what is missing when the
 * loader is closed, and the PNG one stops where the data does. Three checks close that:
 *   - the container must be whole: a PNG reaches its IEND chunk, a WebP its RIFF size, an
 *     uncompressed BMP its last row;
 *   - every row of a still PNG, JPEG, WebP or BMP must be reported ("area-updated") while the
 *     data is written, before close() makes up the missing ones (a compressed BMP, a WebP
 *     bitstream cut inside a whole container);
 *   - a JPEG is first read by libjpeg itself, whose warnings gdk-pixbuf does not pass on: the
 *     data running out, or a scan ending before its last block (a few kilobytes of scan and an
 *     end marker under a 99-megapixel header), is TRUNCATED.
 * GIF and TIFF decoders fail on a short file themselves, which reads as CORRUPT, as any other
 * decoder error does.
 */
#include "image-file.h"

#include <gdk-pixbuf/gdk-pixbuf.h>
#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE */
#include <string.h>

#include <jpeglib.h>
#include <jerror.h> /* after jpeglib.h: the warning codes */

#include "vl2-input.h" /* vl2_input_read(), VL2_IMAGE_FILE_MAX_BYTES */
#include "vl2.h"       /* the limits, VL2_MAX_IMAGE_SIDE and VL2_MAX_IMAGE_PIXELS */

G_DEFINE_QUARK(image-file-error-quark, image_file_error)

typedef struct {
    gint64 max_pixels;           /* at most VL2_MAX_IMAGE_PIXELS */
    char *refusal;               /* set by size-prepared when the image is not acceptable */
    ImageFileError refusal_code;
    gboolean sized;
    int height;
    guint8 *row_seen;            /* height flags: rows the decoder reported while reading */
    gboolean closing;            /* close() runs: what it reports now may be made up */
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
        if (!st->row_seen) { /* an animation announces its size once */
            st->height = height;
            st->row_seen = g_malloc0((gsize)height);
        }
        return;
    }
    /* A 0 x 0 request makes the format module stop before it allocates the image. */
    gdk_pixbuf_loader_set_size(loader, 0, 0);
}

static void area_updated_cb(GdkPixbufLoader *loader, int x, int y, int width, int height,
                            gpointer user_data)
{
    load_state *st = user_data;
    if (st->closing || !st->row_seen)
        return;
    /* rows, not an extent: a bottom-up BMP reports its last row first */
    for (int r = MAX(y, 0); r < MIN(y + height, st->height); r++)
        st->row_seen[r] = 1;
}

static int rows_seen(const load_state *st)
{
    int n = 0;
    for (int r = 0; r < st->height; r++)
        n += st->row_seen[r];
    return n;
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
 * The formats read
 */

typedef enum { FORMAT_PNG, FORMAT_JPEG, FORMAT_WEBP, FORMAT_GIF, FORMAT_BMP, FORMAT_TIFF } format;

/* gdk-pixbuf's module names, by format */
static const char *const module_name[] = { "png", "jpeg", "webp", "gif", "bmp", "tiff" };

#define ACCEPTED_FORMATS "PNG, JPEG, WebP, GIF, BMP or TIFF"

/* The format from the file's signature; FALSE for anything else. */
static gboolean sniff(const guint8 *d, gsize n, format *f)
{
    static const guint8 png_sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n' };
    if (n >= 8 && !memcmp(d, png_sig, 8))
        *f = FORMAT_PNG;
    else if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF)
        *f = FORMAT_JPEG;
    else if (n >= 12 && !memcmp(d, "RIFF", 4) && !memcmp(d + 8, "WEBP", 4))
        *f = FORMAT_WEBP;
    else if (n >= 6 && (!memcmp(d, "GIF87a", 6) || !memcmp(d, "GIF89a", 6)))
        *f = FORMAT_GIF;
    else if (n >= 2 && d[0] == 'B' && d[1] == 'M')
        *f = FORMAT_BMP;
    else if (n >= 4 && (!memcmp(d, "II*\0", 4) || !memcmp(d, "MM\0*", 4) || /* classic */
                        !memcmp(d, "II+\0", 4) || !memcmp(d, "MM\0+", 4)))  /* BigTIFF */
        *f = FORMAT_TIFF;
    else
        return FALSE;
    return TRUE;
}

/* ------------------------------------------------------------------------------------------
 * Files cut short, in the formats whose decoders do not tell
 */

static guint32 le32(const guint8 *p)
{
    return (guint32)p[0] | (guint32)p[1] << 8 | (guint32)p[2] << 16 | (guint32)p[3] << 24;
}

static guint32 be32(const guint8 *p)
{
    return (guint32)p[0] << 24 | (guint32)p[1] << 16 | (guint32)p[2] << 8 | (guint32)p[3];
}

/* The chunks, by their lengths, up to IEND. Malformed structure is left to the decoder: only
 * running out of data counts. */
static gboolean png_ends_early(const guint8 *d, gsize n)
{
    for (gsize i = 8;;) {
        if (n - i < 8)
            return TRUE;
        guint64 len = be32(d + i);
        if (!memcmp(d + i + 4, "IEND", 4))
            return FALSE;
        if (len > G_MAXINT32)
            return FALSE;
        if (n - i - 8 < len + 4) /* data and CRC */
            return TRUE;
        i += 8 + len + 4;
    }
}

/* Uncompressed bitmaps only (BI_RGB, BI_BITFIELDS): their pixel array has a known size. An
 * unknown header size is left to the decoder; a compressed bitmap to the rows check. */
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

typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    gboolean cut; /* the data, or a scan, ended before the picture did */
} jpeg_check;

static void jpeg_check_error_exit(j_common_ptr cinfo)
{
    longjmp(((jpeg_check *)cinfo->err)->jump, 1);
}

static void jpeg_check_emit_message(j_common_ptr cinfo, int msg_level)
{
    jpeg_check *c = (jpeg_check *)cinfo->err;
    /* Other warnings (stray bytes between segments, a bad Huffman code) come with many real
     * photos and leave a picture; these two mean missing pixels. No need to read further. */
    if (msg_level < 0 && (c->mgr.msg_code == JWRN_JPEG_EOF || c->mgr.msg_code == JWRN_HIT_MARKER)) {
        c->cut = TRUE;
        longjmp(c->jump, 1);
    }
}

static void jpeg_check_output_message(j_common_ptr cinfo)
{
}

/* Reads the JPEG through libjpeg, at 1/8 scale (the scans are all decoded, the pixels hardly
 * computed), for the warnings gdk-pixbuf's loader keeps to itself. Errors and images over
 * the limits are left to the loader, which reports them. */
static gboolean jpeg_ends_early(const guint8 *d, gsize n, gint64 max_pixels)
{
    struct jpeg_decompress_struct cinfo;
    jpeg_check check = { 0 };
    cinfo.err = jpeg_std_error(&check.mgr);
    check.mgr.error_exit = jpeg_check_error_exit;
    check.mgr.emit_message = jpeg_check_emit_message;
    check.mgr.output_message = jpeg_check_output_message;
    jpeg_create_decompress(&cinfo);
    if (setjmp(check.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return check.cut;
    }
    jpeg_mem_src(&cinfo, d, (unsigned long)n);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.image_width > VL2_MAX_IMAGE_SIDE || cinfo.image_height > VL2_MAX_IMAGE_SIDE ||
        (gint64)cinfo.image_width * cinfo.image_height > max_pixels) {
        jpeg_destroy_decompress(&cinfo);
        return FALSE;
    }
    cinfo.scale_num = 1;
    cinfo.scale_denom = 8;
    cinfo.dct_method = JDCT_IFAST;
    cinfo.do_fancy_upsampling = FALSE;
    cinfo.do_block_smoothing = FALSE;
    jpeg_start_decompress(&cinfo);
    JSAMPARRAY row = (*cinfo.mem->alloc_sarray)((j_common_ptr)&cinfo, JPOOL_IMAGE,
                                                cinfo.output_width * cinfo.output_components, 1);
    while (cinfo.output_scanline < cinfo.output_height)
        jpeg_read_scanlines(&cinfo, row, 1);
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return check.cut;
}

/* TRUE when the file stops before its picture does, as far as its structure tells. */
static gboolean ends_early(format f, const guint8 *d, gsize n, gint64 max_pixels)
{
    switch (f) {
    case FORMAT_PNG:
        return png_ends_early(d, n);
    case FORMAT_JPEG:
        return jpeg_ends_early(d, n, max_pixels);
    case FORMAT_WEBP:
        return n - 8 < le32(d + 4);
    case FORMAT_BMP:
        return bmp_ends_early(d, n);
    default:
        return FALSE; /* GIF and TIFF decoders fail on a short file */
    }
}

/* ------------------------------------------------------------------------------------------
 * Decoding
 */

static gboolean load(const guint8 *data, gsize len, const char *name, gint64 max_pixels,
                     ImageRgb *out, GError **error)
{
    memset(out, 0, sizeof *out);
    if (len > VL2_IMAGE_FILE_MAX_BYTES) { /* as vl2_input_read() refuses such a file */
        g_set_error(error, IMAGE_FILE_ERROR, IMAGE_FILE_ERROR_TOO_LARGE,
                    "%s: the image data is %" G_GSIZE_FORMAT " bytes, more than an image file "
                    "may be (%" G_GSIZE_FORMAT ")", name, len, VL2_IMAGE_FILE_MAX_BYTES);
        return FALSE;
    }
    format f;
    if (!sniff(data, len, &f)) {
        g_set_error(error, IMAGE_FILE_ERROR, IMAGE_FILE_ERROR_UNSUPPORTED_FORMAT,
                    "%s: cannot read this image: it is not a " ACCEPTED_FORMATS " file", name);
        return FALSE;
    }
    if (ends_early(f, data, len, max_pixels)) {
        g_set_error(error, IMAGE_FILE_ERROR, IMAGE_FILE_ERROR_TRUNCATED,
                    "%s: the file is truncated (it ends before its picture does)", name);
        return FALSE;
    }
    g_autoptr(GError) gerr = NULL;
    /* by name: gdk-pixbuf does not guess, so no other module runs */
    g_autoptr(GdkPixbufLoader) loader = gdk_pixbuf_loader_new_with_type(module_name[f], &gerr);
    if (!loader) {
        g_set_error(error, IMAGE_FILE_ERROR, IMAGE_FILE_ERROR_UNSUPPORTED_FORMAT,
                    "%s: cannot read this image: no %s decoder is installed (%s)", name,
                    module_name[f], gerr->message);
        return FALSE;
    }
    load_state st = { .max_pixels = max_pixels };
    g_signal_connect(loader, "size-prepared", G_CALLBACK(size_prepared_cb), &st);
    g_signal_connect(loader, "area-updated", G_CALLBACK(area_updated_cb), &st);

    gboolean ok = gdk_pixbuf_loader_write(loader, data, len, &gerr) && !st.refusal;
    int rows = st.row_seen ? rows_seen(&st) : 0;
    st.closing = TRUE;
    /* close() reports what the decoder found wrong (a damaged PNG, a GIF or TIFF cut short);
     * it must run even after a refusal */
    gboolean closed = gdk_pixbuf_loader_close(loader, ok ? &gerr : NULL);
    g_free(st.row_seen);
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
    gboolean still = !anim || gdk_pixbuf_animation_is_static_image(anim);
    if (!still)
        pixbuf = gdk_pixbuf_animation_get_static_image(anim); /* the first frame */
    else
        pixbuf = gdk_pixbuf_loader_get_pixbuf(loader);
    if (!pixbuf || !st.sized) {
        g_set_error(error, IMAGE_FILE_ERROR, IMAGE_FILE_ERROR_CORRUPT,
                    "%s: cannot read this image: no picture in it", name);
        return FALSE;
    }
    /* The PNG, JPEG, WebP and BMP loaders report each row as they decode it; rows not
     * reported by the end of the data were made up. GIF and TIFF loaders, and animations,
     * report differently (a first frame may cover part of the image; TIFF decodes on close). */
    if (still && f != FORMAT_GIF && f != FORMAT_TIFF && rows < st.height) {
        g_set_error(error, IMAGE_FILE_ERROR, IMAGE_FILE_ERROR_TRUNCATED,
                    "%s: the file is truncated (%d of %d rows)", name, rows, st.height);
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

/* ------------------------------------------------------------------------------------------
 * Reading files
 */

GBytes *image_file_read(const char *path, GError **error)
{
    g_return_val_if_fail(path != NULL, NULL);
    g_return_val_if_fail(error == NULL || *error == NULL, NULL);
    /* vl2_input_read() refuses a folder, pipe or device without waiting on it and a file over
     * the limit before reading it; and it reads rather than maps, so a file cut by another
     * program while it is decoded cannot crash this one (SIGBUS). */
    g_autoptr(GError) local = NULL;
    char *contents = NULL;
    gsize len = 0;
    if (!vl2_input_read(path, VL2_IMAGE_FILE_MAX_BYTES, &contents, &len, &local)) {
        ImageFileError code = IMAGE_FILE_ERROR_IO;
        if (local->domain == VL2_INPUT_ERROR) {
            switch ((Vl2InputError)local->code) {
            case VL2_INPUT_ERROR_NOT_FOUND:
                code = IMAGE_FILE_ERROR_NOT_FOUND;
                break;
            case VL2_INPUT_ERROR_NOT_REGULAR:
                code = IMAGE_FILE_ERROR_NOT_REGULAR;
                break;
            case VL2_INPUT_ERROR_TOO_LARGE:
                code = IMAGE_FILE_ERROR_TOO_LARGE;
                break;
            case VL2_INPUT_ERROR_NO_MEMORY:
                code = IMAGE_FILE_ERROR_FAILED;
                break;
            default:
                break;
            }
        }
        g_set_error_literal(error, IMAGE_FILE_ERROR, code, local->message); /* names the file */
        return NULL;
    }
    if (len == 0) {
        g_free(contents);
        g_set_error(error, IMAGE_FILE_ERROR, IMAGE_FILE_ERROR_TRUNCATED, "%s: the file is empty",
                    path);
        return NULL;
    }
    return g_bytes_new_take(contents, len);
}

gboolean image_file_load(const char *path, ImageRgb *out, GError **error)
{
    g_return_val_if_fail(path != NULL && out != NULL, FALSE);
    g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
    memset(out, 0, sizeof *out);
    g_autoptr(GBytes) bytes = image_file_read(path, error);
    if (!bytes)
        return FALSE;
    gsize len = 0;
    const guint8 *data = g_bytes_get_data(bytes, &len);
    return load(data, len, path, VL2_MAX_IMAGE_PIXELS, out, error);
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
