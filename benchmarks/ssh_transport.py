"""The ssh runner's transport: the system OpenSSH client (one connection per command, or multiplexed
with ControlMaster as the runner uses it) against paramiko (one connection in this process).

On the loopback board of the test suite (Debian's sshd on 127.0.0.1, throwaway keys), in interleaved
rounds: a session of 20 short commands (`true`; what the runner's set-up steps look like) from
connecting to the last answer, and sending MobileNetV2's 14 MB .onnx (a tar stream into `tar -x` for
OpenSSH, SFTP for paramiko). Each number is the median over rounds.

    python benchmarks/ssh_transport.py [--rounds 5 --commands 20]

Needs sshd (apt-get install openssh-server) and paramiko (the dev extra). Writes
benchmarks/results/ssh_transport.json and .md.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import MOBILENET, ROOT, cpu_name, load_average, write_results

sys.path.insert(0, str(ROOT / "tests"))
from ssh_board import LoopbackBoard, sshd_binary  # noqa: E402

PAYLOAD = MOBILENET / "mobilenet_v2.onnx"


def openssh_argv(board: LoopbackBoard, control: Path | None) -> list[str]:
    argv = ["ssh", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={board.known_hosts}", "-i", str(board.user_key),
            "-p", str(board.port)]
    if control:
        argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control}/%C", "-o", "ControlPersist=30"]
    return argv + ["root@127.0.0.1"]


def openssh_session(board: LoopbackBoard, commands: int, multiplexed: bool) -> dict:
    control = Path(tempfile.mkdtemp(prefix="ssh-bench-")) if multiplexed else None
    argv = openssh_argv(board, control)
    start = time.perf_counter()
    for _ in range(commands):
        subprocess.run([*argv, "true"], check=True)
    session = time.perf_counter() - start
    target = board.home / "payload"
    start = time.perf_counter()
    with subprocess.Popen(["tar", "-C", str(PAYLOAD.parent), "-cf", "-", PAYLOAD.name], stdout=subprocess.PIPE) as tar:
        subprocess.run([*argv, f"mkdir -p {target} && tar -C {target} -xf -"], stdin=tar.stdout, check=True)
    copy = time.perf_counter() - start
    if control:
        subprocess.run([*argv[:-1], "-O", "exit", "root@127.0.0.1"], capture_output=True)
        shutil.rmtree(control, ignore_errors=True)
    return {"session_s": session, "copy_s": copy}


def paramiko_session(board: LoopbackBoard, commands: int) -> dict:
    import paramiko

    start = time.perf_counter()
    client = paramiko.SSHClient()
    client.load_host_keys(str(board.known_hosts))
    client.connect("127.0.0.1", board.port, "root", key_filename=str(board.user_key), look_for_keys=False,
                   allow_agent=False)
    for _ in range(commands):
        _, out, _ = client.exec_command("true")
        out.channel.recv_exit_status()
    session = time.perf_counter() - start
    start = time.perf_counter()
    client.exec_command(f"mkdir -p {board.home}/payload")[1].channel.recv_exit_status()
    with client.open_sftp() as sftp:
        sftp.put(str(PAYLOAD), f"{board.home}/payload/{PAYLOAD.name}")
    copy = time.perf_counter() - start
    client.close()
    return {"session_s": session, "copy_s": copy}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--commands", type=int, default=20)
    args = parser.parse_args()
    clients = {
        "OpenSSH, a connection per command": lambda b: openssh_session(b, args.commands, False),
        "OpenSSH, multiplexed (the runner)": lambda b: openssh_session(b, args.commands, True),
        "paramiko 5.1, one connection": lambda b: paramiko_session(b, args.commands),
    }
    samples = {name: [] for name in clients}
    with tempfile.TemporaryDirectory(prefix="ssh-bench-") as root:
        board = LoopbackBoard(Path(root) / "board").start(sshd_binary())
        try:
            for _ in range(args.rounds):
                for name, run in clients.items():
                    samples[name].append(run(board))
                    shutil.rmtree(board.home / "payload", ignore_errors=True)
        finally:
            board.stop()
    rows = {name: {key: statistics.median(s[key] for s in runs) for key in ("session_s", "copy_s")}
            for name, runs in samples.items()}
    result = {"cpu": cpu_name(), "load": load_average(), "rounds": args.rounds, "commands": args.commands,
              "payload_bytes": PAYLOAD.stat().st_size, "rows": rows, "samples": samples}
    lines = [f"# ssh transport: OpenSSH vs paramiko on the loopback board\n",
             f"{cpu_name()}, load {load_average()}; median of {args.rounds} interleaved rounds.\n",
             f"| client | {args.commands} commands (connect to last answer) | send {PAYLOAD.stat().st_size / 1e6:.1f} MB |",
             "| --- | --- | --- |"]
    lines += [f"| {name} | {r['session_s'] * 1000:.0f} ms | {r['copy_s'] * 1000:.0f} ms |" for name, r in rows.items()]
    write_results("ssh_transport", result, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
