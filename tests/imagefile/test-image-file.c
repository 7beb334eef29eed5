/* test-image-file.c - decoding image files into the engine's RGB8 input (imagefile/).
 *
 * Formats round-trip through GdkPixbuf's savers; the special PNGs, the animated GIF and the
 * hostile files come from tests/tools/make_test_images.py ($VL2_TEST_IMAGES). Every failure
 * is checked for its IMAGE_FILE_ERROR code and for a one-line message naming the file; the
 * size limits are the engine's, read from vl2.h (included here and by image-file.c, never by
 * image-file.h).
 */
#include <fcntl.h>
#include <gdk-pixbuf/gdk-pixbuf.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image-file.h"
#include "vl2-input.h"
#include "vl2.h"

/* ------------------------------------------------------------------------------------------
 * Helpers
 */

static char *test_image(const char *name)
{
    return g_build_filename(g_getenv("VL2_TEST_IMAGES"), name, NULL);
}

static char *make_tmpdir(void)
{
    g_autoptr(GError) error = NULL;
    char *dir = g_dir_make_tmp("imagefile-test-XXXXXX", &error);
    g_assert_no_error(error);
    return dir;
}

/* Removes a flat temporary directory and the files in it. */
static void remove_tmpdir(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    if (d) {
        const char *name;
        while ((name = g_dir_read_name(d))) {
            g_autofree char *p = g_build_filename(dir, name, NULL);
            g_remove(p);
        }
        g_dir_close(d);
    }
    g_rmdir(dir);
}

static void write_file(const char *path, const void *data, gsize len)
{
    g_autoptr(GError) error = NULL;
    g_file_set_contents(path, data, (gssize)len, &error);
    g_assert_no_error(error);
}

static ImageRgb load_ok(const char *path)
{
    ImageRgb im;
    g_autoptr(GError) error = NULL;
    if (!image_file_load(path, &im, &error))
        g_error("%s", error->message);
    g_assert_cmpint(im.stride, ==, im.width * 3);
    return im;
}

/* The error is in IMAGE_FILE_ERROR with `code`, one line, naming `name` and containing
 * `needle` (NULL: anything); *out is left empty. */
static void check_error(gboolean ok, const ImageRgb *out, GError *error, const char *name,
                        ImageFileError code, const char *needle)
{
    g_assert_false(ok);
    g_assert_null(out->rgb);
    g_assert_cmpint(out->width, ==, 0);
    g_assert_nonnull(error);
    g_test_message("%s", error->message);
    g_assert_error(error, IMAGE_FILE_ERROR, (int)code);
    if (!strstr(error->message, name))
        g_error("error \"%s\" lacks the name \"%s\"", error->message, name);
    if (needle && !strstr(error->message, needle))
        g_error("error \"%s\" lacks \"%s\"", error->message, needle);
    g_assert_null(strchr(error->message, '\n'));
}

static void load_fails(const char *path, ImageFileError code, const char *needle)
{
    ImageRgb im = { 0 };
    g_autoptr(GError) error = NULL;
    gboolean ok = image_file_load(path, &im, &error);
    check_error(ok, &im, error, path, code, needle);
}

static void load_bytes_fails(const void *data, gsize len, const char *name, ImageFileError code,
                             const char *needle)
{
    g_autoptr(GBytes) bytes = g_bytes_new(data, len);
    ImageRgb im = { 0 };
    g_autoptr(GError) error = NULL;
    gboolean ok = image_file_load_bytes(bytes, name, &im, &error);
    check_error(ok, &im, error, name, code, needle);
}

static const guint8 *px(const ImageRgb *im, int x, int y)
{
    return im->rgb + (size_t)y * im->stride + (size_t)x * 3;
}

/* A 37 x 23 pattern with smooth and sharp parts. */
static GdkPixbuf *pattern(void)
{
    GdkPixbuf *p = gdk_pixbuf_new(GDK_COLORSPACE_RGB, FALSE, 8, 37, 23);
    guint8 *d = gdk_pixbuf_get_pixels(p);
    int stride = gdk_pixbuf_get_rowstride(p);
    for (int y = 0; y < 23; y++)
        for (int x = 0; x < 37; x++) {
            guint8 *q = d + y * stride + x * 3;
            q[0] = (guint8)(x * 6);
            q[1] = (guint8)(y * 10);
            q[2] = x < 18 ? 40 : 220;
        }
    return p;
}

static void round_trip(const char *type, const char *ext, int tolerance, const char *opt_key,
                       const char *opt_value)
{
    g_autoptr(GdkPixbuf) p = pattern();
    g_autofree char *dir = make_tmpdir();
    g_autofree char *name = g_strdup_printf("pattern.%s", ext);
    g_autofree char *path = g_build_filename(dir, name, NULL);
    g_autoptr(GError) error = NULL;
    if (!gdk_pixbuf_save(p, path, type, &error, opt_key, opt_value, NULL))
        g_error("saving %s: %s", type, error->message);
    ImageRgb im = load_ok(path);
    g_assert_cmpint(im.width, ==, 37);
    g_assert_cmpint(im.height, ==, 23);
    const guint8 *src = gdk_pixbuf_read_pixels(p);
    int worst = 0;
    for (int y = 0; y < 23; y++)
        for (int x = 0; x < 37; x++)
            for (int c = 0; c < 3; c++) {
                int d = abs(px(&im, x, y)[c] - src[y * gdk_pixbuf_get_rowstride(p) + x * 3 + c]);
                worst = d > worst ? d : worst;
            }
    g_test_message("%s: worst channel difference %d", type, worst);
    g_assert_cmpint(worst, <=, tolerance);
    image_rgb_clear(&im);
    remove_tmpdir(dir);
}

