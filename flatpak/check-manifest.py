#!/usr/bin/env python3
"""Checks a Flatpak manifest of Sightline against the tree it builds.

usage: check-manifest.py MANIFEST SOURCE_ROOT [BUILT_DATA_DIR]

- it parses, names the GNOME runtime and SDK, and runs `sightline`;
- every module's sources are pinned: archives and files by URL and sha256, git by commit;
  only the app itself is built from the local tree (a "dir" source);
- OpenBLAS is its C interface only, with DYNAMIC_ARCH (its kernels chosen at run time on any
  x86-64 or aarch64 CPU) and no Fortran; md4c is a module; nothing is built for the build
  machine's own CPU (-march=native) and the app is a release build without its tests;
- the app id is the one the app's build gives for the manifest's profile (the release's, or
  .Devel for -Dprofile=development), and it names the desktop file, the AppStream metadata,
  the settings schema and the icons; the resources live under the release id's path, as the
  app says (resource-base-path);
- finish-args: Wayland with X11 fallback, IPC, the network; no file system of the home or the
  host (files come through the portals), no other device than the GPU, no way out of the
  sandbox.
With BUILT_DATA_DIR (the build's data/ folder), the files the build made are read too.
Prints what it found wrong, one line each, and exits 1 if anything was.
"""
import json
import os
import re
import sys
import xml.etree.ElementTree as ET

