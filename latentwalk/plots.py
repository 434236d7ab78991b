"""Matplotlib without a display: the pyplot module on the Agg backend, and a figure as PNG bytes.

matplotlib is imported on first use only, so importing latentwalk stays cheap.
"""

from __future__ import annotations

import io
from typing import Any

__all__ = ["figure_png", "pyplot"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig: Any) -> bytes:
    """Lay out ``fig``, render it as PNG bytes and close it (figures are not left open in pyplot's registry)."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    pyplot().close(fig)
    return buf.getvalue()
