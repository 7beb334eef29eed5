#!/bin/bash
# Builds Sightline's real Flatpak manifest against a stand-in GNOME runtime made from Debian 12,
# installs it and runs it sandboxed under Xvfb, where Flathub cannot be reached.
#
# usage: flatpak/standin/build-and-run.sh [MODEL_DIR]
#   MODEL_DIR: a test model (default: build/tests/fixtures/mini-tiny, from `meson compile`)
#
# 1. Two Debian 12 roots (debootstrap): the stand-in Platform (the libraries Sightline runs on:
#    GTK 4, libadwaita, libsoup 3, json-glib, GdkPixbuf, libsecret, fonts and icons; no OpenBLAS
#    and no md4c, which the manifest builds) and the stand-in Sdk (the same plus compilers,
#    meson, cmake and the -dev packages). Each is exported as a Flatpak runtime into a local
#    repository and installed.
# 2. flatpak/io.github.sightline.Sightline.json, with only its runtime names and its source
#    URLs swapped (standin-manifest.py: Debian's source packages of the same upstream versions,
#    checked by sha256), is built with flatpak-builder into a repository, made into a bundle
#    (flatpak build-bundle) and installed from the bundle, as the README has people do.
# 3. Under Xvfb and a D-Bus session, in an empty home: `flatpak run io.github.sightline.Sightline
#    IMAGE` with the test model in the app's data folder; the window opens with the image in a
#    new chat, a question typed there is answered, the answer is saved complete, and what the
#    app wrote is under ~/.var/app/io.github.sightline.Sightline/.
#
# Everything slow is cached outside the clone (SIGHTLINE_STANDIN_CACHE, default
# ~/.cache/sightline-flatpak-standin): the roots, the repository, the Flatpak installation,
# the downloaded sources and flatpak-builder's state. A first run takes about 40 minutes on
# two cores (the roots about 4 minutes each, OpenBLAS's DYNAMIC_ARCH build about 11); a second
# about 10, rebuilding only the app. Needs root or sudo for debootstrap, and the packages
# flatpak flatpak-builder elfutils debootstrap xvfb xauth dbus-daemon xdotool.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
model=${1:-$src/build/tests/fixtures/mini-tiny}
image=$src/tests/golden/images/vqa_1.jpg
cache=${SIGHTLINE_STANDIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sightline-flatpak-standin}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
app_id=io.github.sightline.Sightline
platform=org.sightline.Standin.Platform
sdk=org.sightline.Standin.Sdk
branch=12
export FLATPAK_USER_DIR=$cache/flatpak

