"""Coverage-guided fuzzing of every lockbox decoder with atheris (libFuzzer), issue #4.

    .venv/bin/pip install -r requirements/bench.lock      # atheris (prebuilt wheel)
    .venv/bin/python bench/fuzz_atheris.py --seconds 600 [--work DIR] [--write]

One entry point dispatches on the first input byte: ``byte % len(TARGETS)`` picks
the decoder of ``tests/fuzz/targets.py`` (slot, superblock, page and frame
headers, KEYDIR page, key directory, TOC / env / space leaves, internal nodes,
entries, chunks, chunk indexes, commit record, space records, frame plaintexts,
sealed frames, identity and recipient texts, varints, blobs) and
``byte // len(TARGETS)`` its context (slot number, payload limit, frame kind);
the rest of the input is decoded under the same contract as the Hypothesis
layer (``targets.check``): a FormatError / IntegrityError subclass, or a value
that re-encodes consistently; anything else is a crash. libFuzzer also enforces
a per-input timeout (hangs) and an RSS limit (allocation).

The seed corpus is generated from the valid Hypothesis strategies (deterministic),
a few examples per decoder. The fuzzer runs in a child process (libFuzzer exits
its process); after a crash it is restarted on the same corpus until the time
is used up. At the end a markdown summary (date, machine, command, executions,
crashes) is printed, and written into docs/PERFORMANCE.md with ``--write``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SEEDS_PER_TARGET = 12


def _targets() -> list:
    from fuzz.targets import TARGETS

    return TARGETS


def _seeds_of(sel: int, t: object) -> list[bytes]:
    """SEEDS_PER_TARGET valid encodings of one decoder, selector byte first."""
    from hypothesis import HealthCheck, given, settings

    from fuzz import targets as T
    from lockbox.formats.lbox.frames import encode_plain
    from lockbox.formats.lbox.wire.constants import FrameKind

    n = len(T.TARGETS)
    found: list[bytes] = []
    assert isinstance(t, T.Target)

    @settings(max_examples=SEEDS_PER_TARGET, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(t.cases)
    def collect(case: T.Case) -> None:
        if "sealed" in t.tags:  # sealed at the harness's fixed offset, per kind
            kind = case.ctx[0]
            plain = encode_plain(T.CODEC, case.value, compress=True)
            frame, _ = T.sealer().seal(kind, 7, T.SEALED_OFFSET, plain)
            found.append(bytes([sel + n * list(FrameKind).index(kind)]) + frame)
            return
        selector = sel + n * t.ctx_code(case.ctx)
        if selector < 256:
            found.append(bytes([selector]) + case.data)

    collect()
    return found


def _long_key_leaf(items: int) -> bytes:
    """A valid leaf with long keys that share long prefixes (legal, and the shape that
    prefix compression makes cheap to encode)."""
    from lockbox.formats.lbox.wire.encoding import Builder

    b = Builder().u8(1).u8(0).uvarint(items).uvarint(0).blob(b"k" * 3000).blob(b"")
    for i in range(1, items):
        b.uvarint(2999).blob(bytes([1, i])).blob(b"")
    return b.getvalue()


def write_seeds(corpus: Path) -> int:
    """A few valid encodings per decoder, from the Hypothesis strategies (deterministic),
    plus a leaf with long shared-prefix keys for each tree."""
    corpus.mkdir(parents=True, exist_ok=True)
    count = 0
    targets = _targets()
    for sel, t in enumerate(targets):
        for i, data in enumerate(_seeds_of(sel, t)):
            (corpus / f"seed-{t.name}-{i:02d}").write_bytes(data)
            count += 1
        if t.name in ("toc_leaf", "env_leaf", "space_leaf", "internal_node"):
            (corpus / f"seed-{t.name}-long-keys").write_bytes(bytes([sel]) + _long_key_leaf(20))
            count += 1
    return count


def worker(argv: list[str]) -> None:
    """The libFuzzer process: instrument lockbox, then fuzz until told to stop."""
    import atheris

    # Instrument every lockbox module imported here (the decoders, the codec, the key
    # texts) for coverage; the test-side modules (fuzz.*) stay uninstrumented.
    with atheris.instrument_imports(include=["lockbox"]):
        import lockbox.codec.zstd
        import lockbox.formats.lbox.frames
        import lockbox.formats.lbox.keys
        import lockbox.formats.lbox.wire.chunk
        import lockbox.formats.lbox.wire.commit
        import lockbox.formats.lbox.wire.superblock
        import lockbox.formats.lbox.write.space
    del lockbox
    from fuzz.targets import OPENED, TARGETS, ContractViolation, check

    n = len(TARGETS)
    # A sealed frame may open only if it is one of the genuine frames of the seed corpus
    # (never another plaintext): the harness has the key, the fuzzer does not.
    seeds = Path(os.environ["LOCKBOX_FUZZ_SEEDS"])
    genuine = {p.read_bytes()[1:] for p in seeds.glob("seed-sealed_frame-*")}

    def one_input(data: bytes) -> None:
        if not data:
            return
        t = TARGETS[data[0] % n]
        value = check(t, t.ctx_of(data[0] // n), data[1:], OPENED)
        if value is not None and "sealed" in t.tags:
            size = 48 + int.from_bytes(data[9:13], "little")
            if data[1:1 + size] not in genuine:
                raise ContractViolation(f"a frame that is not genuine opened: {data.hex()}")

    atheris.Setup(argv, one_input)
    atheris.Fuzz()


def _machine() -> str:
    from common import machine

    return machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=300, help="total fuzzing time")
    ap.add_argument("--work", type=Path, default=None,
                    help="corpus and crash directory (default: a temporary one)")
    ap.add_argument("--max-len", type=int, default=16_400,
                    help="libFuzzer -max_len (the superblock seeds are 16 385 bytes)")
    ap.add_argument("--rss-limit-mb", type=int, default=2048)
    ap.add_argument("--timeout", type=int, default=10, help="seconds per input (hang)")
    ap.add_argument("--write", action="store_true",
                    help="also write the summary into docs/PERFORMANCE.md")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args, rest = ap.parse_known_args()
    if args.worker:
        worker([sys.argv[0], *rest])
        return
    try:
        import atheris  # noqa: F401
    except ImportError:
        sys.exit("atheris is not installed: .venv/bin/pip install -r requirements/bench.lock")
    work = args.work or Path(tempfile.mkdtemp(prefix="lockbox-atheris-"))
    corpus, crashes = work / "corpus", work / "crashes"
    crashes.mkdir(parents=True, exist_ok=True)
    seeds = write_seeds(corpus) if not any(corpus.glob("*")) else len(list(corpus.glob("*")))
    command = " ".join(["bench/fuzz_atheris.py", f"--seconds {args.seconds}"])
    deadline = time.monotonic() + args.seconds
    runs = 0
    found: list[str] = []
    restarts = 0
    log = work / "fuzz.log"
    with open(log, "w") as logf:
        while (left := int(deadline - time.monotonic())) > 0 and restarts < 50:
            cmd = [sys.executable, __file__, "--worker", str(corpus),
                   f"-max_total_time={left}", f"-max_len={args.max_len}",
                   f"-rss_limit_mb={args.rss_limit_mb}", f"-timeout={args.timeout}",
                   f"-artifact_prefix={crashes}/", "-print_final_stats=1"]
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                                  env={**os.environ, "PYTHONHASHSEED": "0",
                                       "LOCKBOX_FUZZ_SEEDS": str(corpus)})
            logf.write(proc.stdout + proc.stderr)
            text = proc.stderr
            m = re.findall(r"stat::number_of_executed_units:\s*(\d+)", text) or \
                re.findall(r"Done (\d+) runs", text)
            if m:
                runs += int(m[-1])
            else:  # a crash: the last progress line tells the count
                progress = re.findall(r"#(\d+)\s", text)
                runs += int(progress[-1]) if progress else 0
            arts = re.findall(r"Test unit written to (\S+)", text)
            if proc.returncode == 0 and not arts:
                break
            restarts += 1
            for a in arts:
                data = Path(a).read_bytes()
                # A crashing corpus input would crash the next run at once: set it aside.
                for p in corpus.iterdir():
                    if p.read_bytes() == data:
                        p.rename(crashes / f"from-corpus-{p.name}")
                err = [ln for ln in text.splitlines()
                       if "Error" in ln or "Exception" in ln or "Violation" in ln]
                found.append(f"{Path(a).name}: {data[:64].hex()}{'...' if len(data) > 64 else ''}"
                             f" — {err[-1].strip() if err else f'exit {proc.returncode}'}")
            if not arts:
                found.append(f"exit {proc.returncode} without an artifact (see {log})")
    summary = "\n".join([
        "### Decoder fuzzing (atheris, coverage-guided)",
        "",
        f"- date: {time.strftime('%Y-%m-%d')}",
        f"- machine: {_machine()}",
        f"- command: `.venv/bin/python {command}`",
        f"- decoders: {len(_targets())} (one entry point, dispatch on the first byte); "
        f"seed corpus: {seeds} inputs from the Hypothesis strategies",
        f"- executions: {runs:,} in {args.seconds} s ({runs / max(1, args.seconds):,.0f}/s)",
        f"- crashes: {len(found)}",
        *[f"  - `{c}`" for c in found],
        f"- corpus and artifacts: `{work}`",
    ])
    print(summary)
    if args.write:
        from common import write_section

        write_section("fuzz-atheris", summary)


if __name__ == "__main__":
    main()
