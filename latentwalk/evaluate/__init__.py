"""Evaluation of a synthetic dataset: privacy, fidelity, utility, report."""

from __future__ import annotations
