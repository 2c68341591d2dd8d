"""What every Hugging Face trainer plugin shares: one config base, one TrainingArguments builder, dataset checks,
a callback that reports to plinth's event hooks, resume from the last checkpoint, and saving the final model.

plinth-sft and plinth-kto build on this module so that neither copies code from the other. Heavy libraries are
imported inside functions; importing this module costs only pydantic.

    class SFTTrainer(plinth.Trainer):
        class Config(TrainingConfig): ...
        def train(self, ctx):
            rows = load_rows(ctx.input("dataset", kind="dataset"))
            ...
            args = build_training_arguments(self.config, ctx, trl.SFTConfig, packing=...)
            trainer = trl.SFTTrainer(..., callbacks=[PlinthCallback(ctx)])
            train_with_resume(trainer, self.config, ctx)
            return {"model": save_trained_model(trainer, tokenizer, self.config, ctx)}
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..components import ComponentConfig
from ..fileparams import file_field
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..artifacts import Artifact
    from ..context import StageContext

log = logging.getLogger("plinth.lm.training")

DEFAULT_MODEL = "smollm2-135m-instruct"
CHECKPOINTS = "checkpoints"


class DatasetError(ConfigError):
    """A training dataset is malformed: names the file, the row and the field."""


# -- configuration ------------------------------------------------------------------------------------------
class LoraSettings(BaseModel):
    """Low-rank adapters (peft.LoraConfig) for `finetune = "lora"`."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1, description="adapter rank")
    alpha: int = Field(32, ge=1, description="lora_alpha; the update is scaled by alpha / r")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="dropout on the adapter input")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description='module names to adapt (e.g. ["q_proj", "v_proj"]) or "all-linear"'
    )
    merge_on_save: bool = Field(
        True,
        description="merge the adapters into the base weights when saving, so the output is a plain model folder; "
        "false saves the peft adapter folder instead",
    )


class TrainingConfig(ComponentConfig):
    """Parameters common to plinth's Hugging Face trainers (names follow trl / transformers where they exist)."""

    model: str | None = file_field(
        None, kind="path_or_name",
        description="starting model: local folder, alias (smollm2-135m-instruct, qwen2-0.5b-instruct) or hub id. "
        f"Unset: the stage's `model` input if wired, else {DEFAULT_MODEL!r}",
    )
    chat_template: str = Field(
        "auto", description='"auto" (the tokenizer\'s own, ChatML if none), "chatml", "qwen2", or a Jinja template'
    )
    finetune: Literal["full", "lora"] = Field("full", description="full fine-tune, or LoRA adapters (see `lora`)")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA settings, used when finetune = 'lora'")
    learning_rate: float = Field(2e-5, gt=0, description="peak learning rate")
    lr_scheduler: Literal[
        "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
        "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "warmup_stable_decay",
    ] = Field("cosine", description="learning-rate schedule (transformers' lr_scheduler_type)")
    warmup_steps: int = Field(0, ge=0, description="linear warm-up steps")
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0, description="warm-up as a fraction of the steps (if no steps)")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay")
    optimizer: str = Field("adamw_torch", description="transformers optim name (adamw_torch, adafactor, sgd, ...)")
    max_grad_norm: float = Field(1.0, ge=0.0, description="gradient clipping norm (0 disables)")
    epochs: float = Field(1.0, gt=0, description="passes over the data (ignored when max_steps > 0)")
    max_steps: int = Field(-1, ge=-1, description="total optimizer steps (> 0); -1 uses `epochs`")
    batch_size: int = Field(4, ge=1, description="per-device batch size")
    gradient_accumulation_steps: int = Field(1, ge=1, description="micro-batches per optimizer step")
    max_length: int = Field(1024, ge=8, description="maximum tokens per example (prompt + completion)")
    overlong: Literal["truncate", "drop"] = Field(
        "truncate", description="what to do with examples longer than max_length (always counted and reported)"
    )
    seed: int = Field(42, description="random seed (data order, initialisation of adapters)")
    logging_steps: int = Field(10, ge=1, description="log metrics every N steps")
    save_steps: int = Field(100, ge=1, description="write a checkpoint (for resume) every N steps")
    save_total_limit: int | None = Field(2, ge=1, description="keep at most N checkpoints")
    eval_steps: int | None = Field(None, ge=1, description="evaluate on the `eval_dataset` input every N steps")
    resume: str = Field(
        "auto",
        description='"auto": continue from the last checkpoint in the stage work dir (after a crash or kill); '
        '"never": start fresh; or a checkpoint folder',
    )
    report_to: list[Literal["none", "tensorboard", "wandb"]] = Field(
        default_factory=lambda: ["none"], description="extra experiment trackers (plinth's own logging always runs)"
    )
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="mixed precision: auto = bf16 on GPUs that have it, fp16 on older GPUs, fp32 on CPU"
    )
    gradient_checkpointing: bool = Field(False, description="trade compute for activation memory (GPU only)")
    save_dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="dtype of the saved weights; auto = the training precision (bf16 after bf16 mixed precision "
        "on a GPU, fp32 on the CPU)"
    )
    trust_remote_code: bool = Field(False, description="allow custom model code from the model folder")
    trainer_args: dict[str, Any] = Field(
        default_factory=dict, description="extra transformers/trl TrainingArguments keys, passed through last"
    )

    @field_validator("max_steps")
    @classmethod
    def _steps(cls, value: int) -> int:
        if value == 0:
            raise ValueError("max_steps = 0 trains nothing; give a positive number of steps, or -1 to use `epochs`")
        return value


