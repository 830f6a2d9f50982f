#!/usr/bin/env python3
"""What the schemas cannot see in the deployment kit: that its parts agree with each other
and with the binary. Run by deploy/test/check.sh:

  check_kit.py --compose BIN --bin target/release/belofte

- Kubernetes: selectors, probes, static membership, grace period vs shutdown timeout,
  security context, every Secret key and ConfigMap key that is referred to exists, the
  templates ConfigMap holds templates/ exactly.
- Compose: the services, health-gated start order, loopback-only ports, two instances on
  PostgreSQL; the SQLite override leaves one instance for today's binary.
- Dockerfile: multi-stage, non-root, config and templates inside, HEALTHCHECK on /healthz.
- Alerts: every alert has a test where it fires and one where it does not.
- Dashboard: unique panel ids, panels that do not overlap, one data source variable.
- The binary: `belofte check` accepts the configuration the image, compose and Kubernetes
  give it (the image's paths, local.toml, the BELOFTE__ variables); `belofte run` in the
  image's layout answers /healthz, /readyz and /metrics and stops cleanly on SIGTERM.
"""

import argparse
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# Settings the kit sets for the product as it will be (see the README's Deployment
# section); today's binary refuses them, so the binary checks leave them out.
NOT_YET: dict = {}

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
    return ok


def done(section):
    print(f"check_kit: {section}: ok" if not failures else f"check_kit: {section}: {len(failures)} problem(s) so far")


# ------------------------------------------------------------------ Kubernetes

def k8s_docs():
    docs = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                docs[(doc["kind"], doc["metadata"]["name"])] = doc
    return docs


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def shutdown_timeout(local_toml):
    default = tomllib.loads((ROOT / "config" / "default.toml").read_text(encoding="utf-8"))
    value = default["dispatch"]["shutdown_timeout_secs"]
    return tomllib.loads(local_toml).get("dispatch", {}).get("shutdown_timeout_secs", value)


