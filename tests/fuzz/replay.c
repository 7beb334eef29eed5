/* replay.c - runs a fuzzing harness on files, without libFuzzer: the normal build's `meson test`
 * (suite 'fuzz') feeds it every file of the harness's seed corpus, regression seeds included.
 *
 *   replay-NAME FILE|FOLDER...
 *
 * A folder stands for its files (not its subfolders), in name order. The exit status is 0 when
 * every input ran; a crash, a sanitizer report or a failed check of the harness ends the run
 * with the input's name on stderr.
 */
#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
/* Optional in a harness: a weak reference is NULL when it has none. */
__attribute__((weak)) int LLVMFuzzerInitialize (int *argc, char ***argv);

static int
run_file (const char *path)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *contents = NULL;
  gsize length = 0;
  gint64 start;
  uint8_t *copy;

  if (!g_file_get_contents (path, &contents, &length, &error))
    {
      fprintf (stderr, "replay: %s\n", error->message);
      return 1;
    }
  fprintf (stderr, "replay: %s (%zu bytes)\n", path, (size_t) length);
  /* A buffer of exactly the input's size, as libFuzzer gives it: reading one byte past the
   * end is an AddressSanitizer report, not a read of contents' NUL. */
  copy = g_malloc (length ? length : 1);
  memcpy (copy, contents, length);
  start = g_get_monotonic_time ();
  LLVMFuzzerTestOneInput (copy, length);
  fprintf (stderr, "replay: %s: %.1f ms\n", path, (g_get_monotonic_time () - start) / 1000.0);
  g_free (copy);
  return 0;
}

static int
compare_names (gconstpointer a,
               gconstpointer b)
{
  return strcmp (*(const char **) a, *(const char **) b);
}

int
main (int    argc,
      char **argv)
{
  int failed = 0, n_inputs = 0;

  if (argc < 2)
    {
      fprintf (stderr, "usage: %s FILE|FOLDER...\n", argv[0]);
      return 2;
    }
  if (LLVMFuzzerInitialize)
    LLVMFuzzerInitialize (&argc, &argv);

  for (int i = 1; i < argc; i++)
    {
      if (g_file_test (argv[i], G_FILE_TEST_IS_DIR))
        {
          g_autoptr(GError) error = NULL;
          g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
          GDir *dir = g_dir_open (argv[i], 0, &error);
          const char *name;

          if (!dir)
            {
              fprintf (stderr, "replay: %s\n", error->message);
              failed = 1;
              continue;
            }
          while ((name = g_dir_read_name (dir)))
            g_ptr_array_add (names, g_build_filename (argv[i], name, NULL));
          g_dir_close (dir);
          g_ptr_array_sort (names, compare_names);
          for (guint k = 0; k < names->len; k++)
            {
              const char *path = g_ptr_array_index (names, k);

              if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
                continue;
              failed |= run_file (path);
              n_inputs++;
            }
        }
      else
        {
          failed |= run_file (argv[i]);
          n_inputs++;
        }
    }
  if (n_inputs == 0)
    {
      fprintf (stderr, "replay: no inputs\n");
      return 1;
    }
  printf ("replayed %d input%s\n", n_inputs, n_inputs == 1 ? "" : "s");
  return failed;
}
