#!/usr/bin/env python3
"""Benchmark dedupe against the tools a user would pick instead, in one run on the same folders.

Usage:
    python bench/run.py [--quick] [--out FILE] [--install-peers] [--repeat N]

Builds (or reuses) two folders with bench/corpus.py: a mixed folder of real photographs, edited copies,
look-alikes and junk, and a camera-like folder of 12 MP JPEGs. On each it runs, as separate processes:

- `dedupe scan --format json` with a fresh store (this checkout's package);
- findimagedupes (Debian package) at its default threshold;
- czkawka (PyPI package `czkawka`, its Rust engine) at its default similarity;
- imagededup PHash at its default max_distance_threshold (10);
- on the camera folder, the decode floor: `djpeg -scale 1/8` over every JPEG on all cores (xargs -P).

Each timing is the best of --repeat runs (wall clock); beside it, the least CPU time (user and system) of the
whole process tree in those runs, which moves far less than the wall clock when other jobs share the machine.
Peak memory is the largest sum of VmRSS over the
whole process tree (the tool and every process it starts), sampled every 20 ms: shared pages count once per
process, and peaks shorter than the sampling interval can be missed. Accuracy is pairwise: every two files
that a tool puts in one group are a predicted pair; true pairs are the files derived from one original (its
copies and itself, from truth.json). Recall per edit kind is the share of copies grouped with their original.

The peers live in their own virtualenv (default /work/peers-venv, --peers-venv) so the project's stays
clean; --install-peers creates it and installs them (and, as root, the Debian packages).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(REPO, "bench", "corpus.py")
DEFAULT_WORK = os.path.join(tempfile.gettempdir(), "dedupe-bench")
DEFAULT_PEERS_VENV = "/work/peers-venv"
DEBIAN_PEERS = ["findimagedupes", "libjpeg-turbo-progs"]
TIMEOUT = 1800  # seconds for one tool on one folder

# Runs inside the peers' virtualenv: prints {"groups": [[path, ...], ...]} on stdout.
CZKAWKA_SCRIPT = """
import json, sys
from czkawka import ImageSimilarity
finder = ImageSimilarity()
finder.set_directories([sys.argv[1]])
print(json.dumps({"groups": [[str(p) for p in g] for g in finder.find_similar()]}))
"""

# imagededup's package __init__ files import its CNN module (torchvision) and plotting (matplotlib); the
# hashing code needs neither, so when they do not import, the hashing module is loaded on its own.
IMAGEDEDUP_SCRIPT = """
import json, os, sys, types, warnings, logging
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
try:
    from imagededup.methods import PHash
    note = ""
except ImportError as e:
    import imagededup
    base = os.path.dirname(imagededup.__file__)
    for name in ("methods", "utils"):
        pkg = types.ModuleType("imagededup." + name)
        pkg.__path__ = [os.path.join(base, name)]
        sys.modules["imagededup." + name] = pkg
    from imagededup.methods.hashing import PHash
    note = "hashing module loaded without imagededup.methods/__init__ (%s)" % e
root = sys.argv[1]
dups = PHash(verbose=False).find_duplicates(image_dir=root, recursive=True)
groups = [[os.path.join(root, k), *(os.path.join(root, v) for v in vs)] for k, vs in dups.items() if vs]
print(json.dumps({"groups": groups, "note": note}))
"""


# ----------------------------------------------------------------------------- measuring processes


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return out


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kib(pid: int) -> int:
    """The sum of VmRSS of a process and all its descendants."""
    total, stack, seen = 0, [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        total += _rss_kib(p)
        stack.extend(_children(p))
    return total


@dataclass
class Measured:
    wall: float
    cpu: float  # user and system seconds of the process and every descendant it waited for
    peak_mib: float
    stdout: str
    stderr: str
    returncode: int


def measure(cmd: Sequence[str], env: dict[str, str] | None = None, shell: bool = False) -> Measured:
    """Run a command, timing it and sampling the memory of its whole process tree every 20 ms.

    Its CPU time is what this process's waited-for children gained while it ran: the command is the only child
    then, and its workers are counted once the command has waited for them."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        before = _children_cpu()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, shell=shell)
        peak = 0
        try:
            while proc.poll() is None:
                peak = max(peak, tree_rss_kib(proc.pid))
                if time.perf_counter() - start > TIMEOUT:
                    proc.kill()
                time.sleep(0.02)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        wall = time.perf_counter() - start
        cpu = _children_cpu() - before
        out.seek(0)
        err.seek(0)
        return Measured(wall, cpu, peak / 1024, out.read(), err.read(), proc.returncode)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ----------------------------------------------------------------------------- truth and scoring