def check_kubernetes():
    docs = k8s_docs()
    kinds = {k for k, _ in docs}
    for kind in ["Deployment", "PodDisruptionBudget", "ConfigMap", "Secret", "Service"]:
        check(kind in kinds, f"kubernetes: no {kind}")
    dep = docs[("Deployment", "belofte")]
    spec, pod = dep["spec"], dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    check(spec["replicas"] == 2, "kubernetes: the Deployment has two replicas")
    check(matches(spec["selector"]["matchLabels"], labels), "kubernetes: the Deployment's selector matches its pods")
    pdb = docs[("PodDisruptionBudget", "belofte")]
    check(matches(pdb["spec"]["selector"]["matchLabels"], labels), "kubernetes: the PodDisruptionBudget selects the pods")
    check(pdb["spec"].get("minAvailable") == 1 or pdb["spec"].get("maxUnavailable") == 1, "kubernetes: the PDB keeps one replica up")
    svc = docs[("Service", "belofte")]
    check(matches(svc["spec"]["selector"], labels), "kubernetes: the Service selects the pods")
    (c,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for p in svc["spec"]["ports"]:
        check(p["targetPort"] in ports or p["targetPort"] in ports.values(), f"kubernetes: Service port {p} names a container port")
    check(ports.get("http") == 9464, "kubernetes: the admin listener is port 9464")
    check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "kubernetes: readiness is /readyz")
    check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "kubernetes: liveness is /healthz")
    env = {e["name"]: e for e in c["env"]}
    gid = env.get("BELOFTE__KAFKA__GROUP_INSTANCE_ID", {})
    check(gid.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
          "kubernetes: static membership from the pod name (downward API)")
    config = docs[("ConfigMap", "belofte-config")]
    local = config["data"]["local.toml"]
    try:
        tomllib.loads(local)
    except tomllib.TOMLDecodeError as e:
        check(False, f"kubernetes: belofte-config local.toml is not TOML: {e}")
    timeout = shutdown_timeout(local)
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    grace = pod["terminationGracePeriodSeconds"]
    check(grace >= timeout + pre_stop + 10,
          f"kubernetes: terminationGracePeriodSeconds {grace} >= shutdown_timeout_secs {timeout} + preStop {pre_stop} + 10")
    sc, psc = c["securityContext"], pod["securityContext"]
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) != 0, "kubernetes: non-root")
    check(sc.get("readOnlyRootFilesystem") is True, "kubernetes: read-only root filesystem")
    check(sc.get("allowPrivilegeEscalation") is False, "kubernetes: no privilege escalation")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], "kubernetes: all capabilities dropped")
    res = c["resources"]
    check({"cpu", "memory"} <= set(res["requests"]) and "memory" in res["limits"], "kubernetes: requests and limits")
    check(res["limits"]["memory"].endswith("Mi") and int(res["limits"]["memory"][:-2]) >= 1024,
          "kubernetes: the memory limit leaves room above 1 GiB")
    secrets = {name: set(d.get("stringData", {})) | set(d.get("data", {})) for (k, name), d in docs.items() if k == "Secret"}
    for e in c["env"]:
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            check(ref["key"] in secrets.get(ref["name"], set()), f"kubernetes: Secret {ref['name']} has key {ref['key']}")
    for want in ["BELOFTE__DATABASE__URL", "BELOFTE__EMAIL__SMTP__PASSWORD", "BELOFTE__SMS__TWILIO__AUTH_TOKEN", "BELOFTE__CONSOLE__TOKEN"]:
        check("secretKeyRef" in env.get(want, {}).get("valueFrom", {}), f"kubernetes: {want} comes from the Secret")
    maps = {name: d for (k, name), d in docs.items() if k == "ConfigMap"}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    for v in pod["volumes"]:
        check(v["name"] in mounts, f"kubernetes: volume {v['name']} is mounted")
        cm = v.get("configMap")
        if cm:
            check(cm["name"] in maps, f"kubernetes: ConfigMap {cm['name']} exists")
            for item in cm.get("items", []):
                check(item["key"] in maps.get(cm["name"], {}).get("data", {}), f"kubernetes: {cm['name']} has key {item['key']}")
    check(mounts["config"]["mountPath"] == "/etc/belofte/local.toml" and mounts["config"].get("subPath") == "local.toml",
          "kubernetes: local.toml beside the image's default.toml")
    check(mounts["templates"]["mountPath"] == "/usr/share/belofte/templates", "kubernetes: templates where the image has them")
    # The templates ConfigMap, put back into folders, is templates/ exactly.
    items = next(v for v in pod["volumes"] if v["name"] == "templates")["configMap"]["items"]
    tdata = maps["belofte-templates"]["data"]
    tree = {i["path"]: tdata[i["key"]] for i in items if i["key"] in tdata}
    on_disk = {p.relative_to(ROOT / "templates").as_posix(): p.read_text(encoding="utf-8")
               for p in (ROOT / "templates").rglob("*") if p.is_file() and p.suffix in (".hbs", ".toml")}
    check(tree == on_disk, "kubernetes: the templates ConfigMap and its items are templates/ (run generate-templates.py)")
    check(len(items) == len(tdata), "kubernetes: every templates key is mounted")
    size = sum(len(v.encode()) for v in tdata.values())
    check(size < 900 * 1024, f"kubernetes: the templates ConfigMap ({size} bytes) stays under the 1 MiB limit")
    done("kubernetes")
    return docs, tree


# ------------------------------------------------------------------ compose

def compose_config(compose_bin, *files):
    args = [compose_bin]
    for f in files:
        args += ["-f", str(f)]
    run = subprocess.run(args + ["config", "--format", "json"], capture_output=True, text=True,
                         env={**os.environ, "COMPOSE_PROFILES": ""})
    if not check(run.returncode == 0, f"compose: docker compose config {files}: {run.stderr.strip()}"):
        return {"services": {}}
    return json.loads(run.stdout)


