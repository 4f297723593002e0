"""`make deploy-test`: run docker-compose.yml for real with podman-compose and check replicated serving.

Builds the image, starts the three api replicas (``deploy.replicas``) and HAProxy, has the indexer harvest
and index the demo collection, searches through the proxy, checks every replica serves the same index
version, then kills one replica while clients keep searching and counts failed requests (there must be
none: HAProxy retries a request that fails on the killed replica on another one). Tears everything down
at the end, whatever happened. Prints a JSON summary with the time of each step; exits non-zero on any
failure.

Needs podman and podman-compose and the base images (``deploy/test/stand-in-images.sh`` builds stand-ins
where no registry can be reached). The proxy is published on a free ephemeral port.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "iconosearch-deploytest"
FILES = ["-f", "docker-compose.yml", "-f", "deploy/test/compose.demo.yml"]
BUILD_ARGS = "--network host -v /etc/ssl/certs:/etc/ssl/certs:ro"
REPLICAS = 3
QUERIES = ("a sailing ship", "a map of a harbour", "flowers", "a castle", "a dog", "a musical instrument")


class DeployTestError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _compose(env: dict[str, str], *args: str, check: bool = True, quiet: bool = False) -> str:
    cmd = ["podman-compose", "-p", PROJECT, *FILES, *args]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if not quiet:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        print(f"$ {' '.join(cmd[3 + len(FILES) :])}  → exit {done.returncode}\n{tail}", file=sys.stderr)
    if check and done.returncode != 0:
        raise DeployTestError(f"podman-compose {' '.join(args)} failed with exit {done.returncode}")
    return done.stdout


def _wait(what: str, ok: Any, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if ok():
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise DeployTestError(f"timed out after {timeout:.0f} s waiting for {what}")


def _replica(n: int) -> str:
    return f"{PROJECT}_api_{n}"


def _in_replica(n: int, path: str, timeout: float = 5) -> dict[str, Any]:
    """GET ``path`` from inside replica ``n`` (replicas publish no port; only the proxy does)."""
    code = (
        "import json, urllib.request; "
        f"print(urllib.request.urlopen('http://127.0.0.1:8000{path}', timeout={timeout}).read().decode())"
    )
    done = subprocess.run(
        ["podman", "exec", _replica(n), "python", "-c", code], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise httpx.HTTPError(f"replica {n}: {done.stderr.strip()[-200:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _load_with_a_kill(proxy: str, victim: str, seconds: float = 20.0, clients: int = 4) -> dict[str, Any]:
    """``clients`` threads search through the proxy for ``seconds``; ``victim`` is killed a third in."""
    counts = {"ok": 0, "failed": 0}
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(n: int) -> None:
        with httpx.Client(base_url=proxy, timeout=30) as http:
            i = n
            while time.monotonic() < stop:
                q = QUERIES[i % len(QUERIES)]
                i += 1
                try:
                    r = http.get("/api/search", params={"q": q, "k": 10})
                    good = r.status_code == 200 and len(r.json()["results"]) > 0
                    detail = f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    good, detail = False, f"{type(exc).__name__}: {exc}"
                with lock:
                    counts["ok" if good else "failed"] += 1
                    if not good and len(errors) < 10:
                        errors.append(detail)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    time.sleep(seconds / 3)
    killed_at = time.monotonic()
    subprocess.run(["podman", "kill", victim], check=True, capture_output=True)
    for t in threads:
        t.join()
    return {
        **counts,
        "errors": errors,
        "clients": clients,
        "seconds": seconds,
        "killed": victim,
        "killed_after_s": round(seconds / 3, 1),
        "load_after_kill_s": round(stop - killed_at, 1),
    }


def run() -> dict[str, Any]:
    for tool in ("podman", "podman-compose"):
        if shutil.which(tool) is None:
            raise DeployTestError(f"{tool} is not installed (see ../shared/notes/containers.md)")
    port = _free_port()
    env = {**os.environ, "ICONOSEARCH_PORT": str(port), "API_REPLICAS": str(REPLICAS)}
    env["ICONOSEARCH_RELOAD_INTERVAL_S"] = "5"
    proxy = f"http://127.0.0.1:{port}"
    times: dict[str, float] = {}
    result: dict[str, Any] = {"proxy": proxy, "replicas": REPLICAS, "times_s": times}

    t = time.monotonic()
    _compose(env, "--podman-build-args", BUILD_ARGS, "build", "api")
    times["build"] = round(time.monotonic() - t, 1)
    size = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Size}}", "iconosearch:latest"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    result["image_size_gb"] = round(int(size) / 1e9, 2)
    try:
        t = time.monotonic()
        _compose(env, "up", "-d", "api", "proxy")
        _wait(
            "the proxy and a healthy replica", lambda: httpx.get(f"{proxy}/healthz").status_code == 200, 300
        )
        times["up_to_healthy"] = round(time.monotonic() - t, 1)

        t = time.monotonic()
        _compose(env, "run", "--rm", "--no-deps", "indexer")
        times["harvest_and_index"] = round(time.monotonic() - t, 1)

        t = time.monotonic()
        versions: dict[str, str] = {}

        def all_replicas_on_one_version() -> bool:
            for n in range(1, REPLICAS + 1):
                versions[f"api_{n}"] = str(_in_replica(n, "/readyz").get("index_version"))
            return len(set(versions.values())) == 1 and "None" not in versions.values()

        _wait("every replica to serve the new version", all_replicas_on_one_version, 60)
        times["replicas_agree_after_index"] = round(time.monotonic() - t, 1)
        result["versions"] = versions
        # Each replica loads the text model on its first text query; on a busy machine that outlasts the
        # API's 30 s request timeout (504) while the load goes on: warm each until it answers, so the
        # load test measures serving, not model loading.
        t = time.monotonic()
        for n in range(1, REPLICAS + 1):
            _wait(
                f"replica {n} to answer a text query",
                partial(_in_replica, n, "/api/search?q=warm&k=1", 60),
                600,
            )
        times["first_text_query_all_replicas"] = round(time.monotonic() - t, 1)
        page = httpx.get(f"{proxy}/api/search", params={"q": "a sailing ship", "k": 5}, timeout=30).json()
        result["search_through_proxy"] = [h["caption"] for h in page["results"]]
        if not page["results"]:
            raise DeployTestError("a search through the proxy found nothing")

        load = _load_with_a_kill(proxy, _replica(2))
        result["load"] = load
        if load["failed"]:
            raise DeployTestError(f"{load['failed']} request(s) failed while a replica was killed")
        result["ok"] = True
    finally:
        t = time.monotonic()
        _compose(env, "down", "-v", check=False)
        times["down"] = round(time.monotonic() - t, 1)
    return result


def main() -> None:
    started = time.monotonic()
    try:
        result = run()
    except DeployTestError as exc:
        print(json.dumps({"ok": False, "error": str(exc)}, indent=2))
        sys.exit(1)
    result["total_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
