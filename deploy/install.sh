#!/bin/sh
# Install YouSaid with its pinned dependencies into the Python that will run it, compile the
# translation catalogs, and check the result. The Dockerfile runs exactly this script, and so
# does tests/test_install_script.py (in a temporary virtualenv), so a broken install step
# fails `make test` even on machines with no Docker engine.
#
#   PYTHON=/path/to/python sh deploy/install.sh      (default: python3)
set -eu

app_dir=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}

"$python" -m pip install --disable-pip-version-check "$app_dir"
"$python" -m babel.messages.frontend compile --domain messages \
    --directory "$app_dir/locales" --statistics
cd "$app_dir"
"$python" -m bot check
