#!/usr/bin/env python3
"""Checks po/POTFILES.in against the source tree (meson suite 'data').

Every file that marks text for translation must be listed, or its messages never reach the
translators; every listed file must exist, or xgettext fails. A file marks text when it is
  - C (.c, .h) calling a gettext macro or function: _(), N_(), C_(), NC_(), Q_(), ngettext(),
    g_dgettext(), g_dngettext(), g_dpgettext(), g_dpgettext2() (comments and strings aside);
  - a GtkBuilder file (.ui) with a translatable="yes" property;
  - a desktop entry template (.desktop.in) with a Name, GenericName, Comment or Keywords key;
  - AppStream metadata (.metainfo.xml.in, .appdata.xml.in), whose name, summary and
    description are translated unless marked translate="no";
  - a GSettings schema (.gschema.xml) with a summary, a description or a l10n default.

Usage: check-potfiles.py SOURCE_ROOT
"""
import os
import re
import sys

# The program's own folders; tests, po/ and build trees are not shipped text.
SCANNED = ("app", "engine", "imagefile", "data")

C_CODE = re.compile(r"""
      "(?:\\.|[^"\\\n])*"        # string literal
    | '(?:\\.|[^'\\\n])*'        # character literal
    | /\*.*?\*/                  # block comment
    | //[^\n]*                   # line comment
""", re.S | re.X)
C_MARK = re.compile(r"(?<![\w])(?:_|N_|C_|NC_|Q_|ngettext|g_dgettext|g_dngettext|g_dpgettext2?)"
                    r"\s*\(")
UI_MARK = re.compile(r'\btranslatable\s*=\s*"(?:yes|true|1)"', re.I)
DESKTOP_MARK = re.compile(r"^(?:Name|GenericName|Comment|Keywords)\s*=", re.M)
METAINFO_MARK = re.compile(r'<(?:name|summary|description|p|li|caption|developer_name)\b'
                           r'(?![^>]*\btranslate\s*=\s*"no")[^>]*>')
SCHEMA_MARK = re.compile(r"<(?:summary|description)\b|\bl10n\s*=")


def c_marks(text):
    # Drop comments and string contents so that neither can fake (or hide) a call.
    code = C_CODE.sub(lambda m: '""' if m.group(0).startswith('"') else " ", text)
    return C_MARK.search(code) is not None


# File name ending -> does this text mark anything for translation?
KINDS = (
    ((".c", ".h"), c_marks),
    ((".ui",), lambda text: UI_MARK.search(text) is not None),
    ((".desktop.in",), lambda text: DESKTOP_MARK.search(text) is not None),
    ((".metainfo.xml.in", ".appdata.xml.in"), lambda text: METAINFO_MARK.search(text) is not None),
    ((".gschema.xml",), lambda text: SCHEMA_MARK.search(text) is not None),
)


def marks_text(path):
    for endings, marks in KINDS:
        if path.endswith(endings):
            with open(path, encoding="utf-8") as f:
                return marks(f.read())
    return False


def listed_files(potfiles):
    with open(potfiles, encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    return [line for line in lines if line and not line.startswith("#")]


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    root = argv[1]
    potfiles = os.path.join(root, "po", "POTFILES.in")
    listed = listed_files(potfiles)
    problems = []

    for rel in listed:
        if not os.path.isfile(os.path.join(root, rel)):
            problems.append(f"{rel}: listed in po/POTFILES.in but does not exist")

    listed_set = set(listed)
    marking = []
    for top in SCANNED:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                if marks_text(path):
                    marking.append(rel)
                    if rel not in listed_set:
                        problems.append(f"{rel}: marks text for translation but is missing "
                                        "from po/POTFILES.in")

    print(f"{len(listed)} files listed, {len(marking)} files mark text for translation")
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
