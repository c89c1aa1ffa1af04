# Sourced by scripts/test: install the Debian packages named in "$@" that the
# tests start as real servers, when they are missing.
_missing=()
for _package in "$@"; do
    dpkg-query -W -f='${Status}' "$_package" 2>/dev/null | grep -q "install ok installed" || _missing+=("$_package")
done
if [ "${#_missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "the tests need these Debian packages: ${_missing[*]} (apt-get install ${_missing[*]})" >&2
        exit 2
    fi
    echo "installing ${_missing[*]} ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${_missing[@]}" >/dev/null
fi
