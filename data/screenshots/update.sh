#!/bin/sh
# Renders data/screenshots/*.png from the real application under Xvfb, with the golden mini
# model (see tests/app/screenshot.c for what is on screen and why).
set -eu
cd "$(dirname "$0")/../.."
.ci/setup
meson compile -C build screenshots