def config_fingerprint(config: BaseModel) -> str:
    """A short hash of the settings that change what a checkpoint means (everything except the resume flag)."""
    data = config.model_dump(mode="json", exclude={"resume", "report_to", "logging_steps"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# -- model selection ------------------------------------------------------------------------------------------
def starting_model(config: TrainingConfig, ctx: "StageContext") -> tuple[Path, str]:
    """The folder to start from and a label: the stage's `model` input (SFT -> KTO chaining) wins over
    `config.model`, which wins over the default alias. Resolves now, so a missing model fails before any work."""
    from .hf import model_label, resolve_model

    if "model" in ctx.inputs:
        if config.model is not None:
            raise ConfigError(
                f"stage '{ctx.stage}': both `model = {config.model!r}` and a `model` input are given; keep one"
            )
        art = ctx.input("model", kind="model")
        return resolve_model(art.path), model_label(art)
    ref = config.model or DEFAULT_MODEL
    return resolve_model(ref), ref


# -- datasets -------------------------------------------------------------------------------------------------
def load_rows(artifact: "Artifact | str | Path") -> tuple[list[dict[str, Any]], str]:
    """Rows of a JSONL / JSON / Parquet file (or a folder of them) and a source name for error messages.

    JSONL is read line by line so a broken line is reported with its number."""
    path = Path(getattr(artifact, "path", artifact))
    if not path.exists():
        raise DatasetError(f"dataset {path}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.suffix in {".jsonl", ".json", ".parquet"}) if path.is_dir() else [path]
    if not files:
        raise DatasetError(f"dataset {path}: the folder holds no .jsonl, .json or .parquet file")
    from ..records import iter_records

    rows: list[dict[str, Any]] = []
    for f in files:
        rows.extend(row for _, row in iter_records(f, "dataset", error=DatasetError))
    if not rows:
        raise DatasetError(f"dataset {path}: no rows")
    return rows, str(path)


def _raise_collected(source: str, problems: list[str], total: int) -> None:
    if problems:
        shown = "\n  ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise DatasetError(f"dataset {source}: {len(problems)} bad row(s) of {total}:\n  {shown}{more}")


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)


def _empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list):
        return not value or all(not str(m.get("content", "")).strip() for m in value if isinstance(m, dict))
    return False


def check_sft_rows(rows: list[dict[str, Any]], source: str) -> str:
    """Check SFT rows and return their format: "messages" (chat), "prompt-completion", or "text".

    Every row must use the same format; empty prompts, completions or messages are errors (row numbers are 1-based)."""
    first = rows[0]
    if "messages" in first:
        fmt = "messages"
    elif "prompt" in first or "completion" in first:
        fmt = "prompt-completion"
    elif "text" in first:
        fmt = "text"
    else:
        raise DatasetError(
            f"dataset {source}, row 1: no known fields (got {sorted(first)}); SFT rows need `messages`, "
            "`prompt` + `completion`, or `text`"
        )
    problems = []
    for i, row in enumerate(rows, 1):
        if fmt == "messages":
            msgs = row.get("messages")
            if not _is_messages(msgs) or not msgs:
                problems.append(f"row {i}: field `messages` must be a non-empty list of {{role, content}}")
            elif not any(m["role"] == "assistant" and str(m["content"]).strip() for m in msgs):
                problems.append(f"row {i}: field `messages` has no non-empty assistant turn")
        elif fmt == "prompt-completion":
            for key in ("prompt", "completion"):
                if key not in row:
                    problems.append(f"row {i}: missing field `{key}`")
                elif _empty(row[key]):
                    problems.append(f"row {i}: field `{key}` is empty")
        elif _empty(row.get("text")):
            problems.append(f"row {i}: field `text` is missing or empty")
    _raise_collected(source, problems, len(rows))
    return fmt


def check_kto_rows(rows: list[dict[str, Any]], source: str) -> tuple[int, int]:
    """Check KTO's unpaired rows {prompt, completion, label: bool}; returns (n_desirable, n_undesirable).

    Both classes must be present: KTO with only one kind of example has nothing to contrast."""
    problems = []
    n_good = n_bad = 0
    for i, row in enumerate(rows, 1):
        for key in ("prompt", "completion", "label"):
            if key not in row:
                problems.append(f"row {i}: missing field `{key}`")
        if "label" in row:
            label = row["label"]
            if not isinstance(label, bool):
                problems.append(f"row {i}: field `label` must be true or false, got {label!r}")
            elif label:
                n_good += 1
            else:
                n_bad += 1
        for key in ("prompt", "completion"):
            if key in row and _empty(row[key]):
                problems.append(f"row {i}: field `{key}` is empty")
    _raise_collected(source, problems, len(rows))
    if n_good == 0 or n_bad == 0:
        missing = "desirable (label true)" if n_good == 0 else "undesirable (label false)"
        raise DatasetError(
            f"dataset {source}: no {missing} examples among {len(rows)} rows; KTO needs both kinds"
        )
    return n_good, n_bad


def to_conversational(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Turn plain-string prompt/completion rows into chat messages, so the model's chat template is applied
    (trl applies templates only to conversational rows). Rows already in chat form pass unchanged."""
    out = []
    for row in rows:
        row = dict(row)
        if isinstance(row.get("prompt"), str):
            row["prompt"] = [{"role": "user", "content": row["prompt"]}]
        if isinstance(row.get("completion"), str):
            row["completion"] = [{"role": "assistant", "content": row["completion"]}]
        out.append(row)
    return out


def example_lengths(rows: list[dict[str, Any]], tokenizer: Any) -> list[int]:
    """Token count of each example as the trainer will see it (chat template applied to chat rows)."""

    def render(row: dict[str, Any]) -> str:
        if "messages" in row:
            return tokenizer.apply_chat_template(row["messages"], tokenize=False)
        if "text" in row:
            return row["text"]
        prompt, completion = row.get("prompt", ""), row.get("completion", "")
        if isinstance(prompt, list):
            msgs = prompt + (completion if isinstance(completion, list) else [])
            return tokenizer.apply_chat_template(msgs, tokenize=False)
        return f"{prompt}{completion}"

    texts = [render(r) for r in rows]
    enc = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [len(ids) for ids in enc]


def apply_length_policy(
    rows: list[dict[str, Any]], tokenizer: Any, config: TrainingConfig, source: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Count examples longer than `max_length`, report them, and drop them if `overlong = "drop"` (the trainer
    truncates the rest). Raises if nothing is left."""
    lengths = example_lengths(rows, tokenizer)
    over = [i for i, n in enumerate(lengths) if n > config.max_length]
    report = {
        "data/examples": len(rows),
        "data/overlong": len(over),
        "data/max_tokens": max(lengths),
        "data/mean_tokens": round(sum(lengths) / len(lengths), 1),
    }
    if over:
        action = "dropped" if config.overlong == "drop" else "truncated"
        log.warning(
            "dataset %s: %d of %d examples are longer than max_length=%d tokens (longest %d); %s",
            source, len(over), len(rows), config.max_length, max(lengths), action,
        )
        if config.overlong == "drop":
            bad = set(over)
            rows = [r for i, r in enumerate(rows) if i not in bad]
            report["data/dropped"] = len(over)
            if not rows:
                raise DatasetError(
                    f"dataset {source}: every example is longer than max_length={config.max_length}; "
                    "raise max_length or set overlong = 'truncate'"
                )
    return rows, report


def rows_trained(config: TrainingConfig, ctx: "StageContext", n_rows: int) -> int:
    """How many rows `max_steps` optimizer steps read (batch x accumulation x processes per step), capped at
    `n_rows`; all of them when training by epochs. Trainers that precompute per-row work (KTO's reference
    log-probs) do it for these rows only."""
    if config.max_steps <= 0:
        return n_rows
    per_step = config.batch_size * config.gradient_accumulation_steps * max(ctx.world_size, 1)
    return min(n_rows, config.max_steps * per_step)


# -- TrainingArguments ----------------------------------------------------------------------------------------
def checkpoint_dir(ctx: "StageContext") -> Path:
    return Path(ctx.work_dir) / CHECKPOINTS


def build_training_arguments(config: TrainingConfig, ctx: "StageContext", args_cls: Any = None, **extra: Any) -> Any:
    """An instance of `args_cls` (transformers.TrainingArguments, trl.SFTConfig, trl.KTOConfig, ...) from the shared
    config, the strategy's keys (DeepSpeed config, DDP backend), trainer-specific `extra` keys, and finally the user's
    `trainer_args`. Checkpoints go to the stage's work dir so that a killed stage resumes."""
    import torch

    if args_cls is None:
        from transformers import TrainingArguments as args_cls  # type: ignore[no-redef]

    from .hf import choose_precision

    on_gpu = torch.cuda.is_available()
    precision = choose_precision(config.precision)
    if precision in ("bf16", "fp16") and not on_gpu and config.precision != "auto":
        log.warning("precision=%s requested on a machine without a GPU; using it on the CPU", precision)
    kwargs: dict[str, Any] = dict(
        output_dir=str(checkpoint_dir(ctx)),
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_steps if config.warmup_steps else config.warmup_ratio,
        weight_decay=config.weight_decay,
        optim=config.optimizer,
        max_grad_norm=config.max_grad_norm,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        seed=config.seed,
        data_seed=config.seed,
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        report_to=[r for r in config.report_to if r != "none"] or "none",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not on_gpu,
        disable_tqdm=True,
        save_only_model=False,
        remove_unused_columns=False,
    )
    # transformers 5 renamed gradient_checkpointing; trl defaults it to True, so always pass it explicitly
    ckpt_key = "activation_checkpointing" if _accepts(args_cls, "activation_checkpointing") else "gradient_checkpointing"
    kwargs[ckpt_key] = bool(config.gradient_checkpointing and on_gpu)
    if config.eval_steps:
        kwargs.update(eval_strategy="steps", eval_steps=config.eval_steps)
    if ctx.strategy is not None:
        kwargs.update(ctx.strategy.training_arguments(ctx))
    kwargs.update(extra)
    kwargs.update(config.trainer_args)
    if args_cls.__name__ == "TrainingArguments" or not _accepts(args_cls, "max_length"):
        kwargs.pop("max_length", None)
    try:
        return args_cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"stage '{ctx.stage}': invalid training argument: {exc}") from None


def _accepts(cls: Any, name: str) -> bool:
    import dataclasses

    return any(f.name == name for f in dataclasses.fields(cls))


def peft_config(config: TrainingConfig) -> Any:
    """A peft.LoraConfig for `finetune = "lora"`, else None."""
    if config.finetune != "lora":
        return None
    from peft import LoraConfig

    lo = config.lora
    return LoraConfig(
        r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, target_modules=lo.target_modules,
        task_type="CAUSAL_LM", bias="none",
    )


def load_model_for_training(path: Path, config: TrainingConfig) -> Any:
    """Load the starting model for a trainer in fp32 — the master weights of mixed-precision training (bf16/fp16
    autocast is the Trainer's job) — on the CPU; accelerate (or DeepSpeed) places it on the devices."""
    from transformers import AutoModelForCausalLM

    import torch

    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=torch.float32, trust_remote_code=config.trust_remote_code
    )
    model.config.use_cache = False
    return model


