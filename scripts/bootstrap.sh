#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian/Ubuntu machine, then a virtualenv in .venv.
# Idempotent: a second run with nothing missing installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: the real services (PostgreSQL: the alert store beyond one box, started by the tests), a browser
# for the dashboard tests, CJK fonts for the map.
PKGS=(mosquitto influxdb chromium chromium-driver fonts-noto-cjk postgresql haproxy)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then missing+=(python3-venv); fi
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then
    echo "bootstrap: installing ${missing[*]} (sudo)"
    sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "bootstrap: please install the Debian/Ubuntu packages: ${missing[*]}" >&2
    echo "  (or point SC_MQTT_URL / SC_INFLUX_URL at running services)" >&2
    exit 1
  fi
fi

python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || { echo "bootstrap: Python >= 3.11 is required (found $(python3 --version))" >&2; exit 1; }

# The virtualenv, reinstalled only when pyproject.toml changed.
stamp=.venv/.installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  echo "$want" > "$stamp"
fi

# bench/bench_dashboard.py's yardstick page draws the map with MapLibre alone: the version plotly.js
# bundles, from npm, kept under build/vendor (never fetched at run time). Only the bench needs it.
MAPLIBRE=6.9.0
vendor=build/vendor/maplibre-gl-$MAPLIBRE
if [ ! -f "$vendor/maplibre-gl.mjs" ] && command -v npm >/dev/null; then
  mkdir -p "$vendor"
  if ! (cd build/vendor && npm pack --silent "maplibre-gl@$MAPLIBRE" >/dev/null \
        && tar xzf "maplibre-gl-$MAPLIBRE.tgz" -C "maplibre-gl-$MAPLIBRE" --strip-components=2 \
             package/dist/maplibre-gl.mjs package/dist/maplibre-gl-shared.mjs \
             package/dist/maplibre-gl-worker.mjs package/dist/maplibre-gl.css \
        && rm -f "maplibre-gl-$MAPLIBRE.tgz"); then
    echo "bootstrap: maplibre-gl $MAPLIBRE not fetched from npm (only bench/bench_dashboard.py needs it)" >&2
  fi
fi

# The dashboard's partial plotly.js (dashboard/plotlyjs: core + the map traces, about 60 % of the whole
# bundle, so the one map draws sooner), built with npm when npm is here; without it the dashboard
# serves plotly's whole bundle. Rebuilt when dashboard/plotlyjs changes.
pj=build/vendor/plotly-map.min.js
pj_want=$(cat dashboard/plotlyjs/package.json dashboard/plotlyjs/entry.js dashboard/plotlyjs/build.js | sha256sum | cut -d' ' -f1)
if [ "$(cat "$pj.stamp" 2>/dev/null)" != "$pj_want" ] && command -v npm >/dev/null && command -v node >/dev/null; then
  rm -rf build/plotlyjs && mkdir -p build/plotlyjs build/vendor
  cp dashboard/plotlyjs/package.json dashboard/plotlyjs/entry.js dashboard/plotlyjs/build.js build/plotlyjs/
  if (cd build/plotlyjs && npm install --silent --no-audit --no-fund --ignore-scripts >/dev/null \
      && node build.js "../vendor/plotly-map.min.js.tmp") && mv "$pj.tmp" "$pj"; then
    echo "$pj_want" > "$pj.stamp"
    rm -rf build/plotlyjs
  else
    echo "bootstrap: the partial plotly.js was not built (the dashboard serves the whole bundle)" >&2
  fi
fi
