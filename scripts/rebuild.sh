#!/usr/bin/env bash
# Update a deployment of the census platform without downtime: pull the
# deployed branch, build the image, run the loader (schema + data), start new
# API and explorer replicas beside the old ones, wait until they are healthy,
# switch the proxy to them, then stop the old ones. Any failure before the
# switch leaves the old version serving. `--rollback` goes back to the image
# that was serving before the last update (kept as <APP_IMAGE>-previous).
# Never deletes the database volume; running it again with nothing new is harmless.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: scripts/rebuild.sh [--branch NAME] [--skip-pull] [--timeout SECONDS]
       scripts/rebuild.sh --rollback [--timeout SECONDS]

Pulls the latest code of the deployed branch (git pull --ff-only), builds the
app image, runs the loader, then replaces the API and explorer replicas one
generation at a time behind the proxy (new ones start beside the old, take
traffic once healthy, the old ones stop): users see no failed request.
Checks /health (it must report the new commit) and the explorer page through
the proxy, and prints the URL.

Options:
  --branch NAME      branch to deploy (default: the branch checked out now)
  --skip-pull        do not touch git; rebuild and redeploy what is checked out
  --rollback         redeploy the image that served before the last update
                     (no git, no build, no loader); run it again to go forward
  --timeout SECONDS  how long to wait for new replicas to be healthy (default 300)
  -h, --help         show this help

Run it from anywhere inside the checkout; it uses the checkout's
docker-compose.yml and .env. It refuses to run over uncommitted changes to
tracked files, and it never removes volumes (the database survives).
Environment: COMPOSE_PROJECT_NAME (default: "census" from docker-compose.yml);
APP_IMAGE, PUBLISH_PORT, API_REPLICAS, EXPLORER_REPLICAS (default: from .env).
USAGE
}

die() { echo "rebuild.sh: error: $*" >&2; exit 1; }
step() { echo; echo "==> $*"; }

branch=""
skip_pull=0
rollback=0
timeout=300
while [ $# -gt 0 ]; do
    case "$1" in
        --branch) [ $# -ge 2 ] || die "--branch needs a name"; branch="$2"; shift 2 ;;
        --branch=*) branch="${1#--branch=}"; shift ;;
        --skip-pull) skip_pull=1; shift ;;
        --rollback) rollback=1; shift ;;
        --timeout) [ $# -ge 2 ] || die "--timeout needs seconds"; timeout="$2"; shift 2 ;;
        --timeout=*) timeout="${1#--timeout=}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done
case "$timeout" in ''|*[!0-9]*) die "--timeout must be a whole number of seconds, got '$timeout'" ;; esac
[ "$rollback" = 0 ] || [ -z "$branch" ] || die "--rollback takes no --branch (it does not touch git)"

command -v git >/dev/null || die "git is not installed"
command -v docker >/dev/null || die "docker is not installed"
command -v curl >/dev/null || die "curl is not installed"
docker compose version >/dev/null 2>&1 || die "'docker compose' (Compose v2) is not available"
docker info >/dev/null 2>&1 || die "cannot talk to the Docker daemon (is it running? are you in the docker group?)"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || die "$repo is not a git checkout"
[ -f docker-compose.yml ] || die "no docker-compose.yml in $repo"
[ -f .env ] || die "no .env in $repo: copy .env.example to .env and set the passwords"

# A value from the environment, else from .env, else a default.
setting() {
    local name="$1" default="$2" value
    value="${!name:-}"
    if [ -z "$value" ]; then
        value="$(sed -n "s/^[[:space:]]*${name}[[:space:]]*=[[:space:]]*//p" .env | tail -n 1 | tr -d "\"'\r")"
    fi
    echo "${value:-$default}"
}

app_image="$(setting APP_IMAGE census-platform:latest)"
case "${app_image##*/}" in
    *:*) previous_image="$app_image-previous" ;;
    *) previous_image="$app_image:latest-previous" ;;
esac
port="$(setting PUBLISH_PORT 80)"
base="http://127.0.0.1:${port}"
if [ -n "$(setting PROXY_TLS_DIR '')" ]; then base="https://127.0.0.1:${port}"; fi
image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
image_commit() { docker image inspect -f '{{index .Config.Labels "org.opencontainers.image.revision"}}' "$1" 2>/dev/null || true; }
running() { docker compose ps -q --status running "$1" 2>/dev/null || true; }
proxy() { docker compose exec -T proxy /bin/sh /etc/census-proxy/proxy.sh "$@"; }