# -- reporting ------------------------------------------------------------------------------------------------
def _transformers_callback_base() -> type:
    from transformers import TrainerCallback

    return TrainerCallback


class _LazyCallbackMeta(type):
    """Makes `PlinthCallback` a real transformers.TrainerCallback subclass without importing transformers at
    `import plinth.lm.training` time: the class is built on first instantiation."""

    _cls: Any = None

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls._cls is None:
            cls._cls = _make_callback_class()
        return cls._cls(*args, **kwargs)

    def __instancecheck__(cls, obj: Any) -> bool:
        return cls._cls is not None and isinstance(obj, cls._cls)


class PlinthCallback(metaclass=_LazyCallbackMeta):
    """A transformers TrainerCallback forwarding logs (loss, learning rate, KTO rewards/KL, throughput) to
    `ctx.log_metrics` and optimizer steps to `ctx.progress`. Construct as `PlinthCallback(ctx)`."""


def _make_callback_class() -> type:
    base = _transformers_callback_base()

    class _PlinthCallback(base):  # type: ignore[misc, valid-type]
        def __init__(self, ctx: "StageContext", description: str = "train"):
            self.ctx, self.description = ctx, description
            self.progress: Any = None
            self.t_last = time.perf_counter()
            self.step_last = 0
            self.resumed_from = 0

        def on_train_begin(self, args, state, control, **kw):
            self.progress = self.ctx.progress(state.max_steps or None, self.description)
            self.progress.__enter__()
            self.resumed_from = state.global_step
            if state.global_step:
                self.progress.done = state.global_step
                self.ctx.log_metrics({"resumed_from_step": state.global_step}, step=state.global_step)
            self.t_last, self.step_last = time.perf_counter(), state.global_step

        def on_step_end(self, args, state, control, **kw):
            if self.progress is not None:
                loss = None
                if state.log_history and "loss" in state.log_history[-1]:
                    loss = state.log_history[-1]["loss"]
                info = {"loss": loss} if loss is not None else {}
                self.progress.update(state.global_step - self.progress.done, **info)

        def on_log(self, args, state, control, logs=None, **kw):
            if not logs:
                return
            metrics = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            now = time.perf_counter()
            steps = state.global_step - self.step_last
            if steps > 0 and "train_runtime" not in metrics:
                dt = now - self.t_last
                metrics["steps_per_second"] = round(steps / dt, 4) if dt > 0 else math.inf
                metrics["samples_per_second"] = round(
                    steps * args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size / dt,
                    4,
                ) if dt > 0 else math.inf
                self.t_last, self.step_last = now, state.global_step
            self.ctx.log_metrics(metrics, step=state.global_step)

        def on_train_end(self, args, state, control, **kw):
            if self.progress is not None:
                self.progress.__exit__(None, None, None)
                self.progress = None

    _PlinthCallback.__name__ = _PlinthCallback.__qualname__ = "PlinthCallback"
    return _PlinthCallback