say() { printf '%s: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "error: $*"; exit 1; }

# (flatpak-builder strips the binaries with the host's eu-strip, from elfutils)
for tool in flatpak flatpak-builder eu-strip debootstrap xvfb-run dbus-run-session xdotool; do
  command -v "$tool" >/dev/null ||
    die "$tool is missing (apt install flatpak flatpak-builder elfutils debootstrap xvfb xauth dbus-daemon xdotool)"
done
[ -f "$model/config.json" ] || die "no test model in $model (run meson compile -C build first)"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
mkdir -p "$cache"/{roots,export,sources}
arch=$(flatpak --default-arch)

# ------------------------------------------------------------------------------------------
# 1. The stand-in runtime and SDK

# What Sightline links and loads at run time (libopenblas and libmd4c come from the manifest);
# GTK's GL through libepoxy needs the GLVND libraries and Mesa's GLX/EGL vendors besides the
# drivers (Recommends only, in Debian).
platform_packages="libglib2.0-0 libglib2.0-bin libgtk-4-1 libadwaita-1-0 libsoup-3.0-0
  libjson-glib-1.0-0 libgdk-pixbuf-2.0-0 libgdk-pixbuf2.0-bin webp-pixbuf-loader librsvg2-common
  libsecret-1-0 shared-mime-info hicolor-icon-theme adwaita-icon-theme fonts-cantarell
  fonts-dejavu-core locales gsettings-desktop-schemas ca-certificates
  libgl1 libopengl0 libglx-mesa0 libegl1 libegl-mesa0 libgles2 libgl1-mesa-dri"
# What the manifest's modules need to build, on top of the Platform (appstream-util: the
# appstream-compose that flatpak-builder runs in the Sdk when it finishes the app).
sdk_packages="gcc g++ make perl cmake ninja-build meson pkg-config python3
  libglib2.0-dev libglib2.0-dev-bin libgtk-4-dev libadwaita-1-dev libsoup-3.0-dev
  libjson-glib-dev libgdk-pixbuf-2.0-dev libsecret-1-dev gettext desktop-file-utils
  libc6-dev linux-libc-dev appstream-util"

# A root: Debian 12's minimal base (debootstrap), then the packages through apt in a chroot
# (debootstrap alone does not resolve every dependency of the -dev packages). The Sdk starts
# as a copy of the Platform, so the two agree on every library they share.
make_root() {  # NAME PACKAGES [BASE_ROOT]
  local name=$1 root=$cache/roots/$1 stamp packages
  packages=$(echo $2)  # one line
  stamp=$(echo "$2 ${3:-}" | tr -s ' \n' '\n' | sort | sha256sum | cut -c1-16)
  if [ -n "${3:-}" ]; then
    stamp=$stamp-$(cat "$cache/roots/$3.stamp")
  fi
  if [ -f "$root.stamp" ] && [ "$(cat "$root.stamp")" = "$stamp" ]; then
    say "root $name: cached"
    return
  fi
  $sudo rm -rf "$root" "$root.stamp"
  if [ -n "${3:-}" ]; then
    say "root $name: a copy of $3, and apt"
    $sudo cp -a "$cache/roots/$3" "$root"
  else
    say "root $name: debootstrap (Debian 12, a few minutes)"
    $sudo debootstrap --variant=minbase bookworm "$root" "$mirror" > "$cache/roots/$name.log" 2>&1 ||
      die "debootstrap failed: $cache/roots/$name.log"
  fi
  # shellcheck disable=SC2086
  $sudo chroot "$root" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends $packages && apt-get clean" \
      >> "$cache/roots/$name.log" 2>&1 || die "apt in root $name failed: $cache/roots/$name.log"
  for lib in libopenblas libmd4c; do
    if ls "$root"/usr/lib/*/"$lib"* >/dev/null 2>&1; then
      die "root $name holds $lib: the manifest's own module would not be proved"
    fi
  done
  echo "$stamp" > "$root.stamp"
}

export_runtime() {  # NAME ID
  local name=$1 id=$2 root=$cache/roots/$1 dir=$cache/export/$1 stamp
  stamp=$(cat "$root.stamp")
  if [ -f "$dir.stamp" ] && [ "$(cat "$dir.stamp")" = "$stamp" ] &&
      flatpak --user info "$id//$branch" >/dev/null 2>&1; then
    say "runtime $id: installed"
    return
  fi
  say "runtime $id: export and install"
  $sudo rm -rf "$dir"
  mkdir -p "$dir/files"
  # A Flatpak runtime is a /usr: the root's /usr, with its /etc inside
  $sudo cp -a "$root/usr/." "$dir/files/"
  $sudo cp -a "$root/etc" "$dir/files/etc"
  # the app's libraries (OpenBLAS, md4c) live in /app/lib
  echo /app/lib | $sudo tee "$dir/files/etc/ld.so.conf.d/app.conf" >/dev/null
  $sudo rm -f "$dir/files/etc/ld.so.cache"
  $sudo chown -R "$(id -u):$(id -g)" "$dir"
  cat > "$dir/metadata" <<EOF
[Runtime]
name=$id
runtime=$platform/$arch/$branch
sdk=$sdk/$arch/$branch
EOF
  flatpak build-export --runtime --files=files "$cache/repo" "$dir" "$branch" >/dev/null
  flatpak build-update-repo "$cache/repo" >/dev/null
  flatpak --user remote-add --if-not-exists --no-gpg-verify standin "$cache/repo"
  flatpak --user install -y --noninteractive --reinstall standin "$id//$branch" >/dev/null
  echo "$stamp" > "$dir.stamp"
}

make_root platform "$platform_packages"
make_root sdk "$sdk_packages" platform
export_runtime platform $platform
export_runtime sdk $sdk

# ------------------------------------------------------------------------------------------
# 2. The real manifest's variant, built and installed

fetch() {  # FILE SHA256 URL
  local file=$cache/sources/$1
  if [ ! -f "$file" ] || ! echo "$2  $file" | sha256sum -c --quiet - 2>/dev/null; then
    say "source $1: download"
    curl -fsSL --retry 3 -o "$file.part" "$3" || die "cannot download $3"
    mv "$file.part" "$file"
  fi
  echo "$2  $file" | sha256sum -c --quiet - || die "$1: sha256 does not match"
}
fetch openblas_0.3.29+ds.orig.tar.xz eb691e2cff83799400da22aa6ab93ebaa346ad317fea578b7ae119e226ce1b01 \
  "$mirror/pool/main/o/openblas/openblas_0.3.29+ds.orig.tar.xz"
fetch md4c_0.5.2.orig.tar.gz 55d0111d48fb11883aaee91465e642b8b640775a4d6993c2d0e7a8092758ef21 \
  "$mirror/pool/main/m/md4c/md4c_0.5.2.orig.tar.gz"

variant=$cache/$app_id.standin.json
python3 "$here/standin-manifest.py" "$src/flatpak/$app_id.json" "$variant" "$src" \
  "$cache/sources" "$platform" "$sdk" "$branch"
say "flatpak-builder: build $app_id into a repository (the app takes about 5 minutes)"
(cd "$cache" && flatpak-builder --user --repo="$cache/app-repo" --force-clean \
   --disable-rofiles-fuse --state-dir="$cache/builder-state" "$cache/app-build" "$variant" \
   > "$cache/builder.log" 2>&1) ||
  { tail -40 "$cache/builder.log" >&2; die "flatpak-builder failed: $cache/builder.log"; }
# as the README has people do it: a bundle from the repository, installed from the file
say "flatpak build-bundle, and install the bundle"
flatpak build-bundle "$cache/app-repo" "$cache/sightline.flatpak" "$app_id" ||
  die "flatpak build-bundle failed"
flatpak --user install -y --noninteractive --reinstall --bundle "$cache/sightline.flatpak" \
  > "$cache/install.log" 2>&1 || { cat "$cache/install.log" >&2; die "installing the bundle failed"; }
ls -l "$cache/sightline.flatpak" >&2
flatpak --user info "$app_id" | sed -n '1,12p' >&2

# ------------------------------------------------------------------------------------------
# 3. Run it, sandboxed, as a new user would

home=$(mktemp -d "${TMPDIR:-/tmp}/sightline-standin-home.XXXXXX")
# a desktop session's runtime folder, where flatpak keeps its instances (without one, GLib
# puts them in ~/.cache)
runtime_dir=$(mktemp -d "${TMPDIR:-/tmp}/sightline-standin-run.XXXXXX")
chmod 700 "$runtime_dir"
trap 'rm -rf "$home" "$runtime_dir"' EXIT
var=$home/.var/app/$app_id
mkdir -p "$var/data/sightline/models" "$var/config/glib-2.0/settings" "$var/cache/tmp"
# the test model in the app's own models folder, chosen in the app's own settings
cp -r "$model" "$var/data/sightline/models/mini-tiny"
printf '[io/github/sightline/Sightline]\nmodel-folder=%s\n' "'$var/data/sightline/models/mini-tiny'" \
  > "$var/config/glib-2.0/settings/keyfile"
# the image, where the sandbox sees it without a portal: the app's own folder
cp "$image" "$var/cache/tmp/sign.jpg"
touch "$home/.started"

say "flatpak run $app_id under Xvfb"
HOME=$home XDG_RUNTIME_DIR=$runtime_dir XDG_DATA_HOME= XDG_CONFIG_HOME= XDG_CACHE_HOME= \
  XDG_STATE_HOME= \
  VAR="$var" APP_ID=$app_id LOG="$cache/flatpak-run.log" timeout 600 \
  xvfb-run -a -s "-screen 0 1280x1024x24" dbus-run-session -- \
  python3 "$here/run-app.py" "$var/cache/tmp/sign.jpg" && status=0 || status=$?

# what the app wrote: only its own folder (and Flatpak's bookkeeping of the run)
outside=$(cd "$home" && find . -newer .started -type f ! -path "./.var/app/$app_id/*" |
  grep -v -e '^./.local/share/flatpak/' -e '^./.cache/flatpak/' || true)
if [ -n "$outside" ]; then
  printf 'not ok - the app wrote outside ~/.var/app/%s:\n%s\n' "$app_id" "$outside"
  status=1
else
  echo "ok - everything the app wrote is under ~/.var/app/$app_id"
fi
(cd "$var" && find . -type f -newer "$home/.started" | sort | sed 's/^/#   /')
exit $status