static void test_formats(void)
{
    round_trip("png", "png", 0, NULL, NULL);
    round_trip("bmp", "bmp", 0, NULL, NULL);
    round_trip("tiff", "tiff", 0, NULL, NULL);
    round_trip("jpeg", "jpg", 64, "quality", "100"); /* 4:2:0 chroma at a hard edge */
    round_trip("webp", "webp", 64, "quality", "100"); /* lossy, 4:2:0 chroma */
}

static void test_png_kinds(void)
{
    g_autofree char *gray8 = test_image("gray8.png");
    g_autofree char *gray16 = test_image("gray16.png");
    g_autofree char *rgb16 = test_image("rgb16.png");
    ImageRgb a = load_ok(gray8), b = load_ok(gray16), c = load_ok(rgb16);
    for (int y = 0; y < 5; y++)
        for (int x = 0; x < 7; x++) {
            int v = 30 * x + y;
            for (int k = 0; k < 3; k++) {
                g_assert_cmpint(px(&a, x, y)[k], ==, v); /* gray -> R = G = B */
                /* 16 bits: the high byte, as the image shows (Pillow would clip at 255) */
                g_assert_cmpint(px(&b, x, y)[k], ==, v);
                g_assert_cmpint(px(&c, x, y)[k], ==, 20 * x + y + 30 * k);
            }
        }
    image_rgb_clear(&a);
    image_rgb_clear(&b);
    image_rgb_clear(&c);

    /* palette with a transparent entry, and RGBA: alpha dropped, the colour kept */
    g_autofree char *pal = test_image("palette.png");
    g_autofree char *rgba = test_image("rgba.png");
    ImageRgb p = load_ok(pal), r = load_ok(rgba);
    static const guint8 plte[4][3] = { { 200, 10, 10 }, { 10, 200, 10 }, { 10, 10, 200 },
                                       { 9, 8, 7 } };
    for (int y = 0; y < 5; y++)
        for (int x = 0; x < 7; x++) {
            g_assert_cmpmem(px(&p, x, y), 3, plte[(x + y) % 4], 3);
            guint8 want[3] = { (guint8)(x * 30), (guint8)(y * 40), 77 };
            g_assert_cmpmem(px(&r, x, y), 3, want, 3);
        }
    image_rgb_clear(&p);
    image_rgb_clear(&r);
}

static void test_animated_first_frame(void)
{
    g_autofree char *path = test_image("animated.gif");
    ImageRgb im = load_ok(path);
    g_assert_cmpint(im.width, ==, 7);
    g_assert_cmpint(im.height, ==, 5);
    for (int y = 0; y < 5; y++)
        for (int x = 0; x < 7; x++)
            g_assert_cmpmem(px(&im, x, y), 3, ((guint8[]){ 255, 0, 0 }), 3);
    image_rgb_clear(&im);
}

/* An EXIF APP1 segment holding only Orientation (big-endian TIFF). */
static GBytes *with_orientation(const guint8 *jpeg, gsize len, int orientation)
{
    static const guint8 head[] = { 0xFF, 0xE1, 0x00, 0x22, 'E', 'x', 'i', 'f', 0, 0,
                                   'M', 'M', 0, 42, 0, 0, 0, 8, /* TIFF header */
                                   0, 1,                        /* one IFD entry */
                                   0x01, 0x12, 0, 3, 0, 0, 0, 1 };
    GByteArray *a = g_byte_array_new();
    g_byte_array_append(a, jpeg, 2); /* SOI */
    g_byte_array_append(a, head, sizeof head);
    guint8 value[] = { 0, (guint8)orientation, 0, 0, 0, 0, 0, 0 }; /* value, next IFD = 0 */
    g_byte_array_append(a, value, sizeof value);
    g_byte_array_append(a, jpeg + 2, (guint)(len - 2));
    return g_byte_array_free_to_bytes(a);
}

static void test_exif_orientation(void)
{
    g_autoptr(GdkPixbuf) p = pattern();
    gchar *buf;
    gsize len;
    g_assert_true(gdk_pixbuf_save_to_buffer(p, &buf, &len, "jpeg", NULL, "quality", "100", NULL));
    /* 6: the camera was turned; the viewer rotates 90 degrees clockwise */
    g_autoptr(GBytes) rotated = with_orientation((guint8 *)buf, len, 6);
    g_free(buf);
    g_auto(ImageRgb) im = { 0 };
    g_autoptr(GError) error = NULL;
    g_assert_true(image_file_load_bytes(rotated, "rotated.jpg", &im, &error));
    g_assert_no_error(error);
    g_assert_cmpint(im.width, ==, 23);
    g_assert_cmpint(im.height, ==, 37);
    /* source (x, y) lands at (H - 1 - y, x): the blue half (x >= 18) is now the bottom */
    g_assert_cmpint(px(&im, 5, 30)[2], >, 150);
    g_assert_cmpint(px(&im, 5, 5)[2], <, 100);
    /* the red ramp (R = 6x) now runs down the image */
    g_assert_cmpint(abs(px(&im, 11, 30)[0] - 180), <=, 20);
}