# ---- what to deploy ---------------------------------------------------------
if [ "$rollback" = 1 ]; then
    step "Rolling back to $previous_image"
    previous_id="$(image_id "$previous_image")"
    [ -n "$previous_id" ] || die "no previous image $previous_image: nothing to roll back to (it is kept by the update before)"
    current_id="$(image_id "$app_image")"
    GIT_COMMIT="$(image_commit "$previous_image")"
    echo "serving now: commit $(image_commit "$app_image" | cut -c1-12); rolling back to commit ${GIT_COMMIT:0:12}"
    # Swap the tags: the image serving now becomes "previous" (--rollback again goes forward).
    docker tag "$previous_id" "$app_image"
    [ -z "$current_id" ] || docker tag "$current_id" "$previous_image"
    # undo: give the tags back if the new replicas never take over.
    undo() { docker tag "$current_id" "$app_image"; docker tag "$previous_id" "$previous_image"; }
else
    if [ "$skip_pull" = 1 ]; then
        step "Skipping git pull (--skip-pull)"
    else
        if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
            git status --short --untracked-files=no >&2
            die "the checkout has local changes (above): commit, stash or discard them first; nothing was changed"
        fi
        current="$(git symbolic-ref --quiet --short HEAD || true)"
        branch="${branch:-$current}"
        [ -n "$branch" ] || die "HEAD is detached: name the branch with --branch"
        step "Pulling branch '$branch' (fast-forward only)"
        before="$(git rev-parse HEAD)"
        git fetch origin "$branch" || die "git fetch origin $branch failed"
        if [ "$branch" != "$current" ]; then
            git checkout "$branch" || die "cannot check out branch '$branch'"
        fi
        git pull --ff-only origin "$branch" \
            || die "git pull --ff-only failed: the local branch has diverged from origin/$branch; nothing was rebuilt"
        after="$(git rev-parse HEAD)"
        if [ "$before" = "$after" ]; then
            echo "already up to date at ${after:0:12}"
        else
            echo "updated ${before:0:12} -> ${after:0:12}"
        fi
    fi
    GIT_COMMIT="$(git rev-parse HEAD)"
    old_id="$(image_id "$app_image")"
    kept_id="$(image_id "$previous_image")"
    # undo: a failed update leaves the tags as they were (APP_IMAGE = what serves).
    undo() {
        if [ -n "$old_id" ]; then docker tag "$old_id" "$app_image"; fi
        if [ -n "$kept_id" ]; then docker tag "$kept_id" "$previous_image"; fi
    }
    step "Building $app_image for commit ${GIT_COMMIT:0:12} (the old version keeps serving)"
    export GIT_COMMIT
    docker compose build || die "docker compose build failed (see the output above); the old version is still serving"
    new_id="$(image_id "$app_image")"
    if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
        docker tag "$old_id" "$previous_image"
        echo "kept the image that served until now as $previous_image (commit $(image_commit "$previous_image" | cut -c1-12))"
    fi
fi
export GIT_COMMIT

# ---- first deployment: nothing serves yet, just start everything ------------
if [ -z "$(running api)" ] || [ -z "$(running proxy)" ]; then
    step "Starting the stack (docker compose up -d --wait)"
    if ! docker compose up -d --wait --wait-timeout "$timeout" --remove-orphans; then
        docker compose ps -a >&2 || true
        docker compose logs --tail 40 >&2 || true
        die "the stack did not become healthy within ${timeout}s (status and logs above)"
    fi
