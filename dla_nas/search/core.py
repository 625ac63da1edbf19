"""The search core that both backends call: the options, the sampler, opening a run (checks,
data shape, run.yaml, resume rules), the values a sampler is told, reuse by hash, baselines
the warm start, and failed records. A backend only decides how trials are scheduled."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import urlparse

import numpy as np
import optuna

from ..arch.baselines import baseline_genome, check_baseline_task
from ..arch.builder import resolve_genome
from ..arch.cost import genome_cost
from ..arch.genome import MAX_INPUT, exported_metadata
from ..arch.latency import read_table
from ..checks import MAX_SEED, check, integer, one_of, optional
from ..data import Augment
from ..data.config import RESIZE_MODES, SAMPLINGS
from ..data.report import data_report
from ..data.report import warnings as report_warnings
from ..errors import DataError, GenomeError, OptionError, RunError
from ..files import check_out_file
from ..results import RunStore, TrialRecord
from ..train.config import cpu_cores
from ..weights import parse_source, weights_file
from .evaluator import ProxyEvaluator, load_task_data
from .space import RECIPE, SearchSpace, kept_init
from .specs import Unreachable

SAMPLERS = ("nsga2", "tpe", "random")
EARLY_STOPPING = ("pareto", "asha", "none")  # asha: Tune's, so only with --backend ray
WARM_START = ("baselines", "none")
# a new run's early stopping, in both backends (``early_stopping.py``)
EARLY_STOPPING_DEFAULT = "pareto"
# a new Optuna run's sampler, with the warm start (``warm_start_name``): the best front for
# the time measured (docs/reports/early-stopping.md: ahead of full-fidelity NSGA-II at the end on 9
# of 9 seeds). Ray keeps NSGA-II, with which its Pareto scheduler was measured.
OPTUNA_SAMPLER = "tpe"
STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql")


@dataclass
class SearchOptions:
    """Everything ``dla-nas search`` was asked to do."""

    space: str
    trials: int
    out: str
    sampler: str | None = None
    seed: int = 0
    workers: int = 1
    storage: str | None = None
    timeout: float | None = None
    device: str = "auto"
    gpus: list[int] | None = None
    baselines: list[str] = field(default_factory=list)
    data_dir: str | None = None
    dataset: str | None = None  # replaces the space's task.dataset
    resolution: int | None = None  # replaces the space's task.resolution
    augment: str | None = None  # replaces the space's task.augment
    resize: str | None = None  # replaces the space's task.resize
    sampling: str | None = None  # replaces the space's proxy.sampling
    labels_per_class: int | None = None  # replaces the space's task.labels_per_class
    # pareto, asha (Ray only) or none (``early_stopping.py``); None: the run's, else the default
    early_stopping: str | None = None
    # baselines: a new run's first trials are the space's hand designs; None: the default
    warm_start: str | None = None
    # networks (genome files or zoo names) queued in the study, each once (``enqueue_points``)
    enqueue: list[str] = field(default_factory=list)
    # the CPU threads ONNX Runtime gets when a trial's latency is measured (arch.latency)
    latency_threads: int = 1
    # latencies measured on the target machine (arch.latency.read_table), used where known
    latency_table: str | None = None

    def check(self) -> None:
        """Refuse values that cannot work, naming the flag (``OptionError``)."""
        check("--seed", self.seed, integer(0, MAX_SEED), OptionError)
        check("--resolution", self.resolution, optional(integer(1, MAX_INPUT)), OptionError)
        check("--resize", self.resize, optional(one_of(RESIZE_MODES)), OptionError)
        check("--sampling", self.sampling, optional(one_of(SAMPLINGS)), OptionError)
        check("--labels-per-class", self.labels_per_class, optional(integer(1)), OptionError)
        if self.augment is not None:
            try:
                Augment.parse(self.augment)
            except DataError as exc:
                raise OptionError(f"--{exc}") from None
        if self.trials < 1:
            raise OptionError(f"--trials: {self.trials} is not allowed (>= 1)")
        if self.workers < 1:
            raise OptionError(f"--workers: {self.workers} is not allowed (>= 1)")
        if self.sampler is not None and self.sampler not in SAMPLERS:
            raise OptionError(f"--sampler: {self.sampler!r} is not allowed "
                              f"(one of {', '.join(SAMPLERS)})")
        if self.early_stopping is not None and self.early_stopping not in EARLY_STOPPING:
            raise OptionError(f"--early-stopping: {self.early_stopping!r} is not allowed "
                              f"(one of {', '.join(EARLY_STOPPING)})")
        if self.warm_start is not None and self.warm_start not in WARM_START:
            raise OptionError(f"--warm-start: {self.warm_start!r} is not allowed "
                              f"(one of {', '.join(WARM_START)})")
        if self.latency_table is not None:
            read_table(self.latency_table)  # a bad file fails before anything runs
        if self.latency_threads < 1:
            raise OptionError(f"--latency-threads: {self.latency_threads} is not allowed (>= 1)")
        if self.timeout is not None and not self.timeout > 0:
            raise OptionError(f"--timeout: {self.timeout} is not allowed (> 0)")
        for name in self.baselines:
            baseline_genome(name)
        for spec in self.enqueue:
            try:
                resolve_genome(spec)
            except GenomeError as exc:
                raise OptionError(f"--enqueue: {exc}") from None
        if self.storage is not None:
            check_storage(self.storage)

    def sampler_name(self, space: SearchSpace) -> str:
        return self.sampler or ("nsga2" if len(space.objectives) > 1 else "tpe")

    def warm_start_name(self, space: SearchSpace) -> str:
        """baselines unless asked otherwise, or NSGA-II: its first generation would be mostly
        hand designs, and it measured worse so (docs/guide/search.md, "Warm start")."""
        return self.warm_start or ("none" if self.sampler_name(space) == "nsga2" else "baselines")

    def deadline(self) -> float | None:
        """When to start no new trial and end the running ones (``--timeout`` from now, a
        ``time.time()``), or None."""
        return time.time() + self.timeout if self.timeout else None


def check_workers(opts: SearchOptions, device_type: str) -> None:
    """Refuse more CPU workers than cores: more only share the cores and multiply the
    memory (1,000 once spawned 145 processes and 5 GB before a trial). GPU workers are
    spread over the GPUs and are not capped here."""
    if device_type == "cpu" and opts.workers > cpu_cores():
        raise OptionError(f"--workers: {opts.workers} is not allowed (at most {cpu_cores()}, "
                          "the CPU cores this process may use)")


def check_storage(url: str) -> None:
    """An Optuna RDB URL that can work, checked before anything is written: a known scheme;
    for SQLite, a folder that exists and can be written, and an existing file that is an
    SQLite database; for a server, its driver installed and the server reached."""
    parsed = urlparse(url)
    scheme = parsed.scheme.split("+")[0]
    if scheme not in STORAGE_SCHEMES or not (parsed.netloc or parsed.path):
        raise OptionError(f"--storage: {url!r} is not allowed (an RDB URL such as "
                          "sqlite:///study.db or postgresql://user@host/db)")
    if scheme == "sqlite":
        _check_sqlite(url)
        return
    import sqlalchemy

    shown = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    try:
        engine = sqlalchemy.create_engine(url)  # imports the driver
    except ImportError as exc:
        raise OptionError(f"--storage {shown}: its database driver is not installed ({exc}); "
                          "install it (e.g. pip install psycopg2-binary for postgresql://, "
                          "pymysql for mysql+pymysql://)") from None
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise OptionError(f"--storage {shown}: cannot connect ({first[:200]})") from None
    finally:
        engine.dispose()


def _check_sqlite(url: str) -> None:
    """An SQLite URL's folder exists and takes a new file, and its file, if there is one, is
    a database (opened read-only: nothing is written)."""
    path = url.split(":///", 1)[1] if ":///" in url else ""
    folder = os.path.dirname(os.path.abspath(path)) if path else ""
    if not path or not os.path.isdir(folder):
        raise OptionError(f"--storage: {url!r}: the folder {folder or '?'} does not exist")
    check_out_file(path, "--storage")
    if os.path.exists(path):
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                db.execute("PRAGMA schema_version")
        except sqlite3.Error as exc:
            raise OptionError(f"--storage {url}: {path} is not an SQLite database "
                              f"({exc})") from None


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """NSGA-II, TPE or random. NSGA-II and TPE read the constraint values that each trial
    sets (``Trial.set_constraint``) and prefer feasible trials."""
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=8)
    if name == "tpe":
        # group: a genome's parameters are conditional (a third stage, a tree's depth), and
        # Optuna's grouped multivariate TPE models each set of co-occurring ones jointly
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=6, multivariate=True,
                                              group=True)
    return optuna.samplers.RandomSampler(seed=seed)


def sampler_seed(seed: int, worker: int, trials_before: int) -> int:
    """The sampler seed of one worker process. It is ``seed`` itself for the first worker of a
    new run, so a one-worker search replays. Every other worker and every restart gets a seed
    of its own: with one seed, workers sharing a study draw the same genomes in turn, and a
    resumed search repeats the draws it made before the restart."""
    if worker == 0 and trials_before == 0:
        return seed
    return int(np.random.SeedSequence([seed % 2**32, worker, trials_before]).generate_state(1)[0])


# ---- opening a run ---------------------------------------------------------------------------
@dataclass
class Run:
    """A run folder opened for a search: its space, store, data shape and run.yaml content."""

    space: SearchSpace
    store: RunStore
    data: dict[str, Any]  # name, resolution, in_chans, num_classes, class_names, train_size ...
    info: dict[str, Any]
    resumed: bool

    @property
    def epochs(self) -> int:
        """The proxy's epochs on this data (``min_steps`` can raise them)."""
        return self.space.proxy.train_config().epochs_for(self.data["train_size"])

    def create(self) -> None:
        """Write run.yaml for a new run (a resume only checks it again)."""
        self.store.create_or_check(self.info)


