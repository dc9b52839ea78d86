# pg_auto_failover's pg_autoctl (Debian's postgresql-15-auto-failover), for the failover tests
# (tests/src/failover.rs) and any script that needs a monitored primary/standby formation.
#
# ensure_pg_auto_failover [NAME]: when pg_autoctl is neither in /usr/lib/postgresql/15/bin nor on PATH,
# installs postgresql-15-auto-failover with apt-get (apt-get update first only when the package is
# unknown to apt) and checks it is there afterwards. Prints the path of pg_autoctl on stdout; exits 1
# with a clear message when it cannot be installed. Nothing passes silently without it.

pg_autoctl_path() {
  if [ -x /usr/lib/postgresql/15/bin/pg_autoctl ]; then
    echo /usr/lib/postgresql/15/bin/pg_autoctl
  else
    command -v pg_autoctl 2>/dev/null
  fi
}

ensure_pg_auto_failover() {
  local name=${1:-ensure_pg_auto_failover} package=postgresql-15-auto-failover as_root="" found
  if found=$(pg_autoctl_path); then
    echo "$found"
    return 0
  fi
  echo "$name: installing $package (apt-get)" >&2
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$name: ERROR: pg_autoctl is missing and there is no apt-get to install $package" >&2
    exit 1
  fi
  [ "$(id -u)" -eq 0 ] || as_root="sudo"
  if ! DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq "$package" >&2; then
    echo "$name: apt-get install failed; running apt-get update and trying again" >&2
    $as_root apt-get update -qq >&2 || { echo "$name: ERROR: apt-get update failed" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq "$package" >&2 \
      || { echo "$name: ERROR: cannot install $package" >&2; exit 1; }
  fi
  if ! found=$(pg_autoctl_path); then
    echo "$name: ERROR: pg_autoctl is still missing after installing $package" >&2
    exit 1
  fi
  echo "$found"
}

# Run as a program (`bash scripts/lib/pg-auto-failover.sh`), it ensures the package and prints the path.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  ensure_pg_auto_failover "${1:-pg-auto-failover}"
fi
