/* fuzz-tokenizer-load.c - tokenizer.json (engine/tokenizer.c) from memory; a tokenizer that
 * loads then encodes a few texts and decodes what it made and a spread of ids. */
#include "fuzz.h"

#include <string.h>

#include "vl2-private.h"

FUZZ_INITIALIZE_GLIB_ONLY

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  static const char *const texts[] = {
    "Hello, world! 123 4567",
    "<image>\n<|User|>: What is this?\n\n<|Assistant|>:",
    "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80  \t\r\n x",
  };
  vl2_tokenizer *tok = NULL;
  vl2_error err;
  int32_t n_vocab;

  if (vl2_tokenizer_parse ((const char *) data, size, "tokenizer.json", &tok, &err) != VL2_OK)
    {
      fuzz_note ("refused", err.message);
      FUZZ_CHECK (tok == NULL, "a tokenizer returned with an error");
      FUZZ_CHECK (g_utf8_validate (err.message, -1, NULL), "the message is not UTF-8");
      return 0;
    }

  n_vocab = vl2_tokenizer_n_vocab (tok);
  FUZZ_CHECK (n_vocab >= 0, "n_vocab %d", n_vocab);

  for (size_t i = 0; i < G_N_ELEMENTS (texts); i++)
    {
      vl2_ids ids = { 0 };

      if (vl2_tokenizer_encode (tok, texts[i], strlen (texts[i]), &ids, &err) == VL2_OK)
        {
          char *text;

          for (size_t k = 0; k < ids.len; k++)
            FUZZ_CHECK (ids.data[k] >= 0 && ids.data[k] < n_vocab, "id %d of %d",
                        ids.data[k], n_vocab);
          text = vl2_tokenizer_decode (tok, ids.data, ids.len, false);
          FUZZ_CHECK (text && g_utf8_validate (text, -1, NULL), "decoded text is not UTF-8");
          free (text);
        }
      vl2_ids_clear (&ids);
    }

  /* A spread of ids, inside the vocabulary and around its ends. */
  {
    int32_t probe[64];
    size_t n = 0;
    char *text;

    for (int32_t id = 0; id < n_vocab && n < 48; id += 1 + n_vocab / 48)
      probe[n++] = id;
    probe[n++] = n_vocab - 1;
    probe[n++] = n_vocab;
    probe[n++] = -1;
    probe[n++] = INT32_MAX;
    for (size_t k = 0; k < n; k++)
      {
        size_t len = 0;
        const char *bytes = vl2_tokenizer_bytes (tok, probe[k], &len);

        FUZZ_CHECK (bytes || len == 0, "no bytes but a length");
        (void) vl2_tokenizer_token (tok, probe[k]);
        (void) vl2_tokenizer_is_special (tok, probe[k]);
      }
    text = vl2_tokenizer_decode (tok, probe, n, false);
    FUZZ_CHECK (text && g_utf8_validate (text, -1, NULL), "decoded text is not UTF-8");
    free (text);
    text = vl2_tokenizer_decode (tok, probe, n, true);
    free (text);
  }

  vl2_tokenizer_free (tok);
  return 0;
}