/* The generated hostile files: each fails with its code, before any large allocation. */
static void test_hostile(void)
{
    const struct {
        const char *file;
        ImageFileError code;
        const char *needle;
    } cases[] = {
        { "bomb.png", IMAGE_FILE_ERROR_TOO_LARGE, "60000 x 60000 pixels" },
        { "zero.png", IMAGE_FILE_ERROR_CORRUPT, "cannot read this image" },
        { "truncated.png", IMAGE_FILE_ERROR_TRUNCATED, "truncated" },
        { "not-an-image.png", IMAGE_FILE_ERROR_UNSUPPORTED_FORMAT, "cannot read this image" },
        { "empty.png", IMAGE_FILE_ERROR_TRUNCATED, "empty" },
        { "no-such-file.png", IMAGE_FILE_ERROR_NOT_FOUND, "cannot read" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path = test_image(cases[i].file);
        load_fails(path, cases[i].code, cases[i].needle);
    }
    /* The bomb was refused before its 10 GB of pixels were allocated: this process never grew
     * past a few megabytes. */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    g_test_message("peak resident set: %ld KB", ru.ru_maxrss);
    g_assert_cmpint(ru.ru_maxrss, <, 200 * 1024);
}

/* The same files held in memory (a paste, a drop): the name stands for the path. */
static void test_hostile_bytes(void)
{
    const struct {
        const char *file;
        ImageFileError code;
    } cases[] = {
        { "bomb.png", IMAGE_FILE_ERROR_TOO_LARGE },
        { "zero.png", IMAGE_FILE_ERROR_CORRUPT },
        { "truncated.png", IMAGE_FILE_ERROR_TRUNCATED },
        { "not-an-image.png", IMAGE_FILE_ERROR_UNSUPPORTED_FORMAT },
        { "empty.png", IMAGE_FILE_ERROR_TRUNCATED },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path = test_image(cases[i].file);
        g_autofree char *data = NULL;
        gsize len = 0;
        g_assert_true(g_file_get_contents(path, &data, &len, NULL));
        load_bytes_fails(data, len, "pasted image", cases[i].code, NULL);
    }
}

/* Paths that are not image files at all: missing, a folder, a pipe, unreadable. */
static void test_not_files(void)
{
    g_autofree char *dir = make_tmpdir();

    g_autofree char *missing = g_build_filename(dir, "gone.png", NULL);
    load_fails(missing, IMAGE_FILE_ERROR_NOT_FOUND, "cannot read");
    g_autofree char *missing_dir = g_build_filename(dir, "gone", "x.png", NULL);
    load_fails(missing_dir, IMAGE_FILE_ERROR_NOT_FOUND, "cannot read");
    /* a regular file used as a folder (ENOTDIR): the image is just as missing */
    g_autofree char *plain = g_build_filename(dir, "plain.png", NULL);
    write_file(plain, "x", 1);
    g_autofree char *under_file = g_build_filename(plain, "x.png", NULL);
    load_fails(under_file, IMAGE_FILE_ERROR_NOT_FOUND, "cannot read");

    load_fails(dir, IMAGE_FILE_ERROR_NOT_REGULAR, "folder");

    /* A named pipe with no writer: refused at once rather than waited on. Should opening it
     * block, the alarm ends the test instead of hanging it. */
    g_autofree char *fifo = g_build_filename(dir, "pipe.png", NULL);
    g_assert_cmpint(mkfifo(fifo, 0600), ==, 0);
    alarm(20);
    load_fails(fifo, IMAGE_FILE_ERROR_NOT_REGULAR, "not a regular file");
    /* devices: endless (/dev/zero) or empty (/dev/null), neither is read */
    load_fails("/dev/zero", IMAGE_FILE_ERROR_NOT_REGULAR, "not a regular file");
    load_fails("/dev/null", IMAGE_FILE_ERROR_NOT_REGULAR, "not a regular file");
    alarm(0);

    /* Unreadable: the permission bits do not stop root, so only checked for other users. */
    g_autofree char *locked = g_build_filename(dir, "locked.png", NULL);
    g_autofree char *gray8 = test_image("gray8.png");
    g_autofree char *png = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(gray8, &png, &len, NULL));
    write_file(locked, png, len);
    g_assert_cmpint(g_chmod(locked, 0), ==, 0);
    if (geteuid() != 0)
        load_fails(locked, IMAGE_FILE_ERROR_IO, "cannot read");
    else
        g_test_message("running as root: the unreadable-file case is skipped");

    remove_tmpdir(dir);
}

/* ------------------------------------------------------------------------------------------
 * The size limits, at and just past the engine's own (vl2.h), in PNGs written here
 */

