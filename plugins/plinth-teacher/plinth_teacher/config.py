"""The `teacher` generator's parameters, one section per construction step (each step can be switched off).

In a pipeline file they sit inline in the stage table, sections as inline tables or sub-tables:

    [stages.data]
    slot = "generator"
    component = "teacher"
    backend = "gym"
    seeds = { tasks = ["basic_arithmetic", "gsm_symbolic"], size = 64 }
    kto = { student = "smollm2-135m-instruct", samples = 4 }
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from plinth.components import ComponentConfig
from plinth.fileparams import file_field

from .prompts import DEFAULT_RUBRIC, DEFAULT_SAFETY_RULES, OPERATORS


class SeedsConfig(ComponentConfig):
    tasks: list[str] = Field(["basic_arithmetic", "gsm_symbolic"], description="reasoning-gym task names (verifiable seeds)")
    size: int = Field(32, ge=1, description="prompts per reasoning-gym task")
    task_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per-task reasoning-gym settings, e.g. { basic_arithmetic = { max_terms = 2, max_digits = 1 } }",
    )
    path: str | None = file_field(None, description="local JSONL/JSON/Parquet file of prompts (and optional answers)")
    prompt_field: str | None = Field(None, description="prompt column of `path` (default: prompt/question/instruction/"
                                     "input/problem/query or the first user message of `messages`)")
    answer_field: str | None = Field(None, description="reference-answer column of `path` (default: answer/reference/"
                                     "target/ideal/solution/output if present); a reference enables the verifier")
    group_field: str | None = Field(None, description="column of `path` used as the task/topic for coverage")
    humaneval: int = Field(0, ge=0, le=164, description="how many HumanEval problems to add (verified by their tests)")
    topics: list[str] = Field(default_factory=list, description="topics the teacher writes fresh prompts about")
    per_topic: int = Field(4, ge=1, description="prompts the teacher writes per topic")
    limit: int | None = Field(None, ge=1, description="cap on the number of seeds after loading")
    seed: int | None = Field(None, description="which reasoning-gym items: seed k draws items no other k shares "
                             "(default: the stage's `seed`)")


class EvolveConfig(ComponentConfig):
    enabled: bool = Field(False, description="teacher-driven instruction evolution (needs a chat teacher)")
    operators: list[str] = Field(list(OPERATORS), description=f"Evol-Instruct operators, from {sorted(OPERATORS)}")
    rounds: int = Field(1, ge=1, le=5, description="evolution depth: each round rewrites the previous round's prompts")
    per_seed: int = Field(1, ge=1, description="rewrites per prompt per round (each with a different operator)")
    domains: list[str] = Field(default_factory=list, description="topic steering: domains change_domain moves prompts "
                               "to (default: a built-in list)")
    keep_seeds: bool = Field(True, description="keep the original seeds beside their rewrites")
    temperature: float = Field(0.7, ge=0, description="sampling temperature of rewrites")
    max_tokens: int = Field(256, ge=8)

    @model_validator(mode="after")
    def _known_ops(self) -> "EvolveConfig":
        bad = [o for o in self.operators if o not in OPERATORS]
        if bad:
            raise ValueError(f"unknown evolve operator(s) {bad}; known: {sorted(OPERATORS)}")
        return self


class DedupConfig(ComponentConfig):
    enabled: bool = Field(True, description="near-duplicate removal")
    method: Literal["minhash", "jaccard"] = Field("minhash", description="MinHash-LSH (large sets) or exact Jaccard")
    threshold: float = Field(0.8, gt=0, le=1, description="Jaccard similarity at or above which texts are duplicates")
    ngram: int = Field(3, ge=1, description="shingle length")
    unit: Literal["word", "char"] = Field("word", description="shingle unit")
    num_perm: int = Field(64, ge=4, description="MinHash permutations")
    against_seeds: bool = Field(True, description="also drop generated prompts that near-duplicate a seed")
    decontaminate: list[str] = file_field(default_factory=list, description="evaluation sets (JSONL/JSON/Parquet paths) "
                                     "whose prompts must not appear in training data")
    decontam_ngram: int = Field(8, ge=3, description="a shared word n-gram of this length with an eval prompt contaminates")
    decontam_threshold: float = Field(0.6, gt=0, le=1, description="or a trigram Jaccard at or above this")


class AccuracyConfig(ComponentConfig):
    samples: int = Field(1, ge=1, description="k: teacher samples per prompt for self-consistency")
    temperature: float = Field(0.7, ge=0, description="sampling temperature when samples > 1 (0 is used for k = 1)")
    agreement: float = Field(0.6, ge=0, le=1, description="keep when the majority final answer has at least this share")
    verify: bool = Field(True, description="check answers with the task's verifier where it has one")
    judge: bool = Field(False, description="teacher-as-judge scoring of each kept answer (needs a chat teacher)")
    rubric: str = Field(DEFAULT_RUBRIC, description="rubric the judge scores against")
    judge_threshold: float = Field(7.0, ge=1, le=10, description="keep when the judge's 1-10 score is at least this")
    max_tokens: int = Field(512, ge=8, description="teacher answer length limit")
    oracle_reasoning: bool = Field(True, description="gym back end: use reasoning-gym's worked solution when present")


class SafetyConfig(ComponentConfig):
    enabled: bool = Field(True, description="apply the safety filter to prompts and answers")
    rules: list[str] = Field(list(DEFAULT_SAFETY_RULES), description="case-insensitive regular expressions; a match is unsafe")
    judge: bool = Field(False, description="also ask the teacher for a safety verdict (needs a chat teacher)")
    action: Literal["drop", "flag"] = Field("drop", description="drop unsafe rows, or keep them with `unsafe` in flags")
    fail_closed: bool = Field(True, description="an unparseable judge verdict counts as unsafe")


class KTOConfig(ComponentConfig):
    enabled: bool = Field(True, description="build the KTO dataset from the student's own answers")
    student: str | None = file_field("smollm2-135m-instruct", kind="path_or_name", description="student model (alias or folder); an input "
                                "artifact named `student` overrides it (e.g. \"sft.model\": on-policy data for SFT -> KTO)")
    prompts: int | None = Field(None, ge=1, description="sample the student on the first N accepted prompts only "
                                "(a KTO stage trains on max_steps x batch_size rows; more samples are wasted)")
    samples: int = Field(4, ge=1, description="student answers sampled per accepted prompt")
    temperature: float = Field(0.8, ge=0, description="student sampling temperature")
    max_tokens: int = Field(256, ge=8, description="student answer length limit")
    batch_size: int = Field(8, ge=1, description="student generation batch size")
    threads: int | None = Field(None, ge=1, description="torch CPU threads for the student (1 on a busy CPU machine)")
    label_by: Literal["auto", "verifier", "teacher_answer", "judge"] = Field(
        "auto", description="auto: verifier when the prompt has one, else agreement with the teacher's final answer, "
        "else the judge")
    fill_desirable: bool = Field(True, description="when the student has too few desirable answers, add the "
                                 "teacher's accepted answers as desirable rows")
    balance: bool = Field(True, description="subsample so desirable/undesirable lies in [1, 4/3] (trl's KTO rule)")
    desirable_weight: float = Field(1.0, gt=0, description="KTO desirable_weight the trainer will use (for the ratio)")
    undesirable_weight: float = Field(1.0, gt=0, description="KTO undesirable_weight the trainer will use")


class OutputConfig(ComponentConfig):
    sft_format: Literal["messages", "prompt_completion"] = Field("messages", description="SFT row format")
    kto_format: Literal["conversational", "standard"] = Field("conversational", description="KTO prompt/completion "
                                                              "as message lists or strings")
    file_format: Literal["jsonl", "parquet"] = Field("jsonl", description="file type of the datasets")
    system_prompt: str | None = Field(None, description="system message put in front of SFT/KTO prompts")
    eval_size: int = Field(0, ge=0, description="hold out this many verifiable seeds as an `eval` set (prompt + "
                           "reference), disjoint from and decontaminated against training prompts")


class TeacherConfig(ComponentConfig):
    backend: Literal["gym", "hf", "openai"] = Field("gym", description="gym: oracle answers from reasoning-gym "
                                                     "(offline); hf: local model; openai: chat-completions server")
    teacher: dict[str, Any] = Field(default_factory=dict, description="the chat back end's config (hf: model, "
                                    "batch_size, dtype, device; openai: base_url, model, api_key_env, concurrency, "
                                    "timeout, max_retries, backoff)")
    cache: bool = Field(True, description="cache every teacher/student call on disk (resume, free re-runs)")
    cache_dir: str | None = Field(None, description="cache folder (default: RUN_DIR/cache/<stage>, kept across config changes; keys are content hashes)")
    seed: int = Field(0, description="base seed for sampling, and for reasoning-gym items unless seeds.seed is set")
    seeds: SeedsConfig = Field(default_factory=SeedsConfig, description="step 1: where prompts come from (reasoning-gym, file, HumanEval, topics)")
    evolve: EvolveConfig = Field(default_factory=EvolveConfig, description="step 2: teacher-driven Evol-Instruct rewrites with topic steering")
    dedup: DedupConfig = Field(default_factory=DedupConfig, description="step 2: near-duplicate removal and decontamination against eval sets")
    accuracy: AccuracyConfig = Field(default_factory=AccuracyConfig, description="step 3: self-consistency, verifier and judge")
    safety: SafetyConfig = Field(default_factory=SafetyConfig, description="step 4: rule list and safety judge on prompts and answers")
    kto: KTOConfig = Field(default_factory=KTOConfig, description="step 5: student answers labelled and balanced into KTO data")
    output: OutputConfig = Field(default_factory=OutputConfig, description="step 5: dataset formats and the held-out eval set")

    @model_validator(mode="after")
    def _needs_chat_teacher(self) -> "TeacherConfig":
        if self.backend == "gym":
            wants = [name for name, on in (
                ("evolve.enabled", self.evolve.enabled), ("accuracy.judge", self.accuracy.judge),
                ("safety.judge", self.safety.judge), ("seeds.topics", bool(self.seeds.topics)),
                ("kto.label_by = 'judge'", self.kto.label_by == "judge"),
            ) if on]
            if wants:
                raise ValueError(f"{', '.join(wants)} need a chat teacher: set backend = 'hf' or 'openai' "
                                 "(the gym back end only knows reasoning-gym's exact answers)")
            if self.seeds.path or self.seeds.humaneval:
                raise ValueError("backend = 'gym' answers reasoning-gym tasks only; seeds.path / seeds.humaneval need "
                                 "a chat teacher (backend = 'hf' or 'openai')")
            if not self.seeds.tasks:
                raise ValueError("backend = 'gym' needs seeds.tasks (reasoning-gym task names)")
        else:
            if "model" not in self.teacher:
                raise ValueError(f"backend = '{self.backend}' needs teacher.model")
        if not (self.seeds.tasks or self.seeds.path or self.seeds.humaneval or self.seeds.topics):
            raise ValueError("no seeds: give seeds.tasks, seeds.path, seeds.humaneval or seeds.topics")
        return self