@contextlib.contextmanager
def fold_tqdm(module: Any, ctx: "StageContext", description: str) -> Iterator[None]:
    """Show the loops a library runs through `module.tqdm` (e.g. trl's reference log-prob pass,
    `trl.trainer.kto_trainer.tqdm`) as plinth progress lines instead of a tqdm bar of their own.

    Only the name inside that one module changes, and only inside the `with`; a library version without the name
    is left alone (its bar is then silenced by plinth.library_output like every other)."""
    original = getattr(module, "tqdm", None)
    if original is None:
        yield
        return

    def bar(iterable: Any = None, *args: Any, total: int | None = None, **kwargs: Any) -> Any:
        if iterable is None:  # manual-update bars: not folded
            return original(iterable, *args, total=total, **kwargs)
        return _iterate_with_progress(ctx, iterable, total, description)

    module.tqdm = bar
    try:
        yield
    finally:
        module.tqdm = original


def _iterate_with_progress(ctx: "StageContext", iterable: Any, total: int | None, description: str) -> Iterator[Any]:
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    with ctx.progress(total, description) as progress:
        for item in iterable:
            yield item
            progress.update(1)


# -- resume and save ------------------------------------------------------------------------------------------
def resume_checkpoint(config: TrainingConfig, ctx: "StageContext") -> str | None:
    """The checkpoint to resume from: `resume = "auto"` picks the last one in the work dir if it was written with the
    same settings (a fingerprint file guards against resuming a different config), "never" none, else the path."""
    ckpts = checkpoint_dir(ctx)
    stamp = ckpts / "plinth-config.txt"
    fingerprint = config_fingerprint(config)
    if config.resume == "never":
        return None
    if config.resume != "auto":
        path = Path(config.resume)
        if not (path / "trainer_state.json").exists():
            raise ConfigError(f"stage '{ctx.stage}': resume = {config.resume!r} is not a checkpoint folder")
        return str(path)
    if not ckpts.is_dir():
        return None
    last = last_complete_checkpoint(ckpts, remove_incomplete=ctx.is_main)
    if last is None:
        return None
    if not stamp.exists() or stamp.read_text().strip() != fingerprint:
        log.warning("stage '%s': ignoring checkpoints in %s written with other settings", ctx.stage, ckpts)
        return None
    return last


