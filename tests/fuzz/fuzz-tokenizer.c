/* fuzz-tokenizer.c - encoding and decoding with the published tokenizer
 * (engine/deepseek-vl2/tokenizer.json, loaded once). The first byte chooses: the rest of the
 * input is text to encode (which must decode back to itself), or little-endian int32 ids to
 * decode (whole, and streamed piece by piece, which must agree). */
#define VL2_FUZZ_ENGINE
#include "fuzz.h"

#include <string.h>


static vl2_tokenizer *tok;

int
LLVMFuzzerInitialize (int    *argc,
                      char ***argv)
{
  fuzz_init_glib ();
  tok = fuzz_load_published_tokenizer ();
  return 0;
}

static void
encode (const char *text,
        size_t      len)
{
  vl2_ids ids = { 0 };
  vl2_error err;
  vl2_status st = vl2_tokenizer_encode (tok, text, len, &ids, &err);
  gboolean valid = g_utf8_validate_len (text, len, NULL);
  char *back;

  /* NUL is valid UTF-8 to the engine, not to GLib */
  if (!memchr (text, '\0', len))
    FUZZ_CHECK ((st == VL2_OK) == valid, "encode says %s for %s UTF-8", vl2_status_name (st),
                valid ? "valid" : "invalid");
  if (st != VL2_OK)
    {
      FUZZ_CHECK (ids.len == 0, "ids left behind by a failed encode");
      vl2_ids_clear (&ids);
      return;
    }
  FUZZ_CHECK (ids.len <= len, "%zu ids for %zu bytes", ids.len, len);
  for (size_t i = 0; i < ids.len; i++)
    FUZZ_CHECK (ids.data[i] >= 0 && ids.data[i] < vl2_tokenizer_n_vocab (tok), "id %d",
                ids.data[i]);

  /* byte-level BPE loses nothing; NUL ends the decoded C string */
  back = vl2_tokenizer_decode (tok, ids.data, ids.len, false);
  FUZZ_CHECK (back, "decode failed");
  if (!memchr (text, '\0', len))
    FUZZ_CHECK (strlen (back) == len && memcmp (back, text, len) == 0,
                "\"%.*s\" decodes to \"%s\"", (int) len, text, back);
  free (back);
  vl2_ids_clear (&ids);
}

static void
decode (const uint8_t *data,
        size_t         size)
{
  size_t n = size / 4;
  int32_t *ids = g_new (int32_t, n + 1);
  g_autoptr(GString) streamed = g_string_new (NULL);
  vl2_utf8_stream st = { 0 };
  char *whole, *skipped;

  for (size_t i = 0; i < n; i++)
    ids[i] = (int32_t) ((uint32_t) data[4 * i] | (uint32_t) data[4 * i + 1] << 8
                        | (uint32_t) data[4 * i + 2] << 16 | (uint32_t) data[4 * i + 3] << 24);

  whole = vl2_tokenizer_decode (tok, ids, n, false);
  skipped = vl2_tokenizer_decode (tok, ids, n, true);
  FUZZ_CHECK (whole && skipped, "decode failed");
  FUZZ_CHECK (g_utf8_validate (whole, -1, NULL), "decoded text is not UTF-8");
  FUZZ_CHECK (strlen (skipped) <= strlen (whole), "skipping special tokens made more text");

  /* what a session emits step by step */
  for (size_t i = 0; i < n; i++)
    {
      size_t len;
      const char *bytes = vl2_tokenizer_bytes (tok, ids[i], &len);

      if (bytes)
        vl2_utf8_stream_push (&st, bytes, len, streamed);
    }
  vl2_utf8_stream_finish (&st, streamed);
  FUZZ_CHECK (strcmp (streamed->str, whole) == 0, "streamed \"%s\", whole \"%s\"",
              streamed->str, whole);

  free (whole);
  free (skipped);
  g_free (ids);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  if (size == 0)
    return 0;
  if (data[0] & 1)
    decode (data + 1, size - 1);
  else
    encode ((const char *) data + 1, size - 1);
  return 0;
}
