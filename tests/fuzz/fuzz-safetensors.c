/* fuzz-safetensors.c - a .safetensors file (engine/weights.c): the input is the whole file,
 * opened and mapped the way the engine opens weights, then bound against the tensor table of
 * the mini-tiny config (shapes and dtypes checked, nothing computed).
 *
 * The bytes live in a memfd, reached through /proc/self/fd: nothing is written to a disk. */
#define _GNU_SOURCE
#include "fuzz.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vl2-private.h"

static int memfd = -1;
static char *memfd_path;
static GPtrArray *table;

int
LLVMFuzzerInitialize (int    *argc,
                      char ***argv)
{
  g_autofree char *json = NULL;
  gsize length;
  vl2_config cfg;
  vl2_error err;

  fuzz_init_glib ();
  memfd = memfd_create ("fuzz-safetensors", MFD_CLOEXEC);
  if (memfd < 0)
    {
      fprintf (stderr, "fuzz: memfd_create: %s\n", g_strerror (errno));
      abort ();
    }
  memfd_path = g_strdup_printf ("/proc/self/fd/%d", memfd);

  json = fuzz_read_source_file ("tests/golden/models/mini-tiny/config.json", &length);
  if (vl2_config_parse (json, length, "mini-tiny/config.json", &cfg, &err) != VL2_OK)
    {
      fprintf (stderr, "fuzz: %s\n", err.message);
      abort ();
    }
  table = vl2_tensor_table (&cfg, NULL);
  vl2_config_clear (&cfg);
  return 0;
}

static void
set_contents (const uint8_t *data,
              size_t         size)
{
  size_t done = 0;

  if (ftruncate (memfd, 0) != 0)
    abort ();
  while (done < size)
    {
      ssize_t n = pwrite (memfd, data + done, size - done, (off_t) done);

      if (n <= 0)
        abort ();
      done += (size_t) n;
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  vl2_st_file *f = NULL;
  vl2_error err;
  vl2_weights w = { 0 };
  GHashTableIter it;
  gpointer key, value;

  set_contents (data, size);
  if (vl2_st_open (memfd_path, &f, &err) != VL2_OK)
    {
      fuzz_note ("refused", err.message);
      FUZZ_CHECK (f == NULL, "a file returned with an error");
      FUZZ_CHECK (g_utf8_validate (err.message, -1, NULL), "the message is not UTF-8");
      return 0;
    }

  /* Every tensor lies inside the mapping and is as long as its shape says. */
  g_hash_table_iter_init (&it, f->tensors);
  while (g_hash_table_iter_next (&it, &key, &value))
    {
      const vl2_tensor *t = value;
      const uint8_t *begin = (const uint8_t *) f->map, *end = begin + f->map_size;

      FUZZ_CHECK ((const uint8_t *) t->data >= begin + 8
                  && (const uint8_t *) t->data + t->n_bytes <= end,
                  "tensor %s outside the file", t->name);
      FUZZ_CHECK ((uint64_t) t->n_elements * vl2_dtype_size (t->dtype) == t->n_bytes,
                  "tensor %s: %" G_GINT64_FORMAT " elements in %zu bytes", t->name,
                  t->n_elements, t->n_bytes);
      /* read its first and last bytes: they must be mapped */
      if (t->n_bytes)
        {
          volatile uint8_t sink = ((const uint8_t *) t->data)[0];
          sink ^= ((const uint8_t *) t->data)[t->n_bytes - 1];
          (void) sink;
        }
    }

  /* What vl2_weights_open() makes of a single model.safetensors. */
  w.files = g_ptr_array_new_with_free_func ((GDestroyNotify) vl2_st_close);
  w.copies = g_ptr_array_new_with_free_func (g_free);
  w.index = g_hash_table_new (g_str_hash, g_str_equal);
  g_ptr_array_add (w.files, f);
  g_hash_table_iter_init (&it, f->tensors);
  while (g_hash_table_iter_next (&it, &key, &value))
    g_hash_table_insert (w.index, key, value);
  if (vl2_weights_bind (&w, table, NULL, NULL, &err) != VL2_OK)
    fuzz_note ("not mini-tiny's tensors", err.message);
  (void) vl2_weights_check (&w, &err);
  vl2_weights_close (&w);
  return 0;
}