static guint32 crc32_of(const guint8 *p, gsize n)
{
    guint32 c = 0xFFFFFFFFu;
    for (gsize i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

static void put_be32(GByteArray *a, guint32 v)
{
    guint8 b[4] = { (guint8)(v >> 24), (guint8)(v >> 16), (guint8)(v >> 8), (guint8)v };
    g_byte_array_append(a, b, 4);
}

static void put_chunk(GByteArray *a, const char *kind, const guint8 *data, gsize len)
{
    put_be32(a, (guint32)len);
    gsize start = a->len;
    g_byte_array_append(a, (const guint8 *)kind, 4);
    if (len)
        g_byte_array_append(a, data, (guint)len);
    put_be32(a, crc32_of(a->data + start, len + 4));
}

/* A zlib stream holding `raw` in stored (uncompressed) deflate blocks: its size follows the
 * data, so cutting the file cuts the rows. */
static GByteArray *zlib_stored(const guint8 *raw, gsize raw_len)
{
    GByteArray *z = g_byte_array_new();
    static const guint8 zlib_head[] = { 0x78, 0x01 };
    g_byte_array_append(z, zlib_head, 2);
    guint32 s1 = 1, s2 = 0; /* Adler-32 */
    for (gsize i = 0; i < raw_len; i++) {
        s1 = (s1 + raw[i]) % 65521;
        s2 = (s2 + s1) % 65521;
    }
    for (gsize off = 0; off < raw_len;) {
        gsize n = MIN(raw_len - off, 65535);
        guint8 block[5] = { off + n == raw_len, (guint8)n, (guint8)(n >> 8), (guint8)~n,
                            (guint8)(~n >> 8) };
        g_byte_array_append(z, block, 5);
        g_byte_array_append(z, raw + off, (guint)n);
        off += n;
    }
    put_be32(z, (s2 << 16) | s1);
    return z;
}

/* An 8-bit gray PNG of width x height. With `complete`, its one IDAT holds every row (zero
 * filter, value 128) in stored deflate blocks, so the file decodes; without, the IDAT holds a
 * few bytes only and just the header is meaningful. */
static GBytes *gray_png(guint32 width, guint32 height, gboolean complete)
{
    GByteArray *a = g_byte_array_new();
    static const guint8 sig[] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n' };
    g_byte_array_append(a, sig, sizeof sig);
    guint8 ihdr[13] = { (guint8)(width >> 24), (guint8)(width >> 16), (guint8)(width >> 8),
                        (guint8)width, (guint8)(height >> 24), (guint8)(height >> 16),
                        (guint8)(height >> 8), (guint8)height, 8, 0, 0, 0, 0 };
    put_chunk(a, "IHDR", ihdr, sizeof ihdr);

    GByteArray *z;
    if (complete) {
        gsize raw_len = (gsize)height * (width + 1);
        guint8 *raw = g_malloc(raw_len);
        for (gsize y = 0; y < height; y++) {
            raw[y * (width + 1)] = 0;
            memset(raw + y * (width + 1) + 1, 128, width);
        }
        z = zlib_stored(raw, raw_len);
        g_free(raw);
    } else {
        z = g_byte_array_new();
        static const guint8 some[] = { 0x78, 0x01, 0x01, 0x00, 0x00 };
        g_byte_array_append(z, some, sizeof some);
    }
    put_chunk(a, "IDAT", z->data, z->len);
    g_byte_array_unref(z);
    put_chunk(a, "IEND", NULL, 0);
    return g_byte_array_free_to_bytes(a);
}

static void too_large(guint32 width, guint32 height)
{
    g_autoptr(GBytes) png = gray_png(width, height, FALSE);
    g_autofree char *dims = g_strdup_printf("%u x %u pixels", width, height);
    g_autofree char *limits = g_strdup_printf("at most %d megapixels and %d pixels a side",
                                              VL2_MAX_IMAGE_PIXELS / 1000000, VL2_MAX_IMAGE_SIDE);
    load_bytes_fails(g_bytes_get_data(png, NULL), g_bytes_get_size(png), "big.png",
                     IMAGE_FILE_ERROR_TOO_LARGE, dims);
    load_bytes_fails(g_bytes_get_data(png, NULL), g_bytes_get_size(png), "big.png",
                     IMAGE_FILE_ERROR_TOO_LARGE, limits);
}

static void test_limits(void)
{
    /* exactly the longest side: decodes */
    g_autoptr(GBytes) widest = gray_png(VL2_MAX_IMAGE_SIDE, 1, TRUE);
    g_autoptr(GError) error = NULL;
    g_auto(ImageRgb) im = { 0 };
    if (!image_file_load_bytes(widest, "widest.png", &im, &error))
        g_error("%s", error->message);
    g_assert_cmpint(im.width, ==, VL2_MAX_IMAGE_SIDE);
    g_assert_cmpint(im.height, ==, 1);
    g_assert_cmpint(im.rgb[3 * (VL2_MAX_IMAGE_SIDE - 1)], ==, 128);

    /* one pixel more on either side */
    too_large(VL2_MAX_IMAGE_SIDE + 1, 1);
    too_large(1, VL2_MAX_IMAGE_SIDE + 1);
    /* both sides allowed, but one row more than the pixel budget */
    guint32 rows = VL2_MAX_IMAGE_PIXELS / VL2_MAX_IMAGE_SIDE + 1;
    g_assert_cmpuint(rows, <=, VL2_MAX_IMAGE_SIDE);
    g_assert_cmpuint((guint64)VL2_MAX_IMAGE_SIDE * rows, >, VL2_MAX_IMAGE_PIXELS);
    g_assert_cmpuint((guint64)VL2_MAX_IMAGE_SIDE * (rows - 1), <=, VL2_MAX_IMAGE_PIXELS);
    too_large(VL2_MAX_IMAGE_SIDE, rows);
}

/* A noisy 240 x 180 image saved as `type`: its data runs to the end of the file. */
static GBytes *noise_file(const char *type)
{
    g_autoptr(GdkPixbuf) p = gdk_pixbuf_new(GDK_COLORSPACE_RGB, FALSE, 8, 240, 180);
    guint8 *d = gdk_pixbuf_get_pixels(p);
    GRand *rand = g_rand_new_with_seed(7);
    for (int y = 0; y < 180; y++)
        for (int x = 0; x < 240 * 3; x++)
            d[y * gdk_pixbuf_get_rowstride(p) + x] = (guint8)g_rand_int_range(rand, 0, 256);
    g_rand_free(rand);
    gchar *buf;
    gsize len;
    g_autoptr(GError) error = NULL;
    if (!gdk_pixbuf_save_to_buffer(p, &buf, &len, type, &error, NULL))
        g_error("saving %s: %s", type, error->message);
    return g_bytes_new_take(buf, len);
}

static void load_bytes_ok(GBytes *bytes, const char *name)
{
    g_auto(ImageRgb) im = { 0 };
    g_autoptr(GError) error = NULL;
    if (!image_file_load_bytes(bytes, name, &im, &error))
        g_error("%s", error->message);
    g_assert_cmpint(im.width, ==, 240);
}

/* A file cut anywhere is refused, never decoded into a half-blank picture. The JPEG, WebP
 * and BMP decoders would fill the rest silently and the PNG one stops early: those are
 * TRUNCATED; TIFF's decoder fails by itself (CORRUPT). */
static void test_cut_files(void)
{
    const struct {
        const char *type;
        ImageFileError code;
    } kinds[] = {
        { "jpeg", IMAGE_FILE_ERROR_TRUNCATED }, { "webp", IMAGE_FILE_ERROR_TRUNCATED },
        { "bmp", IMAGE_FILE_ERROR_TRUNCATED },  { "png", IMAGE_FILE_ERROR_TRUNCATED },
        { "tiff", IMAGE_FILE_ERROR_CORRUPT },
    };
    for (size_t k = 0; k < G_N_ELEMENTS(kinds); k++) {
        g_autoptr(GBytes) whole = noise_file(kinds[k].type);
        g_autofree char *name = g_strdup_printf("noise.%s", kinds[k].type);
        load_bytes_ok(whole, name);
        gsize len = g_bytes_get_size(whole);
        for (int eighth = 1; eighth < 8; eighth++)
            load_bytes_fails(g_bytes_get_data(whole, NULL), len * eighth / 8, name,
                             kinds[k].code, NULL);
    }
}

/* The JPEG check walks the file's structure: an end marker inside an earlier segment (an EXIF
 * thumbnail) does not end the image; bytes after the real end marker are ignored; a file
 * missing only its end marker is cut. */
static void test_jpeg_end(void)
{
    g_autoptr(GBytes) whole = noise_file("jpeg");
    gsize len;
    const guint8 *jpeg = g_bytes_get_data(whole, &len);
    g_assert_cmpint(jpeg[len - 2], ==, 0xFF);
    g_assert_cmpint(jpeg[len - 1], ==, 0xD9);

    load_bytes_fails(jpeg, len - 2, "no-eoi.jpg", IMAGE_FILE_ERROR_TRUNCATED, "truncated");

    GByteArray *a = g_byte_array_new();
    g_byte_array_append(a, jpeg, len);
    static const guint8 trailer[] = "trailing bytes some writers add";
    g_byte_array_append(a, trailer, sizeof trailer);
    g_autoptr(GBytes) with_trailer = g_byte_array_free_to_bytes(a);
    load_bytes_ok(with_trailer, "trailer.jpg");

    /* an APP1 segment holding a miniature JPEG (SOI ... EOI), then the image cut in half */
    static const guint8 app1[] = { 0xFF, 0xE1, 0x00, 0x0E, 'E', 'x', 'i', 'f', 0, 0,
                                   0xFF, 0xD8, 0xFF, 0xD9, 0xFF, 0xD9 };
    a = g_byte_array_new();
    g_byte_array_append(a, jpeg, 2);
    g_byte_array_append(a, app1, sizeof app1);
    g_byte_array_append(a, jpeg + 2, (guint)(len - 2));
    g_autoptr(GBytes) with_thumb = g_byte_array_free_to_bytes(a);
    load_bytes_ok(with_thumb, "thumb.jpg");
    load_bytes_fails(g_bytes_get_data(with_thumb, NULL), g_bytes_get_size(with_thumb) / 2,
                     "thumb.jpg", IMAGE_FILE_ERROR_TRUNCATED, NULL);
}

/* ------------------------------------------------------------------------------------------
 * Cut and damaged files the structure checks alone would pass
 */

/* A noisy 8-bit gray PNG, Adam7-interlaced: its first passes already touch every row, so a
 * copy cut in a later pass reports all its rows and decodes without a word. */
static GBytes *interlaced_png(guint32 width, guint32 height)
{
    static const int pass[7][4] = { { 0, 0, 8, 8 }, { 4, 0, 8, 8 }, { 0, 4, 4, 8 }, { 2, 0, 4, 4 },
                                    { 0, 2, 2, 4 }, { 1, 0, 2, 2 }, { 0, 1, 1, 2 } };
    GByteArray *raw = g_byte_array_new();
    GRand *rand = g_rand_new_with_seed(11);
    for (int p = 0; p < 7; p++) {
        guint32 pw = width > (guint32)pass[p][0] ? (width - pass[p][0] + pass[p][2] - 1) / pass[p][2] : 0;
        guint32 ph = height > (guint32)pass[p][1] ? (height - pass[p][1] + pass[p][3] - 1) / pass[p][3] : 0;
        if (!pw || !ph)
            continue;
        for (guint32 y = 0; y < ph; y++) {
            guint8 filter = 0;
            g_byte_array_append(raw, &filter, 1);
            for (guint32 x = 0; x < pw; x++) {
                guint8 v = (guint8)g_rand_int_range(rand, 0, 256);
                g_byte_array_append(raw, &v, 1);
            }
        }
    }
    g_rand_free(rand);
    GByteArray *a = g_byte_array_new();
    static const guint8 sig[] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n' };
    g_byte_array_append(a, sig, sizeof sig);
    guint8 ihdr[13] = { (guint8)(width >> 24), (guint8)(width >> 16), (guint8)(width >> 8),
                        (guint8)width, (guint8)(height >> 24), (guint8)(height >> 16),
                        (guint8)(height >> 8), (guint8)height, 8, 0, 0, 0, 1 /* Adam7 */ };
    put_chunk(a, "IHDR", ihdr, sizeof ihdr);
    GByteArray *z = zlib_stored(raw->data, raw->len);
    put_chunk(a, "IDAT", z->data, z->len);
    g_byte_array_unref(z);
    g_byte_array_unref(raw);
    put_chunk(a, "IEND", NULL, 0);
    return g_byte_array_free_to_bytes(a);
}

static void test_cut_interlaced_png(void)
{
    g_autoptr(GBytes) whole = interlaced_png(240, 180);
    load_bytes_ok(whole, "interlaced.png");
    gsize len = g_bytes_get_size(whole);
    for (int eighth = 1; eighth < 8; eighth++)
        load_bytes_fails(g_bytes_get_data(whole, NULL), len * eighth / 8, "interlaced.png",
                         IMAGE_FILE_ERROR_TRUNCATED, "truncated");
}

/* A 240 x 180 bottom-up BMP in RLE8 (compressed, so its size says nothing about its rows):
 * runs of two pixels, each row closed by an end-of-line code. */
static GBytes *rle8_bmp(void)
{
    const int w = 240, h = 180;
    GByteArray *rows = g_byte_array_new();
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x += 2) {
            guint8 run[2] = { 2, (guint8)(x * 7 + y * 13) };
            g_byte_array_append(rows, run, 2);
        }
        static const guint8 eol[2] = { 0, 0 };
        g_byte_array_append(rows, eol, 2);
    }
    static const guint8 eof[2] = { 0, 1 };
    g_byte_array_append(rows, eof, 2);
    guint32 offset = 14 + 40 + 256 * 4;
    GByteArray *a = g_byte_array_new();
    guint8 head[54] = { 'B', 'M' };
    guint32 fields[][2] = { { 2, offset + rows->len }, { 10, offset }, { 14, 40 }, { 18, w },
                            { 22, h }, { 30, 1 /* BI_RLE8 */ }, { 34, rows->len },
                            { 46, 256 } };
    for (size_t i = 0; i < G_N_ELEMENTS(fields); i++)
        for (int k = 0; k < 4; k++)
            head[fields[i][0] + k] = (guint8)(fields[i][1] >> (8 * k));
    head[26] = 1; /* planes */
    head[28] = 8; /* bits per pixel */
    g_byte_array_append(a, head, sizeof head);
    for (int i = 0; i < 256; i++) {
        guint8 bgra[4] = { (guint8)i, (guint8)(255 - i), (guint8)(i * 3), 0 };
        g_byte_array_append(a, bgra, 4);
    }
    g_byte_array_append(a, rows->data, rows->len);
    g_byte_array_unref(rows);
    return g_byte_array_free_to_bytes(a);
}

