"""The one training loop of the engine, on plain ``torch.distributed``, for every task.

One process per device, launched by torchrun (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in the
environment means distributed; NCCL on CUDA, gloo on CPU), or a single plain process. What
differs between models is a `Task` (train/task.py); everything else is here:

- DistributedDataParallel with gradient accumulation (``no_sync`` on all but the last
  micro-step), gradient clipping, AdamW, linear warm-up then cosine or inverse-sqrt decay,
  an optional exponential moving average of the weights, bf16 autocast on GPUs that have it.
- ``batch_size`` is global: the clips of one optimizer step over all ranks and micro-steps.
  `BucketBatchSampler` deals each micro-step's global batch to the ranks, so N processes see
  exactly the batches one process sees.
- A step whose loss or gradient norm is not finite on any rank is skipped on every rank
  (one all-reduce per step carries that flag, the stop request and the logged sums).
- Checkpoints every ``checkpoint_every`` steps and ``checkpoint_minutes``, at the end, and at
  the next step boundary after SIGTERM/SIGINT: weights, optimizer, scheduler, EMA, step, epoch, sampler position,
  every rank's RNG states and the config, written atomically and loaded with
  ``weights_only=True``. Resuming continues the run exactly, as if never interrupted.
- Rank 0 writes ``RUN_DIR/log.jsonl`` (one line per step), ``RUN_DIR/eval.jsonl``,
  TensorBoard logs in ``RUN_DIR/tb`` and a progress bar.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import json
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from tts.files import replacing
from tts.train.data import BucketBatchSampler, EpochBatches, EpochItems
from tts.train.config import ConfigError, TrainConfig, config_dict, resolve_config
from tts.train.task import Task

CHECKPOINT_DIR = "checkpoints"
LOG_FILE = "log.jsonl"
EVAL_FILE = "eval.jsonl"
CONFIG_FILE = "config.json"


class RunDirError(ValueError):
    """A run folder that cannot be used as asked (no checkpoint to export, a run to resume...)."""


def lr_at(c: TrainConfig, step: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warm-up to ``lr``, then decay."""
    if step < c.warmup_steps:
        return c.lr * (step + 1) / (c.warmup_steps + 1)
    if c.decay == "constant":
        return c.lr
    if c.decay == "inverse_sqrt":  # the Transformer/Deep Voice 3 schedule, continuous at warm-up's end
        return c.lr * math.sqrt(max(c.warmup_steps, 1) / (step + 1))
    end = c.decay_steps or c.max_steps
    if step >= end:
        return c.min_lr
    progress = (step - c.warmup_steps) / max(1, end - c.warmup_steps)
    return c.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (c.lr - c.min_lr)


# --- Distribution ------------------------------------------------------------------------

@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or dist.is_initialized()


