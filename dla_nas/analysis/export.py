"""Export chosen trials of a run as model configs (and optionally ONNX).

A config is a YAML file ``<space>-trial<N>-<hash>.yaml`` with ``genome:`` (what
``dla_nas.build_model(path, ...)`` and ``dla-nas show/train`` read) and ``metadata:`` (where it
came from: run, trial, dataset, proxy fidelity, objective values, params and MACs at the
search input shape). Every written config is rebuilt from the file and its params and MACs
are checked against the run's record. A ``dla-nas train`` folder exports its one network the
same way (``export_training``), as ``<name>-<hash>.yaml``.

The input shape (dataset, resolution, channels, classes) is run.yaml's ``data``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from ..arch.backbone_genome import genome_from_dict
from ..arch.builder import build_model
from ..arch.cost import model_cost
from ..arch.genome import Genome, exported_metadata
from ..errors import CheckpointError, DlaNasError, GenomeError, OptionError, RunError, SpaceError
from ..files import atomic_path, safe_name, staged_folder, write_file
from ..results import TRAINED, RunStore, TrialRecord, load_run
from ..search.space import Proxy, Recipe, SearchSpace, kept_init
from ..train.config import from_scratch
from ..weights import TransferReport
from ..weights.loading import write_state_dict
from .confirm import CONFIRM_FILE, Confirmed, ConfirmRecord, ConfirmStore, summarize
from .int8 import calibration_sample, quantize
from .pareto import best_record, eligible, front, run_objectives
from .pareto import knee as front_knee  # export_run has a `knee` flag
from .predict import preprocessing_metadata


def export_run(run: Path, out: Path, *, pareto: bool = False, trial: int | None = None,
               best: str | None = None, knee: bool = False, onnx: bool = False,
               weights: bool = False, int8: bool = False) -> list[Path]:
    """Write one config (and ONNX file when ``onnx``) per chosen trial into ``out``; exactly
    one selector (``pareto``, ``trial``, ``best``, ``knee``) must be given. ``weights``: also
    write the trained weights of its confirmation (the seed with the best val accuracy) as
    ``<config>.safetensors``; ``int8``: also an int8 ONNX graph of those weights
    (``analysis.int8``), calibrated on the run's training images. Returns the paths."""
    run, out = Path(run), Path(out)
    given = selectors(pareto=pareto, trial=trial, best=best, knee=knee)
    if len(given) != 1:
        raise RunError(f"{run}: give exactly one of --pareto, --trial N, --best OBJECTIVE, "
                       f"--knee (got {', '.join(given) if given else 'none'})")
    _check_onnx_flags(run, onnx, weights, int8)  # fail before writing anything
    store = RunStore(run)
    info = store.info()
    records = load_run(run)
    chosen = _select(run, info, records, pareto=pareto, trial=trial, best=best, use_knee=knee)
    data = store.data()
    confirmations = ConfirmStore(run / CONFIRM_FILE)
    confirm_records = confirmations.records()
    confirmed = {(c.kind, c.hash): c for c in summarize(confirm_records,
                                                        data.get("class_names"))}
    trained = {r.trial: _confirmed_weights(run, confirmations, confirm_records, r)
               for r in chosen} if weights else {}
    paths: list[Path] = []
    with staged_folder(out) as stage:  # all the files of the export, or none
        for record in chosen:
            config, model = _write_config(run, info, record, data, stage,
                                          confirmed.get((record.kind, record.key)),
                                          trained.get(record.trial), confirmations.weights_dir)
            paths.append(config)
            if weights:
                paths.append(config.with_suffix(".safetensors"))
            if onnx:
                paths.append(_write_onnx(run, config, model))
            if int8:
                paths.append(quantize(paths[-1], _run_images(run, info), "train images"))
    return _moved(paths, out, weights)


def selectors(*, pareto: bool, trial: int | None, best: str | None, knee: bool) -> list[str]:
    """The selector flags given, by name."""
    return [name for name, on in (("--pareto", pareto), ("--trial", trial is not None),
                                  ("--best", best is not None), ("--knee", knee)) if on]


def is_training(folder: Path) -> bool:
    """Whether ``folder`` is the output of ``dla-nas train`` (a checkpoint, no run.yaml)."""
    return (folder / "checkpoint.pt").is_file() and not RunStore(folder).run_yaml.exists()


