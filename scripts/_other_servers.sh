# Sourced by scripts/test: create the Pythons that run the other servers the
# tests talk to, KServe's ModelServer (.venv-kserve) and MLServer
# (.venv-mlserver). Each pins what tsbatch's .venv cannot share (kserve:
# pandas below 3; mlserver: fastapi and starlette older than kserve's), and
# each gets the same CPU build of torch for the demo model.
_other_venv() {  # _other_venv FOLDER MODULE REQUIREMENT...
    local folder="$1" module="$2"
    shift 2
    if [ -x "$folder/bin/python" ] && "$folder/bin/python" -c "import $module, torch" 2>/dev/null; then
        return 0
    fi
    "$PYTHON" -m venv "$folder" || exit 2
    echo "installing $* into $folder ..."
    local log
    log="$(mktemp)"
    if ! "$folder/bin/python" -m pip install --disable-pip-version-check "$@" "torch==2.13.0" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        exit 2
    fi
    rm -f "$log"
}
_other_venv .venv-kserve kserve "kserve==0.21.0"
_other_venv .venv-mlserver mlserver "mlserver==1.7.1"