def setup_distributed(device: str = "auto") -> DistInfo:
    """Join the process group that torchrun describes in the environment, if any."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("device=cuda, but no CUDA GPU is available")
    if "RANK" not in os.environ:
        return DistInfo(0, 1, 0, torch.device("cuda" if use_cuda else "cpu"))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if use_cuda:
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        # DDP imports torch._dynamo, and with it torch.distributed.nn, whose functions take
        # group.WORLD as a default argument. Imported after init_process_group, they would hold the
        # default group for the rest of the process: destroy_process_group() could not free it, and
        # its backend would be torn down only while the interpreter shuts down (see `Trainer.close`).
        from torch import _dynamo  # noqa: F401
        dist.init_process_group("nccl" if use_cuda else "gloo", device_id=dev if use_cuda else None)
    return DistInfo(rank, world, local_rank, dev)


def _all_ok(ok: bool, info: DistInfo) -> bool:
    """Whether ``ok`` holds on every rank (so that all ranks fail together, none hangs)."""
    if not info.distributed:
        return ok
    flag = torch.tensor([0.0 if ok else 1.0], device=info.device)
    dist.all_reduce(flag)
    return flag.item() == 0.0


# --- RNG state, kept as tensors and plain lists so that weights_only=True loads it --------

def rng_state(device: torch.device) -> dict[str, Any]:
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": gauss},
    }


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state["cuda"] is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"].tolist()), p["gauss"]))


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# --- Checkpoints -------------------------------------------------------------------------

def checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of a run's checkpoints, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    found = []
    for path in folder.glob("step-*.pt"):
        with contextlib.suppress(ValueError):
            found.append((int(path.stem.removeprefix("step-")), path))
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    found = checkpoints(run_dir)
    return found[-1][1] if found else None


def load_checkpoint(path: str | os.PathLike, mmap: bool = False) -> dict[str, Any]:
    """A checkpoint's contents, on CPU; ``mmap`` reads tensors only when touched."""
    return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def stored_config(checkpoint: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(task name, merged settings) of a checkpoint, as `resolve_config` takes them."""
    c = checkpoint["config"]
    return c["task"], {**c["train"], **c["task_config"]}


class EMA:
    """Exponential moving average of a model's weights (buffers are copied), in a model copy."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).requires_grad_(False).eval()

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        # Averages over few steps would be dominated by the random initial weights; the
        # effective decay grows from 0.1 towards `decay` instead (as TF's num_updates does).
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema_params, params = list(self.model.parameters()), list(model.parameters())
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)


