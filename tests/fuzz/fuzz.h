/* fuzz.h - what the fuzzing harnesses share.
 *
 * Each harness is one C file with LLVMFuzzerTestOneInput (and LLVMFuzzerInitialize where it
 * needs setup). The same file is linked either with libFuzzer (-Dfuzzing=true, clang) or with
 * replay.c, which feeds it every file of its seed corpus as a `meson test` (suite 'fuzz').
 *
 * A harness reads files from the source tree only (FUZZ_SOURCE_ROOT, set by the build), and
 * writes nothing outside a temporary folder of its own. A harness of the engine's internals
 * defines VL2_FUZZ_ENGINE before including this header.
 */
#pragma once

#include <glib.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef FUZZ_SOURCE_ROOT
#error "FUZZ_SOURCE_ROOT is set by tests/fuzz/meson.build"
#endif

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* A GLib critical is a broken promise of the code under test (a wrongly typed JSON member
 * reaching a getter, say), so it stops the run like a crash. Debug output is dropped: an
 * execution must stay fast. */
static inline void
fuzz_init_glib (void)
{
  g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
  g_setenv ("G_MESSAGES_DEBUG", "", TRUE);
}

/* The LLVMFuzzerInitialize of a harness that needs only fuzz_init_glib(). */
#define FUZZ_INITIALIZE_GLIB_ONLY                                                                 \
  int LLVMFuzzerInitialize (int *argc, char ***argv)                                              \
  {                                                                                               \
    (void) argc;                                                                                  \
    (void) argv;                                                                                  \
    fuzz_init_glib ();                                                                            \
    return 0;                                                                                     \
  }

/* A file of the source tree, read once at start-up (a harness cannot run without it). */
static inline char *
fuzz_read_source_file (const char *relative, gsize *length)
{
  g_autofree char *path = g_build_filename (FUZZ_SOURCE_ROOT, relative, NULL);
  g_autoptr(GError) error = NULL;
  char *contents = NULL;

  if (!g_file_get_contents (path, &contents, length, &error))
    {
      fprintf (stderr, "fuzz: %s\n", error->message);
      abort ();
    }
  return contents;
}

#ifdef VL2_FUZZ_ENGINE
#include "vl2-private.h"

/* The published tokenizer (engine/deepseek-vl2/tokenizer.json), loaded once at start-up. */
static inline vl2_tokenizer *
fuzz_load_published_tokenizer (void)
{
  g_autofree char *path = g_build_filename (FUZZ_SOURCE_ROOT, "engine", "deepseek-vl2",
                                            "tokenizer.json", NULL);
  vl2_tokenizer *tok = NULL;
  vl2_error err;

  if (vl2_tokenizer_load (path, &tok, &err) != VL2_OK)
    {
      fprintf (stderr, "fuzz: %s\n", err.message);
      abort ();
    }
  return tok;
}
#endif

/* Reads the input from its front, as numbers and choices; past the end everything is 0. */
typedef struct {
  const uint8_t *data;
  size_t size, pos;
} FuzzReader;

static inline uint8_t
fuzz_u8 (FuzzReader *r)
{
  return r->pos < r->size ? r->data[r->pos++] : 0;
}

static inline uint16_t
fuzz_u16 (FuzzReader *r)
{
  uint16_t lo = fuzz_u8 (r);
  return (uint16_t) (lo | fuzz_u8 (r) << 8);
}

static inline uint32_t
fuzz_u32 (FuzzReader *r)
{
  uint32_t lo = fuzz_u16 (r);
  return lo | (uint32_t) fuzz_u16 (r) << 16;
}

static inline uint64_t
fuzz_u64 (FuzzReader *r)
{
  uint64_t lo = fuzz_u32 (r);
  return lo | (uint64_t) fuzz_u32 (r) << 32;
}

/* What is left of the input, as a NUL-terminated string made valid UTF-8 (the text every
 * caller of the code under test has validated before it gets there). */
static inline char *
fuzz_rest_as_utf8 (FuzzReader *r)
{
  char *text = g_utf8_make_valid ((const char *) r->data + r->pos, (gssize) (r->size - r->pos));

  r->pos = r->size;
  return text;
}

/* With FUZZ_VERBOSE set, what the code under test said about an input (its refusals), for
 * reading why a seed goes where it goes: FUZZ_VERBOSE=1 replay-NAME FILE. */
static inline void
fuzz_note (const char *what,
           const char *message)
{
  static int verbose = -1;

  if (verbose < 0)
    verbose = g_getenv ("FUZZ_VERBOSE") != NULL;
  if (verbose)
    fprintf (stderr, "fuzz: %s: %s\n", what, message);
}

/* A check of the harness itself: a property the code under test must keep. */
#define FUZZ_CHECK(cond, ...)                                                                     \
  do                                                                                              \
    {                                                                                             \
      if (!(cond))                                                                                \
        {                                                                                         \
          fprintf (stderr, "fuzz: %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);         \
          fprintf (stderr, __VA_ARGS__);                                                          \
          fputc ('\n', stderr);                                                                   \
          abort ();                                                                               \
        }                                                                                         \
    }                                                                                             \
  while (0)