static void test_cut_rle_bmp(void)
{
    g_autoptr(GBytes) whole = rle8_bmp();
    load_bytes_ok(whole, "rle.bmp");
    gsize len = g_bytes_get_size(whole);
    for (int eighth = 1; eighth < 8; eighth++)
        load_bytes_fails(g_bytes_get_data(whole, NULL), len * eighth / 8, "rle.bmp",
                         IMAGE_FILE_ERROR_TRUNCATED, "truncated");
}

/* Where the JPEG segment with `marker` starts (its 0xFF), walking segments from the start. */
static gsize jpeg_segment(const guint8 *d, gsize n, guint8 marker)
{
    for (gsize i = 2; i + 4 <= n;) {
        g_assert_cmpint(d[i], ==, 0xFF);
        if (d[i + 1] == marker)
            return i;
        i += 2 + ((gsize)d[i + 2] << 8 | d[i + 3]);
    }
    g_assert_not_reached();
}

/* A JPEG whose scan data stops early but whose end marker is there: the structure is whole,
 * the picture is not. With its header made to claim 6000 x 6000 pixels, a few kilobytes
 * would become a 36-megapixel grey image. */
static void test_jpeg_short_scan(void)
{
    g_autoptr(GBytes) whole = noise_file("jpeg");
    gsize len;
    const guint8 *jpeg = g_bytes_get_data(whole, &len);
    gsize sos = jpeg_segment(jpeg, len, 0xDA);
    GByteArray *a = g_byte_array_new();
    g_byte_array_append(a, jpeg, (guint)(sos + (len - sos) / 4));
    static const guint8 eoi[2] = { 0xFF, 0xD9 };
    g_byte_array_append(a, eoi, 2);
    load_bytes_fails(a->data, a->len, "short-scan.jpg", IMAGE_FILE_ERROR_TRUNCATED,
                     "truncated");

    gsize sof = jpeg_segment(a->data, a->len, 0xC0);
    a->data[sof + 5] = 6000 >> 8; /* height */
    a->data[sof + 6] = 6000 & 0xFF;
    a->data[sof + 7] = 6000 >> 8; /* width */
    a->data[sof + 8] = 6000 & 0xFF;
    load_bytes_fails(a->data, a->len, "huge-short.jpg", IMAGE_FILE_ERROR_TRUNCATED,
                     "truncated");
    g_byte_array_unref(a);
}

