"""One typed tree of settings: defaults, overridden by a YAML recipe, overridden by --flags.

Every field is a command-line flag (underscores become dashes, e.g. `local_steps` is
`--local-steps`); field names are unique across sections so a recipe may be flat or nested.
Unknown keys and ill-typed values are errors.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml


class ConfigError(ValueError):
    """A setting is unknown, ill-typed or inconsistent. The message is one line for the user."""


def opt(default, help: str, choices=None, check=None):
    """A setting: default, help line, allowed choices, and check = (predicate, "what it must be")."""
    return field(default=default, metadata={"help": help, "choices": choices, "check": check})


def at_least(lo):
    return (lambda v: v >= lo, f">= {lo}")


def above(lo):
    return (lambda v: v > lo, f"> {lo}")


# The largest float32: a learning rate or weight decay above it cannot reach the float32 kernels.
FLOAT32_MAX = 3.4028234663852886e38


def float32_scalar(lo_open: bool):
    """> 0 (LO_OPEN) or >= 0, and small enough for a float32: the kernels take it as one."""
    def ok(v) -> bool:
        if v > FLOAT32_MAX:
            raise ValueError(f"{v:g} is more than a float32 holds (at most {FLOAT32_MAX:.4g})")
        return v > 0 if lo_open else v >= 0
    return (ok, "> 0" if lo_open else ">= 0")


def fraction(v) -> bool:
    return 0 <= v < 1


IN_UNIT = (fraction, "in [0, 1)")
INCREASING = (lambda v: all(x >= 0 for x in v) and all(b > a for a, b in zip(v, v[1:])),
              "increasing numbers >= 0")
ALL_AT_LEAST_1 = (lambda v: all(isinstance(h, int) and h >= 1 for h in v), "integers >= 1, all of them")
TWO_FRACTIONS = (lambda v: len(v) == 2 and all(fraction(b) for b in v), "two numbers in [0, 1)")


def partition_spec(spec: str) -> bool:
    from dsgd.data.partition import parse_partition
    parse_partition(spec)  # raises ValueError naming the problem
    return True


# The names each registry holds (dsgd.train.build.ALGORITHMS, dsgd.models, dsgd.data.DATASETS), listed
# here so that --help needs no torch; the registries refuse to load if they and these lists differ.
DATASETS = ("fashion-mnist", "cifar10", "synthetic", "fortunes")
MODELS = ("cnn", "mlp", "resnet20", "resnet56", "resnet18", "vgg16", "gpt")


@dataclass
class DataConfig:
    dataset: str = opt("fashion-mnist", "training data: images (fashion-mnist, cifar10, synthetic) or text "
                       "(fortunes: the Debian package's English quotations as bytes, for --model gpt)",
                       list(DATASETS))
    data_dir: Optional[str] = opt(None, "directory of the dataset files; none: the Debian package path for "
                                  "Fashion-MNIST (CIFAR-10 needs one)")
    replacement: bool = opt(False, "sample local batches with replacement (else: one shared shuffle per epoch "
                            "split into disjoint shards)")
    steps_per_epoch: int = opt(0, "steps per epoch; 0 derives floor(train size / total batch)", check=at_least(0))
    context: int = opt(64, "tokens (bytes) per sample of a text dataset: the language model's context",
                       check=at_least(1))
    augment: Optional[bool] = opt(None, "random crop + flip; none: on for CIFAR-10, off for Fashion-MNIST")
    label_noise: float = opt(0.0, "probability of replacing a drawn label by a random other class", check=IN_UNIT)
    partition: str = opt("iid", "which samples each worker trains on: iid (every worker samples the whole set), "
                         "dirichlet:alpha=A (each class split over the workers in Dirichlet(alpha) proportions), "
                         "shards:k=K (label-sorted shards, K per worker), sorted (label-sorted, one contiguous "
                         "part per worker)", check=(partition_spec, "a partition spec"))


@dataclass
class ModelConfig:
    model: str = opt("cnn", "architecture: an image classifier, or gpt (a small byte-level transformer language "
                     "model, for text datasets)", list(MODELS))
    norm: str = opt("bn", "normalization layers", ["bn", "gn", "none"])
    n_groups: int = opt(8, "groups of GroupNorm (with --norm gn)", check=at_least(1))


@dataclass
class OptimConfig:
    optimizer: str = opt("sgd", "local optimizer", ["sgd", "adamw"])
    lr: float = opt(0.05, "peak learning rate (after warmup, before decay)", check=float32_scalar(True))
    lr_scaling: str = opt("none", "multiply --lr by the number of workers (linear) or not", ["none", "linear"])
    start_lr: float = opt(0.0, "learning rate at the start of warmup", check=float32_scalar(False))
    warmup_epochs: float = opt(0.0, "linear warmup length in epochs (0: none)", check=at_least(0))
    decay: str = opt("step", "learning-rate decay", ["step", "cosine", "constant"])
    milestones: tuple = opt((), "epochs at which step decay multiplies the lr by --gamma (comma-separated)",
                            check=INCREASING)
    gamma: float = opt(0.1, "step decay factor", check=above(0))
    momentum: float = opt(0.0, "SGD momentum (beta of quasi-global momentum with --algorithm qgm)", check=IN_UNIT)
    nesterov: bool = opt(False, "Nesterov momentum")
    weight_decay: float = opt(0.0, "weight decay (decoupled for AdamW)", check=float32_scalar(False))
    no_decay_norm_bias: bool = opt(False, "no weight decay on biases and normalization parameters")
    betas: tuple = opt((0.9, 0.999), "AdamW betas (two numbers)", check=TWO_FRACTIONS)
    eps: float = opt(1e-8, "AdamW epsilon", check=above(0))


ALGORITHMS = ("csgd", "local", "postlocal", "qsr", "dsgd", "gradient-tracking", "d2", "exact-diffusion", "qgm", "sgp",
              "choco", "diloco", "gossip-diloco", "streaming-diloco", "sparta")


def codec_spec(spec: str) -> bool:
    from dsgd.compress import parse_codec
    parse_codec(spec)  # raises ValueError naming the problem
    return True


@dataclass
class AlgorithmConfig:
    algorithm: str = opt("dsgd", "what to mix and when (README: the algorithm table)", list(ALGORITHMS))
    local_steps: int = opt(1, "H: local steps between averaging (local, qsr base, post-local after the switch) "
                           "or between gossip rounds (dsgd and the gossip rules)", check=at_least(1))
    mix_buffers: bool = opt(True, "mix BatchNorm running statistics with the parameters")
    mix_optimizer_state: bool = opt(False, "mix optimizer state (momentum, Adam moments) with the parameters")


@dataclass
class GossipConfig:
    topology: str = opt("exponential", "gossip graph: a topologies spec, e.g. ring, torus:rows=4,cols=4, "
                        "exponential, one-peer-exponential, matrix-file:path=W.npy; push graphs "
                        "(random-out, directed-exponential, digraph-file) for sgp")
    global_every: int = opt(0, "exact average every this many steps (0: never)", check=at_least(0))
    order: str = opt("atc", "dsgd: adapt-then-combine or combine-then-adapt", ["atc", "cta"])
    overlap: bool = opt(False, "dsgd: overlap the gossip step with the next forward/backward")


@dataclass
class PostLocalConfig:
    switch_epochs: tuple = opt((), "post-local phase boundaries in epochs; none: one switch, at the "
                               "first lr milestone only (no milestones: a single phase)", check=INCREASING)
    phase_local_steps: tuple = opt((), "post-local H per phase; none: 1, then --local-steps", check=ALL_AT_LEAST_1)


@dataclass
class QSRConfig:
    qsr_alpha: float = opt(0.0, "QSR alpha: H = max(H_base, floor((alpha/lr)^p))", check=at_least(0))
    qsr_power: float = opt(2.0, "QSR exponent p (2 quadratic, 1 linear)", check=above(0))


@dataclass
class QGMConfig:
    qgm_buffer_factor: float = opt(0.9, "qgm: mu in m_hat <- mu m_hat + (1 - mu) (x - x_mixed) / lr", check=IN_UNIT)


@dataclass
class OuterConfig:
    outer_optimizer: str = opt("nesterov", "diloco family: the optimizer of the anchors' outer step on the mixed "
                               "pseudo-gradient (nesterov: DiLoCo's; sgd: momentum SGD, SlowMo's; adam)",
                               ["nesterov", "sgd", "adam"])
    outer_lr: float = opt(0.7, "diloco family: the outer learning rate (1 with --outer-momentum 0 and --outer-optimizer "
                          "sgd is local SGD)", check=float32_scalar(True))
    outer_momentum: float = opt(0.9, "diloco family: the outer momentum (Adam's beta1 with --outer-optimizer adam)",
                                check=IN_UNIT)
    fragments: int = opt(2, "streaming-diloco: F, the groups of consecutive layers that take turns through the period",
                         check=at_least(1))
    fragment_delay: int = opt(1, "streaming-diloco: tau, inner steps between a fragment's exchange starting and "
                              "landing (below --local-steps)", check=at_least(0))
    fragment_alpha: float = opt(0.5, "streaming-diloco: when a fragment lands, x <- (1 - alpha) x + alpha x_anchor "
                                "(1: the new anchor, as DiLoCo)", check=(lambda v: 0 <= v <= 1, "in [0, 1]"))
    sparta_fraction: float = opt(0.05, "sparta: the fraction of coordinates averaged after every step",
                                 check=(lambda v: 0 < v <= 1, "in (0, 1]"))


@dataclass
class CompressConfig:
    compress: str = opt("none", "codec of what travels: none, fp16, bf16, int8:block=B, sign[:block=B], "
                        "top-k:ratio=R|count=K, random-k:ratio=R|count=K[,shared=true], qsgd:levels=S[,scaled=true], "
                        "powersgd:rank=R (csgd only); choco gossips it, csgd / local / postlocal / qsr average it "
                        "with error feedback",
                        check=(codec_spec, "a codec spec"))
    consensus_step: float = opt(0.5, "choco: gamma in x <- x_half + gamma (s - x_hat); 1 with --compress none is "
                                "plain gossip, aggressive codecs need less", check=(lambda v: 0 < v <= 1, "in (0, 1]"))


@dataclass
class RunConfig:
    epochs: float = opt(1.0, "training length in epochs; on --resume, the new total length (2 after a run "
                        "of 1 trains one more epoch)", check=above(0))
    batch_size: int = opt(32, "local batch size per worker", check=at_least(1))
    total_batch_size: int = opt(0, "total batch size; if given it must equal workers x local batch", check=at_least(0))
    physical_batch_size: int = opt(0, "largest batch put through the model at once (gradient accumulation)",
                                   check=at_least(0))
    seed: int = opt(0, "seed: same seed, same run", check=(lambda v: 0 <= v < 2 ** 63, "in [0, 2^63)"))
    eval_every: int = opt(100, "evaluate every this many steps (and at the end)", check=at_least(1))
    eval_on_start: bool = opt(False, "evaluate the initial model")
    eval_samples: int = opt(0, "evaluate on the first this many test samples (0: the whole test set)",
                            check=at_least(0))
    heterogeneity_metrics: Optional[bool] = opt(None, "log zeta2 (gradient heterogeneity at x_bar) and each "
                                                "worker's own test accuracy at every evaluation; none: on unless "
                                                "--partition iid")
    probe_samples: int = opt(256, "samples of each worker's part (fixed for the run) on which zeta2 is estimated",
                             check=at_least(1))
    bn_batches: int = opt(100, "batches used to re-estimate BatchNorm statistics of the averaged model "
                          "(at most 10,000: more only repeats the training set)",
                          check=(lambda v: 0 <= v <= 10_000, "in [0, 10000]"))
    out: str = opt("runs/latest", "run directory; it holds one run (see --overwrite, --resume)",
                   check=(lambda v: bool(v.strip()), "a directory, not empty"))
    overwrite: bool = opt(False, "start a new run in --out even though it holds one: that run's config, metrics, "
                          "checkpoints, logs and TensorBoard files are deleted once the new run has started "
                          "(other files stay); without it such a start is refused")
    backend: str = opt("mpi", "communication backend", ["mpi", "torch"])
    workers_per_rank: int = opt(1, "workers held by each process (global workers = ranks x this)", check=at_least(1))
    vectorize: str = opt("auto", "train a rank's workers in one batched pass", ["auto", "on", "off"])
    device: str = opt("auto", "cpu, cuda (the local rank's GPU), cuda:N, or auto (the local rank's GPU when "
                      "there is one, else cpu)")
    share_gpus: bool = opt(False, "let several ranks use one GPU (otherwise refused, naming the ranks)")
    log_every: int = opt(20, "progress line every this many steps (rank 0)", check=at_least(1))
    checkpoint_every: int = opt(0, "also checkpoint every this many steps (0: only at start, lr decays and end)",
                                check=at_least(0))
    keep_checkpoints: int = opt(3, "keep this many newest checkpoints besides those at lr decays and the previous "
                                "complete one, the fallback of a damaged newest (0: all)",
                                check=at_least(0))
    threads: int = opt(0, "torch threads per process (0: leave as is; at most 1024)",
                       check=(lambda v: 0 <= v <= 1024, "in [0, 1024]"))
    resize: bool = opt(False, "on --resume, continue with another number of workers than the checkpoint's: "
                       "workers that remain keep their state, new ones start from the average model; not "
                       "bit-exact (another split of the same workers needs no flag and is exact)")
    straggler_rank: int = opt(-1, "slow this rank's compute down on purpose, to measure what the others wait for it "
                              "(-1: none); see --straggler-delay", check=at_least(-1))
    straggler_delay: float = opt(0.0, "seconds the --straggler-rank sleeps after computing its gradients, every step "
                                 "(at most a day)", check=(lambda v: 0 <= v <= 86400, "in [0, 86400] (a day)"))
    straggler_random: bool = opt(False, "draw each step's delay uniformly from [0, 2 x --straggler-delay] (seeded by "
                                 "--seed and the step) instead of a fixed delay")
    elastic: bool = opt(False, "survive lost ranks: when a rank dies, the survivors shrink the job to themselves, "
                        "rebuild the graph and the rule's state and go on without a restart (needs --backend mpi "
                        "started as `mpirun --with-ft ulfm`; docs/elastic.md)")
    lost_data: str = opt("reassign", "with --elastic, the data of lost workers: reassign (the training set is split "
                         "again over the survivors from the change on) or drop (each survivor keeps its own shard)",
                         ["reassign", "drop"])
    comm_timeout: float = opt(0.0, "fail an exchange or collective that takes longer than this many seconds, naming "
                              "the ranks that stopped answering (0: wait forever); with --backend torch, the timeout of every "
                              "torch.distributed operation, setup and checkpoint barriers included (0: 300 s)",
                              check=at_least(0))


SECTIONS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "algo": AlgorithmConfig,
            "gossip": GossipConfig, "postlocal": PostLocalConfig, "qsr": QSRConfig, "qgm": QGMConfig,
            "outer": OuterConfig, "compress": CompressConfig, "run": RunConfig}


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    algo: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    gossip: GossipConfig = field(default_factory=GossipConfig)
    postlocal: PostLocalConfig = field(default_factory=PostLocalConfig)
    qsr: QSRConfig = field(default_factory=QSRConfig)
    qgm: QGMConfig = field(default_factory=QGMConfig)
    outer: OuterConfig = field(default_factory=OuterConfig)
    compress: CompressConfig = field(default_factory=CompressConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def as_dict(self) -> dict:
        return {name: {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(getattr(self, name)).items()}
                for name in SECTIONS}


def _fields():
    """(section, field) for every setting, keyed by field name."""
    out = {}
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            out[f.name] = (section, f, hints[f.name])
    return out


FIELDS = _fields()


def _coerce(name: str, hint, value):
    """Convert a YAML or command-line value to the field's type, or raise ConfigError."""
    base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Union else hint
    if value is None:
        if base is hint:
            raise ConfigError(f"{name} cannot be empty")
        return None
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if base is tuple:
            items = value if isinstance(value, (list, tuple)) else [v for v in str(value).split(",") if v.strip()]
            return tuple(_number(v) for v in items)
        if base is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        if base in (int, float) and isinstance(value, bool):  # YAML's true is not the number 1
            raise ValueError
        if base is str and not isinstance(value, (str, int, float)):  # a mapping or a list is not text
            raise ValueError
        return base(value)
    except (TypeError, ValueError):
        kind = {tuple: "a list of numbers", str: "text"}.get(base, base.__name__)
        raise ConfigError(f"{name} must be {kind}, got {value!r}") from None


