"""Generation speed: images/s of ``latentwalk generate`` with straight lines and with PLAN, same endpoints budget.

    python benchmarks/bench_generate.py                 # demo:cxr, phantom cxr data, 64 images per label
    python benchmarks/bench_generate.py --kind fundus
    python benchmarks/bench_generate.py --device cuda   # section generate-cxr-cuda (the CPU's is generate-cxr)

Both runs go through the whole pipeline (generator, guides and real images loaded, the gate fitted on the training
images, work items, PNG files, manifest, run.json): the figure is what a user waits for per image. The guides are
trained briefly on the same device (their quality does not change the cost). Writes its section of
benchmarks/RESULTS.md (``generate-<kind>``, with ``-cuda`` appended on a GPU) unless --no-record.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from record import summary, write_section  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["cxr", "fundus"], default="cxr")
    parser.add_argument("--per-label", type=int, default=64)
    parser.add_argument("--optim-steps", type=int, default=100)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-record", action="store_true", help="print only; do not touch RESULTS.md")
    args = parser.parse_args()

    import warnings

    from latentwalk.data.phantoms import PhantomConfig, write_phantom_dataset
    from latentwalk.devices import resolve_device
    from latentwalk.guides import GuideConfig, train_guides
    from latentwalk.pipeline import GenerateConfig, generate

    warnings.simplefilter("ignore")
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        index = write_phantom_dataset(PhantomConfig(kind=args.kind), root / "data")
        channels = 1 if args.kind == "cxr" else 3
        train_guides(index, root / "guides", GuideConfig(epochs=5), resolution=64, channels=channels,
                     device=device)  # fmt: skip
        rows = ["| method | images | seconds | images/s | gate rejections |", "|---|---|---|---|---|"]
        rates, amp = {}, False
        load_before = os.getloadavg()[0]
        for method in ("linear", "plan"):
            cfg = GenerateConfig.from_dict(dict(gan=f"demo:{args.kind}", guides=str(root / "guides"),
                                                data=str(root / "data"), method=method, per_label=args.per_label,
                                                optim_steps=args.optim_steps, endpoint_filter=False,
                                                device=args.device))  # fmt: skip
            start = time.perf_counter()
            result = generate(cfg, root / method)
            seconds = time.perf_counter() - start
            n = sum(result.written.values())
            rates[method] = n / seconds
            amp = amp or bool(result.run["config"]["amp"])
            rows.append(f"| {method} | {n} | {seconds:.1f} | {rates[method]:.2f} | {sum(result.rejected.values())} |")
            print(rows[-1], flush=True)
        load_after = os.getloadavg()[0]
    where = device.type.upper()
    body = (
        f"## Generation speed: `latentwalk generate` images/s ({where}, demo:{args.kind})\n\n"
        f"{args.per_label} images per label, paths of 10 points (8 written), 8 paths per work item, PLAN "
        f"{args.optim_steps} Adam steps ({'bfloat16 autocast' if amp else 'float32'}), endpoints drawn without the "
        "class filter, identity gate, everything from "
        "loading the inputs to the last file. "
        f"PLAN costs {rates['linear'] / rates['plan']:.1f}x the time per image of straight lines. Load average "
        f"{load_before:.1f} before, {load_after:.1f} after.\n\n" + "\n".join(rows)
    )
    print(body)
    summary(
        f"generation ({where}): straight lines {rates['linear']:.2f} images/s, PLAN {rates['plan']:.2f} images/s "
        f"({rates['linear'] / rates['plan']:.1f}x the time per image)"
    )
    if not args.no_record:
        write_section(f"generate-{args.kind}" + ("" if device.type == "cpu" else f"-{device.type}"), body)


if __name__ == "__main__":
    main()
