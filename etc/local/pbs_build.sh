#!/usr/bin/env bash
# Build and install OpenPBS into /opt/pbs from the vendored source tarball (no package
# registry carries PBS). Once per machine: etc/local/pbs.py calls this only when /opt/pbs is
# missing or of another version. As root, Debian 12. The build tree is removed afterwards.
set -euo pipefail
TARBALL=${1:?usage: pbs_build.sh TARBALL [PREFIX]}
PREFIX=${2:-/opt/pbs}
APT="apt-get -o DPkg::Lock::Timeout=600 -y -q"
DEPS="gcc make libtool libhwloc-dev libx11-dev libxt-dev libedit-dev libical-dev libncurses-dev
perl postgresql-server-dev-all postgresql postgresql-contrib python3-dev tcl-dev tk-dev swig
libexpat1-dev libssl-dev libxext-dev libxft-dev autoconf automake g++ libcjson-dev expat
libedit2 sendmail-bin sudo tcl tk libical3 libcjson1"
missing=$(for p in $DEPS; do dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "ok installed" || echo "$p"; done)
if [ -n "$missing" ]; then
  echo ">> apt: installing PBS build dependencies: $(echo $missing)"
  DEBIAN_FRONTEND=noninteractive $APT update -qq
  DEBIAN_FRONTEND=noninteractive $APT install $missing >/dev/null
fi
BUILD=$(mktemp -d /var/tmp/dask-mpi-lx-pbs-build.XXXXXX)
trap 'rm -rf "$BUILD"' EXIT
tar -xzf "$TARBALL" -C "$BUILD"
cd "$BUILD"/openpbs-*
echo ">> OpenPBS: autogen, configure, make (several minutes on 2 cores)"
./autogen.sh >"$BUILD/autogen.log" 2>&1 || { tail -20 "$BUILD/autogen.log"; exit 1; }
./configure --prefix="$PREFIX" >"$BUILD/configure.log" 2>&1 || { tail -20 "$BUILD/configure.log"; exit 1; }
make -j"$(nproc)" >"$BUILD/make.log" 2>&1 || { tail -30 "$BUILD/make.log"; exit 1; }
make install >"$BUILD/install.log" 2>&1 || { tail -20 "$BUILD/install.log"; exit 1; }
"$PREFIX"/libexec/pbs_postinstall >"$BUILD/postinstall.log" 2>&1 || { tail -20 "$BUILD/postinstall.log"; exit 1; }
chmod 4755 "$PREFIX"/sbin/pbs_iff "$PREFIX"/sbin/pbs_rcp
echo ">> OpenPBS installed in $PREFIX"