/* GIFs cut anywhere: the decoder says so itself (CORRUPT); the whole file keeps working. */
static void test_cut_gif(void)
{
    g_autofree char *path = test_image("animated.gif");
    g_autofree char *data = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(path, &data, &len, NULL));
    for (int eighth = 1; eighth < 8; eighth++)
        load_bytes_fails(data, len * eighth / 8, "animated.gif", IMAGE_FILE_ERROR_CORRUPT, NULL);
    load_bytes_fails(data, len - 1, "animated.gif", IMAGE_FILE_ERROR_CORRUPT, NULL);
}

/* ------------------------------------------------------------------------------------------
 * Formats: six are read, every other is refused before a decoder sees the data
 */

#define ACCEPTED "PNG, JPEG, WebP, GIF, BMP or TIFF"

static void refused_everywhere(const void *data, gsize len, const char *name, const char *dir)
{
    load_bytes_fails(data, len, name, IMAGE_FILE_ERROR_UNSUPPORTED_FORMAT, ACCEPTED);
    g_autofree char *path = g_build_filename(dir, name, NULL);
    write_file(path, data, len);
    load_fails(path, IMAGE_FILE_ERROR_UNSUPPORTED_FORMAT, ACCEPTED);
}

/* Each of these is a valid picture that an installed gdk-pixbuf loader would decode (SVG
 * through librsvg, whose run time and memory a 265-byte file can make unbounded); the names
 * do not matter, the content does. */
