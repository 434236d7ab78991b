"""Can a small CNN learn the phantoms' disease label and recognise their patients? Writes a RESULTS.md section.

    python scripts/phantom_learnability.py [--kind cxr fundus] [--epochs 60]

For each kind, on the default phantom dataset (100 patients x 4 images, 64 px, seed 0):
- disease: train on the train-split patients, test on the test-split patients (patient-disjoint);
- identity: train on images 0-2 of every patient, test on image 3 (the closed-set task of the identity guide).
A plain 4-layer CNN with batch norm, Adam 1e-3, random +-2 px shifts; one CPU thread; seed 0.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def small_cnn(channels: int, classes: int) -> nn.Module:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(channels, 32), nn.MaxPool2d(2), *block(32, 64), nn.MaxPool2d(2), *block(64, 128), nn.MaxPool2d(2),
        *block(128, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, classes),
    )  # fmt: skip


def train_cnn(x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, epochs: int) -> nn.Module:
    """Train :func:`small_cnn` on ``x[rows]`` (seed 0, random +-2 px shifts); returned in eval mode."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = small_cnn(x.shape[1], int(y.max()) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        model.train()
        for batch in rows[torch.randperm(len(rows), generator=gen)].split(32):
            dy, dx = torch.randint(-2, 3, (2,), generator=gen).tolist()
            xb = torch.roll(x[batch], (dy, dx), (2, 3))
            loss = nn.functional.cross_entropy(model(xb), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def fit_and_score(x: torch.Tensor, y: torch.Tensor, train: torch.Tensor, test: torch.Tensor, epochs: int) -> float:
    """Train on rows ``train``, return accuracy on rows ``test``."""
    model = train_cnn(x, y, train, epochs)
    with torch.no_grad():
        return (model(x[test]).argmax(1) == y[test]).float().mean().item()


def main() -> None:
    from record import write_section

    from latentwalk.data import PhantomConfig, load_tensors, write_phantom_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", nargs="+", default=["cxr", "fundus"], choices=["cxr", "fundus"])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [
        "| kind | disease acc. (test patients) | majority-class baseline | identity acc. (held-out image) "
        "| chance | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for kind in args.kind:
        start = time.perf_counter()
        cfg = PhantomConfig(kind=kind)
        with tempfile.TemporaryDirectory() as tmp:
            index = write_phantom_dataset(cfg, Path(tmp) / "d")
            x, y = load_tensors(index, cfg.resolution)
        split = [r.split for r in index.records]
        patient = torch.tensor([int(r.identity[1:]) for r in index.records])
        image_no = torch.tensor([int(r.file.stem.split("_")[-1]) for r in index.records])
        train = torch.tensor([i for i, s in enumerate(split) if s == "train"])
        test = torch.tensor([i for i, s in enumerate(split) if s == "test"])
        disease = fit_and_score(x, y, train, test, args.epochs)
        majority = (y[test] == y[test].mode().values).float().mean().item()
        seen, held = torch.nonzero(image_no < 3).squeeze(1), torch.nonzero(image_no == 3).squeeze(1)
        identity = fit_and_score(x, patient, seen, held, args.epochs)
        seconds = time.perf_counter() - start
        rows.append(
            f"| {kind} | {disease:.3f} | {majority:.3f} | {identity:.3f} | {1 / cfg.identities:.3f} | {seconds:.0f} |"
        )
        print(rows[-1], flush=True)
    body = (
        "## Phantom learnability (64 px, default dataset)\n\n"
        f"A small CNN ({args.epochs} epochs, CPU, seed 0), see `scripts/phantom_learnability.py`.\n\n" + "\n".join(rows)
    )
    if not args.no_record:
        write_section("phantom-learnability", body, cmd="python scripts/phantom_learnability.py")


if __name__ == "__main__":
    main()
