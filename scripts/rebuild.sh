#!/usr/bin/env bash
# Update a deployment of the census platform: pull the deployed branch, rebuild
# the image, restart the stack and check that it answers. Never deletes the
# database volume; running it again with nothing new is harmless.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: scripts/rebuild.sh [--branch NAME] [--skip-pull] [--timeout SECONDS] [--help]

Pulls the latest code of the deployed branch (git pull --ff-only), rebuilds
the app image, restarts the stack with `docker compose up -d --wait`, checks
the API's /api/v1/health and the explorer page, and prints their URLs.

Options:
  --branch NAME      branch to deploy (default: the branch checked out now)
  --skip-pull        do not touch git; rebuild and restart what is checked out
  --timeout SECONDS  how long to wait for the services to be healthy (default 300)
  -h, --help         show this help

Run it from anywhere inside the checkout; it uses the checkout's
docker-compose.yml and .env. It refuses to run over uncommitted changes to
tracked files, and it never removes volumes (the database survives).
Environment: COMPOSE_PROJECT_NAME (default: "census" from docker-compose.yml),
API_PUBLISH_PORT / EXPLORER_PUBLISH_PORT (default: from .env, else 8000 / 5006).
USAGE
}

die() { echo "rebuild.sh: error: $*" >&2; exit 1; }
step() { echo; echo "==> $*"; }

branch=""
skip_pull=0
timeout=300
while [ $# -gt 0 ]; do
    case "$1" in
        --branch) [ $# -ge 2 ] || die "--branch needs a name"; branch="$2"; shift 2 ;;
        --branch=*) branch="${1#--branch=}"; shift ;;
        --skip-pull) skip_pull=1; shift ;;
        --timeout) [ $# -ge 2 ] || die "--timeout needs seconds"; timeout="$2"; shift 2 ;;
        --timeout=*) timeout="${1#--timeout=}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done
case "$timeout" in ''|*[!0-9]*) die "--timeout must be a whole number of seconds, got '$timeout'" ;; esac

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
export GIT_COMMIT

step "Building the image for commit ${GIT_COMMIT:0:12}"
docker compose build || die "docker compose build failed (see the output above)"

step "Starting the stack (docker compose up -d --wait)"
if ! docker compose up -d --wait --wait-timeout "$timeout" --remove-orphans; then
    docker compose ps -a >&2 || true
    docker compose logs --tail 40 >&2 || true
    die "the stack did not become healthy within ${timeout}s (status and logs above)"
fi
docker compose ps

api_port="$(setting API_PUBLISH_PORT 8000)"
api_port="${api_port%%-*}"
explorer_port="$(setting EXPLORER_PUBLISH_PORT 5006)"

step "Checking the health endpoints"
health_url="http://127.0.0.1:${api_port}/api/v1/health"
health=""
for _ in $(seq 1 30); do
    if health="$(curl -fsS --max-time 5 "$health_url" 2>/dev/null)"; then break; fi
    health=""
    sleep 2
done
[ -n "$health" ] || die "the API does not answer at $health_url (docker compose logs api)"
echo "API health: $health"
case "$health" in
    *"$GIT_COMMIT"*) echo "the API reports commit ${GIT_COMMIT:0:12}" ;;
    *) die "the API does not report commit $GIT_COMMIT (is an old container still running?)" ;;
esac
explorer_url="http://127.0.0.1:${explorer_port}/app"
code=""
for _ in $(seq 1 30); do
    code="$(curl -s -o /dev/null --max-time 20 -w '%{http_code}' "$explorer_url" || true)"
    [ "$code" = 200 ] && break
    sleep 2
done
[ "$code" = 200 ] || die "the explorer answers HTTP ${code:-nothing} at $explorer_url (docker compose logs explorer)"
echo "explorer page: HTTP 200"

host="$(hostname -f 2>/dev/null || hostname)"
step "Deployed commit ${GIT_COMMIT:0:12}"
echo "explorer: http://${host}:${explorer_port}/app   (on this machine: $explorer_url)"
echo "API:      http://${host}:${api_port}/api/v1/   (health: $health_url)"
