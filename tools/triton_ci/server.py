"""CI STAND-IN Triton server for tests and benchmarks: the real `tritonserver` 2.51 binary of the
`nvidia-pytriton==0.7.0` wheel, on free 127.0.0.1 ports, in explicit model-control mode.

That build has only the python backend, so `backends/onnxruntime/` gets a *copy* (links are refused)
of tools/triton_ci/onnxruntime/model.py, which serves `fusionrt triton-export` repositories unchanged.
The server runs from its own venv (.venv-triton, made by tools/triton_ci/make_venv.sh: numpy<2) with
the interpreter's libpython directory on LD_LIBRARY_PATH. `stop()` ends it with SIGTERM; close every
client first, or the server waits out --exit-timeout-secs for open connections.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER_VENV = ROOT / ".venv-triton"
STAND_IN = Path(__file__).resolve().parent / "onnxruntime" / "model.py"
EXIT_TIMEOUT_S = 3
READY_TIMEOUT_S = 60.0
KILL_TIMEOUT_S = 5.0  # SIGKILLed processes of the group have this long to disappear from /proc


class ServerUnavailable(RuntimeError):
    """The stand-in server cannot run on this machine (its wheel did not install); the message says why."""


def server_venv(venv: Path = SERVER_VENV, *, create: bool = True) -> Path:
    """The server venv, made by make_venv.sh when missing (and `create`); ServerUnavailable with the reason."""
    if not (venv / ".installed").is_file() and create and not (venv / ".failed").is_file():
        subprocess.run(["bash", str(Path(__file__).with_name("make_venv.sh")), str(venv)], check=False)
    if (venv / ".installed").is_file():
        return venv
    if (venv / ".failed").is_file():
        raise ServerUnavailable((venv / ".failed").read_text().strip())
    raise ServerUnavailable(f"no Triton server venv at {venv}; run `make triton-venv`")


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class TritonServer:
    """One tritonserver process over `repository`, loading `models` at start (explicit mode)."""

    def __init__(self, repository: Path, *, models: tuple[str, ...] = (), venv: Path = SERVER_VENV) -> None:
        self.repository = Path(repository)
        self.models = models
        self.venv = server_venv(venv)
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        self.process: subprocess.Popen | None = None
        self.left_behind: list[str] = []  # what the last stop() found still running after the server exited
        self._work = Path(tempfile.mkdtemp(prefix="fusionrt-triton-"))
        self.log_path = self._work / "server.log"

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> TritonServer:
        python = self.venv / "bin" / "python"
        info = json.loads(subprocess.check_output([str(python), "-c", _PROBE], text=True))
        package = Path(info["pytriton"]) / "tritonserver"
        backends = self._work / "backends"
        if not backends.is_dir():  # a restart on the same ports reuses them
            shutil.copytree(package / "backends" / "python", backends / "python")
            shutil.copy2(package / "python_backend_stubs" / info["version"] / "triton_python_backend_stub",
                         backends / "python")  # fmt: skip
            (backends / "onnxruntime").mkdir()
            shutil.copy2(STAND_IN, backends / "onnxruntime" / "model.py")
        # The copied stub and backend find their bundled libraries (libcudart...) through LD_LIBRARY_PATH.
        libraries = [info["libdir"], str(Path(info["site"]) / "nvidia_pytriton.libs"), os.environ.get("LD_LIBRARY_PATH")]
        env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(filter(None, libraries)),
               "PYTHONPATH": info["site"], "PATH": f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
        command = [
            str(package / "bin" / "tritonserver"), f"--model-repository={self.repository}",
            "--model-control-mode=explicit", *(f"--load-model={m}" for m in self.models),
            f"--backend-directory={backends}", "--http-address=127.0.0.1", f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}", "--allow-metrics=false",
            f"--exit-timeout-secs={EXIT_TIMEOUT_S}", "--strict-readiness=true",
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://{self.http}/v2/health/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"tritonserver was not ready within {READY_TIMEOUT_S:g} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after the exit timeout and a margin; the exit code (None: never started).
        Processes of the server still running after it exited are listed in `left_behind`, then killed."""
        process, self.process = self.process, None
        code = None
        if process is not None:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            try:
                code = process.wait(timeout=EXIT_TIMEOUT_S + 10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                code = process.wait()
            self.left_behind = self.leftover_processes()
            if self.left_behind:  # python stubs a crashed server left (same process group): reaped, but reported
                _kill_group(process.pid)
        return code

    def kill(self) -> None:
        """SIGKILL the server and its python stubs at once: a crashed server, for outage tests. Returns
        once they are gone: a stub killed with the server may take a moment to exit after the server has."""
        process, self.process = self.process, None
        if process is not None:
            _kill_group(process.pid)
            process.wait()
            deadline = time.monotonic() + KILL_TIMEOUT_S
            while self.leftover_processes() and time.monotonic() < deadline:
                time.sleep(0.05)

    def leftover_processes(self) -> list[str]:
        """Command lines of processes still running from this server's folders (server, python stubs)."""
        found = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:  # the process ended while being read
                continue
            if str(self._work) in text:
                found.append(text.strip())
        return found

    def cleanup(self) -> None:
        shutil.rmtree(self._work, ignore_errors=True)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self.cleanup()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:  # nothing left in the group
        pass


_PROBE = """
import json, sys, sysconfig, pytriton, site
print(json.dumps({"pytriton": pytriton.__path__[0], "libdir": sysconfig.get_config_var("LIBDIR"),
                  "version": f"{sys.version_info[0]}.{sys.version_info[1]}", "site": site.getsitepackages()[0]}))
"""
