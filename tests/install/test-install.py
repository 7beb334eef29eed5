#!/usr/bin/env python3
"""The installed Sightline works, away from the build tree.

usage: test-install.py BUILD_ROOT PREFIX FIXTURE_MODEL IMAGE   (run under Xvfb and D-Bus)

Installs the build into a temporary DESTDIR, as a package build does, compiles the settings
schemas there as a package's post-install trigger does, then, with XDG_DATA_DIRS and
GSETTINGS_SCHEMA_DIR pointing into that tree and nothing from the build tree:
- the installed vl2 answers with a test model and writes a preset checkpoint's config;
- the installed sightline starts in French (LANGUAGE=fr), reads its settings (window size,
  model folder) through the installed schema, opens an image given on its command line in a
  new chat (the window is named after it: "Nouvelle discussion"), keeps the image in its data
  folder, and quits when asked over D-Bus.
Prints TAP.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

# the build's id: the release's, or .Devel
APP_ID = os.environ.get("SIGHTLINE_APP_ID", "io.github.sightline.Sightline")
results = []


def check(ok, what, detail=""):
    results.append(ok)
    print(f"{'ok' if ok else 'not ok'} {len(results)} - {what}")
    if not ok and detail:
        for line in str(detail).splitlines()[-40:]:
            print(f"# {line}")
    return ok


def run(cmd, env=None, timeout=120):
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def installed_files(root):
    share = os.path.join(root, "share")
    want = [
        "bin/sightline",
        "bin/vl2",
        "bin/vl2-server",
        f"share/glib-2.0/schemas/{APP_ID}.gschema.xml",
        f"share/applications/{APP_ID}.desktop",
        f"share/metainfo/{APP_ID}.metainfo.xml",
        f"share/icons/hicolor/scalable/apps/{APP_ID}.svg",
        f"share/icons/hicolor/symbolic/apps/{APP_ID}-symbolic.svg",
        "share/locale/fr/LC_MESSAGES/sightline.mo",
    ]
    missing = [w for w in want if not os.path.isfile(os.path.join(root, w))]
    check(not missing, "meson install puts every file in place", "missing: " + " ".join(missing))
    desktop = os.path.join(share, "applications", f"{APP_ID}.desktop")
    if os.path.isfile(desktop) and shutil.which("desktop-file-validate"):
        r = run(["desktop-file-validate", desktop])
        check(r.returncode == 0, "the installed desktop file validates", r.stdout + r.stderr)


def window_list(env):
    r = run(["xwininfo", "-root", "-tree"], env=env, timeout=20)
    return r.stdout


def find_window(env, name, timeout):
    """The geometry line of the top-level window called `name`, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in window_list(env).splitlines():
            if f'"{name}"' in line:
                return line.strip()
        time.sleep(0.5)
    return None