@dataclass(frozen=True)
class SearchEvent:
    """What a search reports as it goes, to one callback (``OnEvent``) that only the command
    line renders: ``start`` once the run is open, ``record`` for each trial or baseline
    record written, ``poll`` now and then with the trials running (Optuna backend), ``note``
    for anything else the user should know (``message``)."""

    kind: str  # start, record, poll or note
    run: Run
    finished: int  # search trials with a record
    running: int = 0
    record: TrialRecord | None = None
    resumed_after: int | None = None  # a Ray trial went on from this epoch's saved state
    message: str = ""


OnEvent = Callable[[SearchEvent], None]


def load_space(opts: SearchOptions) -> SearchSpace:
    """The space of a search, with the task that ``--dataset``/``--resolution`` set."""
    return SearchSpace.from_yaml(opts.space).with_task(
        opts.dataset, opts.resolution, augment=opts.augment, resize=opts.resize,
        sampling=opts.sampling, labels_per_class=opts.labels_per_class)


def data_info(space: SearchSpace, opts: SearchOptions) -> dict[str, Any]:
    """Load the task's data once, before anything is written, and describe its shape (a bad
    dataset is reported here, not inside a worker)."""
    try:
        data = load_task_data(space, opts.data_dir)
    except DataError as exc:
        where = "--dataset" if opts.dataset else f"{space.path}: task.dataset"
        raise DataError(f"{where}: {exc}") from None
    report = data_report(data)
    balanced = space.proxy.train_config().balanced(data)
    return {"name": data.name, "task": "dense" if data.dense else "classify",
            "resolution": data.resolution, "in_chans": data.in_chans,
            "num_classes": data.num_classes, "class_names": list(data.class_names),
            "train_size": len(data.train), "augment": data.augment.describe(),
            "resize": data.resize, "sampling": "balanced" if balanced else "uniform",
            "labels_per_class": data.labels_per_class,
            "mean": list(data.mean), "std": list(data.std),
            "report": report.to_dict(), "warnings": report_warnings(report, balanced)}


