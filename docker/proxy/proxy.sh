#!/bin/sh
# Entry point of the reverse proxy container (nginx), mounted read-only at
# /etc/census-proxy with nginx.conf beside it.
#   proxy.sh            render the config, start nginx, watch the replicas
#   proxy.sh refresh    re-probe the replicas now; reload nginx if the set changed
#   proxy.sh reload     re-render everything (e.g. new certificate) and reload
#   proxy.sh health     the container healthcheck
#   proxy.sh upstreams  print the replicas nginx sends traffic to
# The watcher resolves the compose service names (Docker's DNS lists every
# running replica), probes each replica's health URL, and writes only those that
# answer into the upstream groups: a replica that fails its health check gets
# no traffic, a new one gets traffic once healthy, and `--scale` needs no port
# ranges. nginx reloads gracefully (open websockets stay on the old workers).
# TLS: mount a certificate and key at $PROXY_TLS_DIR/tls.crt and tls.key.
set -eu

CONF_DIR="$(cd "$(dirname "$0")" && pwd)"
RUN_DIR=/run/census-proxy
TLS_DIR="${PROXY_TLS_DIR:-/etc/census-proxy-tls}"
INTERVAL="${PROXY_CHECK_INTERVAL:-2}"
# service:port:health-path, one per upstream group (census_<service>).
SERVICES="${PROXY_UPSTREAMS:-api:8000:/health explorer:5006:/liveness}"

log() { echo "census-proxy: $*" >&2; }

worker_user() {
    for user in nginx www-data nobody; do
        if id "$user" >/dev/null 2>&1; then echo "$user"; return; fi
    done
}

tls_on() { [ -s "$TLS_DIR/tls.crt" ] && [ -s "$TLS_DIR/tls.key" ]; }

render_static() {
    mkdir -p "$RUN_DIR"
    echo "user $(worker_user);" >"$RUN_DIR/main.conf"
    if tls_on; then
        cat >"$RUN_DIR/tls.conf" <<TLS
listen 8080 ssl default_server;
ssl_certificate $TLS_DIR/tls.crt;
ssl_certificate_key $TLS_DIR/tls.key;
ssl_protocols TLSv1.2 TLSv1.3;
ssl_prefer_server_ciphers off;
ssl_session_cache shared:census_tls:10m;
ssl_session_timeout 1d;
# Plain HTTP sent to the TLS port: tell the client to use https.
error_page 497 =301 https://\$http_host\$request_uri;
TLS
        echo 'add_header Strict-Transport-Security "max-age=31536000" always;' >"$RUN_DIR/hsts.conf"
        log "TLS on (certificate $TLS_DIR/tls.crt)"
    else
        echo "listen 8080 default_server;" >"$RUN_DIR/tls.conf"
        : >"$RUN_DIR/hsts.conf"
        log "TLS off (no $TLS_DIR/tls.crt and tls.key): plain HTTP"
    fi
}

# healthy_servers NAME PORT PATH: "server IP:PORT ...;" lines for the replicas that answer.
healthy_servers() {
    for ip in $(getent ahostsv4 "$1" 2>/dev/null | awk '{print $1}' | sort -u); do
        if curl -fsS -o /dev/null --max-time 2 "http://$ip:$2$3" 2>/dev/null; then
            echo "    server $ip:$2 max_fails=1 fail_timeout=5s;"
        fi
    done
}

render_upstreams() {
    out="$RUN_DIR/upstreams.conf.new.$$"
    : >"$out"
    for spec in $SERVICES; do
        name="${spec%%:*}"; rest="${spec#*:}"; port="${rest%%:*}"; path="${rest#*:}"
        servers="$(healthy_servers "$name" "$port" "$path")"
        {
            echo "upstream census_$name {"
            if [ "$name" = explorer ]; then echo "    hash \$explorer_key consistent;"; fi
            if [ -n "$servers" ]; then
                echo "$servers"
            else
                # Nothing healthy: nginx answers 503 (@unavailable) at once.
                echo "    server 127.0.0.1:1 down;"
            fi
            if [ "$name" != explorer ]; then echo "    keepalive 32;"; fi
            echo "}"
        } >>"$out"
    done
}

# refresh: rewrite the upstream groups; reload nginx when they changed. Returns 0.
refresh() {
    render_upstreams
    if cmp -s "$RUN_DIR/upstreams.conf.new.$$" "$RUN_DIR/upstreams.conf" 2>/dev/null; then
        rm -f "$RUN_DIR/upstreams.conf.new.$$"
    else
        mv "$RUN_DIR/upstreams.conf.new.$$" "$RUN_DIR/upstreams.conf"
        log "replicas now: $(grep -o 'census_[a-z]*\|server [0-9.:]*' "$RUN_DIR/upstreams.conf" | tr '\n' ' ')"
        if [ -s "$RUN_DIR/nginx.pid" ]; then nginx -c "$CONF_DIR/nginx.conf" -s reload; fi
    fi
}

case "${1:-run}" in
    run)
        render_static
        render_upstreams
        mv "$RUN_DIR/upstreams.conf.new.$$" "$RUN_DIR/upstreams.conf"
        nginx -c "$CONF_DIR/nginx.conf" -t
        nginx -c "$CONF_DIR/nginx.conf" -g 'daemon off;' &
        nginx_pid=$!
        trap 'kill -QUIT $nginx_pid 2>/dev/null; wait $nginx_pid; exit 0' TERM INT QUIT
        sleep 1
        while kill -0 "$nginx_pid" 2>/dev/null; do
            refresh || log "refresh failed"
            sleep "$INTERVAL" &
            wait $! || true
        done
        wait "$nginx_pid"
        ;;
    refresh) refresh ;;
    reload)
        render_static
        render_upstreams
        mv "$RUN_DIR/upstreams.conf.new.$$" "$RUN_DIR/upstreams.conf"
        nginx -c "$CONF_DIR/nginx.conf" -t && nginx -c "$CONF_DIR/nginx.conf" -s reload
        ;;
    health)
        if tls_on; then scheme=https; else scheme=http; fi
        curl -fsSk -o /dev/null --max-time 5 "$scheme://127.0.0.1:8080/.proxy/health"
        ;;
    upstreams) cat "$RUN_DIR/upstreams.conf" ;;
    *) echo "usage: proxy.sh [run|refresh|reload|health|upstreams]" >&2; exit 2 ;;
esac
