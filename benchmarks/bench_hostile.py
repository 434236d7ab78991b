"""Peak memory of reading small hostile generator files: latentwalk's guarded loaders vs an unguarded reader.

    python benchmarks/bench_hostile.py            # writes the RESULTS.md section hostile-files
    python benchmarks/bench_hostile.py --quick    # smaller bombs, print only

Each file (made by ``tests/hostile_files.py``) is read in a fresh process and that process's peak resident memory
(``VmHWM``, the high-water mark of that process image) is reported, side by side with the same bytes read the
unguarded way: the operation a reader without the checks performs (``bytearray(n)`` from the pickle,
``torch.load(weights_only=True)`` of the declared storage, ``Generator(**recorded_arguments)`` before looking at the
weights). The goal (safety issue): every guarded read refuses the file with one error and stays under 1.5 GB. The
baseline row is ``import torch, gan_zoo`` alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from record import summary, write_section  # noqa: E402

CHILD = r"""
import json, pickle, sys, io
kind, path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
import torch, gan_zoo
from latentwalk.errors import LatentwalkError
outcome = "loaded"
try:
    if mode == "baseline":
        outcome = "imports only"
    elif mode == "guarded":
        try:
            gan_zoo.load(("lite:" if kind.startswith("lite") else "stylegan:") + path)
        except LatentwalkError as e:
            outcome = f"refused: {type(e).__name__}"
    elif kind == "bytearray":
        class U(pickle.Unpickler):
            def find_class(self, m, n):
                return bytearray
        U(open(path, "rb")).load()
    elif kind in ("storage", "compressed"):
        class U(pickle.Unpickler):
            def find_class(self, m, n):
                return lambda blob: torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        U(open(path, "rb")).load()
    elif kind == "recursion":
        from gan_zoo.nvidia import _AllowlistUnpickler
        from pathlib import Path
        data = _AllowlistUnpickler(open(path, "rb"), Path(path)).load()
        list(data["G_ema"].walk())
    elif kind.startswith("lite") or kind == "wide":
        from gan_zoo.stylegan2 import Generator
        if kind == "wide":
            from gan_zoo.nvidia import read_stylegan_pickle
            arch = dict(read_stylegan_pickle(path)["G_ema"].state["_init_kwargs"])
        else:
            arch = json.load(open(path + "/generator.json"))["architecture"]
        Generator(**arch)
except LatentwalkError as e:
    outcome = f"refused: {type(e).__name__}"
except BaseException as e:
    outcome = f"{type(e).__name__}"
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))  # kB, this image only
print(json.dumps({"peak_mb": hwm / 1024, "outcome": outcome}))
"""


def _make(folder: Path, quick: bool) -> list[tuple[str, str, str]]:
    import hostile_files as h
    import pytest
    from nvidia_format import write_nvidia_pickle_file

    scale = 8 if quick else 1
    files = [
        ("bytearray", "pickle: bytearray(2 GiB)", h.bytearray_bomb(folder / "a.pkl", 2 * h.GIB // scale)),
        ("storage", "pickle: storage declaring 1.6 GB", h.storage_bomb(folder / "s.pkl", 400_000_000 // scale)),
        ("compressed", "pickle: deflated zip storage, 1.5 GB inflated",
         h.compressed_storage(folder / "z.pkl", 375_000_000 // scale)),
        ("recursion", "pickle: record that contains itself", h.self_containing_record(folder / "r.pkl")),
    ]  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        wide = h.wide_generator_record(folder / "w.pkl", write_nvidia_pickle_file, mp, 20000 // (2 if quick else 1))
    files.append(("wide", "pickle: generator recording w_dim=20000, 2 mapping layers", wide))
    lite_wide = h.lite_with_architecture(folder / "lw", w_dim=12000, mapping_kwargs={"num_layers": 4})
    files.append(("lite-wide", "generator.json: w_dim=12000, 4 mapping layers", lite_wide))
    files.append(("lite-neg", "generator.json: z_dim=-1", h.lite_with_architecture(folder / "ln", z_dim=-1)))
    return [(kind, text, str(path)) for kind, text, path in files]


def _run(kind: str, path: str, mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, kind, path, mode], capture_output=True, text=True, timeout=600)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"peak_mb": float("nan"), "outcome": f"process died (exit {done.returncode})"}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller bombs; print only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = _make(Path(tmp), args.quick)
        base = _run("baseline", "-", "baseline")
        rows = [f"| baseline: import torch, gan_zoo | – | – | {base['peak_mb']:.0f} | imports only |"]
        worst = 0.0
        for kind, text, path in files:
            size = (
                sum(p.stat().st_size for p in Path(path).rglob("*"))
                if Path(path).is_dir()
                else Path(path).stat().st_size
            )
            naive, guarded = _run(kind, path, "unguarded"), _run(kind, path, "guarded")
            worst = max(worst, guarded["peak_mb"])
            rows.append(f"| {text} | {size:,} | {naive['peak_mb']:.0f} ({naive['outcome']}) | {guarded['peak_mb']:.0f} "
                        f"| {guarded['outcome']} |")  # fmt: skip
            print(rows[-1], flush=True)
    table = "\n".join(
        [
            "## Hostile generator files: peak memory of reading them (MB, one fresh process each)",
            "",
            "Unguarded = the same bytes read without the checks (what a plain reader does). Goal: every guarded read "
            "refuses the file with one error and peaks under 1.5 GB (1536 MB).",
            "",
            "| file | bytes | unguarded peak MB (what happened) | guarded peak MB | guarded outcome |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )
    print(table)
    summary(f"hostile files: worst guarded peak {worst:.0f} MB (goal < 1536 MB)")
    if not args.quick:
        write_section("hostile-files", table)


if __name__ == "__main__":
    main()
