#!/usr/bin/env python3
"""Writes a golden model's checkpoint folder (config, tokenizer, bf16 weights) into the build tree.

usage: make_fixture.py MAKE_WEIGHTS GOLDEN_MODEL_DIR TOKENIZER_DIR DEST_DIR STAMP
The weights are regenerated bit for bit by the golden set's tools/make_weights.py (which checks
every tensor against manifest.json); the tokenizer files, the same for every model, come from
TOKENIZER_DIR (engine/deepseek-vl2). The source folders stay untouched.
"""
import os
import shutil
import stat
import subprocess
import sys

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def main():
    tool, src, tokenizer_dir, dest, stamp = sys.argv[1:6]
    # a rebuild starts clean (copies of read-only files are read-only)
    shutil.rmtree(dest, ignore_errors=True)
    subprocess.run([sys.executable, tool, src, "--dest", dest, "--force"], check=True,
                   stdout=subprocess.DEVNULL)
    for name in TOKENIZER_FILES:
        shutil.copy(os.path.join(tokenizer_dir, name), os.path.join(dest, name))
    for name in os.listdir(dest):
        path = os.path.join(dest, name)
        os.chmod(path, os.stat(path).st_mode | stat.S_IWUSR)
    with open(stamp, "w") as f:
        f.write(dest + "\n")


if __name__ == "__main__":
    main()