def main():
    build_root, prefix, model, image = sys.argv[1:5]
    tmp = tempfile.mkdtemp(prefix="sightline-install-")
    try:
        destdir = os.path.join(tmp, "dest")
        r = run(["meson", "install", "-C", build_root, "--destdir", destdir,
                 "--quiet"], timeout=300)
        if not check(r.returncode == 0, "meson install --destdir", r.stdout + r.stderr):
            return
        root = destdir + prefix
        installed_files(root)
        schemas = os.path.join(root, "share", "glib-2.0", "schemas")
        r = run(["glib-compile-schemas", "--strict", schemas])
        check(r.returncode == 0 and os.path.isfile(os.path.join(schemas, "gschemas.compiled")),
              "the installed schema compiles", r.stderr)

        # A clean environment: a new user's folders, the installed tree's data, no build tree.
        home = os.path.join(tmp, "home")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("VL2_", "GSETTINGS", "XDG_", "LANG", "LC_"))}
        env.update({
            "HOME": home,
            "XDG_CONFIG_HOME": os.path.join(home, ".config"),
            "XDG_DATA_HOME": os.path.join(home, ".local", "share"),
            "XDG_CACHE_HOME": os.path.join(home, ".cache"),
            "XDG_DATA_DIRS": os.path.join(root, "share") + ":/usr/local/share:/usr/share",
            "GSETTINGS_SCHEMA_DIR": schemas,
            "GSETTINGS_BACKEND": "keyfile",
            "LANG": "C.UTF-8",
            "LANGUAGE": "fr",
            "PATH": os.path.join(root, "bin") + ":/usr/bin:/bin",
        })
        env.pop("G_DEBUG", None)

        vl2 = os.path.join(root, "bin", "vl2")
        r = run([vl2, "run", "--model", model, "--image", image, "--prompt",
                 "What is written on the sign?", "--max-new-tokens", "4", "--temperature", "0"],
                env=env, timeout=300)
        check(r.returncode == 0 and r.stdout.strip() != "" and "tokens/s" in r.stderr,
              "the installed vl2 run answers with a test model", r.stdout + r.stderr)
        r = run([vl2, "mkrandom", "--preset", "tiny", "--dry-run"], env=env)
        check(r.returncode == 0 and "parameters: 3370501440" in r.stdout,
              "the installed vl2 carries the Tiny preset", r.stdout + r.stderr)

        server = subprocess.Popen([os.path.join(root, "bin", "vl2-server"), "--model", model,
                                   "--port", "0"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        try:
            line = server.stdout.readline()
            health = None
            if "listening on http://127.0.0.1:" in line:
                with urllib.request.urlopen(line.split("listening on ", 1)[1].strip() + "health",
                                            timeout=30) as r:
                    health = json.loads(r.read())
            server.send_signal(signal.SIGTERM)
            code = server.wait(timeout=60)
            check(health is not None and health.get("status") == "ok" and code == 0,
                  "the installed vl2-server serves the test model and stops on SIGTERM",
                  f"{line!r} {health} {code}")
        finally:
            if server.poll() is None:
                server.kill()

        # Settings a person had: a model folder and a window size, in GSettings' key file.
        settings = os.path.join(env["XDG_CONFIG_HOME"], "glib-2.0", "settings")
        os.makedirs(settings)
        with open(os.path.join(settings, "keyfile"), "w") as f:
            f.write("[" + APP_ID.replace(".", "/") + "]\n"
                    f"model-folder='{model}'\n"
                    "window-width=1010\n"
                    "window-height=710\n")

        app = subprocess.Popen([os.path.join(root, "bin", "sightline"), image], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            line = find_window(env, "Nouvelle discussion", 90)
            check(line is not None,
                  "the installed app opens the image in a new chat, in French",
                  window_list(env))
            # The window may be mapped before it settles (a desktop portal's settings can
            # arrive after the first frame, and a sanitizer build is slow): wait for its size.
            deadline = time.monotonic() + 30
            while line is not None and "1010x710" not in line and time.monotonic() < deadline:
                time.sleep(0.5)
                line = find_window(env, "Nouvelle discussion", 5)
            check(line is not None and "1010x710" in line,
                  "the window has the size from the settings (the installed schema is read)",
                  f"{line}\n{window_list(env)}")
            data = os.path.join(env["XDG_DATA_HOME"], "sightline")
            deadline = time.monotonic() + 30
            kept = []
            while time.monotonic() < deadline and not kept:
                kept = [f for _, _, fs in os.walk(data) for f in fs if f.endswith(".jpg")]
                time.sleep(0.5)
            check(len(kept) == 1, "the image is kept in the app's data folder", repr(kept))
            r = run(["gapplication", "action", APP_ID, "quit"], env=env, timeout=30)
            check(r.returncode == 0, "quit over D-Bus", r.stderr)
            code = app.wait(timeout=30)
        except subprocess.TimeoutExpired:
            app.kill()
            code = None
        out = app.communicate()[0]
        check(code == 0, "the app exits cleanly", out)
        check("CRITICAL" not in out and "WARNING" not in out,
              "no warnings from the installed app", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"1..{len(results)}")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
