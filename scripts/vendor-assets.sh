#!/usr/bin/env bash
# Fetch the web UI's front-end assets from the npm registry, once, into the package
# (src/fanli/interfaces/web/static/vendor). Nothing is loaded from a CDN at run time.
# Run it again only to change a version; commit what it writes.
set -euo pipefail
cd "$(dirname "$0")/.."
VENDOR=src/fanli/interfaces/web/static/vendor
PACKAGES=(bootstrap@5.3.9 htmx.org@2.0.11 echarts@5.6.0 swagger-ui-dist@5.35.0)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "${PACKAGES[@]}" >/dev/null)
for tarball in "$work"/*.tgz; do
  name=$(basename "$tarball" .tgz)
  mkdir -p "$work/$name" && tar xzf "$tarball" -C "$work/$name"
done
mkdir -p "$VENDOR"
cp "$work"/bootstrap-*/package/dist/css/bootstrap.min.css "$VENDOR/"
cp "$work"/bootstrap-*/package/dist/js/bootstrap.bundle.min.js "$VENDOR/"
cp "$work"/bootstrap-*/package/LICENSE "$VENDOR/LICENSE.bootstrap"
cp "$work"/htmx.org-*/package/dist/htmx.min.js "$VENDOR/"
cp "$work"/htmx.org-*/package/LICENSE "$VENDOR/LICENSE.htmx"
cp "$work"/echarts-*/package/dist/echarts.min.js "$VENDOR/"
cp "$work"/echarts-*/package/LICENSE "$VENDOR/LICENSE.echarts"
# The API's documentation page (/api/docs) runs Swagger UI from here too.
cp "$work"/swagger-ui-dist-*/package/swagger-ui-bundle.js "$VENDOR/"
cp "$work"/swagger-ui-dist-*/package/swagger-ui.css "$VENDOR/"
cp "$work"/swagger-ui-dist-*/package/LICENSE "$VENDOR/LICENSE.swagger-ui"
printf '%s\n' "${PACKAGES[@]}" > "$VENDOR/VERSIONS"
echo "vendored ${PACKAGES[*]} into $VENDOR"