def check_compose(compose_bin):
    base = compose_config(compose_bin, DEPLOY / "compose.yaml")
    services = base["services"]
    missing = [s for s in ["kafka", "kafka-init", "postgres", "mailpit", "belofte-1", "belofte-2", "stories"] if s not in services]
    if not check(not missing, f"compose: services {missing} are missing"):
        return base
    roles = services["kafka"]["environment"].get("KAFKA_PROCESS_ROLES", "")
    check("controller" in roles and "broker" in roles, "compose: Kafka in KRaft mode (broker and controller)")
    check(services["kafka-init"]["depends_on"]["kafka"]["condition"] == "service_healthy", "compose: topics after Kafka is healthy")
    timeout = shutdown_timeout((DEPLOY / "compose" / "local.toml").read_text(encoding="utf-8"))
    ids = set()
    for name in ["belofte-1", "belofte-2"]:
        s = services[name]
        env = s["environment"]
        check(env.get("BELOFTE__DATABASE__URL", "").startswith("postgres://"), f"compose: {name} on PostgreSQL")
        ids.add(env.get("BELOFTE__KAFKA__GROUP_INSTANCE_ID"))
        deps = {k: v["condition"] for k, v in s["depends_on"].items()}
        check(deps.get("postgres") == "service_healthy" and deps.get("mailpit") == "service_healthy"
              and deps.get("kafka-init") == "service_completed_successfully", f"compose: {name} starts after its parts are up")
        check(s.get("read_only") is True, f"compose: {name} has a read-only root filesystem")
        grace = s.get("stop_grace_period", "10s")
        check(grace.endswith("s") and int(grace[:-1]) > timeout, f"compose: {name} stop_grace_period {grace} > {timeout}s")
        mounts = {v["target"]: v for v in s.get("volumes", [])}
        local = mounts.get("/etc/belofte/local.toml", {})
        check(local.get("read_only") is True and pathlib.Path(local.get("source", "")).is_file(),
              f"compose: {name} mounts local.toml read-only")
        check(s["build"]["dockerfile"] == "deploy/Dockerfile", f"compose: {name} is built from deploy/Dockerfile")
    check(len(ids) == 2 and None not in ids, "compose: each instance its own group instance id")
    deps = services["stories"]["depends_on"]
    check(all(deps.get(n, {}).get("condition") == "service_healthy" for n in ["belofte-1", "belofte-2"]),
          "compose: the stories play once both instances are healthy")
    for name, s in services.items():
        for p in s.get("ports", []):
            check(p.get("host_ip") == "127.0.0.1", f"compose: {name} publishes {p.get('published')} on 127.0.0.1 only")
        if "healthcheck" not in s and name not in ("kafka-init", "stories", "belofte-1", "belofte-2"):
            check(False, f"compose: {name} has a healthcheck")
    sqlite = compose_config(compose_bin, DEPLOY / "compose.yaml", DEPLOY / "compose.sqlite.yaml")
    ss = sqlite["services"]
    check("belofte-2" not in ss, "compose.sqlite.yaml: one instance only")
    one = ss.get("belofte-1", {}).get("environment", {})
    check(one.get("BELOFTE__DATABASE__URL", "").startswith("sqlite://"), "compose.sqlite.yaml: belofte-1 on SQLite")
    check(one.get("BELOFTE__KAFKA__GROUP_INSTANCE_ID") is None, "compose.sqlite.yaml: no group instance id for today's binary")
    done("compose")
    return base


# ------------------------------------------------------------------ Dockerfile

def dockerfile_env():
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    joined = text.replace("\\\n", " ")
    lines = [l.strip() for l in joined.splitlines() if l.strip() and not l.strip().startswith("#")]
    froms = [l for l in lines if l.upper().startswith("FROM ")]
    check(len(froms) >= 2, "Dockerfile: multi-stage")
    final = lines[lines.index(froms[-1]):]
    users = [l.split()[1] for l in final if l.upper().startswith("USER ")]
    check(bool(users) and users[-1].split(":")[0] not in ("0", "root"), "Dockerfile: the runtime stage runs as a non-root user")
    check(any(l.startswith("HEALTHCHECK") and "/healthz" in l for l in final), "Dockerfile: HEALTHCHECK on /healthz")
    check(any(l.startswith("COPY") and "config/default.toml" in l for l in final), "Dockerfile: the default config inside")
    check(any(l.startswith("COPY templates") for l in final), "Dockerfile: the templates inside")
    env = {}
    for l in final:
        if l.startswith("ENV "):
            for pair in l[4:].split():
                k, _, v = pair.partition("=")
                env[k] = v
    check(env.get("BELOFTE_CONFIG_DIR") == "/etc/belofte", "Dockerfile: BELOFTE_CONFIG_DIR=/etc/belofte")
    check(env.get("BELOFTE_TEMPLATES_DIR") == "/usr/share/belofte/templates", "Dockerfile: the templates folder")
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    check({".git", "target/"} <= set(ignore), ".dockerignore: .git and target/")
    done("Dockerfile")
    return env


