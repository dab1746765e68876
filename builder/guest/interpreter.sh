#!/bin/sh
# Builds the platform's interpreter from its verified sources into a staging tree, then makes the
# family's OS package of it. Runs in the platform's interpreter build image with no network, as
# an unprivileged user: nothing is installed on the guest's own system.
#
# Inputs (environment, set by builder/machines/ospackage.py): PREFIX, PYTHON_SOURCE,
# OPENSSL_SOURCE (empty: the system's OpenSSL, if any), CONFIGURE (the configure flags), FAMILY
# (debian | redhat | freebsd), PACKAGE, META (the generated package metadata: control files, the
# rpm spec or the pkg manifest), OUT (where the packages go).
set -eu
WORK=/tmp/interpreter
STAGE=$WORK/stage
JOBS=$(getconf _NPROCESSORS_ONLN)
rm -rf "$WORK" && mkdir -p "$WORK/src" "$STAGE"
say() { echo "interpreter: $*"; }
now() { date +%s; }

if [ -n "${OPENSSL_SOURCE:-}" ]; then
    started=$(now)
    say "OpenSSL: $(basename "$OPENSSL_SOURCE") into $PREFIX"
    mkdir "$WORK/src/openssl" && tar -xzf "$OPENSSL_SOURCE" -C "$WORK/src/openssl" --strip-components=1
    cd "$WORK/src/openssl"
    # Private to the interpreter: its own directory for certificates' configuration, shared
    # libraries only for what links them, and the run path so _ssl finds them under PREFIX.
    ./config --prefix="$PREFIX" --openssldir="$PREFIX/ssl" --libdir=lib shared no-tests \
        "-Wl,-rpath,$PREFIX/lib" >"$WORK/openssl-config.log"
    make -j"$JOBS" >"$WORK/openssl-make.log" 2>&1 || { tail -40 "$WORK/openssl-make.log"; exit 1; }
    make DESTDIR="$STAGE" install_sw install_ssldirs >"$WORK/openssl-install.log" 2>&1 \
        || { tail -40 "$WORK/openssl-install.log"; exit 1; }
    # The system's certificates, so ssl verifies as the rest of the system does.
    rmdir "$STAGE$PREFIX/ssl/certs" && ln -s /etc/ssl/certs "$STAGE$PREFIX/ssl/certs"
    # The ssl module's libraries only: no openssl command (it would come before the system's on
    # PATH) and no static libraries.
    rm -f "$STAGE$PREFIX"/lib/libssl.a "$STAGE$PREFIX"/lib/libcrypto.a "$STAGE$PREFIX"/bin/openssl "$STAGE$PREFIX"/bin/c_rehash
    CPPFLAGS="-I$STAGE$PREFIX/include"
    LDFLAGS="-L$STAGE$PREFIX/lib -Wl,-rpath,$PREFIX/lib"
    # setup.py imports each module it built: _ssl must find the staged OpenSSL to pass.
    LD_LIBRARY_PATH="$STAGE$PREFIX/lib"
    export CPPFLAGS LDFLAGS LD_LIBRARY_PATH
    say "OpenSSL built in $(( $(now) - started )) s"
fi

started=$(now)
say "Python: $(basename "$PYTHON_SOURCE") into $PREFIX, configure $CONFIGURE"
mkdir "$WORK/src/python" && tar -xzf "$PYTHON_SOURCE" -C "$WORK/src/python" --strip-components=1
cd "$WORK/src/python"
# shellcheck disable=SC2086 # CONFIGURE is a list of flags
./configure --prefix="$PREFIX" $CONFIGURE >"$WORK/python-configure.log" 2>&1 \
    || { tail -40 "$WORK/python-configure.log"; exit 1; }
make -j"$JOBS" >"$WORK/python-make.log" 2>&1 || { tail -60 "$WORK/python-make.log"; exit 1; }
# What setup.py could not build is said in its own words; the test decides what is required.
sed -n '/Python build finished/,/^$/p;/Failed to build these modules/,/^$/p;/Following modules built successfully but were removed/,/^$/p' \
    "$WORK/python-make.log"
# altinstall: python2.7 and never a `python` that could shadow the system's.
make DESTDIR="$STAGE" altinstall >"$WORK/python-install.log" 2>&1 || { tail -40 "$WORK/python-install.log"; exit 1; }
say "Python built in $(( $(now) - started )) s"

# -- the package ------------------------------------------------------------------------------
cd "$STAGE"
for name in python python2; do
    if [ -e ".$PREFIX/bin/$name" ]; then echo "interpreter: $PREFIX/bin/$name was installed: not an altinstall" >&2; exit 1; fi
done
outside=$(find . -mindepth 1 \( -type f -o -type l \) | grep -v "^\.$PREFIX/" || true)
if [ -n "$outside" ]; then echo "interpreter: files outside $PREFIX: $outside" >&2; exit 1; fi
# The headers and the static library go to the -dev (-devel) package: the build image has them,
# the runtime image and the servers do not.
DEV=$WORK/dev
for part in include lib/python*/config lib/pkgconfig; do
    for found in ".$PREFIX"/$part; do
        [ -e "$found" ] || continue
        mkdir -p "$DEV/$(dirname "$found")" && mv "$found" "$DEV/$found"
    done
