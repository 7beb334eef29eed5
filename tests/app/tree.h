/* tree.h - files the app tests make and clean up. */
#pragma once

#include <glib.h>

/* Deletes `path` and everything under it; symbolic links are removed, never followed. */
void tree_remove (const char *path);