# ------------------------------------------------------------------ alerts and dashboard

def check_alerts():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "belofte.rules.yml").read_text(encoding="utf-8"))
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((DEPLOY / "prometheus" / "belofte.rules.test.yml").read_text(encoding="utf-8"))
    fired, quiet = set(), set()
    for t in tests["tests"]:
        for a in t.get("alert_rule_test", []):
            (fired if a.get("exp_alerts") else quiet).add(a["alertname"])
    for want in ["OutboxOverdue", "OutboxGrowing", "ChannelPaused", "ConsumerLag", "DeadLetters", "RenderFailures", "NoEvents"]:
        check(f"Belofte{want}" in alerts, f"alerts: Belofte{want} is defined")
    for a in sorted(alerts):
        check(a in fired, f"alerts: a test where {a} fires")
        check(a in quiet, f"alerts: a test where {a} stays quiet")
    done("alerts")


def check_dashboard():
    d = json.loads((DEPLOY / "grafana" / "belofte.json").read_text(encoding="utf-8"))
    panels = d["panels"]
    ids = [p["id"] for p in panels]
    check(len(ids) == len(set(ids)), "dashboard: unique panel ids")
    cells = {}
    for p in panels:
        g = p["gridPos"]
        check(g["x"] + g["w"] <= 24, f"dashboard: panel {p['title']!r} fits the width")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                check((x, y) not in cells, f"dashboard: {p['title']!r} overlaps {cells.get((x, y))!r}")
                cells[(x, y)] = p["title"]
        for t in p.get("targets", []):
            check(t.get("refId") and t.get("datasource", {}).get("uid") == "${datasource}", f"dashboard: {p['title']!r} target")
    names = [v["name"] for v in d["templating"]["list"]]
    check("datasource" in names and "instance" in names, "dashboard: data source and instance variables")
    check(d.get("uid") == "belofte", "dashboard: a stable uid")
    done("dashboard")


# ------------------------------------------------------------------ the binary

def image_layout(tmp, local_toml, templates=None):
    """The image's /etc/belofte and /usr/share/belofte/templates, under `tmp`."""
    etc = tmp / "etc" / "belofte"
    etc.mkdir(parents=True)
    shutil.copy(ROOT / "config" / "default.toml", etc / "default.toml")
    (etc / "local.toml").write_text(local_toml, encoding="utf-8")
    tdir = tmp / "usr" / "share" / "belofte" / "templates"
    if templates is None:
        shutil.copytree(ROOT / "templates", tdir)
    else:
        for path, text in templates.items():
            (tdir / path).parent.mkdir(parents=True, exist_ok=True)
            (tdir / path).write_text(text, encoding="utf-8")
    return etc, tdir