def run_info(space: SearchSpace, opts: SearchOptions, data: dict, backend: str) -> dict:
    """The content of run.yaml."""
    return {"backend": backend, "space": space.raw, "space_path": space.path, "data": data,
            "sampler": opts.sampler_name(space),
            "space_fingerprint": space.fingerprint(),
            "objectives": [list(o) for o in space.objectives], "options": asdict(opts),
            "seed": opts.seed, "created": time.strftime("%Y-%m-%d %H:%M:%S")}


def open_run(opts: SearchOptions, backend: str, extra: dict[str, Any] | None = None,
             *, create: bool = True) -> Run:
    """Check the options, the space and the data, and create or reopen the run folder.

    A resume must use the same backend and space; an Optuna run keeps its storage (taken
    from run.yaml when ``--storage`` is not given). ``create=False`` checks everything but
    leaves a new run's run.yaml unwritten, for a backend that first starts a cluster."""
    opts.check()
    space = load_space(opts)
    store = RunStore(opts.out)
    resumed = store.run_yaml.exists()
    if not resumed:
        store.check_new()
    old = store.info() if resumed else {}
    stored = (old.get("space") or {}).get("proxy") or {}
    before_init = resumed and "init" not in stored  # its space must stay as it was written
    if "init" not in (space.raw.get("proxy") or {}) and not before_init:
        # kept in run.yaml, so that a resume and confirm start weights as the run began,
        # whatever the default is by then
        space = space.with_proxy(init=stored.get("init") or space.proxy.init)
    if resumed:
        if old.get("backend", "optuna") != backend:
            raise RunError(f"{store.run_yaml}: this run was made with --backend "
                           f"{old.get('backend', 'optuna')}; continue it with that backend or "
                           "use another --out")
        stored = (old.get("options") or {}).get("storage")
        if opts.storage is None:
            opts.storage = stored
        elif opts.storage != stored:
            raise RunError(f"{store.run_yaml}: this run keeps its study in "
                           f"{stored or 'its journal file'}; --storage {opts.storage} differs")
        # a resume continues as the run began, whatever the defaults are now
        opts.sampler = opts.sampler or old.get("sampler")
        opts.early_stopping = (opts.early_stopping
                               or (old.get("options") or {}).get("early_stopping") or "none")
        opts.warm_start = (opts.warm_start
                           or (old.get("options") or {}).get("warm_start") or "none")
        made_by = str((old.get("versions") or {}).get("dla-nas", ""))
        # dla-nas 0.1's Ray backend kept its study inside Tune: such a run has no journal
        if opts.storage is None and not (backend == "ray" and made_by.startswith("0.1")):
            check_study_file(store, space.name, backend)
    if backend == "optuna":
        opts.sampler = opts.sampler or OPTUNA_SAMPLER
        if opts.early_stopping == "asha":
            raise OptionError("--early-stopping: 'asha' is Tune's, only for --backend ray "
                              "(the optuna backend has pareto or none)")
    opts.early_stopping = opts.early_stopping or EARLY_STOPPING_DEFAULT
    opts.warm_start = opts.warm_start_name(space)
    if "latency_ms" in space.metrics or "max_latency_ms" in space.constraints:
        try:  # a trial's latency is its exported graph's in ONNX Runtime
            import onnxruntime  # noqa: F401
        except ImportError:
            raise OptionError(f"{space.path}: latency_ms is measured with ONNX Runtime: pip "
                              "install 'dla-nas[onnx]'") from None
    data = data_info(space, opts)
    for name in opts.baselines:  # trained on these data: of their task
        check_baseline_task(name, baseline_genome(name), space.dense)
    enqueue_points(opts, space, data)  # a network the space cannot draw, refused now
    done = len(store.search_records()) if resumed else 0
    if opts.enqueue and done >= opts.trials:  # else left queued, untrained, without a word
        raise OptionError(f"--enqueue: {store.path} has {done} finished trials and --trials "
                          f"is {opts.trials}: raise --trials so that the network can run")
    kept = resumed and old.get("objectives") == [list(o) for o in space.objectives]
    if data["task"] == "dense" and not kept:  # pixel accuracy mostly measures the background
        space = space.ranked_by("val_miou")
    elif data["sampling"] == "balanced" and not kept:  # a run made before this rule keeps its own
        space = space.ranked_by("val_balanced_acc")
    if before_init:
        space = replace(space, proxy=kept_init(space.proxy, stored))
    if space.proxy.pretrained is not None:  # fetched and checked once, before the workers
        weights_file(parse_source(str(space.proxy.pretrained)))
    run = Run(space, store, data, {**run_info(space, opts, data, backend), **(extra or {})},
              resumed)
    if resumed or create:
        run.create()
    return run