static void test_refused_formats(void)
{
    g_autofree char *dir = make_tmpdir();
    static const char svg[] = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"64\" height=\"48\">"
                              "<rect width=\"64\" height=\"48\" fill=\"#c00\"/></svg>\n";
    refused_everywhere(svg, strlen(svg), "drawing.svg", dir);
    refused_everywhere(svg, strlen(svg), "drawing.png", dir);
    static const char xml_svg[] = "<?xml version=\"1.0\"?>\n" /* the same, with a prolog */
                                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"8\" "
                                  "height=\"8\"/>\n";
    refused_everywhere(xml_svg, strlen(xml_svg), "prolog.svg", dir);
    static const char xpm[] = "/* XPM */\nstatic char *x[] = {\n\"2 2 2 1\",\n"
                              "\"a c #FF0000\",\n\"b c #0000FF\",\n\"ab\",\n\"ba\"};\n";
    refused_everywhere(xpm, strlen(xpm), "icon.xpm", dir);
    static const char xbm[] = "#define x_width 8\n#define x_height 2\n"
                              "static unsigned char x_bits[] = { 0x01, 0x02 };\n";
    refused_everywhere(xbm, strlen(xbm), "mask.xbm", dir);
    static const char ppm[] = "P6\n2 2\n255\n\xff\0\0\0\xff\0\0\0\xff\xff\xff\xff";
    refused_everywhere(ppm, sizeof ppm - 1, "photo.ppm", dir);
    /* uncompressed 2 x 2 true-colour TGA */
    static const guint8 tga[18 + 12] = { 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2, 0, 24, 0 };
    refused_everywhere(tga, sizeof tga, "shot.tga", dir);

    g_autoptr(GdkPixbuf) p = pattern();
    gchar *buf;
    gsize len;
    g_autoptr(GError) error = NULL;
    if (!gdk_pixbuf_save_to_buffer(p, &buf, &len, "ico", &error, NULL))
        g_error("saving ico: %s", error->message);
    refused_everywhere(buf, len, "favicon.ico", dir);
    g_free(buf);
    remove_tmpdir(dir);
}

/* ------------------------------------------------------------------------------------------
 * The file size limit
 */

/* A sparse file one byte over the limit, starting like a PNG: refused from its size, before
 * it is read (the process stays small), whether given as a path or mapped into memory. */
static void test_file_too_large(void)
{
    g_autofree char *dir = make_tmpdir();
    g_autofree char *path = g_build_filename(dir, "huge.png", NULL);
    g_autoptr(GBytes) png = gray_png(10, 10, TRUE);
    write_file(path, g_bytes_get_data(png, NULL), g_bytes_get_size(png));
    g_assert_cmpint(truncate(path, (off_t)VL2_IMAGE_FILE_MAX_BYTES + 1), ==, 0);
    g_autofree char *limit = g_strdup_printf("(%" G_GSIZE_FORMAT ")", VL2_IMAGE_FILE_MAX_BYTES);
    load_fails(path, IMAGE_FILE_ERROR_TOO_LARGE, limit);

    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) none = image_file_read(path, &error);
    g_assert_null(none);
    g_assert_error(error, IMAGE_FILE_ERROR, IMAGE_FILE_ERROR_TOO_LARGE);
    g_clear_error(&error);

    g_autoptr(GMappedFile) mapped = g_mapped_file_new(path, FALSE, &error);
    g_assert_no_error(error);
    g_autoptr(GBytes) bytes = g_mapped_file_get_bytes(mapped);
    g_auto(ImageRgb) im = { 0 };
    gboolean ok = image_file_load_bytes(bytes, "huge.png", &im, &error);
    check_error(ok, &im, error, "huge.png", IMAGE_FILE_ERROR_TOO_LARGE, limit);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    g_test_message("peak resident set: %ld KB", ru.ru_maxrss);
    g_assert_cmpint(ru.ru_maxrss, <, 200 * 1024);
    remove_tmpdir(dir);
}

