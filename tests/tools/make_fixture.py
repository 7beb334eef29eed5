#!/usr/bin/env python3
"""Writes a golden model's checkpoint folder (config, tokenizer, bf16 weights) into the build tree.

usage: make_fixture.py GOLDEN_MODEL_DIR DEST_DIR STAMP
The weights are regenerated bit for bit by the golden folder's tools/make_weights.py (which
checks every tensor against manifest.json); the golden folder itself stays read-only.
"""
import os
import shutil
import subprocess
import sys


def main():
    src, dest, stamp = sys.argv[1:4]
    tool = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(src))), "tools",
                        "make_weights.py")
    # a rebuild starts clean: the copied golden files are read-only
    shutil.rmtree(dest, ignore_errors=True)
    subprocess.run([sys.executable, tool, src, "--dest", dest, "--force"], check=True,
                   stdout=subprocess.DEVNULL)
    with open(stamp, "w") as f:
        f.write(dest + "\n")


if __name__ == "__main__":
    main()