class _TaskForward(torch.nn.Module):
    """The task's loss as a module's forward, so that DDP sees (and syncs) the whole call
    while the task itself only ever handles the plain model."""

    def __init__(self, task: Task, model: torch.nn.Module):
        super().__init__()
        self.task = task
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]):
        return self.task.loss(self.model, batch)


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGTERM/SIGINT to the training process, which stops at a step
    boundary and then shuts them down. (torchrun and Ctrl-C signal the whole process group, and
    a worker killed under the training process would make it fail mid-step.)"""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


# --- The loop ----------------------------------------------------------------------------

class Trainer:
    """Trains one task in one run folder. ``fit()`` runs to ``max_steps`` (or to a stop
    signal, or to ``deadline``) and returns a summary; with ``resume`` it continues the
    folder's latest checkpoint.

    ``deadline``: a `time.monotonic()` time at which the run stops at the step boundary rank 0
    sees first past it (checkpointed, as at a stop signal); the progress bar then counts the
    seconds to it, so that its ETA is the deadline's."""

    def __init__(self, task: Task, config: TrainConfig, data_dir: str | os.PathLike, run_dir: str | os.PathLike,
                 resume: bool = True, init_voice: str | os.PathLike | None = None, deadline: float | None = None):
        self.task, self.config = task, config
        self.deadline = deadline
        self.init_voice = None if init_voice is None else Path(init_voice)
        # Recorded in every checkpoint (a resumed run keeps its first's), so that an export
        # into a new voice carries over what else that voice holds (see `export_run`).
        self.origin_voice = None if init_voice is None else str(Path(init_voice).resolve())
        self.data_dir, self.run_dir = Path(data_dir), Path(run_dir)
        self.resume = resume
        self.step = self.epoch = self.position = self.skipped = 0
        # A stop signal sets _stop_requested; every rank stops together (_stop) at the step whose
        # all-reduce first carries a request, so that a signal that lands after one step's
        # all-reduce is kept for the next instead of being overwritten.
        self._stop_requested = self._stop = False
        self.stopped_by: str | None = None  # "signal" or "deadline" once the run stopped early
        self._save_due, self._saved_time = False, time.monotonic()
        self._owns_group = False
        self.progress = self.writer = self.log = self.eval_log = None

    # ---- setup ------------------------------------------------------------------------

    def _setup(self) -> None:
        c, task = self.config, self.task
        self._owns_group = not dist.is_initialized()
        self.info = info = setup_distributed(c.device)
        self._owns_group = self._owns_group and dist.is_initialized()
        if c.batch_size % (c.accumulation_steps * info.world_size):
            raise ConfigError(f"batch_size {c.batch_size} is not divisible by accumulation_steps "
                              f"{c.accumulation_steps} x {info.world_size} ranks")
        if not self.data_dir.is_dir():
            raise ConfigError(f"data folder not found: {self.data_dir}")
        resume_from = latest_checkpoint(self.run_dir) if self.resume else None
        if not self.resume and latest_checkpoint(self.run_dir) is not None:
            raise RunDirError(f"{self.run_dir} already holds a run; resume it or choose another folder")
        # Rank 0 prepares the data (feature caches) alone; the others wait, and all fail together.
        error = None
        if info.is_main:
            try:
                task.prepare(self.data_dir)
            except Exception as e:  # re-raised below, after telling the other ranks
                error = e
        if not _all_ok(error is None, info):
            if error is not None:
                raise error
            raise RunDirError("rank 0 failed to prepare the data")
        self.train_set, self.eval_set = task.datasets(self.data_dir)
        self.micro_global = c.batch_size // c.accumulation_steps  # items per micro-step, all ranks
        self.sampler = BucketBatchSampler(task.lengths(self.train_set), self.micro_global, info.world_size,
                                          info.rank, shuffle=True, seed=c.seed, bucket_batches=c.bucket_batches)

        seed_everything(c.seed)  # identical initial weights on every rank, whatever the world size
        self.model = task.build_model().to(info.device)
        self.ema = EMA(self.model, c.ema) if c.ema > 0 else None
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=c.lr, betas=c.betas,
                                           eps=c.adam_eps, weight_decay=c.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_at(c, s) / c.lr)
        if resume_from is not None:
            self._restore(load_checkpoint(resume_from))
        else:
            if self.init_voice is not None:
                self._init_from_voice()
            seed_everything(c.seed + 1 + info.rank)  # dropout differs between ranks
        self.forward = _TaskForward(task, self.model)
        if c.compile:
            self.forward = torch.compile(self.forward)
        if info.distributed:
            self.forward = torch.nn.parallel.DistributedDataParallel(
                self.forward, device_ids=[info.device.index] if info.device.type == "cuda" else None,
                find_unused_parameters=task.find_unused_parameters)
        if info.device.type == "cuda":
            use_bf16 = c.bf16 and torch.cuda.is_bf16_supported()
        else:
            use_bf16 = self._cpu_format() == "bf16"
        kind = info.device.type
        self.autocast = (lambda: torch.autocast(kind, dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext
        self.format = "bf16" if use_bf16 else "fp32"  # logged with each step, for its FLOP/s against a peak

        if info.is_main:
            # Made once the data, the settings and the init voice have been checked, so that
            # bad input (or a stop while the features are built) leaves no empty run behind.
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # Flat, as --config takes it: the settings of this run, to read or to start another from.
            record = self._config_record()
            flat = {"task": record["task"], **record["train"], **record["task_config"]}
            (self.run_dir / CONFIG_FILE).write_text(json.dumps(flat, indent=2) + "\n")
            self.log = self._open_log(LOG_FILE)
            self.eval_log = self._open_log(EVAL_FILE)
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.step + 1 if self.step else None)
            if self.deadline is None:
                self.progress = tqdm(total=c.max_steps, initial=self.step, desc=getattr(task, "name", "train"),
                                     unit="step", dynamic_ncols=True)
            else:
                self.progress = tqdm(total=max(0, round(self.deadline - time.monotonic())), desc=getattr(task, "name", "train"),
                                     unit="s", dynamic_ncols=True,
                                     bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}")
                self._bar_start = time.monotonic()

    def _cpu_format(self) -> str:
        """fp32 or bf16 on the CPU: as configured, or (auto) as rank 0 measures it on this
        machine with the task's own loss, once (train/precision.py), for every rank alike."""
        c, info = self.config, self.info
        if c.cpu_format != "auto":
            return c.cpu_format
        choice = 0.0
        if info.is_main:
            from tts.train.precision import choose_cpu_format

            items = [self.train_set[i] for i in range(min(2, len(self.train_set)))]
            probe = _to_device(self.task.collate(items), info.device)
            fmt, why = choose_cpu_format(getattr(self.task, "name", type(self.task).__name__), config_dict(self.task.config),
                                         lambda: self.task.loss(self.model, probe)[0], self.model)
            print(why, file=sys.stderr, flush=True)
            choice = 1.0 if fmt == "bf16" else 0.0
        if info.distributed:
            flag = torch.tensor([choice], device=info.device)
            dist.broadcast(flag, src=0)
            choice = flag.item()
        return "bf16" if choice else "fp32"

    def _init_from_voice(self) -> None:
        """Start a new run from the weights of the task's model in a voice folder (the
        durable checkpoint a repository can hold); optimizer and schedule start afresh."""
        from tts.voice import load_model

        self.task.init_from(self.model, load_model(self.init_voice, self.task.voice_model or self.task.name))
        self.task.from_voice(self.init_voice)
        if self.ema:
            self.ema = EMA(self.model, self.config.ema)

    def _open_log(self, name: str):
        """Append to a log, first dropping lines past the step being resumed from (a killed run
        may have logged steps its last checkpoint does not hold)."""
        path = self.run_dir / name
        if path.is_file():
            kept = []
            for line in path.read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError, KeyError, TypeError):  # a line cut by a kill
                    if json.loads(line)["step"] <= self.step:
                        kept.append(line)
            path.write_text("".join(line + "\n" for line in kept))
        return open(path, "a", encoding="utf-8")

    def _config_record(self) -> dict[str, Any]:
        return {"task": getattr(self.task, "name", type(self.task).__name__),
                "train": config_dict(self.config), "task_config": config_dict(self.task.config),
                "init_voice": self.origin_voice}

    # ---- checkpoints ------------------------------------------------------------------

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0 writes; every rank gives its RNG)."""
        info = self.info
        states = [rng_state(info.device)]
        if info.distributed:
            gathered = [None] * info.world_size if info.is_main else None
            dist.gather_object(states[0], gathered, dst=0)
            states = gathered
        if not info.is_main:
            return None
        payload = {
            "step": self.step, "epoch": self.epoch, "position": self.position, "skipped": self.skipped,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.model.state_dict() if self.ema else None,
            "ema_updates": self.ema.updates if self.ema else 0,
            "rng": states,
            "world_size": info.world_size,
            "config": self._config_record(),
        }
        folder = self.run_dir / CHECKPOINT_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"step-{self.step:08d}.pt"
        with replacing(path) as tmp:  # a crash leaves the previous checkpoint, never half of this one
            torch.save(payload, tmp)
        for _, old in checkpoints(self.run_dir)[:-self.config.keep_checkpoints]:
            old.unlink(missing_ok=True)
        return path

    def _restore(self, ckpt: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(ckpt["model"], strict=True)
            if self.ema:
                self.ema.model.load_state_dict(ckpt["ema"] if ckpt["ema"] is not None else ckpt["model"])
                self.ema.updates = ckpt["ema_updates"]
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise RunDirError(f"the checkpoint in {self.run_dir} does not fit the configured model: {first}") from None
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.origin_voice = ckpt["config"].get("init_voice")
        self.step, self.epoch, self.position, self.skipped = (ckpt["step"], ckpt["epoch"], ckpt["position"],
                                                              ckpt["skipped"])
        # The schedule is the configuration's: a resume with another peak or decay goes on from
        # this step on the new one (the checkpoint's scheduler would keep the old peak).
        c = self.config
        self.scheduler.base_lrs = [c.lr] * len(self.optimizer.param_groups)
        for group in self.optimizer.param_groups:
            group["initial_lr"], group["lr"] = c.lr, lr_at(c, self.step)
        rank = self.info.rank
        if ckpt["world_size"] == self.info.world_size:
            set_rng_state(ckpt["rng"][rank], self.info.device)
        else:
            # Data order survives a change of world size (global batches); dropout draws cannot.
            seed_everything(self.config.seed + 1 + rank + 7919 * self.step)

    # ---- data -------------------------------------------------------------------------

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """This rank's micro-batches, epoch after epoch, from the saved position on, all from
        one DataLoader, so its workers read ahead across the end of an epoch."""
        c = self.config
        per_epoch = len(self.sampler)
        # Its own generator: the DataLoader would otherwise draw worker seeds from the
        # global RNG, which a resumed run would then see shifted.
        loader = torch.utils.data.DataLoader(
            EpochItems(self.train_set, c.seed), batch_sampler=EpochBatches(self.sampler, self.epoch, self.position),
            collate_fn=self.task.collate, num_workers=c.num_workers, pin_memory=self.info.device.type == "cuda",
            worker_init_fn=_ignore_stop_signals, generator=torch.Generator().manual_seed(c.seed + self.epoch))
        for batch in loader:  # (a position saved as its epoch ended, == per_epoch, rolls over too)
            self.epoch, self.position = divmod(self.epoch * per_epoch + self.position + 1, per_epoch)
            yield batch

    # ---- signals ----------------------------------------------------------------------

    def _on_signal(self, signum, frame) -> None:
        self._stop_requested = True
        # A second Ctrl-C interrupts at once.
        signal.signal(signal.SIGINT, signal.default_int_handler)

    # ---- one optimizer step -----------------------------------------------------------

    def _train_step(self, batches: Iterator[dict[str, torch.Tensor]]) -> dict[str, Any]:
        c, info = self.config, self.info
        self.model.train()
        self.task.step = self.step  # for losses that change over training
        loss_sum = torch.zeros((), device=info.device)
        scalars: dict[str, Any] = {}
        items = units = 0
        for micro in range(c.accumulation_steps):
            batch = next(batches)
            items += int(next(iter(batch.values())).shape[0])
            units += self.task.units(batch)
            batch = _to_device(batch, info.device)
            last = micro == c.accumulation_steps - 1
            # Gradients are all-reduced once, on the last micro-step.
            sync = contextlib.nullcontext() if last or not info.distributed else self.forward.no_sync()
            with sync:
                with self.autocast():
                    loss, named = self.forward(batch)
                # Every rank runs backward even on a non-finite loss: a rank that skipped it
                # would leave the others waiting in the all-reduce.
                (loss / c.accumulation_steps).backward()
            loss_sum += loss.detach().float()
            for k, v in named.items():
                v = v.detach().float() if isinstance(v, torch.Tensor) else float(v)
                scalars[k] = scalars.get(k, 0.0) + v / c.accumulation_steps
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, c.grad_clip if c.grad_clip > 0 else float("inf"))
        bad = (~torch.isfinite(loss_sum) | ~torch.isfinite(norm)).float()
        # One all-reduce carries the skip flag, the stop request, rank 0's "a checkpoint is due"
        # and the logged sums.
        due = info.is_main and c.checkpoint_minutes > 0 and time.monotonic() - self._saved_time >= 60 * c.checkpoint_minutes
        late = info.is_main and self.deadline is not None and time.monotonic() >= self.deadline
        counts = torch.tensor([float(self._stop_requested), float(due), float(items), float(units), float(late)],
                              device=info.device)
        flags = torch.cat([bad[None], loss_sum[None], counts])
        if info.distributed:
            dist.all_reduce(flags)
        bad, loss_total, stop, due, items_total, units_total, late = flags.tolist()
        self._save_due = due > 0
        self.stopped_by = "signal" if stop > 0 else "deadline" if late > 0 else None
        skipped = bad > 0
        lr = self.optimizer.param_groups[0]["lr"]
        if skipped:
            self.skipped += 1
        else:
            self.optimizer.step()
            if self.ema:
                self.ema.update(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        self._stop = stop > 0 or late > 0
        loss_mean = loss_total / (info.world_size * c.accumulation_steps)
        grad_norm = float(norm)  # after the all-reduce of DDP, the same on every rank
        return {"step": self.step, "loss": loss_mean if math.isfinite(loss_mean) else None, "lr": lr,
                "grad_norm": grad_norm if math.isfinite(grad_norm) else None, "skipped": skipped,
                "skipped_total": self.skipped, "epoch": self.epoch, "items": int(items_total),
                "units": int(units_total), "scalars": scalars}

    # ---- evaluation -------------------------------------------------------------------

    def _evaluate(self) -> None:
        net = self.ema.model if self.ema else self.model
        batch = max(1, self.micro_global // self.info.world_size)
        loader = torch.utils.data.DataLoader(self.eval_set, batch_size=batch, shuffle=False,
                                             collate_fn=self.task.collate)
        was_training = net.training
        net.eval()
        devices = [self.info.device] if self.info.device.type == "cuda" else []
        # Evaluation must not move the training RNG, or a resumed run would diverge.
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            metrics = self.task.evaluate(net, loader, self.writer, self.step)
        net.train(was_training)
        for k, v in metrics.items():
            self.writer.add_scalar(f"eval/{k}", v, self.step)
        self.eval_log.write(json.dumps({"step": self.step, **{k: float(v) for k, v in metrics.items()}}) + "\n")
        self.eval_log.flush()

    # ---- the loop ---------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Train to ``max_steps`` (or until a stop signal); returns the last step's record."""
        c = self.config
        handlers = {}
        try:
            self._setup()
            if threading.current_thread() is threading.main_thread():  # where Python runs handlers
                for sig in (signal.SIGTERM, signal.SIGINT):
                    handlers[sig] = signal.signal(sig, self._on_signal)
            info, record = self.info, {"step": self.step, "loss": None, "skipped_total": self.skipped}
            batches = self._batches()
            saved_at = self.step if self.step else None
            while self.step < c.max_steps:
                start = time.perf_counter()
                record = self._train_step(batches)
                seconds = time.perf_counter() - start
                if info.is_main:
                    self._log(record, seconds)
                    if c.eval_every and self.step % c.eval_every == 0:
                        self._evaluate()
                if self.step % c.checkpoint_every == 0 or self._stop or self._save_due:
                    self.save_checkpoint()
                    saved_at, self._saved_time = self.step, time.monotonic()
                if self._stop:
                    break
            if saved_at != self.step:
                self.save_checkpoint()
            return {**record, "stopped_by": self.stopped_by}
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            self.close()

    def _log(self, record: dict[str, Any], seconds: float) -> None:
        line = {k: v for k, v in record.items() if k != "scalars"}
        line["seconds"] = round(seconds, 6)
        line["processes"], line["format"] = self.info.world_size, self.format
        line.update({k: float(v) for k, v in record["scalars"].items() if k not in line})  # the task's own terms (rank 0's)
        self.log.write(json.dumps(line) + "\n")
        self.log.flush()
        w, step = self.writer, record["step"]
        if record["loss"] is not None:
            w.add_scalar("train/loss", record["loss"], step)
        if record["grad_norm"] is not None:
            w.add_scalar("train/grad_norm", record["grad_norm"], step)
        w.add_scalar("train/lr", record["lr"], step)
        w.add_scalar("train/skipped_steps", record["skipped_total"], step)
        w.add_scalar("train/items_per_s", record["items"] / seconds, step)
        w.add_scalar(f"train/{self.task.unit}_per_s", record["units"] / seconds, step)
        for k, v in record["scalars"].items():
            w.add_scalar(f"train/{k}", float(v), step)
        loss = "nan" if record["loss"] is None else f"{record['loss']:.4f}"
        self.progress.set_postfix_str(f"loss={loss} items/s={record['items'] / seconds:.1f}"
                                      + (f" skipped={record['skipped_total']}" if record["skipped_total"] else ""),
                                      refresh=False)
        if self.deadline is None:
            self.progress.update(1)
        else:  # seconds to the deadline, whatever took them (steps, evaluations, checkpoints)
            self.progress.update(max(0.0, min(self.progress.total, time.monotonic() - self._bar_start) - self.progress.n))

    def close(self) -> None:
        for thing in (self.progress, self.writer, self.log, getattr(self, "eval_log", None)):
            if thing is not None:
                thing.close()
        self.progress = self.writer = self.log = self.eval_log = None
        if self._owns_group and dist.is_initialized():
            # Freeing the group joins its backend's worker threads. A gloo worker can let go of a
            # finished collective's tensors after this rank has moved on, and that takes the GIL:
            # during interpreter shutdown it would end the thread inside a destructor and abort the
            # process ("terminate called without an active exception"). DDP's reducer holds the
            # group, so it goes first, and the group is freed here, while that can still run.
            forward = getattr(self, "forward", None)
            if isinstance(forward, torch.nn.parallel.DistributedDataParallel):
                self.forward = forward.module
            del forward
            gc.collect()
            dist.destroy_process_group()
            self._owns_group = False


