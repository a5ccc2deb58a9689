#!/usr/bin/env bash
# Vendors Swagger UI (the API docs page at /schema) from the npm package swagger-ui-dist, pinned here, into
# app/static/swagger-ui/, so that the docs work with no internet. `npm pack` checks the tarball against the
# registry's integrity hash; the hash is also pinned below, so a re-published tarball is refused.
# Run it only to change the version (then update VERSION and INTEGRITY); the files are committed.
set -euo pipefail
VERSION=5.35.0
INTEGRITY=sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ==
FILES=(swagger-ui-bundle.js swagger-ui.css LICENSE NOTICE swagger-ui-bundle.js.LICENSE.txt)

cd "$(dirname "$0")/.."
dest=app/static/swagger-ui
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "swagger-ui-dist@$VERSION" >/dev/null)
tarball="$work/swagger-ui-dist-$VERSION.tgz"
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
[ "$actual" = "$INTEGRITY" ] || { echo "integrity mismatch: $actual" >&2; exit 1; }
tar -xzf "$tarball" -C "$work"
rm -rf "$dest" && mkdir -p "$dest"
for file in "${FILES[@]}"; do cp "$work/package/$file" "$dest/$file"; done
{
    echo "package swagger-ui-dist@$VERSION"
    echo "integrity $INTEGRITY"
    (cd "$dest" && sha256sum "${FILES[@]}")
} >"$dest/VENDORED"
echo "vendored swagger-ui-dist@$VERSION into $dest"
