/* test-image-file.c - decoding image files into the engine's RGB8 input (engine/cli/image-file.c).
 *
 * Formats round-trip through GdkPixbuf's savers; the special PNGs, the animated GIF and the
 * hostile files come from tests/tools/make_test_images.py ($VL2_TEST_IMAGES).
 */
#include <gdk-pixbuf/gdk-pixbuf.h>
#include <string.h>
#include <sys/resource.h>

#include "image-file.h"
#include "test-util.h"

static char *test_image(const char *name)
{
    return g_build_filename(g_getenv("VL2_TEST_IMAGES"), name, NULL);
}

static image_rgb load_ok(const char *path)
{
    image_rgb im;
    char *error = NULL;
    if (!image_file_load(path, &im, &error))
        g_error("%s", error);
    g_assert_cmpint(im.stride, ==, im.width * 3);
    return im;
}

static void load_fails(const char *path, const char *needle)
{
    image_rgb im = { 0 };
    char *error = NULL;
    g_assert_false(image_file_load(path, &im, &error));
    g_assert_null(im.rgb);
    g_assert_nonnull(error);
    if (!strstr(error, needle) || !strstr(error, path))
        g_error("error \"%s\" lacks \"%s\" or the path", error, needle);
    g_assert_null(strchr(error, '\n'));
    g_test_message("%s", error);
    g_free(error);
}

static const guint8 *px(const image_rgb *im, int x, int y)
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
    g_autofree char *dir = test_make_tmpdir();
    g_autofree char *name = g_strdup_printf("pattern.%s", ext);
    g_autofree char *path = g_build_filename(dir, name, NULL);
    g_autoptr(GError) error = NULL;
    if (!gdk_pixbuf_save(p, path, type, &error, opt_key, opt_value, NULL))
        g_error("saving %s: %s", type, error->message);
    image_rgb im = load_ok(path);
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
    test_rmtree(dir);
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
    image_rgb a = load_ok(gray8), b = load_ok(gray16), c = load_ok(rgb16);
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
    image_rgb p = load_ok(pal), r = load_ok(rgba);
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
    image_rgb im = load_ok(path);
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
    image_rgb im;
    char *error = NULL;
    g_assert_true(image_file_load_bytes(rotated, "rotated.jpg", &im, &error));
    g_assert_cmpint(im.width, ==, 23);
    g_assert_cmpint(im.height, ==, 37);
    /* source (x, y) lands at (H - 1 - y, x): the blue half (x >= 18) is now the bottom */
    g_assert_cmpint(px(&im, 5, 30)[2], >, 150);
    g_assert_cmpint(px(&im, 5, 5)[2], <, 100);
    /* the red ramp (R = 6x) now runs down the image */
    g_assert_cmpint(abs(px(&im, 11, 30)[0] - 180), <=, 20);
    image_rgb_clear(&im);
}

static void test_hostile(void)
{
    const struct {
        const char *file, *needle;
    } cases[] = {
        { "bomb.png", "60000 x 60000 pixels" },
        { "zero.png", "cannot read this image" },
        { "truncated.png", "truncated" },
        { "not-an-image.png", "cannot read this image" },
        { "empty.png", "empty" },
        { "no-such-file.png", "cannot open" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path = test_image(cases[i].file);
        load_fails(path, cases[i].needle);
    }
    /* The bomb was refused before its 10 GB of pixels were allocated: this process never grew
     * past a few megabytes. */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    g_test_message("peak resident set: %ld KB", ru.ru_maxrss);
    g_assert_cmpint(ru.ru_maxrss, <, 200 * 1024);
    /* a directory */
    g_autofree char *dir = test_image("");
    image_rgb im;
    char *error = NULL;
    g_assert_false(image_file_load(dir, &im, &error));
    g_free(error);
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
        g_autofree char *rel = g_build_filename("images", imgs[i].file, NULL);
        g_autofree char *path = test_golden_path(rel);
        image_rgb im = load_ok(path);
        g_assert_cmpint(im.width, ==, imgs[i].w);
        g_assert_cmpint(im.height, ==, imgs[i].h);
        image_rgb_clear(&im);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/engine/image-file/formats", test_formats);
    g_test_add_func("/engine/image-file/png-kinds", test_png_kinds);
    g_test_add_func("/engine/image-file/animated-first-frame", test_animated_first_frame);
    g_test_add_func("/engine/image-file/exif-orientation", test_exif_orientation);
    g_test_add_func("/engine/image-file/hostile", test_hostile);
    g_test_add_func("/engine/image-file/golden-images", test_golden_images);
    return g_test_run();
}
