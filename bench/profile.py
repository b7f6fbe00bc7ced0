"""CPU profile of a process under benchmark: py-spy samples it, and the top frames go to the report.

`Profiler(pid, path)` runs `py-spy record` on the process (every thread, idle ones left out)
while it is started and stopped around a measured window; `top_frames(path)` reads the
collapsed stacks it wrote and ranks functions by the samples they were on the CPU in:
*self* (the innermost frame) and *total* (anywhere on the stack, once per sample).
"""
from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

RATE = 200  # samples per second
WRAPPER_SHARE = 0.6  # a frame under more of the samples than this is the loop or the command line
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]+)(?::\d+)?\)$")


def py_spy() -> str:
    """The py-spy executable next to this interpreter (the bench extras install it), or on the PATH."""
    here = Path(sys.executable).with_name("py-spy")
    found = str(here) if here.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is not installed: pip install -e '.[bench]'")
    return found


class Profiler:
    """py-spy recording one process into `path` (collapsed stacks) between `start` and `stop`."""

    def __init__(self, pid: int, path: Path):
        self.pid, self.path = pid, path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([py_spy(), "record", "--pid", str(self.pid), "--rate", str(RATE), "--format",
                                      "raw", "--output", str(self.path), "--nonblocking", "--threads"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    async def stop(self) -> None:
        """Stop sampling; py-spy writes its file on SIGINT."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, lambda: self.proc.wait(timeout=30))
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if not self.path.exists():
            raise RuntimeError(f"py-spy wrote no profile: {self.proc.stderr.read().decode(errors='replace')[-500:]}")


@dataclass(frozen=True)
class Frame:
    """A function's share of the samples: as the innermost frame (self) and anywhere on the stack (total)."""

    name: str
    self_pct: float
    total_pct: float


def _name(frame: str) -> str:
    """`function (path/to/module.py:12)` as `function (module.py)`; a thread name stays as it is."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    return f"{match['function']} ({Path(match['file']).name})"


def top_frames(path: Path, n: int = 15) -> tuple[int, list[Frame], list[Frame]]:
    """(samples, top n by self, top n by total) of a py-spy raw (collapsed stacks) file."""
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_name(f) for f in stack.split(";")][1:]  # the first is the thread
        if not frames:
            continue
        samples += int(count)
        own[frames[-1]] += int(count)
        for name in set(frames):
            anywhere[name] += int(count)

    def ranked(counter: Counter[str]) -> list[Frame]:
        return [Frame(name, 100 * own[name] / samples, 100 * anywhere[name] / samples)
                for name, _ in counter.most_common(n)]

    by_self = ranked(own)
    # The event loop and the command line sit under most samples: leave them out of the totals.
    for name in [name for name, count in anywhere.items() if count > WRAPPER_SHARE * samples]:
        del anywhere[name]
    return samples, by_self, ranked(anywhere)


def render(title: str, path: Path, n: int = 15) -> str:
    """A Markdown section with the profile's top frames."""
    samples, by_self, by_total = top_frames(path, n)
    lines = [f"### {title}", "", f"{samples} samples at {RATE}/s of every thread (py-spy, idle frames left out).", "",
             "| by self time | self % | total % |", "|---|---|---|"]
    lines += [f"| `{f.name}` | {f.self_pct:.1f} | {f.total_pct:.1f} |" for f in by_self]
    lines += ["", f"| by total time (frames under more than {WRAPPER_SHARE:.0%} of the samples, the event loop and "
                  "the command line, left out) | self % | total % |", "|---|---|---|"]
    lines += [f"| `{f.name}` | {f.self_pct:.1f} | {f.total_pct:.1f} |" for f in by_total]
    return "\n".join(lines) + "\n"