@dataclass
class Truth:
    root: str
    files: list[str]  # every file of the folder, relative, truth.json excluded
    identity: dict[str, str]  # relative path -> its original (originals map to themselves)
    edit: dict[str, str]  # copy -> edit kind
    lookalikes: list[tuple[str, str]]
    junk: list[str]

    @classmethod
    def load(cls, root: str) -> Truth:
        with open(os.path.join(root, "truth.json")) as f:
            t = json.load(f)
        identity = {o: o for o in t["originals"]}
        edit: dict[str, str] = {}
        for c in t["copies"]:
            identity[c["path"]] = c["original"]
            edit[c["path"]] = c["edit"]
        files = sorted(
            os.path.relpath(os.path.join(dp, n), root).replace(os.sep, "/")
            for dp, _dirs, names in os.walk(root)
            for n in names
        )
        files = [f for f in files if f != "truth.json"]
        lookalikes = [(a, b) for a, b in t.get("lookalikes", [])]
        return cls(root, files, identity, edit, lookalikes, list(t.get("junk", [])))

    def true_pairs(self) -> set[frozenset[str]]:
        clusters: dict[str, list[str]] = {}
        for path, orig in self.identity.items():
            clusters.setdefault(orig, []).append(path)
        return {frozenset(p) for members in clusters.values() for p in itertools.combinations(sorted(members), 2)}


@dataclass
class Score:
    precision: float
    recall: float
    f1: float
    by_edit: dict[str, float]
    lookalikes_grouped: int
    junk_grouped: int
    pairs: int


def score(truth: Truth, groups: Iterable[Iterable[str]]) -> Score:
    """Pairwise precision, recall and F1 of the groups (absolute or relative paths) against the truth.

    Groups may overlap (imagededup reports every file's own duplicates): the predicted pairs are their union.
    """
    root = os.path.realpath(truth.root)
    predicted: set[frozenset[str]] = set()
    grouped: set[str] = set()
    for g in groups:
        rels = sorted({os.path.relpath(os.path.realpath(os.path.join(root, p)), root).replace(os.sep, "/") for p in g})
        grouped.update(rels)
        predicted.update(frozenset(p) for p in itertools.combinations(rels, 2))
    true = truth.true_pairs()
    hit = len(predicted & true)
    precision = hit / len(predicted) if predicted else 1.0
    recall = hit / len(true) if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    kinds: dict[str, list[bool]] = {}
    for copy, kind in truth.edit.items():
        kinds.setdefault(kind, []).append(frozenset((copy, truth.identity[copy])) in predicted)
    by_edit = {k: sum(v) / len(v) for k, v in sorted(kinds.items())}
    lookalikes = sum(1 for a, b in truth.lookalikes if frozenset((a, b)) in predicted)
    junk = sum(1 for j in truth.junk if j in grouped)
    return Score(precision, recall, f1, by_edit, lookalikes, junk, len(predicted))


# ----------------------------------------------------------------------------- tools


@dataclass
class Row:
    tool: str
    folder: str
    files: int
    wall: float | None = None
    cpu: float | None = None
    peak_mib: float | None = None
    score: Score | None = None
    note: str = ""
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)


Runner = Callable[[str], tuple[Measured, list[list[str]] | None]]