done

# Every soname the tree links that it does not hold itself, as "soname path" lines.
needed() {
    own=$(find . -name 'lib*.so*' -exec basename {} \; | sort -u)
    find . -type f \( -perm -u+x -o -name '*.so*' \) | while read -r file; do
        case "$(head -c 4 "$file" | od -An -c | tr -d ' ')" in *ELF*) ;; *) continue ;; esac
        LD_LIBRARY_PATH="$STAGE$PREFIX/lib" ldd "$file" 2>/dev/null | awk '$2 == "=>" { print $1, $3 }'
    done | sort -u | while read -r soname path; do
        echo "$own" | grep -qx "$soname" || echo "$soname $path"
    done
}

case "$FAMILY" in
debian)
    # Run-time dependencies: each linked library's package, as dpkg -S names its file, at the
    # version installed here (the build image is the base image plus build packages).
    needed >"$WORK/needed"
    : >"$WORK/sonames"
    while read -r soname path; do
        owner=""
        for candidate in "$path" "$(readlink -f "$path")" "/usr$path" "${path#/usr}"; do
            owner=$(dpkg -S "$candidate" 2>/dev/null | head -1 | cut -d: -f1) && [ -n "$owner" ] && break
        done
        if [ -z "$owner" ]; then echo "interpreter: no installed package holds $path ($soname)" >&2; exit 1; fi
        echo "$owner (>= $(dpkg-query -W -f '${Version}' "$owner"))" >>"$WORK/depends.all"
        echo "$soname $path $owner" >>"$WORK/sonames"
    done <"$WORK/needed"
    sort -u "$WORK/depends.all" >"$WORK/depends" 2>/dev/null || : >"$WORK/depends"
    depends=$(paste -sd, "$WORK/depends" | sed 's/,/, /g')
    say "links: $(cut -d' ' -f1,3 "$WORK/sonames" | sort -u | tr '\n' ';')"
    say "Depends: $depends"
    for tree in "$STAGE" "$DEV"; do
        if [ "$tree" = "$STAGE" ]; then control=$META/control; else control=$META/control-dev; fi
        mkdir -p "$tree/DEBIAN"
        # A new file of ours, not a copy of the read-only input: Depends and Installed-Size follow.
        cat "$control" >"$tree/DEBIAN/control"
        if [ "$tree" = "$STAGE" ] && [ -n "$depends" ]; then echo "Depends: $depends" >>"$tree/DEBIAN/control"; fi
        echo "Installed-Size: $(du -sk --exclude=DEBIAN "$tree" | cut -f1)" >>"$tree/DEBIAN/control"
        dpkg-deb --root-owner-group -Zgzip --build "$tree" "$OUT/" >/dev/null
        rm -rf "$tree/DEBIAN"
    done
    ;;
redhat)
    # rpm finds the run-time requirements itself (AutoReq, from the same sonames); the spec
    # copies the staged trees and lists their files, never a directory of the system's.
    (cd "$STAGE" && find ".$PREFIX" -mindepth 1 \( -type f -o -type l \) | sed 's|^\.||' | sort) >"$WORK/files"
    (cd "$DEV" && find ".$PREFIX" -mindepth 1 \( -type f -o -type l \) | sed 's|^\.||' | sort) >"$WORK/files-devel"
    for tree in "$STAGE" "$DEV"; do
        (cd "$tree" && find ".$PREFIX" -mindepth 1 -type d | sed 's|^\.||' | sort) | while read -r dir; do
            case "$dir" in "$PREFIX"/bin|"$PREFIX"/lib|"$PREFIX"/include|"$PREFIX"/share|"$PREFIX"/share/man|"$PREFIX"/share/man/man1|"$PREFIX"/lib/pkgconfig) ;;
                *) echo "%dir $dir" ;; esac
        done >>"$([ "$tree" = "$STAGE" ] && echo "$WORK/files" || echo "$WORK/files-devel")"
    done
    mkdir -p "$WORK/rpm"
    rpmbuild -bb "$META/package.spec" --define "_topdir $WORK/rpm" --define "stage $STAGE" --define "devstage $DEV" \
        --define "filelist $WORK/files" --define "devfilelist $WORK/files-devel" >"$WORK/rpmbuild.log" 2>&1 \
        || { tail -40 "$WORK/rpmbuild.log"; exit 1; }
    find "$WORK/rpm/RPMS" -name '*.rpm' -exec cp {} "$OUT/" \;
    ;;
freebsd)
    # One package (FreeBSD does not split headers out); pkg records the shared libraries it
    # needs itself (shlibs_required) when it makes the package.
    (cd "$DEV" && tar -cf - .) | (cd "$STAGE" && tar -xf -)
    (cd "$STAGE" && find ".$PREFIX" -mindepth 1 \( -type f -o -type l \) | sed "s|^\.$PREFIX/||" | sort) >"$WORK/plist"
    pkg create -M "$META/+MANIFEST" -r "$STAGE" -p "$WORK/plist" -o "$OUT"
    ;;
*)
    echo "interpreter: no package format for family $FAMILY" >&2; exit 1 ;;
esac
ls -l "$OUT"