/* image_file_read(): the bytes of an image file, with the same refusals as image_file_load()
 * but no decoding (the app keeps the file as it came). */
static void test_read(void)
{
    g_autofree char *gray8 = test_image("gray8.png");
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) bytes = image_file_read(gray8, &error);
    g_assert_no_error(error);
    g_autofree char *want = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(gray8, &want, &len, NULL));
    g_assert_cmpmem(g_bytes_get_data(bytes, NULL), g_bytes_get_size(bytes), want, len);

    g_autofree char *dir = make_tmpdir();
    g_autofree char *fifo = g_build_filename(dir, "pipe.png", NULL);
    g_assert_cmpint(mkfifo(fifo, 0600), ==, 0);
    const struct {
        const char *path;
        ImageFileError code;
    } bad[] = { { fifo, IMAGE_FILE_ERROR_NOT_REGULAR }, { dir, IMAGE_FILE_ERROR_NOT_REGULAR },
                { "/dev/zero", IMAGE_FILE_ERROR_NOT_REGULAR },
                { "/nonexistent/x.png", IMAGE_FILE_ERROR_NOT_FOUND } };
    alarm(20);
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autoptr(GError) e = NULL;
        g_autoptr(GBytes) b = image_file_read(bad[i].path, &e);
        g_assert_null(b);
        g_assert_error(e, IMAGE_FILE_ERROR, (int)bad[i].code);
        g_assert_nonnull(strstr(e->message, bad[i].path));
    }
    alarm(0);
    remove_tmpdir(dir);
}

/* The clear function is idempotent; a NULL GError ** is allowed. */
static void test_clear(void)
{
    g_autofree char *path = test_image("gray8.png");
    {
        g_auto(ImageRgb) im = { 0 };
        g_assert_true(image_file_load(path, &im, NULL));
        g_assert_nonnull(im.rgb);
        image_rgb_clear(&im);
        g_assert_null(im.rgb);
        image_rgb_clear(&im);
    } /* and g_auto clears it once more */
    g_autofree char *missing = test_image("no-such-file.png");
    ImageRgb im = { 0 };
    g_assert_false(image_file_load(missing, &im, NULL));
    g_assert_null(im.rgb);
}

/* The golden images decode to what Pillow decoded: their tiles' hashes are checked by the
 * golden tests; here, their sizes. */
static void test_golden_images(void)
{
    const struct {
        const char *file;
        int w, h;
    } imgs[] = { { "banner_rgba.png", 1500, 60 }, { "tall_palette.png", 90, 1200 },
                 { "tiny_gray.png", 17, 23 }, { "vqa_1.jpg", 5014, 2004 } };
    for (size_t i = 0; i < G_N_ELEMENTS(imgs); i++) {
        g_autofree char *path = g_build_filename(g_getenv("VL2_GOLDEN_DIR"), "images",
                                                 imgs[i].file, NULL);
        ImageRgb im = load_ok(path);
        g_assert_cmpint(im.width, ==, imgs[i].w);
        g_assert_cmpint(im.height, ==, imgs[i].h);
        image_rgb_clear(&im);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/imagefile/image-file/formats", test_formats);
    g_test_add_func("/imagefile/image-file/png-kinds", test_png_kinds);
    g_test_add_func("/imagefile/image-file/animated-first-frame", test_animated_first_frame);
    g_test_add_func("/imagefile/image-file/exif-orientation", test_exif_orientation);
    g_test_add_func("/imagefile/image-file/hostile", test_hostile);
    g_test_add_func("/imagefile/image-file/hostile-bytes", test_hostile_bytes);
    g_test_add_func("/imagefile/image-file/not-files", test_not_files);
    g_test_add_func("/imagefile/image-file/limits", test_limits);
    g_test_add_func("/imagefile/image-file/cut-files", test_cut_files);
    g_test_add_func("/imagefile/image-file/jpeg-end", test_jpeg_end);
    g_test_add_func("/imagefile/image-file/cut-interlaced-png", test_cut_interlaced_png);
    g_test_add_func("/imagefile/image-file/cut-rle-bmp", test_cut_rle_bmp);
    g_test_add_func("/imagefile/image-file/jpeg-short-scan", test_jpeg_short_scan);
    g_test_add_func("/imagefile/image-file/cut-gif", test_cut_gif);
    g_test_add_func("/imagefile/image-file/refused-formats", test_refused_formats);
    g_test_add_func("/imagefile/image-file/file-too-large", test_file_too_large);
    g_test_add_func("/imagefile/image-file/read", test_read);
    g_test_add_func("/imagefile/image-file/clear", test_clear);
    g_test_add_func("/imagefile/image-file/golden-images", test_golden_images);
    return g_test_run();
}