def compile_package() -> None:
    """Write dedupe's bytecode before any timing, as installing it does (pip compiles what it installs, and
    Python caches what it imports unless PYTHONDONTWRITEBYTECODE is set, as it is in some sandboxes, where every
    run would otherwise compile dedupe's 10,000 lines again: about 0.1 s of each start)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(REPO, "dedupe")], check=True)


def run_dedupe(root: str) -> tuple[Measured, list[list[str]] | None]:
    with tempfile.TemporaryDirectory(prefix="dedupe-bench-store-") as tmp:
        # The caller's PYTHONPATH is kept after the repo's: packages tried without installing them (pyspng, say).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (REPO, os.environ.get("PYTHONPATH"))))}
        db = os.path.join(tmp, "store.sqlite")
        m = measure([sys.executable, "-m", "dedupe", "scan", root, "--db", db, "--format", "json", "--quiet"], env)
    if m.returncode != 0:
        return m, None
    report = json.loads(m.stdout)
    return m, [[f["path"] for f in g["files"]] for g in report["groups"]]


def run_findimagedupes(root: str) -> tuple[Measured, list[list[str]] | None]:
    # Default threshold (90%), no fingerprint database; it prints one group per line.
    m = measure(["findimagedupes", "--recurse", "--", root])
    if m.returncode != 0:
        return m, None
    return m, [line.split(" ") for line in m.stdout.splitlines() if line.strip()]


def _venv_script(venv: str, script: str) -> Runner:
    def run(root: str) -> tuple[Measured, list[list[str]] | None]:
        m = measure([os.path.join(venv, "bin", "python"), "-c", script, root])
        if m.returncode != 0:
            return m, None
        data = json.loads(m.stdout.strip().splitlines()[-1])
        if data.get("note"):
            m.stderr = data["note"]
        return m, data["groups"]

    return run


def run_djpeg(root: str) -> tuple[Measured, list[list[str]] | None]:
    cpus = os.cpu_count() or 1
    cmd = (
        f"find {_quote(root)} -type f -iname '*.jpg' -print0"
        f" | xargs -0 -P{cpus} -n16 sh -c 'for f; do djpeg -scale 1/8 -outfile /dev/null \"$f\"; done' _"
    )
    return measure(cmd, shell=True), None


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def peer_status(venv: str) -> dict[str, str]:
    """Why a peer cannot run here, by tool name ("" when it can)."""
    py = os.path.join(venv, "bin", "python")
    status = {
        "findimagedupes": "" if shutil.which("findimagedupes") else "not installed (apt-get install findimagedupes)",
        "djpeg": "" if shutil.which("djpeg") else "not installed (apt-get install libjpeg-turbo-progs)",
    }
    for tool, module in (("czkawka", "czkawka"), ("imagededup PHash", "imagededup")):
        if not os.path.exists(py):
            status[tool] = f"no peers virtualenv at {venv} (run with --install-peers)"
            continue
        r = subprocess.run([py, "-c", f"import {module}"], capture_output=True, text=True)
        status[tool] = "" if r.returncode == 0 else f"{module} does not import: {_last_line(r.stderr)}"
    return status


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


def install_peers(venv: str) -> None:
    """Debian packages (as root) and a separate virtualenv with czkawka, a CPU torch and imagededup."""
    missing = [p for p, exe in zip(DEBIAN_PEERS, ("findimagedupes", "djpeg"), strict=True) if not shutil.which(exe)]
    if missing:
        if os.geteuid() == 0:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
            subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env, check=False)
        else:
            print(f"as root, run: apt-get install -y {' '.join(missing)}", file=sys.stderr)
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pip = [py, "-m", "pip", "install", "-q"]
    steps = [
        ["czkawka"],
        ["torch==2.13.0"],  # the CPU build; imagededup's own requirement would pull a CUDA build of several GB
        ["--no-deps", "imagededup"],
        ["numpy", "Pillow", "PyWavelets", "scipy", "tqdm", "matplotlib", "scikit-learn"],
    ]
    for step in steps:
        print("pip install " + " ".join(step), file=sys.stderr)
        if subprocess.run([*pip, *step], check=False).returncode != 0:
            print(f"failed: pip install {' '.join(step)}", file=sys.stderr)


# ----------------------------------------------------------------------------- the run


def ensure_corpus(path: str, camera: bool, originals: int) -> None:
    if os.path.exists(os.path.join(path, "truth.json")):
        return
    cmd = [sys.executable, CORPUS, path, "--originals", str(originals)]
    if camera:
        cmd.append("--camera")
    print("building " + " ".join(cmd[1:]), file=sys.stderr)
    subprocess.run(cmd, check=True)


def bench_tool(name: str, runner: Runner, truth: Truth, folder: str, repeat: int, unavailable: str) -> Row:
    row = Row(name, folder, len(truth.files))
    if unavailable:
        row.note = unavailable
        return row
    groups: list[list[str]] | None = None
    for _ in range(repeat):
        m, groups = runner(truth.root)
        if m.returncode != 0 or (groups is None and not name.startswith("djpeg")):
            row.note = f"failed (exit {m.returncode}): {_last_line(m.stderr)}"
            return row
        row.walls.append(m.wall)
        row.cpus.append(m.cpu)
        row.peak_mib = max(row.peak_mib or 0.0, m.peak_mib)
        if m.stderr and name.startswith("imagededup"):
            row.note = m.stderr.strip().splitlines()[-1][:200]
    row.wall = min(row.walls)
    row.cpu = min(row.cpus)
    if groups is not None:
        row.score = score(truth, groups)
    walls, cpus = [round(w, 2) for w in row.walls], [round(c, 2) for c in row.cpus]
    print(f"  {name} on {folder}: best {row.wall:.2f}s of {walls}, CPU {cpus}", file=sys.stderr)
    return row


def machine() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    distro = ""
    try:
        with open("/etc/os-release") as f:
            info = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        distro = info.get("PRETTY_NAME", "").strip('"')
    except OSError:
        pass
    return (
        f"{os.cpu_count()}-core {platform.machine()} ({model}), {distro}, Python {platform.python_version()},"
        f" {_mem_gib():.0f} GiB RAM"
    )


def _mem_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            return int(f.readline().split()[1]) / 1024**2
    except (OSError, ValueError, IndexError):
        return 0.0


def _f(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def render(rows: Sequence[Row], truths: dict[str, Truth], repeat: int) -> str:
    out = [
        f"Machine: {machine()}. Best of {repeat} run(s) per tool; all tools measured in this one run.",
        "",
        "| folder | tool | files | wall s | files/s | peak MiB (tree) | precision | recall | F1"
        " | look-alike pairs grouped | junk grouped | time vs dedupe | CPU s (tree) | CPU vs dedupe | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ours = {r.folder: r.wall for r in rows if r.tool == "dedupe" and r.wall}
    our_cpu = {r.folder: r.cpu for r in rows if r.tool == "dedupe" and r.cpu}
    for r in rows:
        s = r.score
        ratio = f"{r.wall / ours[r.folder]:.2f}x" if r.wall and ours.get(r.folder) else "-"
        rate = f"{r.files / r.wall:.1f}" if r.wall else "-"
        cpu_ratio = f"{r.cpu / our_cpu[r.folder]:.2f}x" if r.cpu and our_cpu.get(r.folder) else "-"
        out.append(
            f"| {r.folder} | {r.tool} | {r.files} | {_f(r.wall, '.2f')} | {rate} | {_f(r.peak_mib, '.0f')}"
            f" | {_f(s and s.precision, '.3f')} | {_f(s and s.recall, '.3f')} | {_f(s and s.f1, '.3f')}"
            f" | {'-' if s is None else s.lookalikes_grouped} | {'-' if s is None else s.junk_grouped}"
            f" | {ratio} | {_f(r.cpu, '.2f')} | {cpu_ratio} | {r.note.replace('|', '/')} |"
        )
    for folder, truth in truths.items():
        scored = [r for r in rows if r.folder == folder and r.score]
        kinds = sorted({k for r in scored for k in r.score.by_edit} if scored else set())  # type: ignore[union-attr]
        if not kinds:
            continue
        out += ["", f"Recall per edit kind, {folder} folder (share of copies grouped with their original):", ""]
        out.append("| edit | copies | " + " | ".join(r.tool for r in scored) + " |")
        out.append("|---|---|" + "---|" * len(scored))
        for k in kinds:
            n = sum(1 for e in truth.edit.values() if e == k)
            cells = " | ".join(f"{100 * r.score.by_edit.get(k, 0):.0f}%" for r in scored)  # type: ignore[union-attr]
            out.append(f"| {k} | {n} | {cells} |")
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small folders (8 originals) and one run per tool")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results.md"), help="markdown file to write")
    ap.add_argument("--work", default=DEFAULT_WORK, help="where the benchmark folders are built and kept")
    ap.add_argument("--mixed", help="use this mixed folder (with truth.json) instead of building one")
    ap.add_argument("--camera", help="use this camera folder (with truth.json) instead of building one")
    ap.add_argument("--repeat", type=int, help="runs per tool; the best is reported (default 2, quick 1)")
    ap.add_argument("--no-peers", action="store_true", help="only dedupe (and the decode floor if djpeg exists)")
    ap.add_argument("--install-peers", action="store_true", help="install the peers first")
    ap.add_argument("--peers-venv", default=DEFAULT_PEERS_VENV)
    a = ap.parse_args(argv)
    repeat = a.repeat or (1 if a.quick else 2)
    originals = 8 if a.quick else 40
    suffix = "-quick" if a.quick else ""
    mixed = a.mixed or os.path.join(a.work, f"mixed{suffix}")
    camera = a.camera or os.path.join(a.work, f"camera{suffix}")
    if a.install_peers:
        install_peers(a.peers_venv)
    ensure_corpus(mixed, False, originals)
    ensure_corpus(camera, True, originals)
    compile_package()
    status = peer_status(a.peers_venv)
    tools: list[tuple[str, Runner, str]] = [("dedupe", run_dedupe, "")]
    if not a.no_peers:
        tools += [
            ("czkawka", _venv_script(a.peers_venv, CZKAWKA_SCRIPT), status["czkawka"]),
            ("findimagedupes", run_findimagedupes, status["findimagedupes"]),
            ("imagededup PHash", _venv_script(a.peers_venv, IMAGEDEDUP_SCRIPT), status["imagededup PHash"]),
        ]
    truths = {"mixed": Truth.load(mixed), "camera": Truth.load(camera)}
    rows: list[Row] = []
    for folder, truth in truths.items():
        for name, runner, unavailable in tools:
            rows.append(bench_tool(name, runner, truth, folder, repeat, unavailable))
        if folder == "camera" and (not status["djpeg"] or not a.no_peers):
            floor = "djpeg -scale 1/8 (decode floor)"
            rows.append(bench_tool(floor, run_djpeg, truth, folder, repeat, status["djpeg"]))
    table = render(rows, truths, repeat)
    print(table)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(table)
    print(f"written to {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
