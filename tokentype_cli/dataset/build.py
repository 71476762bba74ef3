"""Build a training-ready dataset folder: plan the splits, route and shuffle the lines, tokenize
each split (in worker processes, or in tasks on many machines), then finish: balance, metadata,
tokenizer, ledger and manifest, and rename the folder into place.

A one-process build is a single task followed by the finish, so every way of building runs the
same code and gives the same bytes. Each split's shard depends only on its lines and the options;
the finish does the same row moves in the same order however the shards were made.

Where things live while building (beside DIR, so the final rename stays on one filesystem):

    .DIR.tokentype-HOST-PID-*.tmp/   a one-process build's work, and the folder a finish builds
                                     (schema.temporary_folder): removed on failure, and by the
                                     next write beside DIR once its process is gone
    .DIR.tokentype-tasks/            shared by the tasks of a multi-machine build until --finish
        .task_K_of_N.tokentype-HOST-PID-*.tmp/   one run of task K: its own staging area
        shares/task_K_of_N.HOST-PID-*/           a run's finished share, published by renaming
                                                 its staging area; never changed afterwards
        tasks/task_K_of_N.json       the record of the share that counts (the last published):
                                     which inputs and options, and each file's size, sha256, rows
        finish.lock                  held by the one --finish running (its host and pid inside)
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import multiprocessing
import os
import pickle
import re
import shutil
import signal
import socket
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from tokentype_cli import __version__, interrupts, processes
from tokentype_cli.dataset import balance as balancing
from tokentype_cli.dataset.layout import (
    CATEGORIES,
    METADATA,
    SPLITS_DIR,
    TEST_DIR,
    TOKENIZER_DIR,
    sha256_of,
    split_file_name,
)
from tokentype_cli.dataset.metadata import (
    base_metadata,
    base_vocab_size,
    model_config_path,
    model_type_string,
    source_date_epoch,
    write_manifest,
    write_metadata,
    write_tokenizer_folder,
)
from tokentype_cli.dataset.plan import Split, SplitPlan, check_enough_lines, plan_splits
from tokentype_cli.dataset.route import (
    Bucket,
    InputSet,
    resolve_inputs,
    route,
    scan_inputs,
    spool_stdin,
)
from tokentype_cli.errors import InputError, OptionError, ShardError
from tokentype_cli.schema.names import Provenance, TokenType
from tokentype_cli.schema.read import first_line
from tokentype_cli.schema.temporary import (
    exchange,
    no_room,
    remove_stale_temporaries,
    temporary_folder,
    temporary_name,
)
from tokentype_cli.schema.write import atomic_path
from tokentype_cli.tokenize.encoders import TextEncoder
from tokentype_cli.tokenize.options import COLUMNAR, TokenizeOptions, input_units
from tokentype_cli.tokenize.pipeline import (
    Metrics,
    check_columns,
    check_targets,
    renders_chat,
    tokenize_lines,
)
from tokentype_cli.tokenize.read import display_name
from tokentype_cli.tokenizer_loader import LoadedTokenizer, load_tokenizer

TASKS_SUFFIX = ".tokentype-tasks"


@dataclass(frozen=True)
class DatasetOptions:
    """What decides a dataset beyond the arrays of each split."""

    train_files: int | None = None
    dev_files: int | None = None
    test_files: int | None = None
    dev_ratio: float | None = None
    test_ratio: float | None = None
    shuffle: bool = False
    seed: int = 0
    balance: bool = True
    keep_splits: bool = False
    model_config: Path | None = None
    model_type: str | None = None  # the exact tokenizer_model_type string, overriding the table
    accept_zero_splits: bool = False  # a ratio may give no file, as the reference allows


@dataclass
class DatasetReport:
    """What a build (or one task of it) did, for the summary and --json."""

    folder: Path
    task: tuple[int, int] | None
    finished: bool
    plan: SplitPlan
    lines: int
    files: dict[str, int] = field(default_factory=dict)  # file name -> rows (after balancing)
    metrics: dict[str, Metrics] = field(default_factory=dict)  # "train", "dev"
    metadata: dict[str, object] = field(default_factory=dict)
    units: tuple[str, str] = ("line", "lines")  # an input record and many (options.input_units)


# --- the staging folder ---------------------------------------------------------------------


def cores() -> int:
    """The cores this process may run on (the default --workers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def tasks_folder(folder: Path) -> Path:
    return folder.parent / f".{folder.name}{TASKS_SUFFIX}"


def _check_target(folder: Path, overwrite: bool) -> None:
    if not folder.parent.is_dir():
        raise OptionError(f"--dataset {folder}: folder {folder.parent} does not exist; create it")
    if folder.exists() and not folder.is_dir():
        raise OptionError(f"--dataset {folder} is a file; name a folder")
    # An empty folder is taken as GDP takes it: job scripts create the output folder first.
    if folder.exists() and not overwrite and not empty_folder(folder):
        raise OptionError(
            f"--dataset {folder} already exists; pass --overwrite to replace it or name another"
        )


def empty_folder(folder: Path) -> bool:
    try:
        return folder.is_dir() and not any(folder.iterdir())
    except OSError:
        return False


def _check_apart(folder: Path, inputs: list[str], outputs: dict[str, Path | None]) -> None:
    """Refuse a DIR that would take the inputs or the run's other outputs with it.

    DIR is replaced whole (renamed away, then removed): an input in it, or a folder of inputs
    that is DIR or inside it, would be deleted; an output written into it would be too; and the
    current folder (`.`, `..`) cannot be renamed at all."""
    target = Path(os.path.realpath(folder))
    here = Path(os.path.realpath(os.getcwd()))
    if folder.name in (".", "..", "") or here.is_relative_to(target):
        raise OptionError(
            f"--dataset {folder} is the current folder or holds it; the build replaces DIR"
            " whole: name a new folder, e.g. --dataset ./dataset"
        )
    for given in inputs:
        if given == "-":
            continue
        source = Path(os.path.realpath(given))
        how = (
            "is"
            if source == target
            else "contains"
            if source.is_relative_to(target)
            else "lies inside"
            if target.is_relative_to(source)
            else None
        )
        if how is not None:
            raise OptionError(
                f"--dataset {folder} {how} the input {given}; the build replaces DIR whole:"
                " name a folder apart from the inputs"
            )
    for flag, path in outputs.items():
        if path is not None and Path(os.path.realpath(path)).is_relative_to(target):
            raise OptionError(
                f"{flag} {path} lies inside --dataset {folder}, which the build replaces whole;"
                " write it beside DIR"
            )


# --- inputs and fingerprints -----------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _tokenizer_digest(tokenizer: LoadedTokenizer) -> str:
    # Cached: serialising a 50k-token tokenizer takes 50 ms, and every split's provenance asks.
    digest = hashlib.sha256(tokenizer.tokenizer.to_str().encode("utf-8"))
    digest.update(json.dumps([tokenizer.eos_id, tokenizer.pad_id, tokenizer.bos_id]).encode())
    return digest.hexdigest()


def fingerprint(
    inputs: InputSet,
    plan: SplitPlan,
    tokenizer: LoadedTokenizer,
    options: TokenizeOptions,
    dataset: DatasetOptions,
) -> dict[str, object]:
    """Everything a task's output depends on; the finish refuses shares that disagree.

    As it reads back from a task record (JSON: tuples become lists), so the two compare equal.
    """
    record = {
        "tokentype_version": __version__,
        "inputs": {
            "sha256": inputs.digest,
            "lines": inputs.total_lines,
            "bytes": inputs.bytes_read,
            "format": inputs.fmt,
        },
        "splits": [plan.train, plan.dev, plan.test],
        "shuffle": dataset.shuffle,
        "seed": dataset.seed,
        "tokenizer": _tokenizer_digest(tokenizer),
        "options": {key: value for key, value in sorted(vars(options).items())},
    }
    return json.loads(json.dumps(record, default=str))


def _describe_difference(mine: dict, theirs: dict) -> str:
    for key in mine:
        if mine[key] != theirs.get(key):
            what = {
                "inputs": "other inputs",
                "tokenizer": "another tokenizer",
                "options": "other tokenize options",
                "splits": "other split counts",
                "tokentype_version": "another tokentype version",
            }.get(key, f"another --{key}")
            return what
    return "different settings"


# --- one split -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitJob:
    """Everything a worker process needs to tokenize one split (all picklable)."""

    split: Split
    stage: Path
    bucket: Bucket
    inputs: InputSet
    plan: SplitPlan
    tokenizer_path: Path
    options: TokenizeOptions
    dataset: DatasetOptions
    ledger: bool
    rejects: bool
    provenance: Provenance
    encoder_threads: int = 2  # encoder threads in the process (the cores shared by the workers)


def _parts(stage: Path) -> Path:
    return stage / "parts"


def _split_lines(job: SplitJob) -> Iterator:
    lines = job.bucket.lines(job.inputs, job.plan, job.dataset.shuffle, job.dataset.seed)
    if not job.dataset.keep_splits:
        yield from lines
        return
    ext = "txt" if job.inputs.fmt == "txt" else "jsonl"
    target = job.stage / SPLITS_DIR / job.split.file_name(ext)
    with atomic_path(target) as temporary, open(temporary, "wb") as handle:
        for line in lines:
            handle.write(line.raw if line.raw.endswith(b"\n") else line.raw + b"\n")
            yield line


# A worker process's tokenizer and encoder, set once by _start_worker: handing them over with
# every split would rebuild the encoder (tiktoken's ranks) per split.
class _WorkerState(TypedDict, total=False):
    tokenizer: LoadedTokenizer
    encoder: TextEncoder | str


_WORKER: _WorkerState = {}


def _start_method() -> str:
    """fork where it is safe (Linux, no thread started since import), else spawn.

    A forked worker starts in milliseconds with the parent's modules, tokenizer and encoder; a
    spawned one starts an interpreter, imports numpy, h5py and the tokenizers and loads the
    tokenizer again: 0.6 s of CPU a worker, on the cores the build needs."""
    return "fork" if processes.fork_is_safe() else "spawn"


def _start_worker(
    tokenizer: LoadedTokenizer | Path, encoder: TextEncoder | Path | str, parent: int
) -> None:
    """A forked worker is handed the parent's tokenizer and encoder; a spawned one, the
    tokenizer's path and the encoder's name or the file _hand_over wrote it to."""
    processes.die_with_parent(parent)
    # Ctrl-C reaches the whole process group: the parent stops the workers and says so once,
    # rather than each worker printing a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as the parent started us: kept for good
    # A forked worker has the CLI's handler, which would turn the SIGTERM that stops a worker
    # into an exception the pool hands back, and the worker would live on. The parent forked
    # it with SIGTERM blocked: one sent meanwhile is delivered now, and ends it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    if not isinstance(tokenizer, LoadedTokenizer):
        tokenizer = load_tokenizer(tokenizer)
    _WORKER["tokenizer"] = tokenizer
    if isinstance(encoder, Path):
        with open(encoder, "rb") as handle:
            _WORKER["encoder"] = pickle.load(handle)
    else:
        _WORKER["encoder"] = encoder


def _hand_over(encoder: TextEncoder | str, beside: Path, stack: contextlib.ExitStack) -> Path | str:
    """What the workers' initializer is given for `encoder`: a name as it is; an encoder pickled
    into a temporary file beside BESIDE (never inside a share), removed when `stack` closes.

    Spawning writes a worker's initializer arguments down a pipe and waits until the new
    interpreter has started, imported us and read all but the pipe's 64 KB: an encoder's ranks
    (2 MB for GPT-2) held the parent there for 0.3 s a worker, instead of routing."""
    if isinstance(encoder, str):
        return encoder
    target = temporary_name(beside)
    stack.callback(target.unlink, missing_ok=True)  # also after a failed write
    with open(target, "wb") as handle:
        pickle.dump(encoder, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return target


def tokenize_split(
    job: SplitJob,
    tokenizer: LoadedTokenizer | None = None,
    encoder: TextEncoder | str | None = None,
    reader_process: bool = False,
) -> dict:
    """Tokenize one train or dev split into STAGE/NAME.hdf5; return its metrics as a dict.

    In a worker process, the tokenizer and encoder are the ones _start_worker set.
    `reader_process`: as for tokenize_lines (the parent tokenizing the splits in turn, whose
    rendering would otherwise hold the GIL its encoders need)."""
    tokenizer = tokenizer or _WORKER.get("tokenizer") or load_tokenizer(job.tokenizer_path)
    encoder = encoder or _WORKER.get("encoder") or "auto"
    parts = _parts(job.stage)
    name = job.split.file_name()
    metrics = tokenize_lines(
        [(_split_lines(job), job.inputs.fmt)],
        job.stage / name,
        tokenizer,
        job.options,
        describe=f"{name} ({input_units([job.inputs.fmt])[1]} of {', '.join(job.inputs.names)})",
        provenance=job.provenance,
        ledger_path=parts / f"{name}.ledger.jsonl" if job.ledger else None,
        rejects_path=parts / f"{name}.rejects" if job.rejects else None,
        allow_empty=True,
        encoder=encoder,
        encoders=job.encoder_threads,
        reader_process=reader_process,
    )
    record = dataclasses.asdict(metrics)
    with atomic_path(parts / f"{name}.metrics.json") as temporary:
        temporary.write_text(json.dumps(record, sort_keys=True), encoding="utf-8")
    job.bucket.remove()
    return record


def _write_test_split(
    split: Split, bucket: Bucket, inputs: InputSet, plan: SplitPlan, dataset: DatasetOptions,
    stage: Path, ledger: bool,
) -> None:  # fmt: skip
    """Test splits stay text: write the split's lines in its order to STAGE/test_files/."""
    name = split.file_name("txt" if inputs.fmt == "txt" else "jsonl")
    with contextlib.ExitStack() as stack:
        temporary = stack.enter_context(atomic_path(stage / TEST_DIR / name))
        handle = stack.enter_context(open(temporary, "wb"))
        records = None
        if ledger:
            part = stack.enter_context(atomic_path(_parts(stage) / f"{name}.ledger.jsonl"))
            records = stack.enter_context(open(part, "w", encoding="utf-8"))
        lines = bucket.lines(inputs, plan, dataset.shuffle, dataset.seed)
        for number, line in enumerate(lines, 1):
            handle.write(line.raw if line.raw.endswith(b"\n") else line.raw + b"\n")
            if records is not None:
                unit = "row" if inputs.fmt in COLUMNAR else "line"
                record = {"input": line.source, unit: line.number, "test_line": number}
                records.write(json.dumps(record, ensure_ascii=False) + "\n")
    bucket.remove()


# --- a task ----------------------------------------------------------------------------------


@dataclass
class Build:
    """One invocation: a whole build, one task of one, or the finish."""

    inputs: list[str]
    folder: Path
    tokenizer: LoadedTokenizer
    options: TokenizeOptions
    dataset: DatasetOptions
    workers: int = 1
    task: tuple[int, int] | None = None
    finish: bool = False
    overwrite: bool = False
    ledger_path: Path | None = None
    rejects_path: Path | None = None
    progress: Callable[[str], None] = lambda message: None
    encoder: TextEncoder | str = "auto"  # what turns the splits' text into ids (not the arrays)

    def run(self) -> DatasetReport:
        root = tasks_folder(self.folder)
        made_root = not root.exists()
        try:
            return self._run()
        except (OSError, RuntimeError, ShardError) as exc:
            # Out of room anywhere (a bucket, a worker's shard, the finish's copies): the
            # temporaries are gone by now, so say so once, naming the folder, not the file.
            cause = exc.__cause__ if isinstance(exc, ShardError) else exc
            why = no_room(cause) if cause is not None else None
            if cause is None or why is None:
                raise
            if made_root:
                with contextlib.suppress(OSError):
                    os.rmdir(root)  # made by this task and left empty
            raise ShardError(
                f"--dataset {self.folder}: cannot be built: {why} ({first_line(cause)});"
                " nothing was left: free some space (or raise the limit) and run it again"
            ) from exc

    def _run(self) -> DatasetReport:
        self.options.check()
        if self.task is not None and self.finish:
            raise OptionError(
                "--task and --finish exclude each other: run the tasks, then --finish"
            )
        if self.workers < 1:
            raise OptionError(f"--workers must be at least 1, got {self.workers}")
        folder = self.folder
        # A task does not write DIR, so an existing one (a rebuild) is the finish's to replace.
        _check_target(folder, self.overwrite or self.task is not None)
        _check_apart(
            folder,
            self.inputs,
            {"--ledger": self.ledger_path, "--skip-bad-lines": self.rejects_path},
        )
        # Before any work: the finish needs the model type, and a long build should not fail then.
        self._model_config = model_config_path(self.tokenizer, self.dataset.model_config)
        self._model_type = model_type_string(self._model_config, self.dataset.model_type)
        source_date_epoch()  # a malformed value is refused now, not once the work is done
        remove_stale_temporaries(folder.parent)  # a killed run's, even when this one stops soon
        if self.task is None and not self.finish:
            # The schema's temporary folder: named after this process, so a killed build's is
            # removed by the next one; removed on failure. The finish moves its files into a
            # second one, renamed into place on success.
            with temporary_folder(folder) as work:
                inputs, plan = self._prepare(work)
                record = self._run_task(work, inputs, plan, 0, 1)[1]  # files unlisted: ours
                return self._finish(inputs, plan, {0: (work, record)}, private=True)
        root = tasks_folder(folder)
        if self.finish:
            if not root.is_dir():
                if (folder / METADATA).is_file():
                    raise InputError(
                        f"{folder}: finished already (no task results at {root}); to build it"
                        " again, run the --task K/N builds, then --finish"
                    )
                raise InputError(
                    f"--finish: no task results at {root}; run the --task K/N builds first"
                )
            with _finish_lock(root, folder):
                inputs, plan = self._prepare(root)
                shares = self._check_tasks(root, inputs, plan)
                report = self._finish(inputs, plan, shares, private=False)
                # The folder is in place: the shares go. Renamed first, so a kill while removing
                # leaves a temporary the next write beside DIR removes, never half the records.
                gone = temporary_name(root)
                os.replace(root, gone)
                shutil.rmtree(gone, ignore_errors=True)
                return report
        assert self.task is not None  # neither a whole build nor --finish, both returned above
        index, count = self.task
        if not 0 <= index < count:
            raise OptionError(f"--task {index}/{count}: K must be 0..{count - 1}")
        root.mkdir(exist_ok=True)
        # A staging folder of this run's own: two runs of one task (a requeue while the first
        # lives, a lost node still running) never share a file, and each publishes whole.
        with temporary_folder(root / f"task_{index}_of_{count}") as work:
            inputs, plan = self._prepare(work)
            record = {}
            try:
                report, record = self._run_task(work, inputs, plan, index, count)
                self._publish(root, work, record, index, count)
            except (OSError, RuntimeError, ShardError) as exc:
                if root.is_dir() and (work.is_dir() or "share" in record):
                    raise  # not a vanished folder: the error says what it is
                raise ShardError(
                    f"{root}: this task's staging folder was removed while it ran (a --finish"
                    f" completed, or it was deleted); run --task {index}/{count} again if"
                    " the build still needs it"
                ) from exc
        return report

    def _publish(self, root: Path, work: Path, record: dict, index: int, count: int) -> None:
        """Rename the finished staging folder to a share of its own, then point the task's
        record at it: the record is replaced atomically, so the last run to publish wins, whole."""
        shares = root / "shares"
        shares.mkdir(exist_ok=True)
        run = work.name.rsplit(".tokentype-", 1)[-1].removesuffix(".tmp")
        share = shares / f"task_{index}_of_{count}.{run}"
        os.rename(work, share)
        record["share"] = f"shares/{share.name}"
        (root / "tasks").mkdir(exist_ok=True)
        target = root / "tasks" / f"task_{index}_of_{count}.json"
        with atomic_path(target) as temporary:
            temporary.write_text(json.dumps(record, sort_keys=True, indent=1), encoding="utf-8")

    # -- planning

    def _prepare(self, stage: Path) -> tuple[InputSet, SplitPlan]:
        paths, fmt = resolve_inputs(self.inputs, self.options.input_format)
        check_targets(paths, {"--ledger": self.ledger_path, "--skip-bad-lines": self.rejects_path})
        check_columns(paths, [fmt] * len(paths), self.options)
        names = [display_name(path) for path in paths]
        if "-" in paths:
            if self.task is not None or self.finish:
                raise OptionError(
                    "--task and --finish read the inputs again on every machine: name files, not -"
                )
            paths[paths.index("-")] = str(spool_stdin(stage))
        self.progress("reading the inputs")
        inputs = scan_inputs(paths, names, fmt)
        d = self.dataset
        plan = plan_splits(
            inputs.bytes_read, d.train_files, d.dev_files, d.test_files, d.dev_ratio, d.test_ratio,
            accept_zero=d.accept_zero_splits,
        )  # fmt: skip
        check_enough_lines(plan, inputs.total_lines, ", ".join(names), input_units([inputs.fmt]))
        return inputs, plan

    def _fingerprint(self, inputs: InputSet, plan: SplitPlan) -> dict[str, object]:
        return fingerprint(inputs, plan, self.tokenizer, self.options, self.dataset)

    def _run_task(
        self, stage: Path, inputs: InputSet, plan: SplitPlan, index: int, count: int
    ) -> tuple[DatasetReport, dict]:
        """Build share K of N in STAGE, a folder of this run's own; return the report and the
        task's record (what it built, from what, and each file's size, sha256 and rows)."""
        mine = [split for split in plan.splits if split.index % count == index]
        for sub in ("parts", "buckets"):
            (stage / sub).mkdir(exist_ok=True)
        if any(split.kind == "test" for split in mine):
            (stage / TEST_DIR).mkdir(exist_ok=True)
        if self.dataset.keep_splits:
            (stage / SPLITS_DIR).mkdir(exist_ok=True)
        tokenized = [split for split in mine if split.kind != "test"]
        with contextlib.ExitStack() as stack:
            # Worker processes start while this process routes the lines: at once when forked,
            # in about a second when spawned (import, load the tokenizer, read the encoder).
            pool = self._start_pool(len(tokenized), stage, stack)
            return self._route_and_tokenize(stage, inputs, plan, index, count, mine, pool)

    def _route_and_tokenize(
        self,
        stage: Path,
        inputs: InputSet,
        plan: SplitPlan,
        index: int,
        count: int,
        mine: list[Split],
        pool: concurrent.futures.ProcessPoolExecutor | None,
    ) -> tuple[DatasetReport, dict]:
        many = input_units([inputs.fmt])[1]
        self.progress(
            f"routing {inputs.total_lines:,} {many} to {len(mine)} of {plan.total} splits"
        )
        buckets = route(
            inputs,
            plan,
            self.dataset.shuffle,
            self.dataset.seed,
            {split.index for split in mine},
            stage / "buckets",
        )
        record = {
            "task": [index, count],
            "fingerprint": self._fingerprint(inputs, plan),
            "splits": [split.file_name() for split in mine],
            "ledger": self.ledger_path is not None,
            "rejects": self.rejects_path is not None,
        }
        for split in mine:
            if split.kind == "test":
                _write_test_split(
                    split, buckets[split.index], inputs, plan, self.dataset, stage,
                    self.ledger_path is not None,
                )  # fmt: skip
        jobs = [
            SplitJob(
                split=split,
                stage=stage,
                bucket=buckets[split.index],
                inputs=inputs,
                plan=plan,
                tokenizer_path=self.tokenizer.path,
                options=self.options,
                dataset=self.dataset,
                ledger=self.ledger_path is not None,
                rejects=self.rejects_path is not None,
                provenance=self._provenance(inputs, plan, split),
                encoder_threads=max(1, cores() // min(self.workers, len(mine))),
            )
            for split in mine
            if split.kind != "test"
        ]
        self._tokenize(jobs, pool)
        shutil.rmtree(stage / "buckets")
        report = DatasetReport(
            self.folder,
            (index, count),
            False,
            plan,
            inputs.total_lines,
            units=input_units([inputs.fmt]),
        )
        for job in jobs:
            report.files[job.split.file_name()] = self._metrics(stage, job.split).rows
        if self.task is not None:  # a one-process build's finish reads its own files unchecked
            record["files"] = _describe_files(stage, report.files)
        return report, record

    def _provenance(self, inputs: InputSet, plan: SplitPlan, split: Split) -> Provenance:
        # No paths, no worker or task numbers: the same data gives the same bytes however built.
        return Provenance(
            command="tokentype tokenize --dataset",
            options={
                **vars(self.options),
                "split": split.file_name(),
                "inputs_sha256": inputs.digest,
                "splits": [plan.train, plan.dev, plan.test],
                "shuffle": self.dataset.shuffle,
                "seed": self.dataset.seed,
                "tokenizer_sha256": _tokenizer_digest(self.tokenizer),
            },
        )

    def _start_pool(
        self, splits: int, stage: Path, stack: contextlib.ExitStack
    ) -> concurrent.futures.ProcessPoolExecutor | None:
        """The worker processes for `splits` splits, started now; None when one process does."""
        workers = min(self.workers, splits)
        if workers <= 1:
            return None
        method = _start_method()
        if method == "fork":
            initargs: tuple = (self.tokenizer, self.encoder, os.getpid())
            sys.stdout.flush()  # else what it holds would be written by each worker too
            sys.stderr.flush()
        else:
            # Registered before the pool, so removed after its shutdown (last in, first out): a
            # worker slow to start may read it once the others have tokenized every split.
            encoder = _hand_over(self.encoder, stage, stack)
            initargs = (self.tokenizer.path, encoder, os.getpid())
        # The workers start with Ctrl-C ignored (an ignored signal stays ignored across fork
        # and exec, and Python keeps it so): one reaching the process group while they start
        # would print a KeyboardInterrupt traceback from each. The parent ignores it only
        # while it starts them; the signal mask is no help to a spawned worker, whose mask is
        # cleared.
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
        # A forked worker has the CLI's SIGTERM handler until its initializer puts the default
        # back; a SIGTERM to the process group in between raised there, and the pool printed
        # the traceback. Blocked across the fork, it waits in the worker for the default (and
        # in the parent for its handler, once unblocked below).
        blocked = method == "fork"
        if blocked:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            pool = stack.enter_context(
                concurrent.futures.ProcessPoolExecutor(
                    workers,
                    mp_context=multiprocessing.get_context(method),
                    initializer=_start_worker,
                    initargs=initargs,
                )
            )
            stack.callback(_stop_workers, pool)
            for _ in range(workers):
                pool.submit(int)  # start every worker now; the pool spawns them on demand
        finally:
            signal.signal(signal.SIGINT, handler)
            if blocked:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        return pool

    def _tokenize(
        self, jobs: list[SplitJob], pool: concurrent.futures.ProcessPoolExecutor | None
    ) -> None:
        if not jobs:
            return
        workers = 1 if pool is None else min(self.workers, len(jobs))
        self.progress(
            f"tokenizing {len(jobs)} split{'s' * (len(jobs) != 1)}"
            f" in {workers} process{'es' * (workers != 1)}"
        )
        if pool is None:
            # Conversations are rendered in a child, as tokenize -o renders them; not with
            # --keep-splits, whose split files the child would write (and, killed, leave).
            first = jobs[0]
            child = not first.dataset.keep_splits and renders_chat(
                list(first.inputs.paths),
                [first.inputs.fmt] * len(first.inputs.paths),
                first.options,
            )
            for done, job in enumerate(jobs, 1):
                tokenize_split(job, self.tokenizer, self.encoder, reader_process=child)
                self.progress(f"tokenized {job.split.file_name()} ({done}/{len(jobs)})")
            return
        # Largest first: the split dealt out last runs alone while the other workers wait, and
        # in plan order that was the dev split, often the largest (10% against 16 train splits
        # of 5.6% each, say).
        by_size = sorted(jobs, key=lambda job: job.bucket.size(), reverse=True)
        futures = {pool.submit(tokenize_split, job): job for job in by_size}
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            job = futures[future]
            try:
                future.result()
            except concurrent.futures.process.BrokenProcessPool as exc:
                # A signal to the whole process group reaches the workers too: say that.
                interrupts.check()
                raise ShardError(
                    f"--dataset {self.folder}: a worker process died while tokenizing"
                    f" {job.split.file_name()} (killed, or out of memory); run again, with"
                    " fewer --workers if memory is short"
                ) from exc
            self.progress(f"tokenized {job.split.file_name()} ({done}/{len(jobs)})")

    @staticmethod
    def _metrics(stage: Path, split: Split) -> Metrics:
        return _read_metrics(_parts(stage) / f"{split.file_name()}.metrics.json")

    # -- the finish

    def _share_files(self, split: Split, fmt: str) -> list[tuple[str, bool]]:
        """The files of a split's share the finish uses, as (path in the share, required)."""
        text_ext = "txt" if fmt == "txt" else "jsonl"
        ledger = self.ledger_path is not None
        if split.kind == "test":
            name = split.file_name(text_ext)
            files = [(f"{TEST_DIR}/{name}", True)]
            if ledger:
                files.append((f"parts/{name}.ledger.jsonl", True))
            return files
        name = split.file_name()
        files = [(name, True), (f"parts/{name}.metrics.json", True)]
        if ledger:
            files.append((f"parts/{name}.ledger.jsonl", True))
        if self.rejects_path is not None:
            files.append((f"parts/{name}.rejects", False))  # only where a line was rejected
        if self.dataset.keep_splits:
            files.append((f"{SPLITS_DIR}/{split.file_name(text_ext)}", True))
        return files

    def _check_tasks(
        self, root: Path, inputs: InputSet, plan: SplitPlan
    ) -> dict[int, tuple[Path, dict]]:
        """Every task's share, checked against its record before any is used: the same inputs
        and options as this --finish, and each file the plan needs of it the size, sha256 and
        rows the task recorded. Returns {K: (share folder, record)}."""
        mine = self._fingerprint(inputs, plan)
        records = {}
        for path in sorted((root / "tasks").glob("task_*_of_*.json")):
            record = _read_record(path)
            records[tuple(record["task"])] = (path, record)
        if not records:
            raise InputError(f"{root}: no task has finished; run the --task K/N builds first")
        counts = {count for _, count in records}
        if len(counts) > 1:
            raise InputError(
                f"{root}: task records from builds split {sorted(counts)} ways; remove {root}"
                " and run the tasks again with one N"
            )
        count = counts.pop()
        missing = [index for index in range(count) if (index, count) not in records]
        if missing:
            names = ", ".join(f"{index}/{count}" for index in missing)
            runs = ", ".join(f"--task {index}/{count}" for index in missing)
            raise InputError(
                f"{self.folder}: {'tasks' if len(missing) > 1 else 'task'} {names}"
                f" {'have' if len(missing) > 1 else 'has'} not finished"
                f" (no record in {root / 'tasks'}); run {'each: ' if len(missing) > 1 else ''}{runs}"
            )
        shares = {}
        for index in range(count):
            path, record = records[(index, count)]
            if record.get("fingerprint") != mine:
                why = _describe_difference(mine, record.get("fingerprint") or {})
                raise InputError(
                    f"{self.folder}: task {index}/{count} was built from {why} than this --finish"
                    f" ({path.name}); run it again with the same inputs and options"
                )
            for flag, key, wanted in (
                ("--ledger", "ledger", self.ledger_path),
                ("--skip-bad-lines", "rejects", self.rejects_path),
            ):
                if wanted is not None and not record.get(key):
                    raise InputError(
                        f"{self.folder}: task {index}/{count} ran without {flag}; run the tasks"
                        f" with {flag} to have it at --finish"
                    )
            shares[index] = (root / record["share"], record)
        self.progress("checking the shares")
        for split in plan.splits:
            share, record = shares[split.index % count]
            task = f"{split.index % count}/{count}"
            for name, required in self._share_files(split, inputs.fmt):
                # What the finish copies into DIR is checked while it is copied.
                copied = not name.startswith("parts/")
                _verify_share_file(share, record, name, task, required, digest=not copied)
        return shares

    def _finish(
        self,
        inputs: InputSet,
        plan: SplitPlan,
        shares: dict[int, tuple[Path, dict]],
        private: bool,
    ) -> DatasetReport:
        """Build DIR from the shares in a fresh temporary folder and rename it into place.

        Shares are never changed: a kill at any moment leaves them as the tasks made them and
        the next --finish builds the same folder. Only the files the plan names go into DIR.
        `private`: the shares are this process's own (a one-process build), so their files are
        moved rather than copied."""
        count = len(shares)

        def source(split: Split, name: str) -> Path:
            return shares[split.index % count][0] / name

        def place(split: Split, name: str, target: Path) -> None:
            """A share's file into DIR: moved when the share is ours, else copied, its sha256
            checked against the task's record on the way (the check before skipped it: one
            read of each file, and what is copied is what was checked)."""
            if private:
                os.replace(source(split, name), target)
                return
            share, record = shares[split.index % count]
            _copy_checked(share, record, name, f"{split.index % count}/{count}", target)

        config_path, model_type = self._model_config, self._model_type
        report = DatasetReport(
            self.folder, None, True, plan, inputs.total_lines, units=input_units([inputs.fmt])
        )
        moves: dict[str, list[balancing.Move]] = {}
        max_batch: dict[str, int | None] = {"train": None, "dev": None}
        text_ext = "txt" if inputs.fmt == "txt" else "jsonl"
        with temporary_folder(self.folder) as out:
            os.chmod(out, _folder_mode())
            for kind in ("train", "dev"):
                splits = plan.of_kind(kind)
                if not splits:
                    continue
                parts = [
                    _read_metrics(source(split, f"parts/{split.file_name()}.metrics.json"))
                    for split in splits
                ]
                rows = [part.rows for part in parts]
                total = sum(rows)
                if total < len(splits):
                    raise InputError(
                        f"{self.folder}: {total:,} {kind} rows for {len(splits)} {kind} files;"
                        f" every file needs a row: lower --{kind}-files"
                    )
                if not self.dataset.balance and min(rows) == 0:
                    empty = splits[rows.index(0)].file_name()
                    raise InputError(
                        f"{self.folder}: {empty} has no rows; drop --no-balance or lower"
                        f" --{kind}-files"
                    )
                paths = [out / split.file_name() for split in splits]
                for split, path in zip(splits, paths, strict=True):
                    interrupts.check()
                    place(split, split.file_name(), path)
                if self.dataset.balance:
                    self.progress(f"balancing {len(splits)} {kind} file{'s' * (len(splits) != 1)}")
                    targets, moves[kind] = balancing.plan_balance(rows)
                    balancing.apply_balance(paths, rows)
                    rows = targets
                for split, rows_in_file in zip(splits, rows, strict=True):
                    report.files[split.file_name()] = rows_in_file
                max_batch[kind] = min(rows)
                report.metrics[kind] = _sum_metrics(parts)
            for split in plan.of_kind("test"):
                name = f"{TEST_DIR}/{split.file_name(text_ext)}"
                (out / TEST_DIR).mkdir(exist_ok=True)
                place(split, name, out / name)
            if self.dataset.keep_splits:
                (out / SPLITS_DIR).mkdir(exist_ok=True)
                for split in plan.splits:
                    if split.kind != "test":
                        name = f"{SPLITS_DIR}/{split.file_name(text_ext)}"
                        place(split, name, out / name)
            self._write_ledger(source, plan, moves, inputs.fmt)
            self._write_rejects(source, plan)
            write_tokenizer_folder(self.tokenizer, config_path, out / TOKENIZER_DIR)
            if self.options.categories is not None:
                mapping = {name: index for index, name in enumerate(self.options.categories)}
                text = json.dumps(mapping, indent=1) + "\n"
                (out / CATEGORIES).write_text(text, encoding="utf-8")
            train_batch = max_batch["train"]
            assert train_batch is not None  # a plan has a train file (plan_splits checks)
            metadata = base_metadata(
                seq_len=self.options.seq_len,
                vocab_size=base_vocab_size(self.tokenizer),
                model_type=model_type,
                train=plan.train,
                dev=plan.dev,
                test=plan.test,
                max_batch_size_train=train_batch,
                max_batch_size_dev=max_batch["dev"],
                seed=self.dataset.seed,
                shuffle=self.dataset.shuffle,
            )
            for kind, metrics in report.metrics.items():
                metadata.update(_prefixed(kind, metrics))
            write_metadata(out, metadata)
            report.metadata = metadata
            write_manifest(out)
            interrupts.check()
            _rename_into_place(out, self.folder, self.overwrite)
        return report

    def _write_ledger(
        self, source: Callable[[Split, str], Path], plan: SplitPlan, moves: dict, fmt: str
    ) -> None:
        """One record per input line, split by split in file order (see the --ledger help)."""
        if self.ledger_path is None:
            return
        text_ext = "txt" if fmt == "txt" else "jsonl"
        with (
            atomic_path(self.ledger_path) as temporary,
            open(temporary, "w", encoding="utf-8") as out,
        ):
            for split in plan.splits:
                name = split.file_name(text_ext if split.kind == "test" else "hdf5")
                with open(source(split, f"parts/{name}.ledger.jsonl"), encoding="utf-8") as part:
                    for text in part:
                        record = _ledger_record(json.loads(text), split, name, moves)
                        out.write(json.dumps(record, ensure_ascii=False) + "\n")

    def _write_rejects(self, source: Callable[[Split, str], Path], plan: SplitPlan) -> None:
        if self.rejects_path is None:
            return
        with atomic_path(self.rejects_path) as temporary, open(temporary, "wb") as out:
            for split in plan.splits:
                part = source(split, f"parts/{split.file_name()}.rejects")
                if part.is_file():
                    with open(part, "rb") as lines:
                        shutil.copyfileobj(lines, out)


# --- task records and shares -----------------------------------------------------------------

_SHARE_NAME = re.compile(r"^shares/task_[0-9]+_of_[0-9]+\.[A-Za-z0-9-]+$")
_FILE_NAME = re.compile(r"^(?!.*(^|/)\.\.?(/|$))[A-Za-z0-9_./-]+$")


def _read_metrics(path: Path) -> Metrics:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Metrics(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise ShardError(f"{path}: the split's metrics are missing or damaged ({exc})") from exc


def _describe_files(stage: Path, hdf5_rows: dict[str, int]) -> dict[str, dict]:
    """Each file a task made: size, sha256, and rows (HDF5) or lines (text), for the finish."""
    files = {}
    for path in sorted(stage.rglob("*")):
        if not path.is_file() or path.suffix == ".spool":
            continue
        name = path.relative_to(stage).as_posix()
        digest, size, lines = hashlib.sha256(), 0, 0
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
                lines += block.count(b"\n")
        rows = hdf5_rows.get(name) if name.endswith(".hdf5") else lines
        files[name] = {"size": size, "sha256": digest.hexdigest(), "rows": rows}
    return files


def _read_record(path: Path) -> dict:
    """A task record, its shape checked: a damaged one is one line naming it, not a traceback."""
    try:
        if path.stat().st_size > 64 << 20:
            raise ValueError("larger than any task record")
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        task = record.get("task")
        if not (
            isinstance(task, list)
            and len(task) == 2
            and all(type(value) is int for value in task)
            and 0 <= task[0] < task[1]
        ):
            raise ValueError("'task' is not [K, N]")
        if not isinstance(record.get("share"), str) or not _SHARE_NAME.fullmatch(record["share"]):
            raise ValueError("'share' does not name a share folder")
        files = record.get("files")
        if not isinstance(files, dict):
            raise ValueError("'files' is not a mapping")
        for name, entry in files.items():
            if not (
                _FILE_NAME.fullmatch(name)
                and isinstance(entry, dict)
                and type(entry.get("size")) is int
                and isinstance(entry.get("sha256"), str)
                and (entry.get("rows") is None or type(entry.get("rows")) is int)
            ):
                raise ValueError(f"the entry for {name!r} is not a file's size, sha256 and rows")
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(f"{path}: damaged task record ({exc}); run that task again") from exc
    return record


def _verify_share_file(
    share: Path, record: dict, name: str, task: str, required: bool, digest: bool = True
) -> None:
    """A share's file is there, as the task's record says; with `digest`, its sha256 too."""
    entry = record["files"].get(name)
    path = share / name
    if entry is None:
        if not required:
            return
        raise InputError(
            f"{share}: task {task} did not make {name}; run --task {task} again with this"
            " --finish's options"
        )
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise InputError(
            f"{path}: missing from task {task}'s share ({first_line(exc)}); run --task {task} again"
        ) from exc
    if not stat.S_ISREG(info.st_mode) or info.st_size != entry["size"]:
        raise InputError(
            f"{path}: not the file task {task} recorded (size {info.st_size:,}, recorded"
            f" {entry['size']:,}); run --task {task} again"
        )
    if digest and sha256_of(path) != entry["sha256"]:
        raise _damaged(path, task)


def _damaged(path: Path, task: str) -> InputError:
    return InputError(
        f"{path}: its sha256 differs from task {task}'s record (damaged since it was built);"
        f" run --task {task} again"
    )


def _copy_checked(share: Path, record: dict, name: str, task: str, target: Path) -> None:
    """Copy SHARE/NAME to `target`, hashing what is read; a sha256 other than the task's record
    raises (the finish's folder, and so `target`, is then discarded)."""
    path = share / name
    digest = hashlib.sha256()
    with open(path, "rb") as reading, open(target, "wb") as writing:
        while block := reading.read(1 << 20):
            digest.update(block)
            writing.write(block)
            interrupts.check()
    if digest.hexdigest() != record["files"][name]["sha256"]:
        raise _damaged(path, task)


@contextlib.contextmanager
def _finish_lock(root: Path, folder: Path) -> Iterator[None]:
    """One --finish at a time: another is refused, naming the holder's host and pid."""
    path = root / "finish.lock"
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except FileNotFoundError as exc:  # the tasks folder went as we came: another finish ended
        raise InputError(f"{folder}: another --finish has just finished it; nothing to do") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot lock the finish ({first_line(exc)})") from exc
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 300, 0).decode("utf-8", "replace").split()
            who = f"host {holder[0]}, pid {holder[1]}" if len(holder) == 2 else "another process"
            raise InputError(
                f"{folder}: another --finish is running ({who}); wait for it to end"
            ) from None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current != os.fstat(descriptor).st_ino:
            raise InputError(f"{folder}: another --finish has just finished it; nothing to do")
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{socket.gethostname()} {os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(descriptor)


def _stop_workers(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """On the way out of a build: after an error, Ctrl-C or SIGTERM, stop the other splits now
    rather than letting the pool's exit wait for each running one (the build is discarded).
    The pool fails the futures left itself: cancelling them too makes its manager thread trip
    over them (InvalidStateError, printed as a traceback)."""
    if sys.exc_info()[0] is None:
        return
    for process in list(getattr(pool, "_processes", {}).values()):
        process.terminate()


def _ledger_record(record: dict, split: Split, name: str, moves: dict[str, list]) -> dict:
    """A split's ledger record with its split, the file it was routed to, and each row piece as
    [file, row, offset, count] where the piece is after balancing."""
    if split.kind == "test":
        unit = "row" if "row" in record else "line"
        return {
            "input": record["input"],
            unit: record[unit],
            "status": "test",
            "split": "test",
            "file": f"{TEST_DIR}/{name}",
            "test_line": record["test_line"],
        }
    source = split.number - 1
    rows = []
    for row, offset, count in record["rows"]:
        target, moved = balancing.moved_row(moves.get(split.kind, []), source, row)
        rows.append([split_file_name(split.kind, target + 1, split.of), moved, offset, count])
    out = {key: value for key, value in record.items() if key != "rows"}
    out.update(split=split.kind, file=name, rows=rows)
    return out


def _sum_metrics(parts: list[Metrics]) -> Metrics:
    total = Metrics(seq_len=parts[0].seq_len)
    for part in parts:
        total.absorb(part)
    return total


def _prefixed(kind: str, metrics: Metrics) -> dict[str, object]:
    """The split's metrics as `train_<name>`: the reference's names meaning what the reference
    means (articles: input lines read; completion tokens: types 1 and 3, both learned), then
    tokentype's own under names of their own."""
    data = metrics.as_dict()
    data.pop("tokens_by_type")  # counted by type below
    data.pop("articles")
    by_type = {TokenType(t).name.lower(): n for t, n in enumerate(metrics.tokens_by_type)}
    out: dict[str, object] = {
        "sequences": metrics.rows,
        "articles": metrics.lines,
        "input_tokens": metrics.input_tokens,
        "output_tokens": metrics.rows * metrics.seq_len,
        "prompt_tokens": by_type["prompt"],
        "completion_tokens": by_type["completion"] + by_type["separator"],
        "padding_tokens": by_type["padding"],
        "packed_articles": metrics.articles,
        "completion_tokens_without_separators": by_type["completion"],
        "separator_tokens": by_type["separator"],
        "tokens_dropped_from_packing": metrics.tokens_truncated_left
        + metrics.tokens_truncated_right
        + metrics.tokens_dropped_too_long,
        "tokens_dropped_from_all_prompt": metrics.tokens_dropped_prompt_only_rows,
    }
    for key, value in data.items():
        if isinstance(
            value, dict
        ):  # articles_dropped: {too_long: ...} -> articles_dropped_too_long
            for sub, count in value.items():
                out.setdefault(f"{key}_{sub}", count)
        elif key != "max_seq_length":
            out.setdefault(key, value)
    return {f"{kind}_{key}": value for key, value in out.items()}


def _folder_mode() -> int:
    """A new folder's mode under the umask (temporary folders are made private)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o777 & ~umask


def _rename_into_place(stage: Path, folder: Path, overwrite: bool) -> None:
    """Make the finished folder appear at once; an existing one (with --overwrite) goes after."""
    old = None
    # rename(2) replaces an empty folder in one step.
    if folder.exists() and not empty_folder(folder):
        if not overwrite:
            raise OptionError(f"--dataset {folder} appeared while building; pass --overwrite")
        try:
            swapped = exchange(stage, folder)
        except OSError as exc:
            raise ShardError(
                f"{folder}: cannot move the built folder into place ({first_line(exc)})"
            ) from exc
        if swapped:  # the old folder is at the stage's temporary name: removed now or later
            shutil.rmtree(stage, ignore_errors=True)
            return
        # Named as a temporary, so a build killed between the two renames leaves nothing that
        # the next one does not remove (but neither folder at DIR until it runs).
        old = temporary_name(folder)
        os.replace(folder, old)
    try:
        os.replace(stage, folder)
    except OSError as exc:
        if old is not None:
            with contextlib.suppress(OSError):
                os.replace(old, folder)
        raise ShardError(
            f"{folder}: cannot move the built folder into place ({first_line(exc)})"
        ) from exc
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