def journal_storage(store: RunStore) -> optuna.storages.BaseStorage:
    """The Optuna storage of a run that keeps its study in its folder (no ``--storage``)."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(store.journal)))


def journal_study(store: RunStore, study_name: str) -> optuna.Study | None:
    """The study kept in the run folder's journal, or None before it was made; a damaged
    journal raises ``RunError`` naming it."""
    try:
        return optuna.load_study(study_name=study_name, storage=journal_storage(store))
    except KeyError:  # a journal written before the study was made
        return None
    except Exception as exc:  # a damaged journal: Optuna's own errors vary by version
        raise RunError(f"{store.journal}: cannot be read ({type(exc).__name__}: "
                       f"{str(exc)[:120]})") from None


def check_study_file(store: RunStore, study_name: str, backend: str = "optuna") -> None:
    """Refuse to continue a run whose journal file or records were lost while the other is
    there: the sampler would start over beside the records, or the trials the study knows
    would have no record, and the run would be redone or thinned out without a word.
    ``backend``: the run's (``ray`` may leave one finished trial unrecorded)."""
    records = len(store.search_records())
    if not store.journal.exists():
        if records:
            raise RunError(f"{store.journal}: missing, but {store.trials_file.name} holds "
                           f"{records} search trial(s): the sampler cannot go on without "
                           "them; restore the file, or start a new run with another --out")
        return
    study = journal_study(store, study_name)
    if study is None:  # the journal was written before a first trial; nothing is lost
        return
    told = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    # Tune tells the searcher (the study) of a finished trial just before the callback that
    # writes its record: a driver killed between the two leaves one trial told, unrecorded;
    # the Optuna backend tells a trial after its record
    if told > (1 if backend == "ray" else 0) and not records:
        state = "missing" if not store.trials_file.exists() else "no search record"
        raise RunError(f"{store.trials_file}: {state}, but {store.journal.name} holds {told} "
                       "finished trial(s): their records are lost; restore the file, or start "
                       "a new run with another --out")


