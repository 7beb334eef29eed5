/* fuzz-prompt.c - building a prompt (engine/prompt.c) and tiling its images (engine/image.c).
 *
 * The input chooses config fields over the mini-tiny config (image_size, patch_size,
 * downsample_ratio, candidate_resolutions, max_position_embeddings; now and then a hostile
 * value), image sizes and pixels, and the conversation's text; the published tokenizer is
 * loaded once. The config goes through vl2_config_parse(), so what it refuses never reaches
 * the prompt.
 *
 * Tiling a large legal canvas is slow, not wrong: when the tiles of a prompt that fits the
 * context would take more than about a MB, only its token count is made. A prompt that does not
 * fit the context (its images alone need more tokens than max_position_embeddings) is always
 * built: the engine must refuse it, and before it allocates tiles. */
#define VL2_FUZZ_ENGINE
#include "fuzz.h"

#include <json-glib/json-glib.h>
#include <string.h>


#define TILE_BUDGET (1u << 20)
#define MAX_IMAGES 3

static vl2_model model;
static char *base_config;
static gsize base_config_len;

int
LLVMFuzzerInitialize (int    *argc,
                      char ***argv)
{
  fuzz_init_glib ();
  model.tok = fuzz_load_published_tokenizer ();
  base_config = fuzz_read_source_file ("tests/golden/models/mini-tiny/config.json",
                                       &base_config_len);
  model.dir = g_strdup ("fuzz-prompt");
  /* as model.c binds them from the published tokenizer_config.json */
  model.bos_id = 0;
  model.eos_id = 1;
  model.pad_id = 2;
  model.image_id = vl2_tokenizer_find (model.tok, "<image>");
  return 0;
}

static const int hostile_sides[] = { 0, 1, 2, 3, 383, 384, 385, 23040, 32768, 65535, 65536,
                                     65537, 2147483647, -1 };

static int
pick_side (FuzzReader *r,
           int         image_size)
{
  uint8_t b = fuzz_u8 (r);

  if (b >= 0xf0)
    return hostile_sides[b % G_N_ELEMENTS (hostile_sides)];
  return image_size * (1 + b % 6);
}

