#!/usr/bin/env bash
# Make sure the services the tests use are running on this machine, starting
# (or, on a bare Debian machine, installing) what is missing. Idempotent.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "services: installing PostgreSQL" >&2
    apt_install postgresql
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "services: starting PostgreSQL $version" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 1
  done
  pg_isready -h 127.0.0.1 -p 5432
  # trust auth on loopback and a `test` database, as the tests expect
  if ! psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
    local hba
    hba=$(ls /etc/postgresql/"$version"/main/pg_hba.conf)
    if ! grep -q "promoflow-tests" "$hba"; then
      sed -i '1i host all all 127.0.0.1/32 trust # promoflow-tests\nhost all all ::1/128 trust # promoflow-tests' "$hba"
      pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    fi
    su postgres -c "createdb test" 2>/dev/null || true
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ensure_redis() {
  # The fleet tests' broker and shared rate windows (issue 17).
  if port_open 6379; then return; fi
  if ! have redis-server; then
    echo "services: installing Redis" >&2
    apt_install redis-server
  fi
  echo "services: starting Redis" >&2
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 30); do port_open 6379 && return; sleep 1; done
  echo "services: Redis did not start" >&2; return 1
}

ensure_rabbitmq() {
  # The fleet test's RabbitMQ variant (guest/guest on loopback).
  if port_open 5672; then return; fi
  if ! have rabbitmq-server; then
    echo "services: installing RabbitMQ" >&2
    apt_install rabbitmq-server
  fi
  echo "services: starting RabbitMQ" >&2
  rabbitmq-server -detached || true
  for _ in $(seq 1 90); do port_open 5672 && return; sleep 1; done
  echo "services: RabbitMQ did not start" >&2; return 1
}

ensure_chromium() {
  # Debian's Chromium for the Playwright browser tests (Playwright's own
  # browser download cannot run here), and CJK fonts for Chinese labels.
  if ! have chromium; then
    echo "services: installing Chromium" >&2
    apt_install chromium fonts-noto-cjk
  fi
}

case "${1:-all}" in
  postgres) ensure_postgres ;;
  chromium) ensure_chromium ;;
  redis) ensure_redis ;;
  rabbitmq) ensure_rabbitmq ;;
  all) ensure_postgres; ensure_redis; ensure_rabbitmq; ensure_chromium ;;
esac