# ---- what trials are told and reuse ------------------------------------------------------------
def objective_values(record: TrialRecord, objectives: tuple[tuple[str, str], ...]) -> list[float]:
    """The values a sampler is told: accuracies 0 unless trained (so it moves away)."""
    return [record.sampler_value(m, d) for m, d in objectives]


def constraint_values(record: TrialRecord, space: SearchSpace) -> dict[str, float]:
    """Constraint values for the sampler (``SearchSpace.constraint_values``)."""
    return space.constraint_values(record.value)


def find_reuse(records: list[TrialRecord], key: str) -> TrialRecord | None:
    """An earlier evaluation of ``key`` (a genome and its recipe, ``TrialRecord.key``) that
    can be reused (not a failure)."""
    return next((r for r in records if key and r.key == key and r.status != "failed"), None)


# ---- warm start --------------------------------------------------------------------------------
def warm_start_points(opts: SearchOptions, space: SearchSpace,
                      data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The sampler parameters of a run's first trials, by name: under ``--warm-start
    baselines``, the space's hand designs (``baselines``), each with the nominal training
    settings a baseline gets where the space searches them (``nominal_params``). They come
    cheapest first (MACs at the run's ``data`` size), so a budget spent early buys most
    designs; one over a params or MACs constraint, or one the space cannot draw, is left out."""
    if opts.warm_start_name(space) != "baselines":
        return {}
    shape = (data["in_chans"], data["resolution"], data["resolution"])
    points = []
    for name in space.baselines:
        genome = space.hand_design(name)
        try:
            params = nominal_params(space, genome, data)
            cost = genome_cost(genome, shape, data["num_classes"])
        except (Unreachable, GenomeError):
            continue
        measured = {"macs": cost.macs, "params": cost.params}
        if all(v <= 0 for v in space.constraint_values(measured.get).values()):
            points.append((cost.macs, name, params))
    return {name: params for _, name, params in sorted(points, key=lambda p: p[0])}


def enqueue_points(opts: SearchOptions, space: SearchSpace,
                   data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The sampler parameters of the ``--enqueue`` networks, by spec (for Optuna's
    ``enqueue_trial``): an exported config's searched settings (``metadata.recipe``) where
    this space searches them too, else the nominal ones; ``OptionError`` names a network or
    setting the space cannot draw."""
    points = {}
    for spec in opts.enqueue:
        try:
            genome = resolve_genome(spec)
            points[spec] = nominal_params(space, genome, data, _searched_settings(spec))
        except (Unreachable, GenomeError) as exc:
            raise OptionError(f"--enqueue {spec}: not in the space {space.name} "
                              f"({exc})") from None
    return points


def _searched_settings(spec: str) -> dict[str, Any]:
    """The training settings an exported config's trial drew (its ``metadata.recipe``
    values named in ``searched``); {} for a genome file or a zoo name."""
    recipe = exported_metadata(spec).get("recipe")
    if recipe is None:
        return {}
    searched = recipe.get("searched", []) if isinstance(recipe, dict) else None
    if not (isinstance(searched, list)
            and all(isinstance(key, str) and key in recipe for key in searched)):
        raise OptionError(f"--enqueue {spec}: metadata.recipe must map settings to values, "
                          "with `searched` a list of those the trial drew")
    return {key: recipe[key] for key in searched}


def nominal_params(space: SearchSpace, genome: Any, data: Mapping[str, Any],
                   settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The sampler parameters that draw ``genome`` with the training ``settings`` (a
    recipe's) where the space searches them, else the nominal ones (those a baseline gets;
    the run's resolution, ``data``); ``Unreachable`` names a value the space does not
    offer."""
    searched = dict(space.recipe)
    nominal = {"resolution": data["resolution"], "lr": space.proxy.lr,
               "weight_decay": space.proxy.weight_decay, "augment": space.task.augment,
               "backbone_lr_mult": space.proxy.backbone_lr_mult,
               "freeze_epochs": space.proxy.freeze_epochs}
    chosen = {key: value for key, value in (settings or {}).items() if key in searched}
    for key, value in chosen.items():
        if not searched[key].offers(value):
            raise Unreachable(f"{key} {value!r}: the space draws {searched[key].describe()}")
    values = {**nominal, **chosen}
    return {**space.find(genome, values["resolution"]),
            **{param: values[key] for key, param in RECIPE if key in searched}}


# ---- baselines -----------------------------------------------------------------------------------
def missing_baselines(store: RunStore, names: list[str]) -> list[tuple[int, str]]:
    """(trial number, name) of the baselines the run has no record of; numbers -1, -2, ..."""
    done = {r.name for r in store.records() if r.kind == "baseline"}
    return [(-(i + 1), name) for i, name in enumerate(names) if name not in done]


def evaluate_baselines(evaluator: ProxyEvaluator,
                       todo: list[tuple[int, str]]) -> Iterator[TrialRecord]:
    """Train each baseline with the proxy, yielding its record as soon as it is done (so the
    caller stores it before the next starts); one that cannot be built is a failed record."""
    for number, name in todo:
        try:
            yield evaluator.evaluate_baseline(name, trial=number)
        except GenomeError as exc:  # e.g. a zoo net whose strides do not fit the input
            yield evaluator.new_record(number, hash="", kind="baseline", name=name).fail(str(exc))
