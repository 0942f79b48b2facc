#!/usr/bin/env bash
# Runs a command with a throw-away PostgreSQL server:
#
#   bash .ci/pg.sh cargo test -p secretchat-engine --features postgres
#
# Installs PostgreSQL from the Debian packages when it is missing, creates a cluster in a
# temporary directory owned by an unprivileged user (PostgreSQL refuses to run as root),
# starts it on 127.0.0.1 on a free port, exports its URL as SECRETCHAT_PG_URL (and as
# SECRETCHAT_PG_CRASH_RESTART a script that crashes and restarts it), runs the
# command, and stops the server and deletes the cluster when the command ends (whatever its
# exit status, which is this script's).
set -euo pipefail

pg_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}
if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
bin=$(pg_bin)

# The server's user: ourselves unless we are root, then the packages' `postgres` user (or one
# made here when the packages did not make it).
as_user=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  as_user=(runuser -u postgres --)
fi

dir=$(mktemp -d /tmp/secretchat-pg.XXXXXX)
chmod 755 "$dir"
[ ${#as_user[@]} -gt 0 ] && chown postgres "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

stop() {
  "${as_user[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT

"${as_user[@]}" "$bin/initdb" -D "$dir/data" -U secretchat --auth=trust -E UTF8 >/dev/null
# Durable commits as in production (synchronous_commit and fsync on, the defaults); the
# connections a two-node crash test opens; sockets only on loopback.
"${as_user[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c max_connections=200" \
  start >/dev/null
"${as_user[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U secretchat secretchat

start_opts="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c max_connections=200"
# What the database-crash tests run: stop at once (no shutdown checkpoint, as a power loss
# would leave it), wait the given seconds, start again on the same port.
{
  echo '#!/usr/bin/env bash'
  echo 'set -e'
  echo "${as_user[*]} '$bin/pg_ctl' -D '$dir/data' -m immediate stop >/dev/null"
  echo 'sleep "${1:-0.5}"'
  echo "${as_user[*]} '$bin/pg_ctl' -D '$dir/data' -l '$dir/server.log' -w -o '$start_opts' start >/dev/null"
} > "$dir/crash-restart"
chmod 755 "$dir/crash-restart"

export SECRETCHAT_PG_URL="postgres://secretchat@127.0.0.1:$port/secretchat"
export SECRETCHAT_PG_CRASH_RESTART="$dir/crash-restart"
echo "pg.sh: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') at $SECRETCHAT_PG_URL" >&2
set +e
"$@"
status=$?
set -e
exit $status
