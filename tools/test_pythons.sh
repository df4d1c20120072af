#!/usr/bin/env bash
# The core suite (tests not marked slow: no servers, browsers or clusters) on every supported
# Python besides the default one, each in its own virtualenv with the test extra; pyenv's
# interpreters, or PYTHONS="/path/to/python3.x ...". Run by .ci/run after the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${PYENV_ROOT:-$HOME/.pyenv}/versions"
if [ -z "${PYTHONS:-}" ]; then
    PYTHONS=""
    for minor in 3.10 3.12 3.13; do
        found=$(ls -d "$root/$minor".* 2>/dev/null | sort -V | tail -1)
        if [ -z "$found" ]; then
            echo "test_pythons: no Python $minor under $root: every supported Python must be tested" >&2
            exit 1
        fi
        PYTHONS="$PYTHONS $found/bin/python"
    done
fi
for py in $PYTHONS; do
    version=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    env=".venv-$version"
    "$py" -m venv "$env"
    "$env/bin/python" -m pip install --quiet --upgrade pip
    "$env/bin/python" -m pip install --quiet -e '.[test]'
    echo "test_pythons: Python $version, the tests not marked slow"
    # the tests call the bbx script, so this Python's is first on the path
    PATH="$PWD/$env/bin:$PATH" "$env/bin/python" -m pytest -q -m "not slow" -p no:cacheprovider
done
