# Shared by scripts/test and scripts/bench: make sure PostgreSQL answers at DATABASE_URL.
#
# DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/postgres. When it is not reachable and a
# local cluster is installed (Debian's postgresql-common), the cluster is started. Without a reachable
# PostgreSQL the calling script fails: nothing passes silently without a database.

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

pg_reachable() {
  if command -v psql >/dev/null 2>&1; then
    psql "$DATABASE_URL" -Atqc 'SELECT 1' >/dev/null 2>&1
  else
    # No client installed: at least check that something listens on the URL's host and port.
    local hostport host port
    hostport=$(sed -E 's#^[a-z]+://([^@/]*@)?([^/?]*).*#\2#' <<<"$DATABASE_URL")
    host=${hostport%:*}; port=${hostport##*:}; [ "$port" = "$hostport" ] && port=5432
    (exec 3<>"/dev/tcp/${host:-127.0.0.1}/$port") 2>/dev/null
  fi
}

# ensure_postgres NAME: starts a local cluster if needed; exits 1 with a clear message otherwise.
ensure_postgres() {
  local name=$1
  if ! pg_reachable; then
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
      for version in $(ls /etc/postgresql); do
        echo "$name: starting local PostgreSQL cluster $version/main" >&2
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
      done
      for _ in $(seq 1 30); do pg_reachable && break; sleep 1; done
    fi
  fi
  if ! pg_reachable; then
    echo "$name: ERROR: PostgreSQL is not reachable at DATABASE_URL=$DATABASE_URL." >&2
    echo "$name: install and start PostgreSQL 15 (apt-get install postgresql) or point DATABASE_URL at one." >&2
    exit 1
  fi
  echo "$name: PostgreSQL reachable at $DATABASE_URL" >&2
}