else
    # ---- rolling update ------------------------------------------------------
    step "Proxy and database up; the proxy re-reads docker/proxy/"
    docker compose up -d --wait --wait-timeout "$timeout" --no-deps db proxy \
        || { undo; die "the database or the proxy is not healthy; nothing was switched"; }
    proxy reload >/dev/null || { undo; die "the proxy rejects docker/proxy/nginx.conf (nginx -t above); the old version is still serving"; }

    if [ "$rollback" = 0 ]; then
        step "Schema and data with the new image (loader), before any switch"
        docker compose run --rm --no-deps -T loader \
            || { undo; die "the loader failed (output above); the old version is still serving"; }
    fi

    # health ID: the container's state and health, e.g. "running healthy".
    health() { docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$1" 2>/dev/null || echo gone; }
    address() { docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$1" | awk '{print $1}'; }

    # roll SERVICE REPLICAS: new replicas beside the old, healthy, in the proxy, old ones stopped.
    roll() {
        local svc="$1" want="$2" old new id state deadline ip missing
        old="$(running "$svc" | sort)"
        step "$svc: starting $want new replica(s) beside $(echo "$old" | grep -c . || true) old"
        docker compose up -d --no-deps --no-recreate --scale "$svc=$(( $(echo "$old" | grep -c .) + want ))" "$svc" \
            || { undo; die "could not start new $svc replicas; the old version is still serving"; }
        new="$(comm -13 <(echo "$old") <(running "$svc" | sort))"
        [ -n "$new" ] || { undo; die "no new $svc replica started; the old version is still serving"; }
        deadline=$(( $(date +%s) + timeout ))
        for id in $new; do
            while state="$(health "$id")"; [ "$state" != "running healthy" ]; do
                if [ "$(date +%s)" -gt "$deadline" ] || [ "${state%% *}" != running ] || [ "$state" = "running unhealthy" ]; then
                    docker logs --tail 30 "$id" >&2 || true
                    docker rm -f $new >/dev/null 2>&1 || true
                    undo
                    die "new $svc replica ${id:0:12} is '$state' after waiting (logs above); it was removed and the old version is still serving"
                fi
                sleep 2
            done
        done
        echo "$svc: new replica(s) healthy: $(for id in $new; do printf '%s ' "${id:0:12}"; done)"
        # Switch: wait until the proxy sends traffic to every new replica.
        deadline=$(( $(date +%s) + 60 ))
        while :; do
            proxy refresh >/dev/null 2>&1 || true
            missing=""
            for id in $new; do
                ip="$(address "$id")"
                proxy upstreams | grep -q "server $ip:" || missing="$missing $ip"
            done
            [ -z "$missing" ] && break
            if [ "$(date +%s)" -gt "$deadline" ]; then
                docker rm -f $new >/dev/null 2>&1 || true
                undo
                die "the proxy did not take the new $svc replica(s) ($missing) in 60 s; they were removed, the old version is still serving"
            fi
            sleep 1
        done
        echo "$svc: the proxy sends traffic to the new replica(s)"
        if [ -n "$old" ]; then
            # Graceful: in-flight requests finish; the proxy retries refused connections elsewhere.
            docker stop -t 30 $old >/dev/null
            docker rm $old >/dev/null
            proxy refresh >/dev/null 2>&1 || true
            echo "$svc: old replica(s) stopped and removed"
        fi
    }
    # up_to_date SERVICE REPLICAS: as many replicas as wanted run, all on the image to deploy.
    up_to_date() {
        local ids id image
        ids="$(running "$1")"
        [ "$(echo "$ids" | grep -c . || true)" = "$2" ] || return 1
        image="$(image_id "$app_image")"
        for id in $ids; do [ "$(docker inspect -f '{{.Image}}' "$id")" = "$image" ] || return 1; done
    }
    for svc in api explorer; do
        if [ "$svc" = api ]; then want="$(setting API_REPLICAS 1)"; else want="$(setting EXPLORER_REPLICAS 1)"; fi
        if up_to_date "$svc" "$want"; then
            step "$svc: $want replica(s) already run this image; nothing to replace"
        else
            roll "$svc" "$want"
        fi
    done
fi
docker compose ps

# ---- checks through the proxy -----------------------------------------------
step "Checking through the proxy at $base"
health_body=""
for _ in $(seq 1 30); do
    if health_body="$(curl -fsSk --max-time 5 "$base/health" 2>/dev/null)"; then
        case "$health_body" in *"$GIT_COMMIT"*) break ;; esac
    fi
    sleep 2
done
echo "API health: ${health_body:-no answer}"
case "$health_body" in
    *"$GIT_COMMIT"*) echo "the API reports commit ${GIT_COMMIT:0:12}" ;;
    *) die "the API does not report commit $GIT_COMMIT at $base/health (docker compose logs api proxy)" ;;
esac
code=""
for _ in $(seq 1 30); do
    code="$(curl -sk -o /dev/null --max-time 20 -w '%{http_code}' "$base/app" || true)"
    [ "$code" = 200 ] && break
    sleep 2
done
[ "$code" = 200 ] || die "the explorer answers HTTP ${code:-nothing} at $base/app (docker compose logs explorer proxy)"
echo "explorer page: HTTP 200"

host="$(hostname -f 2>/dev/null || hostname)"
scheme="${base%%://*}"
step "Deployed commit ${GIT_COMMIT:0:12}"
echo "explorer: ${scheme}://${host}:${port}/app   (on this machine: $base/app)"
echo "API:      ${scheme}://${host}:${port}/api/v1/   (health: $base/health)"
