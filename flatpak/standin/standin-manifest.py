#!/usr/bin/env python3
"""Writes the stand-in variant of a Sightline Flatpak manifest.

usage: standin-manifest.py MANIFEST OUTPUT SOURCE_ROOT SOURCES_DIR RUNTIME SDK BRANCH

The variant keeps the real manifest's modules, build options, build commands and finish-args
as they are. Only these change:
- runtime, sdk and runtime-version name the stand-in runtime built from Debian 12;
- each release archive is replaced by a local copy of the same upstream version (listed in
  LOCAL below: Debian's source package of it, with its own sha256); an archive with no local
  copy stops the script;
- the app's own "dir" source points at SOURCE_ROOT (the real one is relative to flatpak/).
"""
import json
import os
import sys

# upstream URL -> (file name in SOURCES_DIR, its sha256, what it is)
LOCAL = {
    "https://github.com/OpenMathLib/OpenBLAS/releases/download/v0.3.29/OpenBLAS-0.3.29.tar.gz": (
        "openblas_0.3.29+ds.orig.tar.xz",
        "eb691e2cff83799400da22aa6ab93ebaa346ad317fea578b7ae119e226ce1b01",
        "Debian's source of OpenBLAS 0.3.29 (repacked: +ds drops files Debian cannot ship)"),
    "https://github.com/mity/md4c/archive/refs/tags/release-0.5.2.tar.gz": (
        "md4c_0.5.2.orig.tar.gz",
        "55d0111d48fb11883aaee91465e642b8b640775a4d6993c2d0e7a8092758ef21",
        "Debian's source of md4c 0.5.2 (the upstream archive itself: same sha256)"),
}


def main():
    if len(sys.argv) != 8:
        sys.exit(__doc__)
    path, out, root, sources, runtime, sdk, branch = sys.argv[1:]
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    manifest["runtime"] = runtime
    manifest["sdk"] = sdk
    manifest["runtime-version"] = branch
    for module in manifest["modules"]:
        for source in module.get("sources", []):
            if source.get("type") == "archive":
                url = source["url"]
                if url not in LOCAL:
                    sys.exit(f"standin-manifest: no local copy of {url}")
                name, sha256, what = LOCAL[url]
                print(f"{module['name']}: {what}: {name}", file=sys.stderr)
                del source["url"]
                source["path"] = os.path.join(sources, name)
                source["sha256"] = sha256
            elif source.get("type") == "dir":
                source["path"] = root
    with open(out, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