def _number(text) -> int | float:
    """'3' -> 3, '0.5' and '1e-3' -> floats; 'inf' too (refused later with the flag's name)."""
    if isinstance(text, bool):
        raise ValueError(text)
    if isinstance(text, (int, float)):
        return text
    try:
        return int(str(text).strip())
    except ValueError:
        return float(str(text).strip())


def _set(cfg: Config, name: str, value) -> None:
    if name not in FIELDS:
        raise ConfigError(f"unknown setting {name!r}")
    section, f, hint = FIELDS[name]
    value = _coerce(name, hint, value)
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    check = f.metadata.get("check")
    flag = "--" + name.replace("_", "-")
    numbers = value if isinstance(value, tuple) else (value,)
    if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):  # inf passes every "> 0" check
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
        raise ConfigError(f"{flag} must be a finite number, got {shown}")
    try:
        ok = check is None or value is None or check[0](value)
    except ValueError as e:  # the check names the problem itself
        raise ConfigError(f"{flag}: {e}") from None
    if not ok:
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else repr(value) if value == "" else value
        raise ConfigError(f"{flag} must be {check[1]}, got {shown}")
    setattr(getattr(cfg, section), name, value)


def load_recipe(path: str | Path) -> dict[str, Any]:
    """A recipe's settings as a flat dict (sections are flattened)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"recipe {path} does not exist")
    try:
        raw = yaml.load(p.read_bytes().decode("utf-8"), Loader=_UniqueKeyLoader) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"recipe {path} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start})") \
            from None
    except OSError as e:
        raise ConfigError(f"recipe {path} cannot be read ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {path} is not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"recipe {path} must be a mapping of settings")
    flat = {}
    for k, v in raw.items():
        k = str(k).replace("-", "_")
        if k in SECTIONS and k not in FIELDS and not isinstance(v, dict):  # "model: cnn" is a setting
            raise ConfigError(f"recipe {path}: {k} is a section: give its settings under it as a mapping "
                              f"({k}:, then indented name: value lines), or the settings alone at the top")
        items = [(str(kk).replace("-", "_"), vv) for kk, vv in v.items()] if k in SECTIONS and isinstance(v, dict) \
            else [(k, v)]
        for key, value in items:
            if key in flat:  # the same setting at the top and in its section, or in two sections
                raise ConfigError(f"recipe {path} gives setting {key!r} twice")
            flat[key] = value
    return flat


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (line {key_node.start_mark.line + 1})", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _metavar(f, hint) -> str:
    base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Union else hint
    if f.metadata.get("choices"):
        return "{" + ",".join(f.metadata["choices"]) + "}"
    return {bool: "{true,false}", int: "INT", float: "FLOAT", tuple: "LIST", str: "STR"}.get(base, "VALUE")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m dsgd.train",
        description="Train one model on many workers: C-SGD, local SGD, post-local SGD, QSR, D-SGD, gradient "
                    "tracking, D2 / exact diffusion, quasi-global momentum or push-sum, all as rules over one "
                    "mixing step. Launch under mpirun; each rank holds --workers-per-rank workers.")
    ap.add_argument("--config", metavar="RECIPE", help="YAML recipe; flags given here override it")
    ap.add_argument("--resume", metavar="RUN", help="run directory or checkpoint to continue from; auto: the "
                    "--out directory's latest checkpoint when it has one, else a fresh start (requeued jobs)")
    for section, cls in SECTIONS.items():
        group = ap.add_argument_group(section)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            shown = "none" if shown in ((), "", None) else shown
            group.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None,
                               metavar=_metavar(f, hints[f.name]), help=f"{f.metadata['help']} (default: {shown})")
    return ap


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise ConfigError(message)


def parse(argv: list[str] | None = None) -> tuple[Config, argparse.Namespace]:
    """Defaults (or a resumed run's saved settings) <- recipe <- flags. Raises ConfigError."""
    ap = build_parser()
    ap.__class__ = _Parser
    ns = ap.parse_args(argv)
    cfg = Config()
    asked, ns.saved = ns.resume, None
    if ns.resume == "auto":
        ns.resume = _auto_resume(ns)
    ns.auto_fresh = asked == "auto" and not ns.resume  # nothing to resume: start over in --out
    if ns.resume:
        cfg = _saved_config(ns.resume)
        ns.saved = cfg.as_dict()  # the run's settings before this command, to record what it changes
    ns.given = set()  # settings the user named (recipe or flag), for "ignored by this algorithm" warnings
    if ns.config:
        for k, v in load_recipe(ns.config).items():
            _set(cfg, k, v)
            ns.given.add(k)
    for name in FIELDS:
        v = getattr(ns, name)
        if v is not None:
            _set(cfg, name, v)
            ns.given.add(name)
    if asked and cfg.run.overwrite:
        raise ConfigError("--overwrite true starts a new run and --resume continues one: give one of them")
    return cfg, ns


def _auto_resume(ns) -> str | None:
    """--resume auto: the run directory (--out, else the recipe's, else the default) if it holds any
    trace of a checkpoint; None (start fresh) otherwise."""
    out = ns.out
    if out is None and ns.config:
        out = load_recipe(ns.config).get("out")
    out = Path(out or RunConfig.out)
    return str(out) if _holds_checkpoint(out) else None


def _holds_checkpoint(out: Path) -> bool:
    """latest.json, a step folder's manifest, or a rank file. Such a run is resumed, or refused with a
    reason when none of its checkpoints is whole; a fresh start would replace it, so a lost or damaged
    latest.json must not look like a directory without checkpoints."""
    ck = out / "checkpoints"
    return ((ck / "latest.json").is_file() or any(ck.glob("step-*/manifest.json"))
            or any(ck.glob("step-*/rank*.pt")))


def _saved_config(resume: str) -> Config:
    from dsgd.train.checkpoint import CheckpointError, find
    try:
        run_dir, _, _ = find(resume)
    except CheckpointError as e:
        raise ConfigError(str(e)) from None
    from dsgd.train.rundir import read_settings  # missing, empty or damaged: one line, never the defaults
    cfg = from_dict(read_settings(Path(run_dir)))
    cfg.run.out = str(run_dir)
    cfg.run.overwrite = False  # what started the run, not a setting it continues with
    return cfg


def from_dict(d: dict) -> Config:
    cfg = Config()
    for section, values in d.items():
        for k, v in (values.items() if isinstance(values, dict) else [(section, values)]):
            _set(cfg, k, v)
    return cfg