/* The config text the input asks for, or NULL. */
static char *
make_config (FuzzReader *r)
{
  static const int image_sizes[] = { 14, 16, 28, 32, 48, 64 };
  static const int hostile_image_sizes[] = { 1, 2, 3, 7, 384, 768, 16384, 16385, 0 };
  static const int patch_sizes[] = { 1, 2, 7, 14, 16 };
  static const int positions[] = { 16, 64, 512, 4096, 65536, 1 << 22, 0 };
  g_autoptr(JsonNode) root = json_from_string (base_config, NULL);
  JsonObject *top = json_node_get_object (root);
  JsonArray *candidates = json_array_new ();
  uint8_t flags = fuzz_u8 (r);
  int image_size, n;

  image_size = (flags & 1) ? hostile_image_sizes[fuzz_u8 (r) % G_N_ELEMENTS (hostile_image_sizes)]
                           : image_sizes[fuzz_u8 (r) % G_N_ELEMENTS (image_sizes)];
  json_object_set_int_member (json_object_get_object_member (top, "vision_config"), "image_size",
                              image_size);
  json_object_set_int_member (json_object_get_object_member (top, "vision_config"), "patch_size",
                              patch_sizes[fuzz_u8 (r) % G_N_ELEMENTS (patch_sizes)]);
  json_object_set_int_member (json_object_get_object_member (top, "projector_config"),
                              "downsample_ratio", 1 + fuzz_u8 (r) % 4);
  json_object_set_int_member (json_object_get_object_member (top, "language_config"),
                              "max_position_embeddings",
                              positions[fuzz_u8 (r) % G_N_ELEMENTS (positions)]);
  n = 1 + fuzz_u8 (r) % 8;
  for (int i = 0; i < n; i++)
    {
      JsonArray *wh = json_array_new ();

      json_array_add_int_element (wh, pick_side (r, image_size));
      json_array_add_int_element (wh, pick_side (r, image_size));
      json_array_add_array_element (candidates, wh);
    }
  json_object_set_array_member (top, "candidate_resolutions", candidates);
  return json_to_string (root, FALSE);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  FuzzReader r = { data, size, 0 };
  g_autofree char *config = make_config (&r);
  vl2_image images[MAX_IMAGES];
  uint8_t *pixels[MAX_IMAGES] = { NULL };
  vl2_message messages[4];
  vl2_conversation conv = { messages, 0, NULL };
  g_autofree char *text = NULL;
  vl2_prompt *prompt = NULL;
  vl2_error err;
  size_t n_counted = 0;
  int n_images, n_messages, image_message;
  uint8_t flags;
  int64_t tokens = 0, tile_bytes = 0;
  vl2_status st;

  if (vl2_config_parse (config, strlen (config), "config.json", &model.cfg, &err) != VL2_OK)
    {
      fuzz_note ("config refused", err.message);
      return 0;
    }

  flags = fuzz_u8 (&r);
  n_images = fuzz_u8 (&r) % (MAX_IMAGES + 1);
  for (int i = 0; i < n_images; i++)
    {
      uint8_t fill = fuzz_u8 (&r);
      size_t row;

      images[i].width = 1 + fuzz_u8 (&r);
      images[i].height = 1 + fuzz_u8 (&r);
      images[i].stride = images[i].width * 3 + (fuzz_u8 (&r) & 7);
      row = (size_t) images[i].stride;
      pixels[i] = g_malloc (row * (size_t) images[i].height);
      for (size_t k = 0; k < row * (size_t) images[i].height; k++)
        pixels[i][k] = (uint8_t) (fill + k * 7 + (k / row) * 13);
      images[i].rgb = pixels[i];
    }

  /* the conversation: user, assistant, user, ...; the images go to one user turn */
  n_messages = 1 + (flags & 3);
  image_message = ((flags >> 2) & 3) % n_messages;
  if (image_message % 2)
    image_message--;
  text = fuzz_rest_as_utf8 (&r);
  {
    char **parts = g_strsplit (text, "\x01", 6);
    int n_parts = (int) g_strv_length (parts);
    static char *kept[6];

    for (int i = 0; i < 6; i++)
      g_clear_pointer (&kept[i], g_free);
    for (int i = 0; i < n_parts && i < 6; i++)
      kept[i] = g_strdup (parts[i]);
    g_strfreev (parts);
    for (int i = 0; i < n_messages; i++)
      {
        messages[i].role = i % 2 ? VL2_ROLE_ASSISTANT : VL2_ROLE_USER;
        messages[i].content = i < n_parts ? kept[i] : "";
        messages[i].images = i == image_message && n_images ? images : NULL;
        messages[i].n_images = i == image_message ? n_images : 0;
      }
    if (flags & 0x10)
      messages[n_messages - 1].role = VL2_ROLE_ASSISTANT;
    if ((flags & 0x20) && n_parts > n_messages)
      conv.system_prompt = kept[n_messages];
    conv.n_messages = n_messages;
  }

  /* What the tiles will cost, from the tiling rule (64-bit: hostile configs overflow int). */
  for (int i = 0; i < n_images; i++)
    {
      int S = model.cfg.vision.image_size, bw = S, bh = S;
      int64_t g = S / model.cfg.vision.patch_size, rr = model.cfg.projector.downsample_ratio;
      int64_t hw = (g + rr - 1) / rr, tw, th;

      if (n_images <= 2)
        vl2_select_best_resolution (&model.cfg, images[i].width, images[i].height, &bw, &bh);
      tw = bw / S;
      th = bh / S;
      tokens += hw * (hw + 1) + 1 + th * hw * (tw * hw + 1);
      tile_bytes += (1 + tw * th) * (int64_t) S * S * 3 + (int64_t) bw * bh * 3;
    }

  st = vl2_prompt_count_tokens (&model, &conv, &n_counted, &err);
  if (st == VL2_OK)
    FUZZ_CHECK (n_counted > 0, "an empty prompt counted");
  else
    fuzz_note ("counting refused", err.message);

  /* A legal but large canvas is only counted (see above). */
  if (tokens <= model.cfg.lm.max_position_embeddings && tile_bytes > TILE_BUDGET)
    goto out;

  if (vl2_prompt_new (&model, &conv, &prompt, &err) == VL2_OK)
    {
      int n_tiles = 0;

      /* no session can hold it: tiling it was wasted work, and with a large canvas gigabytes */
      FUZZ_CHECK (tokens <= model.cfg.lm.max_position_embeddings,
                  "a prompt whose images need %" G_GINT64_FORMAT " tokens was built for a "
                  "context of %d", tokens, model.cfg.lm.max_position_embeddings);

      FUZZ_CHECK (st == VL2_OK, "counting failed (%s) but building did not", err.message);
      FUZZ_CHECK (vl2_prompt_n_tokens (prompt) == n_counted, "built %zu tokens, counted %zu",
                  vl2_prompt_n_tokens (prompt), n_counted);
      FUZZ_CHECK (vl2_prompt_n_images (prompt) == n_images, "%d images of %d",
                  vl2_prompt_n_images (prompt), n_images);
      for (int i = 0; i < n_images; i++)
        {
          int tw, th;

          vl2_prompt_image_grid (prompt, i, &tw, &th);
          FUZZ_CHECK (tw >= 1 && th >= 1, "image %d: grid %d x %d", i, tw, th);
          n_tiles += 1 + tw * th;
        }
      FUZZ_CHECK (vl2_prompt_n_tiles (prompt) == n_tiles, "%d tiles, grids say %d",
                  vl2_prompt_n_tiles (prompt), n_tiles);
      FUZZ_CHECK (n_tiles == 0 || vl2_prompt_tile (prompt, n_tiles - 1), "no last tile");
      for (size_t i = 0; i < vl2_prompt_n_tokens (prompt); i++)
        FUZZ_CHECK (vl2_prompt_ids (prompt)[i] >= 0
                    && vl2_prompt_ids (prompt)[i] < vl2_tokenizer_n_vocab (model.tok),
                    "id %d", vl2_prompt_ids (prompt)[i]);
      vl2_prompt_free (prompt);
    }
  else
    {
      fuzz_note ("building refused", err.message);
      FUZZ_CHECK (prompt == NULL, "a prompt returned with an error");
    }

out:
  for (int i = 0; i < n_images; i++)
    g_free (pixels[i]);
  vl2_config_clear (&model.cfg);
  return 0;
}
