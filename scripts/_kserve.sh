# Sourced by scripts/test: create .venv-kserve, the Python that runs KServe's
# ModelServer for the tests of the v1 and v2 protocols. kserve pins pandas
# below 3, so it cannot share .venv; torch is pinned as in .venv (CPU build).
if [ ! -x .venv-kserve/bin/python ] || ! .venv-kserve/bin/python -c "import kserve, torch" 2>/dev/null; then
    "$PYTHON" -m venv .venv-kserve || exit 2
    echo "installing kserve into .venv-kserve ..."
    _log="$(mktemp)"
    if ! .venv-kserve/bin/python -m pip install --disable-pip-version-check "kserve==0.21.0" "torch==2.13.0" >"$_log" 2>&1; then
        cat "$_log" >&2
        rm -f "$_log"
        exit 2
    fi
    rm -f "$_log"
fi
