#!/usr/bin/env bash
# Servers for the Redis topology benchmarks (BENCHMARKS.md), in DIR (a throw-away
# directory): plain on 6701, TLS-only on 6702, a 3-master cluster on 6711-6713, all on
# 127.0.0.1, daemonized with pid files in DIR (stop: kill "$(cat DIR/*.pid)").
# Certificates with openssl: a CA (DIR/ca.crt) and a server certificate for 127.0.0.1.
set -euo pipefail
dir="${1:?usage: scripts/redis-topologies.sh DIR}"
mkdir -p "$dir"
cd "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench-ca -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' > san.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.crt 2>/dev/null
common=(--save "" --appendonly no --daemonize yes --bind 127.0.0.1 --loglevel warning)
redis-server --port 6701 --dir "$PWD" --pidfile "$PWD/6701.pid" "${common[@]}"
redis-server --port 0 --tls-port 6702 --tls-cert-file server.crt --tls-key-file server.key \
  --tls-ca-cert-file ca.crt --tls-auth-clients no --dir "$PWD" --pidfile "$PWD/6702.pid" "${common[@]}"
for p in 6711 6712 6713; do
  mkdir -p "c$p"
  redis-server --port $p --cluster-enabled yes --dir "$PWD/c$p" --pidfile "$PWD/$p.pid" "${common[@]}"
done
sleep 1
redis-cli --cluster create 127.0.0.1:6711 127.0.0.1:6712 127.0.0.1:6713 --cluster-yes >/dev/null