def clean_env(extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELOFTE")}
    env.update(extra)
    return env


def belofte_check(binary, what, etc, tdir, env):
    run = subprocess.run([binary, "check", "--config", str(etc), "--templates", str(tdir)],
                         capture_output=True, text=True, env=clean_env(env), timeout=120)
    check(run.returncode == 0, f"binary: belofte check with the {what} configuration: {run.stderr.strip()[-400:]}")
    return run


def not_yet(binary, what, etc, tdir, env, full):
    """Whether today's binary still refuses the settings of NOT_YET (a note, not a failure)."""
    for key, meaning in NOT_YET.items():
        if key not in full:
            continue
        run = subprocess.run([binary, "check", "--config", str(etc), "--templates", str(tdir)],
                             capture_output=True, text=True, env=clean_env({**env, key: full[key]}), timeout=120)
        state = "still refuses" if run.returncode != 0 else "now ACCEPTS (update the README's Deployment notes)"
        print(f"check_kit: note: today's binary {state} {key} = {meaning} ({what})")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None, ""


def check_binary(binary, docs, tree, compose, image_env):
    with tempfile.TemporaryDirectory() as t:
        tmp = pathlib.Path(t)
        # Compose: the image, its local.toml, belofte-1's variables.
        c_env = {k: str(v) for k, v in compose["services"]["belofte-1"]["environment"].items() if v is not None}
        etc, tdir = image_layout(tmp / "compose", (DEPLOY / "compose" / "local.toml").read_text(encoding="utf-8"))
        today = {k: v for k, v in {**image_env, **c_env}.items() if k not in NOT_YET and k.startswith("BELOFTE")}
        belofte_check(binary, "compose", etc, tdir, today)
        not_yet(binary, "compose", etc, tdir, today, c_env)
        # Kubernetes: the ConfigMaps as mounted, the Deployment's variables with the Secret's values.
        dep = docs[("Deployment", "belofte")]["spec"]["template"]["spec"]["containers"][0]
        secret = docs[("Secret", "belofte")]["stringData"]
        k_env = {}
        for e in dep["env"]:
            ref = e.get("valueFrom", {})
            if "value" in e:
                k_env[e["name"]] = e["value"]
            elif "secretKeyRef" in ref:
                k_env[e["name"]] = secret[ref["secretKeyRef"]["key"]]
            elif "fieldRef" in ref:
                k_env[e["name"]] = "belofte-5d8f7c9b4-x2k7q"
        local = docs[("ConfigMap", "belofte-config")]["data"]["local.toml"]
        etc, tdir = image_layout(tmp / "k8s", local, tree)
        today = {k: v for k, v in {**image_env, **k_env}.items() if k not in NOT_YET and k.startswith("BELOFTE")}
        belofte_check(binary, "Kubernetes", etc, tdir, today)
        not_yet(binary, "Kubernetes", etc, tdir, today, k_env)
        # The image's command on SQLite (compose.sqlite.yaml), on loopback: no broker there.
        etc, tdir = image_layout(tmp / "run", (DEPLOY / "compose" / "local.toml").read_text(encoding="utf-8"))
        data = tmp / "run" / "var" / "lib" / "belofte"
        data.mkdir(parents=True)
        port = free_port()
        env = {
            **image_env,
            "BELOFTE_CONFIG_DIR": str(etc),
            "BELOFTE_TEMPLATES_DIR": str(tdir),
            "BELOFTE__HTTP__LISTEN": f"127.0.0.1:{port}",
            "BELOFTE__KAFKA__BROKERS": f"127.0.0.1:{free_port()}",
            "BELOFTE__DATABASE__URL": f"sqlite://{data}/data/belofte.db",
        }
        log = open(tmp / "run.log", "w")
        proc = subprocess.Popen([binary, "run"], cwd=data, env=clean_env(env), stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            status = None
            while time.monotonic() < deadline and proc.poll() is None:
                status, _ = get(base + "/healthz")
                if status == 200:
                    break
                time.sleep(0.2)
            check(status == 200, "binary: /healthz answers 200 (the image's HEALTHCHECK)")
            status, body = get(base + "/readyz")
            check(status == 503 and "kafka" in body, f"binary: /readyz is 503 without a broker ({status} {body.strip()})")
            status, body = get(base + "/metrics")
            for name in ["belofte_outbox_oldest_seconds", "belofte_last_event_timestamp_seconds", "belofte_render_failures_total"]:
                check(status == 200 and f"# TYPE {name} " in body, f"binary: /metrics serves {name}")
            check((data / "data" / "belofte.db").exists(), "binary: the relative data/ path lands in /var/lib/belofte")
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = None
            took = time.monotonic() - started
            grace = docs[("Deployment", "belofte")]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            check(code == 0 and took < grace, f"binary: SIGTERM stops it cleanly within the grace period (exit {code}, {took:.1f}s)")
            print(f"check_kit: belofte run in the image layout: healthy, not ready without a broker, stopped in {took:.1f}s")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
            if failures:
                print((tmp / "run.log").read_text(encoding="utf-8")[-2000:], file=sys.stderr)
    done("binary")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--compose", required=True, help="a docker compose v2 binary (only `config` is used)")
    ap.add_argument("--bin", help="the belofte binary; without it the binary checks are skipped")
    args = ap.parse_args()
    docs, tree = check_kubernetes()
    compose = check_compose(args.compose)
    image_env = dockerfile_env()
    check_alerts()
    check_dashboard()
    if args.bin:
        check_binary(str(pathlib.Path(args.bin).resolve()), docs, tree, compose, image_env)
    if failures:
        for f in failures:
            print(f"check_kit: FAILED: {f}", file=sys.stderr)
        sys.exit(1)
    print("check_kit: all consistent")


if __name__ == "__main__":
    main()