BASE_ID = "io.github.sightline.Sightline"
SHA256 = re.compile(r"^[0-9a-f]{64}$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
# what the sandbox may hold; anything else is refused
ALLOWED_ARGS = {"--socket=wayland", "--socket=fallback-x11", "--share=ipc", "--share=network",
                "--device=dri"}
REQUIRED_ARGS = {"--socket=wayland", "--socket=fallback-x11", "--share=ipc", "--share=network"}

problems = []


def problem(text):
    problems.append(text)


def sources_of(module):
    for source in module.get("sources", []):
        if isinstance(source, str):
            problem(f"module {module.get('name')}: source file {source} is not inline; "
                    "its pins cannot be checked here")
            continue
        yield source


def check_pins(module, is_app):
    name = module.get("name", "?")
    sources = list(sources_of(module))
    if not sources:
        problem(f"module {name}: no sources")
    for source in sources:
        kind = source.get("type")
        if kind in ("archive", "file"):
            if "url" not in source and "path" not in source:
                problem(f"module {name}: {kind} source without url")
            if not SHA256.match(str(source.get("sha256", ""))):
                problem(f"module {name}: {kind} source {source.get('url', source.get('path'))} "
                        "is not pinned with a sha256")
        elif kind == "git":
            if not COMMIT.match(str(source.get("commit", ""))):
                problem(f"module {name}: git source {source.get('url')} is not pinned to a commit")
        elif kind == "dir":
            if not is_app:
                problem(f"module {name}: built from a local folder, not a pinned release")
        elif kind in ("patch", "shell", "script", "inline"):
            if kind == "patch" and "path" not in source:
                problem(f"module {name}: patch without path")
        else:
            problem(f"module {name}: source type {kind!r} cannot be pinned")


def all_strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from all_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from all_strings(value)


def check_openblas(module):
    text = " ".join(module.get("build-commands", []) + module.get("config-opts", []))
    for flag in ("DYNAMIC_ARCH=1", "NOFORTRAN=1", "ONLY_CBLAS=1"):
        if flag not in text:
            problem(f"module openblas: {flag} missing from its build")
    if "TARGET=" not in text:
        problem("module openblas: no baseline TARGET (DYNAMIC_ARCH still needs one)")
    arch = module.get("build-options", {}).get("arch", {})
    for cpu in ("x86_64", "aarch64"):
        if "TARGET=${OPENBLAS_TARGET}" in text and \
                "OPENBLAS_TARGET" not in arch.get(cpu, {}).get("env", {}):
            problem(f"module openblas: no OPENBLAS_TARGET for {cpu}")


def expected_id(app_module):
    opts = app_module.get("config-opts", [])
    if "-Dprofile=development" in opts:
        return BASE_ID + ".Devel", opts
    return BASE_ID, opts


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def check_data(app_id, root, built):
    """The files that carry the id, as the build fills them in for this profile."""
    data = os.path.join(root, "data")
    fill = {"@APP_ID@": app_id, "@SCHEMA_PATH@": "/" + app_id.replace(".", "/") + "/"}

    def filled(name):
        text = read(os.path.join(data, name))
        for key, value in fill.items():
            text = text.replace(key, value)
        return text

    # the desktop file: its name is the id, its icon too
    desktop = filled(BASE_ID + ".desktop.in")
    icons = re.findall(r"^Icon=(.*)$", desktop, re.M)
    if icons != [app_id]:
        problem(f"desktop file: Icon={icons} is not {app_id}")
    # AppStream: id and launchable
    meta = ET.fromstring(filled(BASE_ID + ".metainfo.xml.in"))
    if meta.findtext("id") != app_id:
        problem(f"metainfo: <id> {meta.findtext('id')} is not {app_id}")
    launch = meta.find("launchable[@type='desktop-id']")
    if launch is None or launch.text != app_id + ".desktop":
        problem(f"metainfo: launchable is not {app_id}.desktop")
    # the settings schema
    schema = ET.fromstring(filled(BASE_ID + ".gschema.xml")).find("schema")
    if schema is None or schema.get("id") != app_id or \
            schema.get("path") != "/" + app_id.replace(".", "/") + "/":
        problem(f"schema: id/path do not match {app_id}")
    # the icons the build installs for this id
    if not os.path.isfile(os.path.join(data, "icons", "hicolor", "scalable", "apps",
                                       app_id + ".svg")):
        problem(f"icons: no data/icons/hicolor/scalable/apps/{app_id}.svg")
    if not os.path.isfile(os.path.join(data, "icons", "hicolor", "symbolic", "apps",
                                       BASE_ID + "-symbolic.svg")):
        problem("icons: no symbolic icon")
    meson = read(os.path.join(data, "meson.build"))
    for template in (".desktop.in", ".metainfo.xml.in", ".gschema.xml"):
        if f"base_app_id + '{template}'" not in meson:
            problem(f"data/meson.build does not build {template} from its template")
    # resources: under the release id's path, where the app looks for them
    prefix = "/" + BASE_ID.replace(".", "/")
    gresource = ET.parse(os.path.join(root, "app", "ui", "sightline.gresource.xml"))
    prefixes = {r.get("prefix") for r in gresource.getroot().findall("gresource")}
    if prefixes != {prefix}:
        problem(f"resources: prefixes {sorted(prefixes)} are not {prefix}")
    application = read(os.path.join(root, "app", "ui", "app-application.c"))
    if f'"resource-base-path", "{prefix}"' not in application:
        problem(f"app-application.c: resource-base-path is not {prefix}")

    if built:
        # what the build made (the release profile of this build folder)
        desktop_path = os.path.join(built, app_id + ".desktop")
        meta_path = os.path.join(built, app_id + ".metainfo.xml")
        schema_path = os.path.join(built, app_id + ".gschema.xml")
        for path in (desktop_path, meta_path, schema_path):
            if not os.path.isfile(path):
                problem(f"built: no {os.path.basename(path)} in {built}")
                return
        if re.findall(r"^Icon=(.*)$", read(desktop_path), re.M) != [app_id]:
            problem("built desktop file: Icon is not the id")
        if ET.parse(meta_path).getroot().findtext("id") != app_id:
            problem("built metainfo: <id> is not the id")
        if ET.parse(schema_path).getroot().find("schema").get("id") != app_id:
            problem("built schema: id is not the id")


def check_finish_args(args):
    for arg in args:
        if arg.startswith("--filesystem=") or arg.startswith("--persist="):
            problem(f"finish-args: {arg}: files come through the portals")
        elif arg not in ALLOWED_ARGS:
            problem(f"finish-args: {arg} is not needed")
    for arg in sorted(REQUIRED_ARGS - set(args)):
        problem(f"finish-args: {arg} missing")


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    path, root = sys.argv[1], sys.argv[2]
    built = sys.argv[3] if len(sys.argv) == 4 else None
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        print(f"{path}: does not parse: {e}")
        return 1
    app_id = manifest.get("id", manifest.get("app-id"))
    if manifest.get("runtime") != "org.gnome.Platform" or manifest.get("sdk") != "org.gnome.Sdk":
        problem("runtime: not org.gnome.Platform with org.gnome.Sdk")
    if not re.match(r"^\d+$", str(manifest.get("runtime-version", ""))):
        problem("runtime-version: not a GNOME release")
    if manifest.get("command") != "sightline":
        problem("command: not sightline")
    modules = manifest.get("modules", [])
    names = [m.get("name") if isinstance(m, dict) else m for m in modules]
    if not modules or names[-1] != "sightline":
        problem("modules: sightline is not the last module")
        return report(path)
    for module in modules:
        if not isinstance(module, dict):
            problem(f"module {module}: not inline")
            continue
        check_pins(module, module is modules[-1])
    for needed in ("openblas", "md4c"):
        if needed not in names:
            problem(f"modules: no {needed}")
    for module in modules:
        if isinstance(module, dict) and module.get("name") == "openblas":
            check_openblas(module)
    for text in all_strings(manifest):
        if "-march=native" in text or "-mtune=native" in text:
            problem("built for the build machine's CPU (-march=native)")
    wanted, opts = expected_id(modules[-1])
    if app_id != wanted:
        problem(f"id: {app_id} is not {wanted}, the id of the profile it builds")
    if "-Dbuildtype=release" not in opts:
        problem("sightline: not a release build (-Dbuildtype=release)")
    if "-Dtests=false" not in opts:
        problem("sightline: builds its tests (-Dtests=false)")
    check_finish_args(manifest.get("finish-args", []))
    check_data(app_id, root, built if app_id == BASE_ID else None)
    return report(path)


def report(path):
    for p in problems:
        print(f"{os.path.basename(path)}: {p}")
    if not problems:
        print(f"{os.path.basename(path)}: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
