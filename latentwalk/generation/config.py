"""``latentwalk generate``'s options: the config class (single source of defaults for the API, the TOML file and the
flags), the run file reader, and the configuration as recorded in ``run.json`` (private paths withheld)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

from latentwalk.config import StageConfig
from latentwalk.errors import ConfigError
from latentwalk.ksame import KSameConfig
from latentwalk.paths import PlanConfig
from latentwalk.spaces import GATE_SPACES

__all__ = [
    "METHODS",
    "GATE_SPLITS",
    "WITHHELD",
    "PATH_FIELDS",
    "FLAT",
    "RECORDED_IF_SET",
    "ADVERSARIAL_METHODS",
    "GateConfig",
    "GenerateConfig",
    "parse_keep",
    "load_config_file",
    "resolve_spec_path",
    "public_config",
]

METHODS = ("linear", "plan", "ksame", "ksame-plan")
GATE_SPLITS = ("train", "all")
WITHHELD = "<withheld>"


@dataclass(frozen=True)
class GateConfig(StageConfig):
    """Options of the privacy gate and the label gate of ``latentwalk generate`` (TOML table ``[gate]``)."""

    STAGE: ClassVar[str] = "gate"

    space: str = "identity"  # nearest-real distance space: identity | lpips | ssim
    threshold: float | None = None  # reject below it; None = the percentile of real-to-real distances
    percentile: float = 5.0  # percentile of real nearest-other-patient distances used as the threshold
    split: str = "train"  # real images the gate compares with: train | all
    label_gate: bool = True  # write a candidate only when the class guide gives its label >= label_threshold
    label_threshold: float | None = None  # None = the label_percentile of real validation images' true-label prob.
    label_percentile: float = 5.0  # derived label threshold: this percentile over the real validation split

    def __post_init__(self) -> None:
        if self.space not in GATE_SPACES:
            raise ConfigError(f'unknown gate_space "{self.space}"; expected one of {", ".join(GATE_SPACES)}')
        if self.split not in GATE_SPLITS:
            raise ConfigError(f'unknown gate_split "{self.split}"; expected one of {", ".join(GATE_SPLITS)}')
        if not isinstance(self.label_gate, bool):
            raise ConfigError(f"label_gate must be true or false, got {self.label_gate!r}")
        for name in ("percentile", "label_percentile"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{_FLAT_NAME['gate', name]} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))  # 1 and 1.0 are one configuration
        if not 0 < self.percentile < 100:
            raise ConfigError(f"gate_percentile must be in (0, 100), got {self.percentile}")
        if not 0 <= self.label_percentile <= 100:
            raise ConfigError(f"label_percentile must be in [0, 100], got {self.label_percentile}")
        t = self.threshold
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0):
            raise ConfigError(f"gate_threshold must be a number >= 0 or unset (derived), got {t!r}")
        lt = self.label_threshold
        if lt is not None and (isinstance(lt, bool) or not isinstance(lt, (int, float)) or not 0 <= lt <= 1):
            raise ConfigError(f"label_threshold must be a probability in [0, 1] or unset (derived), got {lt!r}")
        if t is not None:
            object.__setattr__(self, "threshold", float(t))
        if lt is not None:
            object.__setattr__(self, "label_threshold", float(lt))


def _default_plan() -> PlanConfig:
    return PlanConfig(n_steps=10, optim_steps=50)


# The flat option names (the flags, the TOML keys, the record in run.json), in the record's order: name -> (the
# nested config holding it or None for GenerateConfig itself, its field there).
FLAT: dict[str, tuple[str | None, str]] = {
    "gan": (None, "gan"),
    "guides": (None, "guides"),
    "data": (None, "data"),
    "layout": (None, "layout"),
    "latents": (None, "latents"),
    "method": (None, "method"),
    "per_label": (None, "per_label"),
    "n_steps": ("plan", "n_steps"),
    "keep": (None, "keep"),
    "paths_per_item": (None, "paths_per_item"),
    "seed": (None, "seed"),
    "truncation_psi": (None, "truncation_psi"),
    "endpoint_filter": (None, "endpoint_filter"),
    "optim_steps": ("plan", "optim_steps"),
    "lr": ("plan", "lr"),
    "weights": ("plan", "weights"),
    "privacy_loss": ("plan", "privacy_loss"),
    "verification_margin": ("plan", "verification_margin"),
    "lr_schedule": ("plan", "schedule"),
    "warmup_steps": ("plan", "warmup_steps"),
    "path_init": ("plan", "init"),
    "early_stop_plateau": ("plan", "early_stop_plateau"),
    "chunk": (None, "chunk"),
    "k": ("ksame", "k"),
    "ksame_method": ("ksame", "method"),
    "ksame_spread": ("ksame", "spread"),
    "gate_space": ("gate", "space"),
    "gate_threshold": ("gate", "threshold"),
    "gate_percentile": ("gate", "percentile"),
    "gate_split": ("gate", "split"),
    "label_gate": ("gate", "label_gate"),
    "label_threshold": ("gate", "label_threshold"),
    "label_percentile": ("gate", "label_percentile"),
    "max_rounds": (None, "max_rounds"),
    "adversarial_rounds": (None, "adversarial_rounds"),
    "adversarial_epochs": (None, "adversarial_epochs"),
    "device": (None, "device"),
    "amp": (None, "amp"),
}
_FLAT_NAME = {(sub, name): flat for flat, (sub, name) in FLAT.items() if sub is not None}
# Options added after runs were recorded without them: the record holds them only away from these defaults, so that a
# record written before they existed is the record of the same run now (and an unfinished run of then resumes).
RECORDED_IF_SET: dict[str, Any] = {"privacy_loss": "kl_uniform", "verification_margin": None, "adversarial_rounds": 0,
                                   "adversarial_epochs": 5, "lr_schedule": "constant", "warmup_steps": 0,
                                   "path_init": "linear", "early_stop_plateau": None}  # fmt: skip
ADVERSARIAL_METHODS = ("plan", "ksame-plan")  # the methods whose walk steers against an identity net
_NESTED = {"plan": PlanConfig, "ksame": KSameConfig, "gate": GateConfig}


@dataclass(frozen=True)
class GenerateConfig(StageConfig):
    """Options of ``latentwalk generate``; the single source of defaults for the API, the TOML file and the flags.

    Nested as the TOML file is: ``plan`` (:class:`~latentwalk.paths.PlanConfig`: ``n_steps``, ``optim_steps``, ``lr``,
    ``weights``, ``privacy_loss``, ``verification_margin``), ``ksame`` (:class:`~latentwalk.ksame.KSameConfig`:
    ``k``, ``method``, ``spread``) and ``gate`` (:class:`GateConfig`); each checks its own fields. :meth:`from_dict`
    and :meth:`to_dict` speak the flat option names of the flags and of ``run.json`` (:data:`FLAT`: ``optim_steps``,
    ``ksame_method``, ``gate_space``, ...).
    """

    STAGE: ClassVar[str] = "generate"

    gan: str = "demo:cxr"  # generator spec (gan_zoo.load): demo:cxr, lite:PATH, stylegan:PATH.pkl, module:...
    guides: str = ""  # guides folder (latentwalk guides train); required
    data: str = ""  # the real dataset folder (labels, patients, the gate's reference images); required
    layout: str = "auto"  # dataset layout (latentwalk data check --help)
    latents: str | None = None  # inverted real latents (latentwalk gan invert); required by ksame and ksame-plan
    method: str = "plan"  # linear | plan | ksame | ksame-plan
    per_label: int = 50  # images wanted per label (class balance); ksame: at most one per k-same group
    keep: str = "interior"  # path points written: "interior" (not the endpoints), "all", or indices "1,3,5"
    paths_per_item: int = 8  # paths optimised together in one work item (ksame: groups per item)
    seed: int = 0  # every item's seed derives from it
    truncation_psi: float = 1.0  # linear/plan: truncation of the sampled endpoints (1 = off)
    endpoint_filter: bool = True  # linear/plan: keep only drawn endpoints the class guide assigns to the label
    chunk: int | None = None  # images per synthesis + classifier pass; None = 64 on CPU/MPS, sized to memory on CUDA
    max_rounds: int = 4  # rounds of items (later rounds top up labels short after gate rejections)
    adversarial_rounds: int = 0  # plan/ksame-plan: rounds of attacker fine-tuning before the final generation (each
    # one more generation plus a fine-tune; latentwalk.generation.adversarial); 0 = off, the walk steers against φ_id
    adversarial_epochs: int = 5  # epochs of each attacker fine-tune (only with adversarial_rounds > 0)
    device: str = "auto"  # auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps
    amp: bool | None = None  # plan/ksame-plan: bfloat16 autocast; None = on for CUDA and for CPUs with native
    # bfloat16 (gan_zoo.devices.native_bfloat16), off elsewhere
    plan: PlanConfig = field(default_factory=_default_plan)  # the path: n_steps (points per path, endpoints
    # included; linear too), and for plan/ksame-plan optim_steps (PLAN's reference: 500; here 50, the knee of
    # benchmarks/bench_plan_convergence.py: 200 reach the same objective), lr, weights, privacy_loss,
    # verification_margin, schedule, warmup_steps, init, early_stop_plateau
    ksame: KSameConfig = field(default_factory=KSameConfig)  # ksame/ksame-plan: k, method, spread
    gate: GateConfig = field(default_factory=GateConfig)  # the privacy gate and the label gate

    def __post_init__(self) -> None:
        for name, kind in _NESTED.items():
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(f"{name} must be a {kind.__name__}, got {type(getattr(self, name)).__name__}")
        _check_owned(self.plan, ("n_steps", "optim_steps", "lr", "weights", "privacy_loss", "verification_margin",
                                 "schedule", "warmup_steps", "init", "early_stop_plateau", "log_every"), "plan",
                     "chunk and amp are GenerateConfig's own")  # fmt: skip
        _check_owned(self.ksame, ("k", "method", "spread"), "ksame", "")
        for name in ("per_label", "paths_per_item", "max_rounds", "adversarial_rounds", "adversarial_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
        for name, low in (("per_label", 1), ("paths_per_item", 1), ("max_rounds", 1), ("adversarial_rounds", 0),
                          ("adversarial_epochs", 1)):  # fmt: skip
            if getattr(self, name) < low:
                raise ConfigError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.method not in METHODS:
            raise ConfigError(f'unknown method "{self.method}"; expected one of {", ".join(METHODS)}')
        for name in ("gan", "guides", "data", "layout", "device", "keep"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a string, got {getattr(self, name)!r}")
        if self.latents is not None and not isinstance(self.latents, str):
            raise ConfigError(f"latents must be a path string or None, got {self.latents!r}")
        if self.chunk is not None and (isinstance(self.chunk, bool) or not isinstance(self.chunk, int)):
            raise ConfigError(f"chunk must be an integer >= 1 or None (auto), got {self.chunk!r}")
        if self.chunk is not None and self.chunk < 1:
            raise ConfigError(f"chunk must be >= 1, got {self.chunk}")
        if not isinstance(self.endpoint_filter, bool):
            raise ConfigError(f"endpoint_filter must be true or false, got {self.endpoint_filter!r}")
        if self.amp is not None and not isinstance(self.amp, bool):
            raise ConfigError(f"amp must be true, false or unset (auto), got {self.amp!r}")
        tp = self.truncation_psi
        if isinstance(tp, bool) or not isinstance(tp, (int, float)) or not math.isfinite(tp):
            raise ConfigError(f"truncation_psi must be a finite number, got {tp!r}")
        object.__setattr__(self, "truncation_psi", float(tp))  # 1 and 1.0 are one configuration
        parse_keep(self.keep, self.plan.n_steps)  # raises on a bad selection
        self._check_adversarial()

    def _check_adversarial(self) -> None:
        """Adversarial rounds need a walk that steers against an identity net; their epochs need rounds."""
        if self.adversarial_rounds > 0 and self.method not in ADVERSARIAL_METHODS:
            raise ConfigError(
                f"adversarial_rounds applies to methods {' and '.join(ADVERSARIAL_METHODS)} (a walk against an "
                f"identity net), not {self.method}; leave adversarial_rounds at 0 or use --method plan"
            )
        if self.adversarial_rounds > 0 and self.plan.optim_steps == 0:
            raise ConfigError("adversarial_rounds needs optim_steps >= 1 (with 0 the path is straight and no identity "
                              "net steers it); set optim_steps or leave adversarial_rounds at 0")  # fmt: skip
        if self.adversarial_rounds == 0 and self.adversarial_epochs != RECORDED_IF_SET["adversarial_epochs"]:
            raise ConfigError(f"adversarial_epochs applies only with adversarial_rounds >= 1, got "
                              f"adversarial_epochs {self.adversarial_epochs} with no rounds; set adversarial_rounds "
                              "or drop it")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """The flat record (:data:`FLAT`'s names and order), as ``run.json`` and the resume check read it; the options
        of :data:`RECORDED_IF_SET` only where they differ from its defaults (a missing one is its default)."""
        flat = self.flat_options()
        return {k: v for k, v in flat.items() if k not in RECORDED_IF_SET or v != RECORDED_IF_SET[k]}

    def flat_options(self) -> dict[str, Any]:
        """Every flat option (:data:`FLAT`'s names and order), defaults included: the flags' list."""
        return {flat: getattr(self if sub is None else getattr(self, sub), name) for flat, (sub, name) in FLAT.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerateConfig:
        """From flat option names (:meth:`to_dict`, the flags, a TOML file's values); unknown names refused."""
        unknown = sorted(set(data) - set(FLAT))
        if unknown:
            raise ConfigError(f"unknown {cls.STAGE} option(s) {unknown}; expected some of {sorted(FLAT)}")
        top: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {sub: {} for sub in _NESTED}
        for flat, value in data.items():
            sub, name = FLAT[flat]
            (top if sub is None else nested[sub])[name] = value
        plan = replace(_default_plan(), **nested["plan"])
        return cls(**top, plan=plan, ksame=KSameConfig(**nested["ksame"]), gate=GateConfig(**nested["gate"]))

    def check_inputs(self) -> None:
        """Raise :class:`ConfigError` when a required input for the method is missing."""
        if not self.guides:
            raise ConfigError("guides is required: a folder written by `latentwalk guides train` (--guides DIR)")
        if not self.data:
            raise ConfigError("data is required: the real dataset the guides were trained on (--data DIR)")
        if self.method in ("ksame", "ksame-plan") and not self.latents:
            raise ConfigError(
                f"method {self.method} needs the inverted real latents (--latents FILE from `latentwalk gan invert`)"
            )


def _check_owned(sub: Any, used: tuple[str, ...], name: str, note: str) -> None:
    """Refuse a nested config that sets an option ``generate`` does not use (it would be ignored and unrecorded)."""
    default = type(sub)()
    extra = [f.name for f in fields(sub) if f.name not in used and getattr(sub, f.name) != getattr(default, f.name)]
    if extra:
        raise ConfigError(
            f"generate uses {', '.join(used)} of {name}; leave {', '.join(extra)} at the default"
            + (f" ({note})" if note else "")
        )


def parse_keep(keep: str, n_steps: int) -> tuple[int, ...]:
    """Path points to write: ``"interior"``, ``"all"`` or comma-separated indices in ``[0, n_steps)``."""
    if not isinstance(keep, str):
        raise ConfigError(f'keep must be "interior", "all" or indices like "1,3,5", got {keep!r}')
    if keep == "interior":
        return tuple(range(1, n_steps - 1))
    if keep == "all":
        return tuple(range(n_steps))
    try:
        steps = tuple(int(part) for part in keep.split(","))
    except ValueError:
        raise ConfigError(f'keep must be "interior", "all" or indices like "1,3,5", got "{keep}"') from None
    if not steps or len(set(steps)) != len(steps) or any(s < 0 or s >= n_steps for s in steps):
        raise ConfigError(f"keep indices must be distinct and in [0, {n_steps}) for n_steps={n_steps}, got {keep}")
    return tuple(sorted(steps))


PATH_FIELDS = ("guides", "data", "latents")  # resolved against the TOML file's folder when relative

# The tables of a TOML run file: table -> {key in the table: GenerateConfig field (= flag name)}.
TABLES: dict[str, dict[str, str]] = {
    "plan": {
        "optim_steps": "optim_steps",
        "lr": "lr",
        "weights": "weights",
        "privacy_loss": "privacy_loss",
        "verification_margin": "verification_margin",
        "schedule": "lr_schedule",
        "warmup_steps": "warmup_steps",
        "init": "path_init",
        "early_stop_plateau": "early_stop_plateau",
        "amp": "amp",
    },
    "ksame": {"k": "k", "method": "ksame_method", "spread": "ksame_spread"},
    "gate": {
        "space": "gate_space",
        "threshold": "gate_threshold",
        "percentile": "gate_percentile",
        "split": "gate_split",
        "label_gate": "label_gate",
        "label_threshold": "label_threshold",
        "label_percentile": "label_percentile",
    },
}


def _flatten_tables(path: Path, values: dict[str, Any]) -> dict[str, Any]:
    """Top-level keys and ``[plan]``/``[ksame]``/``[gate]`` tables -> flat option names; misplaced keys refused."""
    home = {field: (table, key) for table, keys in TABLES.items() for key, field in keys.items()}
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            if key not in TABLES:
                raise ConfigError(
                    f"config file {path}: unknown table [{key}]; the tables are {', '.join(f'[{t}]' for t in TABLES)}"
                )
            for sub, v in value.items():
                sub = sub.replace("-", "_")
                if sub not in TABLES[key]:
                    raise ConfigError(
                        f"config file {path}: unknown option {sub!r} in [{key}]; expected some of {sorted(TABLES[key])}"
                    )
                flat[TABLES[key][sub]] = v
        elif key in home:
            table, sub = home[key]
            raise ConfigError(
                f"config file {path}: {key} belongs in the [{table}] table now; write [{table}] {sub} = ..."
            )
        else:
            flat[key] = value
    return flat


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a TOML run file into option values (keys may use ``-`` or ``_``; relative paths are the file's).

    The walk's, the grouping's and the gate's options sit in the tables of :data:`TABLES` (``[plan]``, ``[ksame]``,
    ``[gate]``); everything else is a top-level ``key = value``. Besides :class:`GenerateConfig`'s fields the file may
    hold ``out`` (the output folder), returned as given. Returns the flat option names (those of the flags).

    Raises:
        ConfigError: unreadable TOML, unknown keys or tables, or a table option written at the top level (the
            message names its table).
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid TOML ({e})") from None
    values = _flatten_tables(path, {key.replace("-", "_"): value for key, value in raw.items()})
    GenerateConfig.from_dict({k: v for k, v in values.items() if k != "out"})  # unknown keys, bad values
    for key in PATH_FIELDS:
        if isinstance(values.get(key), str) and values[key] and not Path(values[key]).is_absolute():
            values[key] = str((path.parent / values[key]).resolve())
    gan = values.get("gan")
    if isinstance(gan, str):
        values["gan"] = resolve_spec_path(gan, path.parent)
    return values


def resolve_spec_path(spec: str, base: Path) -> str:
    """Make the path inside a ``lite:``/``stylegan:``/bare-path spec absolute, relative to ``base``."""
    scheme, sep, rest = spec.partition(":")
    if sep and scheme in ("lite", "stylegan"):
        return f"{scheme}:{(base / rest).resolve()}" if not Path(rest).is_absolute() else spec
    if sep and scheme in ("demo", "module"):
        return spec
    return str((base / spec).resolve()) if not Path(spec).is_absolute() else spec


def public_spec(spec: str) -> str:
    """A generator spec as recorded: ``demo:``/``module:`` specs as given, a path withheld."""
    scheme, sep, _ = spec.partition(":")
    if sep and scheme in ("demo", "module"):
        return spec
    return f"{scheme}:{WITHHELD}" if sep and scheme in ("lite", "stylegan") else WITHHELD


def public_config(cfg: GenerateConfig) -> dict[str, Any]:
    """The configuration as written to ``run.json``: paths to private inputs withheld."""
    d = cfg.to_dict()
    d["weights"] = list(cfg.plan.weights)
    for key in PATH_FIELDS:
        if d[key]:
            d[key] = WITHHELD
    d["gan"] = public_spec(cfg.gan)
    return d
