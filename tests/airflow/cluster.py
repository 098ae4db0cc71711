"""A throw-away multi-process Airflow deployment for tests and benchmarks.

:class:`AirflowCluster` starts ``airflow api-server``, ``scheduler``, ``dag-processor`` and
(for the CeleryExecutor) ``airflow celery worker`` as child processes, each in its own
process group, with:

* its own ``AIRFLOW_HOME`` in a scratch folder,
* a fresh PostgreSQL metadata database (created here, dropped by :meth:`AirflowCluster.stop`),
* a fixed JWT secret / API secret key, the api-server on a free loopback port and the
  execution API URL pointing at it, SimpleAuthManager with a passwords file,
* for Celery: a free Redis database number as broker (flushed at the end) and
  ``db+postgresql`` as result backend,
* the project's ``dags/`` and ``plugins/`` folders and the demo environment variables.

Missing PostgreSQL or Redis raise :class:`ServiceMissing` (the caller FAILS with it).
Used by ``tests/airflow/test_celery.py`` and ``benchmarks/bench_orchestration.py``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
PASSWORD = "admin"

log = logging.getLogger(__name__)


class ServiceMissing(RuntimeError):
    """PostgreSQL or Redis is not reachable."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_admin():
    import psycopg2

    try:
        conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=5)
    except psycopg2.OperationalError as exc:
        raise ServiceMissing(
            f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT} (user {PG_USER}, trust auth): {exc}. "
            "Start it (e.g. `service postgresql start`).") from exc
    conn.autocommit = True
    return conn


def free_redis_db() -> int:
    """The lowest Redis database number (1-15) holding no keys; fails clearly when Redis is down."""
    import redis

    try:
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=3)
        client.ping()
        for db in range(1, 16):
            if redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db).dbsize() == 0:
                return db
    except redis.exceptions.ConnectionError as exc:
        raise ServiceMissing(
            f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT}: {exc}. Start it with "
            "`redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save '' --appendonly no`.") from exc
    raise ServiceMissing(f"no empty Redis database (1-15) at {REDIS_HOST}:{REDIS_PORT}")


