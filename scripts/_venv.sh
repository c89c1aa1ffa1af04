# Sourced by scripts/demo and scripts/test: create .venv and install tsbatch
# with the extras named in $1 into it.
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "tsbatch needs Python 3.11 or newer as \$PYTHON (now: $PYTHON)" >&2
    exit 2
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv || {
        echo "could not create .venv: on Debian, apt-get install python3-venv" >&2
        exit 2
    }
fi
echo "installing tsbatch[$1] into .venv ..."
_log="$(mktemp)"
if ! .venv/bin/python -m pip install --disable-pip-version-check -e ".[$1]" >"$_log" 2>&1; then
    cat "$_log" >&2
    rm -f "$_log"
    exit 2
fi
rm -f "$_log"
