/* fuzz-config.c - config.json (engine/config.c) from memory, then what is derived from a config
 * that loads: the tensor table and the tiling rule's choices for a few image sizes. */
#include "fuzz.h"

#include "vl2-private.h"

FUZZ_INITIALIZE_GLIB_ONLY

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  static const int sizes[][2] = { { 1, 1 }, { 640, 480 }, { 1, 32768 }, { 32768, 1 },
                                  { 10000, 10000 }, { 383, 385 } };
  vl2_config cfg;
  vl2_error err;

  if (vl2_config_parse ((const char *) data, size, "config.json", &cfg, &err) != VL2_OK)
    {
      fuzz_note ("refused", err.message);
      FUZZ_CHECK (err.message[0] != '\0', "an error without a message");
      FUZZ_CHECK (g_utf8_validate (err.message, -1, NULL), "the message is not UTF-8");
      return 0;
    }

  FUZZ_CHECK (cfg.n_candidate_resolutions > 0 && cfg.candidate_resolutions, "no candidates");
  FUZZ_CHECK (cfg.lm.head_dim > 0, "head_dim %d", cfg.lm.head_dim);

  for (size_t i = 0; i < G_N_ELEMENTS (sizes); i++)
    {
      int bw = 0, bh = 0;

      vl2_select_best_resolution (&cfg, sizes[i][0], sizes[i][1], &bw, &bh);
      FUZZ_CHECK (bw > 0 && bh > 0, "canvas %d x %d", bw, bh);
      (void) vl2_image_token_count (&cfg, bw / cfg.vision.image_size, bh / cfg.vision.image_size);
    }

  /* The table has an entry per tensor: layers times experts can reach millions for a legal
   * config, which is slow, not wrong; only smaller ones are built. */
  if ((int64_t) cfg.lm.num_hidden_layers * (cfg.lm.n_routed_experts + 1)
      + cfg.vision.layers + cfg.projector.depth < 4096)
    {
      GPtrArray *table = vl2_tensor_table (&cfg, NULL);

      FUZZ_CHECK (table->len > 0, "an empty tensor table");
      for (guint i = 0; i < table->len; i++)
        {
          const vl2_tensor_spec *spec = g_ptr_array_index (table, i);

          FUZZ_CHECK (spec->ndim >= 1 && spec->ndim <= VL2_MAX_DIMS, "%s: %d dims", spec->name,
                      spec->ndim);
          for (int d = 0; d < spec->ndim; d++)
            FUZZ_CHECK (spec->shape[d] > 0, "%s: dimension %d is %" G_GINT64_FORMAT, spec->name,
                        d, spec->shape[d]);
        }
      g_ptr_array_unref (table);
    }

  vl2_config_clear (&cfg);
  return 0;
}