@dataclass
class AirflowCluster:
    """Airflow services in child processes; use as a context manager.

    Parameters
    ----------
    home : Path
        Scratch folder: ``AIRFLOW_HOME`` is ``home/airflow``, process logs in ``home/logs``.
    executor : {'CeleryExecutor', 'LocalExecutor'}
    extra_env : dict
        More environment variables (the demo's ``PHANGS_*``).
    parallelism : int
        ``[core] parallelism`` (and Celery worker concurrency). One more than ``casa_slots``
        lets the next CASA task start while the previous task's supervisor is still
        winding down (docs/ORCHESTRATION_OVERHEAD.md).
    casa_slots : int
        Slots of the pool ``casa``.
    """

    home: Path
    executor: str = "CeleryExecutor"
    extra_env: dict[str, str] = field(default_factory=dict)
    parallelism: int = 2
    casa_slots: int = 2
    db_name: str = field(default_factory=lambda: f"phangs_af_{uuid.uuid4().hex[:10]}")
    port: int = field(default_factory=free_port)
    redis_db: int | None = None
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    _token: str | None = None
    _db_created: bool = False

    # -- set-up ---------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _build_env(self) -> dict[str, str]:
        airflow_home = self.home / "airflow"
        airflow_home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        pw = airflow_home / "passwords.json"
        pw.write_text(json.dumps({"admin": PASSWORD}))
        pg = f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.db_name}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update({
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg,
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(pw),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": "phangs-test-api-secret-" + self.db_name,
            "AIRFLOW__API_AUTH__JWT_SECRET": "phangs-test-jwt-secret-" + self.db_name,
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            # the task supervisor notices the exit of its task process only at its next
            # select() timeout, min_heartbeat_interval (default 5 s): 0-5 s of idle executor
            # slot after every task (docs/ORCHESTRATION_OVERHEAD.md)
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            # an idle scheduler loop sleeps this long before it looks for freed slots again
            # (default 1 s: ~0.5 s per task instance; 0.2 s costs ~5 % of a core when idle)
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "OMP_NUM_THREADS": "1",
            "MPLBACKEND": "Agg",
            "CASASITECONFIG": str(ROOT / "plugins" / "phangs_operators" / "casa" / "casasiteconfig.py"),
            "MPLCONFIGDIR": str(self.home / "mplconfig"),
            "CASA_LOG_DIR": str(self.home / "casa_logs"),
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        })
        if self.executor == "CeleryExecutor":
            env.update({
                "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{self.redis_db}",
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.db_name}",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.parallelism),
            })
        env.update(self.extra_env)
        return env

    def airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run one ``airflow`` CLI command in the cluster's environment; raise on failure."""
        proc = subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed ({proc.returncode}):\n"
                               f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        return proc

    def _spawn(self, name: str, *args: str) -> None:
        logf = open(self.home / "logs" / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "airflow", *args], env=self.env,
                                            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        logf.close()

    def start(self, timeout: float = 180) -> AirflowCluster:
        """Create the DB, migrate, create the pool, start the services and wait for health."""
        admin = _pg_admin()
        if self.executor == "CeleryExecutor" and self.redis_db is None:
            self.redis_db = free_redis_db()
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{self.db_name}"')
        admin.close()
        self._db_created = True
        self.env = self._build_env()
        t0 = time.monotonic()
        self.airflow("db", "migrate", timeout=600)
        self.airflow("pools", "set", "casa", str(self.casa_slots), "concurrent CASA processes")
        log.info("metadata DB %s migrated in %.1f s", self.db_name, time.monotonic() - t0)
        self._spawn("api-server", "api-server")
        self._spawn("scheduler", "scheduler")
        self._spawn("dag-processor", "dag-processor")
        if self.executor == "CeleryExecutor":
            self._spawn("celery-worker", "celery", "worker", "--queues", "default,casa",
                        "--concurrency", str(self.parallelism), "--skip-serve-logs")
        self.wait_healthy(timeout)
        return self

    # -- REST -----------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, *, auth: bool = True,
                timeout: float = 30) -> Any:
        """JSON request to the api-server; returns the decoded body, raises HTTPError."""
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def token(self) -> str:
        """A JWT from ``POST /auth/token`` (cached)."""
        if self._token is None:
            out = self.request("POST", "/auth/token", {"username": "admin", "password": PASSWORD}, auth=False)
            self._token = out["access_token"]
        return self._token

    def _check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, n: int = 4000) -> str:
        path = self.home / "logs" / f"{name}.log"
        return path.read_text(errors="replace")[-n:] if path.is_file() else ""

    def wait_healthy(self, timeout: float = 180) -> dict:
        """Poll ``/api/v2/monitor/health`` until metadatabase, scheduler and dag processor are healthy
        (and, for Celery, the worker log says ``ready``)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                last = self.request("GET", "/api/v2/monitor/health", auth=False, timeout=5)
                ok = all((last.get(k) or {}).get("status") == "healthy"
                         for k in ("metadatabase", "scheduler", "dag_processor"))
                if ok and (self.executor != "CeleryExecutor" or " ready." in self.log_tail("celery-worker", 20000)):
                    return last
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
                last = exc
            time.sleep(1)
        raise TimeoutError(f"services not healthy after {timeout} s: {last}\n"
                           + "\n".join(f"--- {n}\n{self.log_tail(n, 1500)}" for n in self.procs))

    def wait_dag(self, dag_id: str, timeout: float = 180) -> dict:
        """Wait until the dag-processor has serialised ``dag_id``; return its REST record."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                return self.request("GET", f"/api/v2/dags/{dag_id}")
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    raise
            time.sleep(1)
        errors = self.request("GET", "/api/v2/importErrors")
        raise TimeoutError(f"DAG {dag_id} not parsed after {timeout} s; import errors: {errors}")

    def trigger(self, dag_id: str, conf: dict, run_id: str | None = None) -> dict:
        """Unpause ``dag_id`` and start a run through ``POST /api/v2/dags/{id}/dagRuns``."""
        self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        body: dict[str, Any] = {"logical_date": None, "conf": conf}
        if run_id:
            body["dag_run_id"] = run_id
        return self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 600, poll: float = 2) -> dict:
        """Poll the run until it is ``success`` or ``failed``; return its REST record."""
        deadline = time.monotonic() + timeout
        run: dict = {}
        while time.monotonic() < deadline:
            self._check_alive()
            run = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                return run
            time.sleep(poll)
        raise TimeoutError(f"run {dag_id}/{run_id} still {run.get('state')} after {timeout} s; "
                           f"task states: {self.task_states(dag_id, run_id)}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        """All task instances (mapped ones included) of a run."""
        out: list[dict] = []
        while True:
            page = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
                                       f"?limit=100&offset={len(out)}")
            out += page["task_instances"]
            if not page["task_instances"] or len(out) >= page["total_entries"]:
                return out

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        try:
            return {f"{t['task_id']}[{t['map_index']}]": t["state"] for t in self.task_instances(dag_id, run_id)}
        except Exception as exc:  # noqa: BLE001 - diagnostics only
            return {"error": repr(exc)}

    # -- tear-down ------------------------------------------------------------------------
    def stop(self, grace: float = 30) -> None:
        """SIGTERM every process group, SIGKILL what is left after ``grace`` s, drop the DB, flush Redis.

        Task processes start their own sessions, so the descendants of every service are
        collected first and killed too if they outlive the grace period.
        """
        import psutil

        descendants: list[psutil.Process] = []
        for p in self.procs.values():
            try:
                descendants += psutil.Process(p.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                pass
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs.values():  # also reap task processes left in the groups
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log.warning("process %s did not exit", p.pid)
        for child in descendants:
            try:
                if child.is_running():
                    child.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(descendants, timeout=10)
        if self._db_created:
            admin = _pg_admin()
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            admin.close()
            self._db_created = False
        if self.redis_db is not None:
            import redis

            redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=self.redis_db).flushdb()

    def __enter__(self) -> AirflowCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def demo_env(demo_root: Path) -> dict[str, str]:
    """The demo's ``PHANGS_*`` variables for a demo root whose simulated data are in ``demo_root/data``."""
    return {
        "PHANGS_DEMO_ROOT": str(demo_root),
        "PHANGS_KEY_DIR": str(ROOT / "include" / "keys"),
        "PHANGS_PRODUCTS_URI": f"file://{demo_root}/products",
        "PHANGS_CATALOG_URL": f"sqlite:///{demo_root}/catalog.db",
    }
