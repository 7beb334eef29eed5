/* fuzz-sampler.c - the sampler (engine/sampler.c) on arbitrary logits: every float the input's
 * bytes spell, NaN and infinities included, with sampling parameters from the input inside
 * the range vl2_session_prefill() accepts. The token must be one of the vocabulary's. */
#include "fuzz.h"

#include <math.h>
#include <string.h>

#include "vl2-private.h"

FUZZ_INITIALIZE_GLIB_ONLY

static float
fuzz_float (FuzzReader *r)
{
  uint32_t bits = fuzz_u32 (r);
  float f;

  memcpy (&f, &bits, sizeof f);
  return f;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  FuzzReader r = { data, size, 0 };
  vl2_generate_params p = vl2_generate_default_params ();
  vl2_logit_bias bias[16];
  vl2_sampler_scratch scratch;
  vl2_rng rng;
  uint8_t flags = fuzz_u8 (&r);
  uint64_t seen_mask;
  uint8_t *seen;
  float *logits;
  int n_vocab, n_bias;
  int32_t id;

  p.temperature = fuzz_float (&r);
  p.top_p = fuzz_float (&r);
  p.top_k = fuzz_u16 (&r);
  p.repetition_penalty = fuzz_float (&r);
  p.seed = fuzz_u64 (&r);
  seen_mask = fuzz_u64 (&r);
  n_bias = fuzz_u8 (&r) % (G_N_ELEMENTS (bias) + 1);
  for (int i = 0; i < n_bias; i++)
    {
      bias[i].id = fuzz_u16 (&r);
      bias[i].bias = fuzz_float (&r);
    }

  /* what is left: the logits */
  n_vocab = (int) ((r.size - r.pos) / 4);
  if (n_vocab == 0)
    return 0;
  logits = g_new (float, n_vocab);
  for (int i = 0; i < n_vocab; i++)
    logits[i] = fuzz_float (&r);

  /* the parameters vl2_session_prefill() lets through */
  if (!(p.temperature >= 0) || !isfinite (p.temperature) || (flags & 1))
    p.temperature = (flags & 1) ? 0.0f : fabsf (fmodf (isfinite (p.temperature) ? p.temperature
                                                                                : 1.0f, 4.0f));
  if (!(p.top_p > 0 && p.top_p <= 1) || (flags & 2))
    p.top_p = 1.0f;
  if (flags & 4)
    p.top_k = 0;
  if (!(p.repetition_penalty > 0) || !isfinite (p.repetition_penalty) || (flags & 8))
    p.repetition_penalty = 1.0f;
  for (int i = 0; i < n_bias; i++)
    {
      bias[i].id %= n_vocab;
      if (isnan (bias[i].bias))
        bias[i].bias = -INFINITY;
    }
  p.logit_bias = bias;
  p.n_logit_bias = n_bias;

  seen = g_new0 (uint8_t, n_vocab);
  for (int i = 0; i < n_vocab; i++)
    seen[i] = (seen_mask >> (i % 64)) & 1;

  scratch.values = g_new (float, n_vocab);
  scratch.index = g_new (int, n_vocab);
  scratch.select = g_new (float, n_vocab);
  vl2_rng_seed (&rng, p.seed);

  id = vl2_sample (logits, n_vocab, &p, (flags & 16) ? NULL : seen, &rng, &scratch);
  FUZZ_CHECK (id >= -1 && id < n_vocab, "token %d of a vocabulary of %d", id, n_vocab);
  if (id < 0)
    {
      /* refused: only when the values it chooses from cannot all be ordinary numbers */
      gboolean ordinary = p.repetition_penalty >= 1e-3f && p.repetition_penalty <= 1e3f;

      for (int i = 0; i < n_vocab; i++)
        ordinary &= isfinite (logits[i]) && fabsf (logits[i]) < 1e30f;
      for (int i = 0; i < n_bias; i++)
        ordinary &= isfinite (bias[i].bias) && fabsf (bias[i].bias) < 1e30f;
      FUZZ_CHECK (!ordinary, "no token chosen from finite logits");
    }

  g_free (scratch.values);
  g_free (scratch.index);
  g_free (scratch.select);
  g_free (seen);
  g_free (logits);
  return 0;
}