# --- Export ------------------------------------------------------------------------------

def export_run(run_dir: str | os.PathLike, voice_dir: str | os.PathLike, carry: bool = True) -> Path:
    """Write the latest checkpoint's model (its EMA weights when it has them) to a voice folder.

    A new voice folder made from a run that started from a voice (``--init``) also gets that
    voice's other models (its vocoder or acoustic model, its voicing detector) and its default
    vocoder: what a voice carries goes on unless the user changes it (``carry=False``: the
    run's model alone). An existing voice folder keeps its own."""
    from tts.train.tasks import get_task
    from tts.voice import CONFIG_FILE, VoiceError

    path = latest_checkpoint(run_dir)
    if path is None:
        raise RunDirError(f"no checkpoint in {run_dir}")
    ckpt = load_checkpoint(path)
    name, settings = stored_config(ckpt)
    task_cls = get_task(name)
    _, task_config = resolve_config(task_cls, base=settings)
    task = task_cls(task_config)
    model = task.build_model()
    model.load_state_dict(ckpt["ema"] if ckpt.get("ema") is not None else ckpt["model"], strict=True)
    voice_dir = Path(voice_dir)
    origin = ckpt["config"].get("init_voice")
    carried = None
    if carry and origin and not (voice_dir / CONFIG_FILE).is_file():
        try:  # read before anything is written
            carried = _carried_over(Path(origin), task.voice_model or name)
        except VoiceError as e:
            # The run's model is still worth having: exported alone, and said so.
            print(f"export: warning: {voice_dir} gets only the run's model; the voice it started from "
                  f"cannot be read: {e}", file=sys.stderr)
    task.export(model.eval(), voice_dir)
    if carried is not None:
        _write_carried(voice_dir, *carried)
    return voice_dir


def _carried_over(origin: Path, exported: str):
    """(audio config, models, voice settings) of the voice a run started from, less the model
    the run exports itself; the settings are what "auto" speaks with and in which precision."""
    from tts.audio import AudioConfig
    from tts.voice import SETTINGS, load_model, read_config

    config = read_config(origin)
    models = {name: load_model(origin, name, config=config) for name in config["models"] if name != exported}
    settings = {key: config[key] for key in SETTINGS if key in config}
    return AudioConfig.from_dict(config["audio"]), models, settings


def _write_carried(voice_dir: Path, audio, models: dict[str, torch.nn.Module], settings: dict[str, str]) -> None:
    from tts.voice import save_model, set_setting

    for name, model in models.items():
        save_model(voice_dir, name, model, audio)
    for key, value in settings.items():
        set_setting(voice_dir, key, value)
