/* heap-peak.h - the heap's size as a test program goes, for tests that bound the memory an input
 * costs. heap-peak.c defines malloc and its relatives over glibc's own entry points, so every
 * allocation of the program (the code under test, GLib, json-glib) is counted; compile it into
 * the test executable itself (not a library) and never under the sanitizers, which replace the
 * allocator themselves. */
#pragma once

/* Starts a measurement: returns the bytes the heap holds now, and the peak starts from there. */
long heap_peak_begin(void);
/* The bytes the heap holds now, and the most it has held since heap_peak_begin(). */
long heap_live(void);
long heap_peak(void);