def last_complete_checkpoint(folder: Path, remove_incomplete: bool = False) -> str | None:
    """The newest `checkpoint-N` whose trainer_state.json (written last by transformers) parses. A process killed
    while saving leaves a newer, incomplete folder: it is skipped (and removed when `remove_incomplete`)."""
    import re
    import shutil

    found = []
    for p in Path(folder).iterdir():
        m = re.fullmatch(r"checkpoint-(\d+)", p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    for _, path in sorted(found, reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
            return str(path)
        except (OSError, ValueError):
            log.warning("ignoring incomplete checkpoint %s (killed while saving?)", path)
            if remove_incomplete:
                shutil.rmtree(path, ignore_errors=True)
    return None


def stamp_checkpoints(config: TrainingConfig, ctx: "StageContext") -> None:
    """Record which settings the checkpoints in the work dir belong to (read back by `resume_checkpoint`)."""
    if not ctx.is_main:
        return
    ckpts = checkpoint_dir(ctx)
    stamp = ckpts / "plinth-config.txt"
    fingerprint = config_fingerprint(config)
    if stamp.exists() and stamp.read_text().strip() != fingerprint:
        import shutil

        shutil.rmtree(ckpts, ignore_errors=True)  # stale checkpoints of another config: never resume them
    ckpts.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint + "\n")


LOSS_SUM_FILE = "plinth-loss.json"


def _read_loss_sum(checkpoint: str | Path) -> tuple[int, float] | None:
    """(global_step, summed training loss of steps 1..global_step) recorded beside a checkpoint, if any."""
    try:
        data = json.loads((Path(checkpoint) / LOSS_SUM_FILE).read_text(encoding="utf-8"))
        return int(data["global_step"]), float(data["loss_sum"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _record_loss_sums(trainer: Any, before: tuple[int, float]) -> None:
    """Write, beside every checkpoint this attempt saves, the summed loss of all steps so far (`before` — the
    resumed checkpoint's sum — plus this attempt's), so a later resume can report the mean over the whole run.

    transformers' own `train_loss` averages only the steps of the current `train()` call, and its running sum is
    not saved with checkpoints."""
    if not hasattr(trainer, "_save_checkpoint"):
        return  # another transformers: a resume then warns that train_loss covers the resumed steps only
    from transformers.trainer_pt_utils import nested_gather

    save = trainer._save_checkpoint

    def save_with_loss_sum(model: Any, trial: Any, *args: Any, **kwargs: Any) -> Any:
        out = save(model, trial, *args, **kwargs)
        if not hasattr(trainer, "_total_loss_scalar") or not hasattr(trainer, "_tr_loss"):
            return out  # set by transformers' training loop; absent in another version: no record
        pending = nested_gather(trainer._tr_loss, trainer.args.parallel_mode).mean().item()  # collective
        total = before[1] + trainer._total_loss_scalar + pending
        if trainer.args.should_save:
            folder = Path(trainer._get_output_dir(trial=trial)) / f"checkpoint-{trainer.state.global_step}"
            write_json(folder / LOSS_SUM_FILE, {"global_step": trainer.state.global_step, "loss_sum": total})
        return out

    trainer._save_checkpoint = save_with_loss_sum
    trainer._plinth_loss_before = before


def whole_run_train_loss(trainer: Any, metrics: dict[str, Any]) -> None:
    """Replace the attempt-only `train_loss` in `metrics` by the mean over every step of the run, counting the
    steps trained before a resume (from the checkpoint's recorded loss sum)."""
    before = getattr(trainer, "_plinth_loss_before", None)
    step = trainer.state.global_step
    if before is None or before[0] == 0 or step <= 0:
        return  # a run that did not resume: transformers' mean already covers every step
    steps_now = step - before[0]
    if steps_now > 0 and "train_loss" not in metrics:
        return
    now_sum = metrics["train_loss"] * steps_now if steps_now > 0 else 0.0
    metrics["train_loss"] = (before[1] + now_sum) / step


def train_with_resume(trainer: Any, config: TrainingConfig, ctx: "StageContext") -> str | None:
    """Run `trainer.train()`, continuing from the last checkpoint of an interrupted attempt when there is one.

    Returns the checkpoint folder when that checkpoint had already finished training (the attempt died while
    saving): training is then skipped — transformers would otherwise run one extra step — and
    `save_trained_model(..., finished_checkpoint=...)` saves from it. Every checkpoint records the loss summed so
    far (`plinth-loss.json`), so `train_loss` in the metrics is the mean over the whole run after a resume too."""
    from transformers.trainer_callback import PrinterCallback, TrainerState

    trainer.remove_callback(PrinterCallback)  # plinth's callback reports logs; no duplicate dict prints
    ckpt = resume_checkpoint(config, ctx)
    if ckpt is None:
        stamp_checkpoints(config, ctx)
        _record_loss_sums(trainer, (0, 0.0))
        trainer.train()
        return None
    state = TrainerState.load_from_json(str(Path(ckpt) / "trainer_state.json"))
    before = _read_loss_sum(ckpt)
    if before is None or before[0] != state.global_step:
        log.warning("stage '%s': %s records no loss sum (older plinth); train_loss will average the resumed "
                    "steps only", ctx.stage, ckpt)
        before = None
    if state.max_steps > 0 and state.global_step >= state.max_steps:
        log.warning("stage '%s': %s holds finished training; saving it without training again", ctx.stage, ckpt)
        trainer.state = state
        if before is not None:
            trainer._plinth_loss_before = before
        return ckpt
    log.warning("stage '%s': resuming from %s (step %d of %d)", ctx.stage, ckpt, state.global_step, state.max_steps)
    if before is not None:
        _record_loss_sums(trainer, before)
    trainer.train(resume_from_checkpoint=ckpt)
    return None


def _is_zero3(trainer: Any) -> bool:
    plugin = getattr(getattr(trainer, "accelerator", None), "state", None)
    plugin = getattr(plugin, "deepspeed_plugin", None)
    return plugin is not None and getattr(plugin, "zero_stage", 0) == 3


def save_trained_model(
    trainer: Any, tokenizer: Any, config: TrainingConfig, ctx: "StageContext",
    finished_checkpoint: str | None = None, **meta: Any,
) -> "Artifact":
    """Write the trained model to `ctx.output_dir/model` as a standard HF folder (LoRA merged if configured) and
    return the artifact. Call it in every process: ZeRO-3 gathers the sharded weights collectively.
    `finished_checkpoint` (from `train_with_resume`) saves that checkpoint's weights instead of the trainer's."""
    out = Path(ctx.output_dir) / "model"
    save_dtype: str | None = config.save_dtype
    if save_dtype == "auto":  # the precision it trained in: bf16 weights after bf16 mixed precision, else as is
        save_dtype = "bf16" if trainer.args.bf16 else "fp16" if trainer.args.fp16 else None
    lora_unmerged = config.finetune == "lora" and not config.lora.merge_on_save
    source: Path | None = Path(finished_checkpoint) if finished_checkpoint else None
    if source is None and _is_zero3(trainer):
        source = Path(ctx.work_dir) / "final"
        trainer.save_model(str(source))  # collective: gathers ZeRO-3 shards into rank 0's files
    if source is not None:
        if ctx.is_main:
            with _zero3_init_off():  # a plain load on rank 0 alone; zero.Init would wait for the other ranks
                if (source / "adapter_config.json").exists():
                    from peft import AutoPeftModelForCausalLM

                    model = AutoPeftModelForCausalLM.from_pretrained(str(source))
                else:
                    from transformers import AutoModelForCausalLM

                    model = AutoModelForCausalLM.from_pretrained(str(source))
                _save(model, tokenizer, out, save_dtype, lora_unmerged)
    elif ctx.is_main:
        model = trainer.accelerator.unwrap_model(trainer.model)
        _save(model, tokenizer, out, save_dtype, lora_unmerged)
    if ctx.world_size > 1:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
    kind_meta = {"finetune": config.finetune, **meta}
    if lora_unmerged:
        kind_meta["adapter"] = True
    return ctx.artifact("model", "model", **kind_meta)


class _zero3_init_off:
    """Temporarily hide transformers' global ZeRO-3 flag so `from_pretrained` loads normally in one process."""

    def __enter__(self) -> None:
        from transformers.integrations import deepspeed as ds

        self.saved = ds._hf_deepspeed_config_weak_ref
        ds._hf_deepspeed_config_weak_ref = None

    def __exit__(self, *exc: Any) -> None:
        from transformers.integrations import deepspeed as ds

        ds._hf_deepspeed_config_weak_ref = self.saved


def _save(model: Any, tokenizer: Any, out: Path, save_dtype: str | None, lora_unmerged: bool) -> None:
    from .hf import save_model_folder

    model.config.use_cache = True
    if lora_unmerged:
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(out), safe_serialization=True)
        tokenizer.save_pretrained(str(out))
        return
    save_model_folder(model, tokenizer, out, dtype=save_dtype)


def final_metrics(trainer: Any) -> dict[str, Any]:
    """The last logged value of each metric (loss, rewards, runtime), the first logged loss, and how the run was
    spread (world size, DeepSpeed ZeRO stage), for the stage's summary."""
    out: dict[str, Any] = {}
    for entry in trainer.state.log_history:
        if "loss" in entry and "first_loss" not in out:
            out["first_loss"] = entry["loss"]
        out.update({k: v for k, v in entry.items() if isinstance(v, (int, float))})
    whole_run_train_loss(trainer, out)
    out["global_step"] = trainer.state.global_step
    out["world_size"] = trainer.args.world_size
    out["precision"] = "bf16" if trainer.args.bf16 else "fp16" if trainer.args.fp16 else "fp32"
    out["device"] = str(trainer.args.device)
    import torch

    if torch.cuda.is_available():
        out["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    plugin = getattr(getattr(getattr(trainer, "accelerator", None), "state", None), "deepspeed_plugin", None)
    out["deepspeed_zero_stage"] = getattr(plugin, "zero_stage", None) if plugin is not None else None
    return out


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Atomic JSON write (the run directory's temp file + fsync + rename)."""
    from ..rundir import write_json_atomic

    write_json_atomic(path, data)
    return path


def fit_and_save(
    trainer_cls: Any, args: Any, prep: dict[str, Any], config: TrainingConfig, ctx: "StageContext",
    method: str, callbacks: list[Any], **extra_metrics: Any,
) -> dict[str, "Artifact"]:
    """The common tail of every trl trainer: build `trainer_cls`, train (resuming from the last complete
    checkpoint), save the model folder and write metrics.json. `prep` holds model_path, rows, eval_rows,
    tokenizer, label and report (the checks' counts), as the trainers' `prepare` steps build it."""
    from datasets import Dataset

    trainer = trainer_cls(
        model=load_model_for_training(prep["model_path"], config),
        args=args,
        train_dataset=Dataset.from_list(prep["rows"]),
        eval_dataset=Dataset.from_list(prep["eval_rows"]) if prep["eval_rows"] else None,
        processing_class=prep["tokenizer"],
        peft_config=peft_config(config),
        callbacks=callbacks,
    )
    finished = train_with_resume(trainer, config, ctx)
    model_art = save_trained_model(
        trainer, prep["tokenizer"], config, ctx, finished_checkpoint=finished, base=prep["label"], method=method
    )
    metrics = {**final_metrics(trainer), **prep["report"], "base_model": prep["label"], **extra_metrics}
    if ctx.is_main:
        write_json(ctx.output_dir / "metrics.json", metrics)
    return {"model": model_art, "metrics": ctx.artifact("metrics", "metrics.json")}
