#!/usr/bin/env python3
"""Run the README's walk-through against a server started like `make run`.

    python3 scripts/readme/check.py [PAGE ...]   (what `make readme` runs)

Every ```sh / ```bash block of the pages (README.md, then docs/tour.md,
which continues its walk-through) runs, in order, in one bash session
(`set -Eeuo pipefail`), unless the line before its fence is a
`<!-- not checked ... -->` comment. A block is cut into steps: the lines up to
a comment that starts with an HTTP status (`# 201 {...}`), whose following
`#` lines continue it. For each step the checker asserts that

- the last curl of the step answered that status, and every earlier curl of
  the step a 2xx (a step without a status comment: every curl a 2xx);
- every `"field":value` pair shown in the comment with a literal value (not
  `…`) occurs in that answer's body, byte for byte;
- every `Header-Name: value` named before the comment's first `{` is among
  that answer's headers (case-insensitive);
- every other command succeeds (`set -e`; curl exits 0).

The server is started as `make run` starts it: `scripts/db.sh start` prints
DATABASE_URL, then `billing-ledger migrate`, `billing-ledger shops seed-demo`
and `billing-ledger serve`, on a free loopback port (BIND_ADDR) with the
ADMIN_API_KEY the walk-through sets. The walk-through's one line
`BASE=http://127.0.0.1:8080` is rewritten to that port; no other line may
name port 8080. The server is stopped on exit (only the process started
here). BIN overrides the binary (default target/debug/billing-ledger).

Prints every step with the answer; exits 1 on the first failure, naming the
block and README line, with the end of the server's log.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASE_LINE = "BASE=http://127.0.0.1:8080"
SKIP_MARK = "<!-- not checked"
STATUS_RE = re.compile(r"^#\s*(\d{3})\b")
FENCE_RE = re.compile(r"^```\s*([A-Za-z0-9_+-]*)\s*$")
# "key":value with a literal value; values holding "…" are placeholders.
PAIR_RE = re.compile(r'"[A-Za-z0-9_]+":(?:"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|true|false|null|\[\]|\{\})')
HEADER_RE = re.compile(r"\b([A-Z][A-Za-z0-9]*(?:-[A-Z][A-Za-z0-9]*)+): (\"[^\"]*\"|[^\s,;]+)")
RUN_TIMEOUT = int(os.environ.get("README_TIMEOUT", "180"))  # seconds for the whole walk-through


class Failure(Exception):
    pass


@dataclass
class Step:
    block: int
    line: int  # README line of the step's first code line
    code: list[tuple[int, str]]  # (README line, text)
    status: int | None = None
    pairs: list[str] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)
    file: str = "README.md"

    def where(self) -> str:
        return f"block {self.block}, {self.file} line {self.line}"

    def title(self) -> str:
        for _, text in self.code:
            if text.lstrip().startswith("curl") or "$(curl" in text:
                return text.strip()
        return next(t.strip() for _, t in self.code if t.strip() and not t.lstrip().startswith("#"))


def parse(readme: Path, block_no: int = 0) -> list[Step]:
    """The steps of `readme`, its blocks numbered on from `block_no`."""
    lines = readme.read_text().split("\n")
    steps: list[Step] = []
    i = 0
    prev = ""  # previous non-blank line outside blocks
    while i < len(lines):
        m = FENCE_RE.match(lines[i])
        if not m:
            if lines[i].strip():
                prev = lines[i].strip()
            i += 1
            continue
        lang = m.group(1)
        start = i
        i += 1
        body: list[tuple[int, str]] = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append((i + 1, lines[i]))
            i += 1
        if i == len(lines):
            raise Failure(f"{readme} line {start + 1}: unclosed code fence")
        i += 1
        skipped = prev.startswith(SKIP_MARK)
        prev = ""
        if lang not in ("sh", "bash") or skipped:
            continue
        block_no += 1
        steps.extend(split_block(block_no, body))
    if not steps:
        raise Failure(f"{readme}: no ```sh blocks found")
    name = str(readme.relative_to(ROOT)) if readme.is_relative_to(ROOT) else str(readme)
    for s in steps:
        s.file = name
    return steps


def split_block(block: int, body: list[tuple[int, str]]) -> list[Step]:
    steps: list[Step] = []
    code: list[tuple[int, str]] = []
    j = 0
    while j < len(body):
        lineno, text = body[j]
        m = STATUS_RE.match(text)
        if not m:
            code.append((lineno, text))
            j += 1
            continue
        comment = [text]
        j += 1
        while j < len(body) and body[j][1].startswith("#") and not STATUS_RE.match(body[j][1]):
            comment.append(body[j][1])
            j += 1
        if not any(t.strip() and not t.lstrip().startswith("#") for _, t in code):
            raise Failure(f"block {block}, README line {lineno}: a status comment without a command before it")
        steps.append(make_step(block, code, int(m.group(1)), " ".join(c.lstrip("#").strip() for c in comment)))
        code = []
    if any(t.strip() and not t.lstrip().startswith("#") for _, t in code):
        steps.append(make_step(block, code, None, ""))
    return steps


def make_step(block: int, code: list[tuple[int, str]], status: int | None, comment: str) -> Step:
    first = next(n for n, t in code if t.strip() and not t.lstrip().startswith("#"))
    brace = comment.find("{")
    head = comment if brace < 0 else comment[:brace]
    pairs = [p for p in PAIR_RE.findall(comment) if "…" not in p]
    headers = [f"{name}: {value}" for name, value in HEADER_RE.findall(head)]
    return Step(block, first, code, status, pairs, headers)


PRELUDE = r"""
set -Eeuo pipefail
__where="setup"
__fail() { printf '\n@@FAIL %s: %s\n' "$__where" "$*" >&2; exit 1; }
trap 'printf "\n@@ERR %s %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR
__step() {
  __where=$1
  : > "$__D/statuses"; : > "$__D/body"; : > "$__D/headers"
  printf '\n@@STEP %s\n' "$2" >&2
}
# curl as typed, plus: a time limit, the answer's headers and body kept for
# the checks below, its status appended to the step's list.
curl() {
  local h rc=0
  h=$(mktemp "$__D/h.XXXXXX")
  command curl --max-time 30 -D "$h" "$@" | tee "$__D/body" || rc=$?
  awk '/^HTTP\//{c=$2} END{print (c == "" ? "none" : c)}' "$h" >> "$__D/statuses"
  mv "$h" "$__D/headers"
  return "$rc"
}
__codes() { mapfile -t __c < "$__D/statuses"; }
__expect() {  # STATUS PAIRS HEADERS "field":value… [-- Header: value…]
  local want=$1 npairs=$2 nheaders=$3 mode=body p n last; shift 3
  __codes; n=${#__c[@]}
  [ "$n" -gt 0 ] || __fail "the comment says $want, but no curl ran"
  for ((k = 0; k < n - 1; k++)); do
    [[ ${__c[k]} == 2?? ]] || __fail "an earlier curl of this step answered ${__c[k]}"
  done
  last=${__c[n-1]}
  [ "$last" = "$want" ] || __fail "expected HTTP $want, got $last"
  for p in "$@"; do
    if [ "$p" = -- ]; then mode=header; continue; fi
    if [ "$mode" = body ]; then
      grep -qF -- "$p" "$__D/body" || __fail "HTTP $last, but the answer lacks $p"
    else
      tr -d '\r' < "$__D/headers" | grep -qiF -- "$p" || __fail "HTTP $last, but no header $p"
    fi
  done
  printf '\n@@OK HTTP %s, %s field(s) and %s header(s) as shown\n' "$last" "$npairs" "$nheaders" >&2
}
__expect_2xx() {
  __codes
  for c in "${__c[@]}"; do [[ $c == 2?? ]] || __fail "curl answered $c (no status comment: 2xx expected)"; done
  if [ ${#__c[@]} -eq 0 ]; then printf '\n@@OK no curl; every command succeeded\n' >&2
  else printf '\n@@OK %s curl(s) answered 2xx\n' "${#__c[@]}" >&2; fi
}
"""


def script(steps: list[Step], base: str) -> tuple[str, dict[int, tuple[Step, int]]]:
    """The walk-through as one bash script, and script line -> (step, README line)."""
    out = PRELUDE.split("\n")
    origin: dict[int, tuple[Step, int]] = {}
    seen_base = 0
    for s in steps:
        out.append(f"__step {shlex.quote(s.where())} {shlex.quote(s.where() + ': ' + s.title())}")
        for n, text in s.code:
            if text.strip() == BASE_LINE:
                text = f"BASE={base}"
                seen_base += 1
            elif ":8080" in text:
                raise Failure(f"block {s.block}, README line {n}: use $BASE, not a fixed port")
            out.append(text)
            origin[len(out)] = (s, n)
        if s.status is None:
            out.append("__expect_2xx")
        else:
            args = [str(s.status), str(len(s.pairs)), str(len(s.headers)), *s.pairs]
            if s.headers:
                args += ["--", *s.headers]
            out.append("__expect " + " ".join(shlex.quote(a) for a in args))
    if seen_base != 1:
        raise Failure(f"the walk-through must set `{BASE_LINE}` exactly once (found {seen_base})")
    return "\n".join(out) + "\n", origin


def admin_key(steps: list[Step]) -> str:
    for s in steps:
        for _, text in s.code:
            m = re.match(r"^(?:export\s+)?ADMIN_API_KEY=(\S+)\s*$", text.strip())
            if m:
                return m.group(1).strip("'\"")
    raise Failure("the walk-through sets no ADMIN_API_KEY")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    """The server gets SIGTERM if this checker dies without cleaning up."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Server:
    def __init__(self, binary: Path, admin: str, workdir: Path) -> None:
        self.binary = binary
        self.admin = admin
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen | None = None
        self.log = None
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        db = subprocess.run(
            [str(ROOT / "scripts/db.sh"), "start"], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        if db.returncode != 0 or not db.stdout.strip():
            raise Failure("scripts/db.sh start failed")
        env = dict(os.environ)
        env.update(
            DATABASE_URL=db.stdout.strip(),
            BIND_ADDR=f"127.0.0.1:{self.port}",
            ADMIN_API_KEY=self.admin,
            # As the walk-through starts it: its receiver is on loopback,
            # and its contract is billed within seconds.
            ENDPOINT_ALLOWED_HOSTS="127.0.0.1",
            BILLING_INTERVAL="2s",
        )
        log = self.log = open(self.log_path, "w")
        # Exactly what `make run` runs.
        for args in (["migrate"], ["shops", "seed-demo"]):
            if subprocess.run([str(self.binary), *args], cwd=ROOT, env=env, stdout=log, stderr=log).returncode:
                raise Failure(f"billing-ledger {' '.join(args)} failed (see the log below)")
        log.flush()
        self.proc = subprocess.Popen(
            [str(self.binary), "serve"], cwd=ROOT, env=env, stdout=log, stderr=log,
            stdin=subprocess.DEVNULL, preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure(f"billing-ledger serve exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.base}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise Failure("billing-ledger serve was not ready within 60 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # only the server started here
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log is not None:
            self.log.close()

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def run(steps: list[Step], server: Server, workdir: Path) -> None:
    text, origin = script(steps, server.base)
    path = workdir / "walkthrough.sh"
    path.write_text(text)
    scratch = workdir / "cwd"
    scratch.mkdir()
    # A fresh terminal's environment: nothing the walk-through does not set itself.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TERM", "TMPDIR", "USER")}
    env["__D"] = str(workdir)
    proc = subprocess.Popen(
        ["bash", str(path)], cwd=scratch, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, text=True, start_new_session=True, preexec_fn=die_with_parent,
    )
    timed_out = threading.Event()

    def watchdog() -> None:
        timed_out.set()
        os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(RUN_TIMEOUT, watchdog)
    timer.start()
    try:
        follow(proc, steps, origin, timed_out)
    finally:
        timer.cancel()
        if proc.poll() is None:  # stopped early: end the walk-through's own process group
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def follow(
    proc: subprocess.Popen, steps: list[Step], origin: dict[int, tuple[Step, int]], timed_out: threading.Event
) -> None:
    fail = None
    errs: list[str] = []  # innermost first: a function's line, then its caller's
    step_no = 0
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.rstrip("\n")
        if line.startswith("@@STEP "):
            step_no += 1
            print(f"\n[{step_no}/{len(steps)}] {line[7:]}", flush=True)
        elif line.startswith("@@OK "):
            print(f"  ok: {line[5:]}", flush=True)
        elif line.startswith("@@FAIL "):
            fail = fail or line[7:]
        elif line.startswith("@@ERR "):
            lineno, _, command = line[6:].partition(" ")
            src = origin.get(int(lineno)) if lineno.isdigit() else None
            errs.append(
                f"block {src[0].block}, README line {src[1]}: `{command}` failed"
                if src else f"`{command}` failed (walk-through script line {lineno})"
            )
        elif line:
            print(f"  | {line}", flush=True)
    rc = proc.wait()
    if timed_out.is_set():
        raise Failure(f"the walk-through took more than {RUN_TIMEOUT} s (stopped in the step above)")
    if rc != 0:
        err = None
        if errs:
            err = errs[-1]
            if errs[0].split(":")[0] != errs[-1].split(":")[0]:
                err += f" (inside: {errs[0]})"
        raise Failure(fail or err or f"the walk-through exited with {rc}")
    if step_no != len(steps):
        raise Failure(f"only {step_no} of {len(steps)} steps ran")


def main() -> int:
    # The README's walk-through, then the tour that continues it in the
    # same session.
    pages = [Path(a).resolve() for a in sys.argv[1:]] or [ROOT / "README.md", ROOT / "docs" / "tour.md"]
    binary = Path(os.environ.get("BIN", "target/debug/billing-ledger"))
    if not binary.is_absolute():
        binary = ROOT / binary
    started = time.monotonic()
    server = None
    workdir = Path(tempfile.mkdtemp(prefix="readme-check."))
    ok = False
    try:
        for tool in ("bash", "curl", "openssl", "awk"):
            if not shutil.which(tool):
                raise Failure(f"{tool} is not installed")
        if not os.access(binary, os.X_OK):
            raise Failure(f"{binary} not found (make build, or set BIN)")
        steps: list[Step] = []
        for page in pages:
            steps += parse(page, steps[-1].block if steps else 0)
        server = Server(binary, admin_key(steps), workdir)
        script(steps, server.base)  # refuse a malformed README before starting anything
        print(f"{' + '.join(s.file for s in {s.file: s for s in steps}.values())}: {len(steps)} steps in {steps[-1].block} blocks; server {binary} on {server.base}", flush=True)
        server.start()
        run(steps, server, workdir)
        ok = True
    except Failure as e:
        print(f"\nFAIL: {e}", file=sys.stderr)
        if server is not None and server.log_path.exists():
            print(f"--- end of the server's log ({server.log_path}) ---\n{server.log_tail()}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
    finally:
        if server is not None:
            server.stop()
        if ok or server is None or not server.log_path.exists():
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"(kept {workdir})", file=sys.stderr)
    if ok:
        print(f"\nwalk-through (README.md, docs/tour.md): all {len(steps)} steps passed in {time.monotonic() - started:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    def terminated(*_):
        raise Failure("terminated (SIGTERM)")

    signal.signal(signal.SIGTERM, terminated)
    sys.exit(main())