def export_training(folder: Path, out: Path, *, onnx: bool = False,
                    weights: bool = False, int8: bool = False) -> list[Path]:
    """Write the network of a ``dla-nas train`` folder as a config (and its trained weights
    as ``<config>.safetensors`` when ``weights``, ONNX when ``onnx``, int8 ONNX when
    ``int8``), rebuilt and checked as ``export_run``'s are. Returns the paths."""
    from ..train.checkpoint import load_checkpoint

    folder, out = Path(folder), Path(out)
    _check_onnx_flags(folder, onnx, weights, int8)
    checkpoint = folder / "checkpoint.pt"
    ckpt = load_checkpoint(checkpoint)
    try:
        genome = genome_from_dict(ckpt["genome"])
    except (GenomeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{checkpoint}: genome: {exc}") from None
    metrics = _mapping(ckpt, "metrics", checkpoint)
    if metrics.get("diverged"):
        raise RunError(f"{checkpoint}: its training diverged ({metrics.get('divergence')}); "
                       "there is no trained network to export")
    if not all(isinstance(v, torch.Tensor) for v in ckpt["state_dict"].values()):
        raise CheckpointError(f"{checkpoint}: state_dict: holds something other than tensors")
    label = safe_name(str(metrics.get("genome") or genome.name or "network"))
    path = out / f"{label}-{genome.canonical_hash()}.yaml"
    metadata = _training_metadata(checkpoint, ckpt, genome, metrics)
    num_classes, input_shape = ckpt["num_classes"], tuple(metadata["input_shape"])
    recorded = ((metrics["params"], metrics["macs"]) if isinstance(metrics.get("params"), int)
                and isinstance(metrics.get("macs"), int) else None)
    with staged_folder(out) as stage:  # all the files of the export, or none
        path = stage / path.name
        tensors = path.with_suffix(".safetensors") if weights else None
        if tensors is not None:
            write_state_dict(ckpt["state_dict"], tensors)
            metadata["weights"] = {"file": tensors.name, "from": "train",
                                   "seed": metadata["recipe"].get("seed"),
                                   "val_acc": metrics.get("val_acc"),
                                   "test_acc": metrics.get("test_acc"),
                                   "normalisation": {"mean": ckpt["data"]["mean"],
                                                     "std": ckpt["data"]["std"]}}
        _write_yaml(path, dataclasses.replace(genome, name=path.stem), metadata)
        model = _check_rebuild(path, tensors, str(checkpoint), recorded, num_classes,
                               input_shape[0], input_shape)
        paths = [path] + ([tensors] if tensors is not None else [])
        paths += [_write_onnx(folder, path, model)] if onnx else []
        if int8:
            from ..data import DataConfig, load_dataset

            data = ckpt["data"]
            train = load_dataset(DataConfig(data["name"], resolution=data["resolution"],
                                            resize=data.get("resize", "squash"))).train
            paths.append(quantize(paths[-1], calibration_sample(train.images),
                                  f"train images of {data['name']} (split seed 0)"))
    return _moved(paths, out, weights)


def _mapping(ckpt: dict[str, Any], key: str, checkpoint: Path) -> dict[str, Any]:
    """``ckpt[key]``, a mapping ({} when absent); ``CheckpointError`` when it is something else."""
    value = ckpt.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CheckpointError(f"{checkpoint}: {key}: {type(value).__name__}, not a mapping")
    return value


def _moved(paths: list[Path], out: Path, weights: bool) -> list[Path]:
    """``paths`` (written to a staging folder) as they are in ``out`` now. Without
    ``weights``, an older export's weights beside each config are removed, so no file beside
    a config belongs to another network."""
    moved = [out / p.name for p in paths]
    if not weights:
        for config in moved:
            config.with_suffix(".safetensors").unlink(missing_ok=True)
    return moved


def _training_metadata(checkpoint: Path, ckpt: dict[str, Any], genome: Genome,
                       metrics: dict[str, Any]) -> dict[str, Any]:
    """The ``metadata:`` of a trained network's config: data, recipe and ``metrics``."""
    import dla_nas

    data = ckpt["data"]
    config = _mapping(ckpt, "train_config", checkpoint)
    resolution = data["resolution"]
    metadata = {
        "checkpoint": str(checkpoint),
        "kind": "train",
        "hash": genome.canonical_hash(),
        "dataset": data.get("name"),
        "resolution": resolution,
        "in_chans": data["in_chans"],
        "num_classes": ckpt["num_classes"],
        "class_names": data.get("class_names"),
        "recipe": {"resolution": resolution,
                   **{k: config[k] for k in ("lr", "weight_decay", "backbone_lr_mult",
                                             "freeze_epochs", "batch_size", "epochs",
                                             "min_steps", "schedule", "seed", "sampling",
                                             "init") if k in config}},
        "preprocessing": preprocessing(data, data["in_chans"], resolution),
        "val_acc": metrics.get("val_acc"),
        "test_acc": metrics.get("test_acc"),
        "params": metrics.get("params"),
        "macs": metrics.get("macs"),
        "input_shape": [data["in_chans"], resolution, resolution],
        "dla_nas_version": dla_nas.__version__,
    }
    if ckpt.get("pretrained"):
        metadata["pretrained"] = ckpt["pretrained"]
    return metadata


# ---- selection ------------------------------------------------------------------------------
def _select(run: Path, info: dict[str, Any], records: list[TrialRecord], *, pareto: bool,
            trial: int | None, best: str | None, use_knee: bool) -> list[TrialRecord]:
    objectives = run_objectives(info)
    metrics = [m for m, _ in objectives]
    pool = eligible(records, metrics)
    if trial is not None:
        return [_by_number(run, records, pool, trial)]
    if best is not None and best not in metrics:
        raise RunError(f"--best: {best!r} is not allowed for {run} (one of its objectives: "
                       f"{', '.join(metrics)})")
    if not pool:
        raise RunError(f"{run}: no eligible trials (none trained within the constraints); "
                       "nothing to export")
    if best is not None:
        return [best_record(pool, next(o for o in objectives if o[0] == best))]
    run_front = front(records, objectives)
    return [front_knee(run_front, objectives)] if use_knee else run_front


def _by_number(run: Path, records: list[TrialRecord], pool: list[TrialRecord],
               number: int) -> TrialRecord:
    """The record of trial ``number``, if it can be exported."""
    matches = [r for r in records if r.trial == number]
    if not matches:
        known = _ranges(sorted({r.trial for r in records}))
        raise RunError(f"--trial: {run} has no trial {number} (trials: {known})")
    record = matches[-1]
    if record.status not in TRAINED or record.val_acc is None:
        ok = _ranges(sorted({r.trial for r in pool})) or "none"
        raise RunError(f"--trial: trial {number} of {run} is {record.status}"
                       f"{' (' + record.reason + ')' if record.reason else ''}, not a trained "
                       f"network; trained search trials: {ok}")
    if record.genome is None:
        raise RunError(f"--trial: trial {number} of {run} is the baseline {record.name}, "
                       "which is not a DLA genome")
    return record


def _ranges(numbers: list[int]) -> str:
    """[-1, 0, 1, 2, 5, 7, 8] -> '-1..2, 5, 7..8' (sorted input)."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in spans)


# ---- writing --------------------------------------------------------------------------------
def training_recipe(proxy: Proxy, record: TrialRecord, resolution: int) -> dict[str, Any]:
    """The recommended way to train an exported network: the settings it was searched with
    (its searched lr, weight decay and fine-tuning settings, else the proxy's nominal ones,
    and its searched augmentation), from the proxy's initial weights (``build_model(...,
    init=...)``), at its resolution. ``confirm`` trains with the same settings and init, for
    ``TrainConfig.min_steps`` steps (2,000) by default. ``searched`` names the settings the
    trial drew (``search --enqueue`` of the config queues the network with them)."""
    # as the proxy trained it: a hand design without pretrained weights from scratch
    cfg = from_scratch(Recipe.from_dict(record.recipe).train_config(proxy.train_config()),
                       record.pretrained is not None or record.kind != "baseline")
    drawn = {"augment": record.recipe["augment"]} if "augment" in record.recipe else {}
    return {"resolution": resolution, "lr": cfg.lr, "weight_decay": cfg.weight_decay,
            "backbone_lr_mult": cfg.backbone_lr_mult, "freeze_epochs": cfg.freeze_epochs,
            "batch_size": proxy.batch_size, "init": proxy.init, **drawn,
            "searched": sorted(record.recipe)}


def preprocessing(data: dict[str, Any], in_chans: int, resolution: int,
                  normalisation: dict | None = None) -> dict[str, Any]:
    """The ``preprocessing`` metadata of a network trained on ``data`` (a run.yaml's or a
    checkpoint's), normalised as its weights were (``normalisation``, else the data's)."""
    norm = normalisation or data
    return preprocessing_metadata(in_chans, resolution, data.get("resize", "squash"),
                                  norm.get("mean"), norm.get("std"))


def _proxy(run: Path, info: dict[str, Any]) -> Proxy:
    """The proxy of a run's space as the search trained with it (over an ImageNet backbone,
    with the fine-tuning defaults); the proxy section alone where run.yaml has no whole
    space (the defaults where it has none)."""
    space = info.get("space") or {}
    try:
        if "genome" in space or "backbone" in space:
            return SearchSpace.of_run(info).proxy
        stored = space.get("proxy", {})
        return kept_init(Proxy.parse(stored), stored)
    except SpaceError as exc:
        raise RunError(f"{RunStore(run).run_yaml}: space: {exc}") from None


def _confirmed_weights(run: Path, store: ConfirmStore, records: list[ConfirmRecord],
                       record: TrialRecord) -> ConfirmRecord:
    """The confirmation whose weights ``export --weights`` takes for a trial."""
    found = store.best_weights(records, record.kind, record.key)
    if found is None:
        raise RunError(f"{run}: trial {record.trial} has no confirmed weights; run `dla-nas "
                       f"confirm {run} --trial {record.trial}` first (it saves them)")
    return found


def _write_config(run: Path, info: dict[str, Any], record: TrialRecord, data: dict[str, Any],
                  out: Path, confirmed: Confirmed | None = None,
                  weights: ConfirmRecord | None = None,
                  weights_dir: Path | None = None) -> tuple[Path, nn.Module]:
    """Write one config (with its ``confirmed`` figures, and the confirmed ``weights`` from
    ``weights_dir`` beside it), rebuild it from the file and check params and MACs, and that
    the weights load whole. Returns the config and the rebuilt network."""
    import dla_nas

    space = info.get("space") or {}
    name = space.get("name", run.name)
    path = out / f"{name}-trial{record.trial}-{record.hash}.yaml"
    genome = dataclasses.replace(genome_from_dict(record.genome), name=path.stem)
    in_chans = data["in_chans"]
    resolution = record.recipe.get("resolution", data["resolution"])
    input_shape = (in_chans, resolution, resolution)
    metadata = {
        "run": str(run),
        "trial": record.trial,
        "kind": record.kind,
        "status": record.status,
        "hash": record.hash,
        "space": name,
        "dataset": data["name"],
        "resolution": resolution,
        "in_chans": in_chans,
        "num_classes": data["num_classes"],
        "class_names": data.get("class_names"),  # the outputs' names, in output order
        "fidelity": space.get("proxy", {}),
        "recipe": training_recipe(_proxy(run, info), record, resolution),
        "preprocessing": preprocessing(data, in_chans, resolution,
                                       weights.normalisation if weights is not None else None),
        "objectives": {m: record.value(m) for m, _ in run_objectives(info)},
        "params": record.params,
        "macs": record.macs,
        "input_shape": list(input_shape),
        "dla_nas_version": dla_nas.__version__,
    }
    if record.pretrained is not None:  # the weights its training started from
        metadata["pretrained"] = record.pretrained
    if confirmed is not None:
        metadata["confirmed"] = {
            "seeds": confirmed.seeds,
            "test_acc": {"mean": confirmed.test_acc[0], "min": confirmed.test_acc[1],
                         "max": confirmed.test_acc[2]},
            "test_balanced_acc": {"mean": confirmed.test_balanced_acc[0],
                                  "min": confirmed.test_balanced_acc[1],
                                  "max": confirmed.test_balanced_acc[2]},
            "test_macro_f1_mean": confirmed.test_macro_f1,
            "val_acc_mean": confirmed.val_acc,
        }
        if confirmed.test_miou is not None:  # a dense task's: what its run ranks by
            mean, low, high = confirmed.test_miou
            metadata["confirmed"]["test_miou"] = {"mean": mean, "min": low, "max": high}
            metadata["confirmed"]["val_miou_mean"] = confirmed.val_miou
        if confirmed.warning is not None:  # a model that learnt little is not exported silently
            metadata["confirmed"]["warning"] = confirmed.warning
    tensors = path.with_suffix(".safetensors") if weights is not None else None
    if weights is not None:
        with atomic_path(tensors) as part:
            shutil.copyfile(weights_dir / weights.weights, part)
        metadata["weights"] = {"file": tensors.name, "from": "confirm", "seed": weights.seed,
                               "val_acc": weights.val_acc, "test_acc": weights.test_acc}
        if weights.normalisation is not None:  # older confirmations did not record it
            metadata["weights"]["normalisation"] = weights.normalisation
    _write_yaml(path, genome, metadata)
    model = _check_rebuild(path, tensors, f"trial {record.trial} of {run}",
                           (record.params, record.macs), data["num_classes"], in_chans, input_shape)
    return path, model


def _whole(report: TransferReport) -> bool:
    """Whether a weights file gave every tensor of the network as it is (buffers such as BN
    statistics included): the network is the one that was trained."""
    return not (report.missing or report.adapted or report.skipped)


def _write_yaml(path: Path, genome: Genome, metadata: dict[str, Any]) -> None:
    write_file(path, yaml.safe_dump({"genome": genome.to_dict(), "metadata": metadata},
                                    sort_keys=False, default_flow_style=None))


def _check_rebuild(config: Path, tensors: Path | None, origin: str,
                   cost: tuple[int, int] | None, num_classes: int, in_chans: int,
                   input_shape: tuple[int, int, int]) -> nn.Module:
    """Rebuild a written config (with its weights) from the files and return it; when it does
    not give the (params, MACs) ``cost`` recorded by its ``origin`` (None: nothing recorded),
    or the weights do not load whole, remove the files and raise ``RunError``."""
    problem = ""
    try:
        model = build_model(config, num_classes, in_chans, pretrained=tensors)
    except DlaNasError as exc:
        problem = f"cannot be rebuilt with its weights ({exc})"
    else:
        got = model_cost(model, input_shape)
        if cost is not None and (got.params, got.macs) != cost:
            problem = (f"rebuilding {origin} gives {got.params:,} params and {got.macs:,} MACs "
                       f"at {input_shape}, but it recorded {cost[0]:,} and {cost[1]:,}")
        elif tensors is not None and not _whole(model.transfer_report):
            problem = f"its weights do not load whole ({model.transfer_report.summary()})"
    if problem:
        config.unlink()
        if tensors is not None:
            tensors.unlink()
        raise RunError(f"{config}: {problem}")
    return model


def _check_onnx_flags(run: Path, onnx: bool, weights: bool, int8: bool) -> None:
    """The ONNX packages when ONNX is asked for; int8 needs ONNX and the trained weights."""
    if int8 and not (onnx and weights):
        raise OptionError("--int8: needs --onnx and --weights (the trained network's graph is "
                          "what is quantised)")
    if onnx:
        _onnx_module(run)
        if int8:
            try:
                import onnxruntime.quantization  # noqa: F401
            except ImportError:
                raise RunError(f"{run}: --int8 needs onnxruntime: pip install onnxruntime "
                               "(or pip install 'dla-nas[onnx]')") from None


def _run_images(run: Path, info: dict[str, Any]) -> torch.Tensor:
    """A calibration sample of a run's training images (its task's data, as searched)."""
    from ..search.evaluator import load_task_data
    from ..search.space import SearchSpace

    data = load_task_data(SearchSpace.of_run(info), (info.get("options") or {}).get("data_dir"))
    if not isinstance(data.train.images, torch.Tensor):
        raise RunError(f"{run}: --int8 calibrates on training images held in memory; this "
                       "run's data stream from disk")
    return calibration_sample(data.train.images)


def _onnx_module(run: Path):
    try:
        import onnx
    except ImportError:
        raise RunError(f"{run}: --onnx needs the onnx package: pip install onnx "
                       "(or pip install 'dla-nas[onnx]')") from None
    return onnx


def _write_onnx(run: Path, config: Path, model: nn.Module) -> Path:
    """Export the network rebuilt from a written config (with its weights, if any) to ONNX
    (TorchScript exporter: the default one needs onnxscript) and check the file with
    ``onnx.checker``."""
    onnx = _onnx_module(run)
    meta = exported_metadata(config)
    model.eval()
    path = config.with_suffix(".onnx")
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():  # the legacy exporter's deprecation and tracer notes
            warnings.simplefilter("ignore")
            torch.onnx.export(model, torch.zeros(1, *meta["input_shape"]), buffer,
                              input_names=["image"], output_names=["logits"],
                              dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                              dynamo=False)
        proto = onnx.load_from_string(buffer.getvalue())
        onnx.checker.check_model(proto)
    except Exception as exc:  # the exporter's errors carry the whole graph: keep one line
        first = next((line for line in str(exc).splitlines() if line.strip()), "")
        raise RunError(f"{path.name}: cannot be exported to ONNX ({exc.__class__.__name__}: "
                       f"{first[:200]})") from None
    # what a runtime needs beside the graph: the outputs' names and the preprocessing; and
    # the network's hash and input, which key a latency measured on the target
    for key in ("class_names", "preprocessing", "hash", "input_shape"):
        if meta.get(key) is not None:
            proto.metadata_props.add(key=key, value=json.dumps(meta[key]))
    # without --weights the graph holds initial weights: good for latency, not for answers
    proto.metadata_props.add(key="trained", value=json.dumps("weights" in meta))
    write_file(path, proto.SerializeToString())
    return path
