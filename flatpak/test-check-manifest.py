#!/usr/bin/env python3
"""The manifest check refuses what it is there to refuse.

usage: test-check-manifest.py CHECKER MANIFEST SOURCE_ROOT

Each case changes one thing in a copy of the real manifest and expects check-manifest.py to
fail on it naming the problem; the unchanged copy passes. Prints TAP.
"""
import copy
import json
import os
import subprocess
import sys
import tempfile


def app(m):
    return m["modules"][-1]


def openblas(m):
    return next(x for x in m["modules"] if x["name"] == "openblas")


def drop_sha(m):
    del openblas(m)["sources"][0]["sha256"]


def short_sha(m):
    openblas(m)["sources"][0]["sha256"] = "38240eee"


def git_branch(m):
    openblas(m)["sources"] = [{"type": "git", "url": "https://github.com/OpenMathLib/OpenBLAS",
                               "branch": "develop"}]


def local_dir(m):
    openblas(m)["sources"] = [{"type": "dir", "path": "/tmp/OpenBLAS"}]


def home(m):
    m["finish-args"].append("--filesystem=home")


def host(m):
    m["finish-args"].append("--filesystem=host:ro")


def escape(m):
    m["finish-args"].append("--talk-name=org.freedesktop.Flatpak")


def no_network(m):
    m["finish-args"].remove("--share=network")


def x11_only(m):
    m["finish-args"].remove("--socket=fallback-x11")
    m["finish-args"].append("--socket=x11")


def wrong_id(m):
    m["id"] = "io.github.sightline.Other"


def devel_id_release_build(m):
    m["id"] = "io.github.sightline.Sightline.Devel"


def native(m):
    m.setdefault("build-options", {})["cflags"] = "-O2 -march=native"


def no_dynamic_arch(m):
    openblas(m)["build-commands"] = [c.replace("DYNAMIC_ARCH=1 ", "")
                                     for c in openblas(m)["build-commands"]]


def fortran(m):
    openblas(m)["build-commands"] = [c.replace("NOFORTRAN=1 ", "")
                                     for c in openblas(m)["build-commands"]]


def no_md4c(m):
    m["modules"] = [x for x in m["modules"] if x["name"] != "md4c"]


def debug_build(m):
    app(m)["config-opts"] = ["-Dbuildtype=debug", "-Dtests=false"]


def with_tests(m):
    app(m)["config-opts"] = ["-Dbuildtype=release"]


def other_runtime(m):
    m["runtime"] = "org.freedesktop.Platform"


CASES = [
    (drop_sha, "not pinned with a sha256"),
    (short_sha, "not pinned with a sha256"),
    (git_branch, "not pinned to a commit"),
    (local_dir, "local folder"),
    (home, "--filesystem=home"),
    (host, "--filesystem=host:ro"),
    (escape, "org.freedesktop.Flatpak"),
    (no_network, "--share=network missing"),
    (x11_only, "--socket=x11 is not needed"),
    (wrong_id, "is not io.github.sightline.Sightline"),
    (devel_id_release_build, "the id of the profile"),
    (native, "-march=native"),
    (no_dynamic_arch, "DYNAMIC_ARCH=1 missing"),
    (fortran, "NOFORTRAN=1 missing"),
    (no_md4c, "no md4c"),
    (debug_build, "not a release build"),
    (with_tests, "builds its tests"),
    (other_runtime, "org.gnome.Platform"),
]


def run(checker, manifest, root):
    r = subprocess.run([sys.executable, checker, manifest, root], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def main():
    checker, path, root = sys.argv[1:4]
    with open(path, encoding="utf-8") as f:
        real = json.load(f)
    print(f"1..{len(CASES) + 2}")
    n = 0
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        target = os.path.join(tmp, "manifest.json")

        def case(ok, what, out):
            nonlocal n, failed
            n += 1
            failed += not ok
            print(f"{'ok' if ok else 'not ok'} {n} - {what}")
            if not ok:
                for line in out.splitlines():
                    print(f"# {line}")

        with open(target, "w", encoding="utf-8") as f:
            json.dump(real, f)
        rc, out = run(checker, target, root)
        case(rc == 0, "the real manifest passes", out)
        with open(target, "w", encoding="utf-8") as f:
            f.write("{\"id\": ")
        rc, out = run(checker, target, root)
        case(rc == 1 and "does not parse" in out, "a manifest that does not parse fails", out)
        for mutate, expected in CASES:
            m = copy.deepcopy(real)
            mutate(m)
            with open(target, "w", encoding="utf-8") as f:
                json.dump(m, f)
            rc, out = run(checker, target, root)
            case(rc == 1 and expected in out, f"{mutate.__name__}: refused ({expected})", out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
