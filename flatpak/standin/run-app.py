#!/usr/bin/env python3
"""Runs the installed Flatpak of Sightline as a person would, under Xvfb and a D-Bus session.

usage: VAR=~/.var/app/ID APP_ID=ID run-app.py IMAGE

`flatpak run ID IMAGE`: the window opens with the image in a new chat; a question typed on
the keyboard (XTest, through xdotool) is sent with Enter and answered by the test model; the
chat file in the app's data folder holds the question with its image and the answer, complete;
the image is kept there; the settings are in the sandbox's key file; the app quits over D-Bus.
Prints TAP.
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import time

VAR = os.environ["VAR"]
APP_ID = os.environ["APP_ID"]
LOG = os.environ["LOG"]
QUESTION = "What does the sign say?"
results = []


def check(ok, what, detail=""):
    results.append(ok)
    print(f"{'ok' if ok else 'not ok'} {len(results)} - {what}", flush=True)
    if not ok and detail:
        for line in str(detail).splitlines()[-40:]:
            print(f"# {line}")
    return ok


def wait(predicate, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    return None


def tail(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()[-4000:]
    except OSError as e:
        return str(e)


def window(name):
    r = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", name],
                       capture_output=True, text=True)
    ids = r.stdout.split()
    return ids[0] if ids else None


def screenshot(win):
    """The window as it was answered, beside the log, when ImageMagick's import is there."""
    if shutil.which("import"):
        path = os.path.splitext(LOG)[0] + ".png"
        subprocess.run(["import", "-window", win, path], check=False)
        print(f"# screenshot: {path}")


def chats():
    found = []
    for path in glob.glob(os.path.join(VAR, "data", "sightline", "chats", "*.json")):
        try:
            with open(path, encoding="utf-8") as f:
                found.append(json.load(f))
        except (OSError, ValueError):
            pass
    return found


def answered():
    for chat in chats():
        messages = chat.get("messages", [])
        roles = [(m.get("role"), m.get("state"), bool(m.get("text"))) for m in messages]
        if len(messages) >= 2 and messages[0].get("text") == QUESTION and \
                messages[0].get("images") and roles[-1] == ("assistant", "complete", True):
            return chat
    return None


def main():
    image = sys.argv[1]
    log = open(LOG, "w")
    app = subprocess.Popen(["flatpak", "run", APP_ID, image], stdout=log,
                           stderr=subprocess.STDOUT)
    try:
        win = wait(lambda: window("New Chat"), 180)
        check(win is not None, "the sandboxed app opens its window, the image in a new chat")
        if win is None:
            return
        subprocess.run(["xdotool", "windowfocus", "--sync", win], check=False)
        time.sleep(1)
        subprocess.run(["xdotool", "type", "--delay", "20", QUESTION], check=True)
        subprocess.run(["xdotool", "key", "Return"], check=True)
        chat = wait(answered, 300)
        check(chat is not None, "a question typed with the image is answered and saved complete",
              json.dumps(chats(), indent=1)[-3000:])
        if chat:
            print(f"# answer: {chat['messages'][-1]['text'][:200]!r}")
        screenshot(win)
        kept = glob.glob(os.path.join(VAR, "data", "sightline", "images", "**", "*.jpg"),
                         recursive=True)
        check(len(kept) == 1, "the image is kept in the app's data folder", repr(kept))
        keyfile = os.path.join(VAR, "config", "glib-2.0", "settings", "keyfile")
        with open(keyfile, encoding="utf-8") as f:
            settings = f.read()
        check("model-folder=" in settings, "the settings are the sandbox's key file", settings)
        r = subprocess.run(["gapplication", "action", APP_ID, "quit"], capture_output=True,
                           text=True, timeout=60)
        check(r.returncode == 0, "quit over D-Bus", r.stderr)
        code = app.wait(timeout=60)
        check(code == 0, "the app exits cleanly", f"exit status {code}")
    except subprocess.TimeoutExpired:
        check(False, "the app quits within a minute")
    finally:
        if app.poll() is None:
            app.kill()
        log.close()
        if not all(results):
            print(f"# the app's output ({LOG}):")
            for line in tail(LOG).splitlines()[-40:]:
                print(f"#   {line}")
        print(f"1..{len(results)}")


if __name__ == "__main__":
    main()
    sys.exit(0 if results and all(results) else 1)
