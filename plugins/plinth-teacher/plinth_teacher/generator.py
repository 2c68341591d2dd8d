"""The `teacher` generator: seeds -> diversity (evolve, dedup, decontaminate) -> safety -> accuracy
(self-consistency, verifier, judge) -> SFT data; then the student's own answers, labelled and balanced -> KTO data.

Every teacher and student call goes through a disk cache in RUN_DIR/cache/<stage> (ctx.cache_dir), so a killed
stage resumes without paying for finished calls; accepted rows are appended to `work_dir/accepted.jsonl` as they are decided,
so what was accepted before a failure stays on disk. Each step's counts go to `stats.json`.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from plinth.artifacts import Artifact
from plinth.lm.chat import CachedChat, ChatBackend, ChatError
from plinth.components import Generator
from plinth.context import StageContext
from plinth.errors import ConfigError

from .answers import agreement, answers_match, extract_answer, parse_score
from .config import TeacherConfig
from .dedup import Decontaminator, deduplicate
from .diversity import diversity_report
from .evolve import evolve, topic_prompts
from .gym import gym_items, oracle_answer
from .items import Item
from .kto import balance
from .prompts import ANSWER_SYSTEM, JUDGE_PROMPT, SAFETY_PROMPT
from .safety import RuleList, parse_safety_verdict
from .seeds import eval_texts, file_items, humaneval_items, read_rows
from .verify import verify, verify_many
from .writer import append_rows, write_json, write_rows

CHUNK = 64  # prompts answered per round trip; accepted rows reach disk after each


class TeacherGenerator(Generator):
    """Teacher-guided alignment data for a small student (paper A): SFT, KTO, held-out eval set and stats."""

    Config = TeacherConfig
    input_kinds = {"student": "model", "items": "dataset"}
    outputs = {"sft": "dataset", "kto": "dataset", "eval": "dataset", "items": "dataset", "decisions": "samples",
               "stats": "metrics"}

    def declared_outputs(self, inputs=()) -> dict[str, str]:
        """With an `items` input only KTO data and stats; else SFT data, items, decisions and stats, plus KTO data
        when kto.enabled and the held-out `eval` set when output.eval_size > 0."""
        out = dict(self.outputs)
        if "items" in inputs:
            return {k: out[k] for k in ("kto", "stats")}
        if not self.config.kto.enabled:
            del out["kto"]
        if not self.config.output.eval_size:
            del out["eval"]
        return out

    def preflight(self, inputs: dict[str, list[Any]]) -> list[str]:
        """Validate-time: the student and an hf teacher resolve; an `items` input needs kto.enabled."""
        from plinth.lm.checks import model_problem

        c, problems = self.config, []
        if "items" in inputs and not c.kto.enabled:
            problems.append("kto.enabled: an `items` input only builds KTO data; set kto.enabled = true")
        if c.kto.enabled and "student" not in inputs:
            if c.kto.student is None:
                problems.append("kto.student: kto.enabled needs kto.student (a model alias or folder) or an input "
                                "`student`")
            elif problem := model_problem(c.kto.student):
                problems.append(f"kto.student: {problem}")
        if c.backend == "hf" and isinstance(c.teacher.get("model"), str):
            if problem := model_problem(c.teacher["model"]):
                problems.append(f"teacher.model: {problem}")
        return problems

    # -- back ends -------------------------------------------------------------------------------------
    def _cache_dir(self, ctx: StageContext) -> Path:
        return Path(self.config.cache_dir) if self.config.cache_dir else ctx.cache_dir

    def _wrap(self, backend: ChatBackend, ctx: StageContext) -> ChatBackend:
        return CachedChat(backend, self._cache_dir(ctx)) if self.config.cache else backend

    def _teacher(self, ctx: StageContext) -> ChatBackend | None:
        c = self.config
        if c.backend == "gym":
            return None
        from plinth.plugins import load_plugins

        try:
            cls = load_plugins().chat_backend(c.backend)
        except Exception:  # the plugin's own back ends, when entry points were not loaded (e.g. not installed)
            from .hf_backend import HFChat
            from .openai_backend import OpenAIChat

            cls = {"hf": HFChat, "openai": OpenAIChat}[c.backend]
        try:
            backend = cls(dict(c.teacher))
        except Exception as exc:  # pydantic errors name the field
            raise ConfigError(f"teacher: `teacher` config for back end '{c.backend}' is invalid: {exc}") from exc
        return self._wrap(backend, ctx)

    def _student(self, ctx: StageContext) -> ChatBackend | None:
        c = self.config.kto
        if not c.enabled:
            return None
        model: str | None = c.student
        if "student" in ctx.inputs:
            model = str(ctx.input("student", kind="model").path)
        if model is None:
            raise ConfigError("teacher: kto.enabled needs kto.student (a model alias or folder) or an input `student`")
        from plinth.lm.hf import resolve_model

        from .hf_backend import HFChat

        try:
            model = str(resolve_model(model))  # fails now, before any teacher call, if the student is missing
        except ConfigError as exc:
            raise ConfigError(f"teacher: kto.student: {exc}") from exc

        return self._wrap(HFChat({"model": model, "batch_size": c.batch_size, "threads": c.threads}), ctx)

    # -- the pipeline ----------------------------------------------------------------------------------
    def generate(self, ctx: StageContext) -> dict[str, Artifact]:
        if "items" in ctx.inputs:
            return self._kto_from_items(ctx)
        c = self.config
        t0 = time.time()
        stats: dict[str, Any] = {"backend": c.backend}
        # cheap checks first: bad files fail before any model loads or any output exists
        eval_prompts = eval_texts(c.dedup.decontaminate)
        seeds = self._load_seeds()
        teacher = self._teacher(ctx)
        student = self._student(ctx)
        stats["teacher"] = teacher.identity if teacher else "reasoning-gym oracle"
        accepted_log = ctx.work_dir / "accepted.jsonl"
        accepted_log.unlink(missing_ok=True)
        try:
            return self._run(ctx, c, stats, seeds, eval_prompts, teacher, student, accepted_log, t0)
        except ChatError as exc:
            n = sum(1 for _ in open(accepted_log, encoding="utf-8")) if accepted_log.exists() else 0
            raise ChatError(
                f"teacher stage '{ctx.stage}': {exc} — {n} rows accepted so far are in {accepted_log}; finished "
                f"calls are cached in {self._cache_dir(ctx)}, so a re-run resumes from there",
                backend=exc.backend, last_response=exc.last_response, partial=exc.partial,
            ) from exc
        finally:
            for b in (teacher, student):
                if b is not None:
                    b.close()

    def _kto_from_items(self, ctx: StageContext) -> dict[str, Artifact]:
        """Step 5 alone, on the prompts an earlier teacher stage accepted (its `items` output): the student — e.g.
        the SFT model, wired as the `student` input — answers them, the verifier labels its answers, and the rows
        become KTO data. The prompts were decontaminated by that stage; nothing here adds new ones."""
        t0 = time.time()
        source = ctx.input("items", kind="dataset").path
        items = [Item.from_json(row) for _, row in read_rows(source, "items input")]
        if not items:
            raise ConfigError(f"teacher: the `items` input {source} holds no items")
        student = self._student(ctx)
        if student is None:
            raise ConfigError("teacher: with an `items` input the stage only builds KTO data; set kto.enabled = true")
        teacher = self._teacher(ctx)
        try:
            rows, kstats = self._kto(items, student, teacher, ctx)
        finally:
            for b in (teacher, student):
                if b is not None:
                    b.close()
        fmt = self.config.output.file_format
        ext = "parquet" if fmt == "parquet" else "jsonl"
        n = write_rows(ctx.output_dir / f"kto.{ext}", rows, fmt)
        stats = {"backend": self.config.backend, "items": len(items), "items_from": str(source), "kto": kstats,
                 "outputs": {"kto": n}, "seconds": round(time.time() - t0, 2)}
        write_json(ctx.output_dir / "stats.json", stats)
        ctx.log_metrics(_flat(stats))
        return {
            "kto": ctx.artifact("dataset", f"kto.{ext}", rows=n,
                                **{k: kstats.get(k) for k in ("desirable", "undesirable", "ratio")}),
            "stats": ctx.artifact("metrics", "stats.json"),
        }

    def _load_seeds(self) -> list[Item]:
        s = self.config.seeds
        items: list[Item] = []
        if s.tasks:
            items += gym_items(s.tasks, s.size, self.config.seed if s.seed is None else s.seed, s.task_options)
        if s.path:
            items += file_items(s.path, s.prompt_field, s.answer_field, s.group_field)
        if s.humaneval:
            items += humaneval_items(s.humaneval)
        return items

    def _run(self, ctx, c: TeacherConfig, stats, seeds, eval_prompts, teacher, student, accepted_log, t0):
        decisions: list[dict[str, Any]] = []

        def reject(item: Item, step: str, reason: str, **extra: Any) -> None:
            decisions.append({"id": item.id, "prompt": item.prompt, "step": step, "reason": reason, **extra})

        # 1. seeds ------------------------------------------------------------------------------------
        if c.seeds.topics:
            topic_items, stats["topics"] = topic_prompts(c.seeds.topics, c.seeds.per_topic, teacher, c.seed)
            seeds = seeds + topic_items
        if c.seeds.limit is not None:
            seeds = seeds[: c.seeds.limit]
        stats["seeds"] = {"loaded": len(seeds), "by_source": dict(Counter(i.source for i in seeds))}
        heldout: list[Item] = []
        if c.output.eval_size:
            verifiable = [i for i in seeds if i.reference is not None]
            if len(verifiable) <= c.output.eval_size:
                raise ConfigError(f"teacher: output.eval_size = {c.output.eval_size} but only {len(verifiable)} seeds "
                                  "have reference answers; lower eval_size or add seeds")
            heldout = verifiable[-c.output.eval_size :]
            ids = {i.id for i in heldout}
            seeds = [i for i in seeds if i.id not in ids]
        stats["seeds"]["held_out"] = len(heldout)
        stats["diversity"] = {"before": diversity_report([i.prompt for i in seeds], [i.group for i in seeds])}

        # 2. diversity --------------------------------------------------------------------------------
        evolved: list[Item] = []
        if c.evolve.enabled:
            evolved, stats["evolve"] = evolve(seeds, teacher, c.evolve, c.seed)
        pool = (seeds if c.evolve.keep_seeds or not c.evolve.enabled else []) + evolved
        d = c.dedup
        dstats: dict[str, Any] = {"input": len(pool)}
        if d.enabled:
            kw = dict(threshold=d.threshold, ngram=d.ngram, unit=d.unit, method=d.method, num_perm=d.num_perm,
                      seed=c.seed)
            base = [i for i in pool if i.source != "evolved"]
            gen = [i for i in pool if i.source == "evolved"]
            r1 = deduplicate([i.prompt for i in base], **kw)
            kept_base = [base[k] for k in r1.keep]
            r2 = deduplicate([i.prompt for i in gen], [i.prompt for i in kept_base] if d.against_seeds else (), **kw)
            reasons = Counter()
            for items, res in ((base, r1), (gen, r2)):
                for k, (why, other, sim) in res.dropped.items():
                    reasons[why] += 1
                    reject(items[k], "dedup", why, similarity=round(sim, 3))
            pool = kept_base + [gen[k] for k in r2.keep]
            dstats.update(dict(reasons))
        contaminated = 0
        decon_set = eval_prompts + [i.prompt for i in heldout]
        if decon_set:
            decon = Decontaminator(decon_set, d.decontam_ngram, d.decontam_threshold)
            clean = []
            for item, why in zip(pool, decon.check_all([i.prompt for i in pool])):
                if why:
                    contaminated += 1
                    reject(item, "decontaminate", "contaminated", detail=why)
                else:
                    clean.append(item)
            pool = clean
        dstats.update(contaminated=contaminated, eval_prompts=len(decon_set), kept=len(pool))
        stats["dedup"] = dstats

        # 3. safety of prompts ------------------------------------------------------------------------
        rules = RuleList(c.safety.rules) if c.safety.enabled else None
        pool, stats["safety_prompts"] = self._safety(pool, "prompt", rules, teacher, reject)

        # 4. accuracy ---------------------------------------------------------------------------------
        accepted: list[Item] = []
        astats: Counter = Counter()
        agree_sum = 0.0
        with ctx.progress(len(pool), "teacher answers") as prog:
            for start in range(0, len(pool), CHUNK):
                chunk = pool[start : start + CHUNK]
                ok, agree = self._answer(chunk, teacher, astats, reject)
                agree_sum += agree
                ok, sstats = self._safety(ok, "answer", rules, teacher, reject)
                for key, v in sstats.items():
                    if isinstance(v, int):
                        astats[f"safety_answer:{key}"] += v
                append_rows(accepted_log, (i.to_json() for i in ok))
                accepted += ok
                prog.update(len(chunk), accepted=len(accepted))
        stats["accuracy"] = {
            "input": len(pool),
            "accepted": len(accepted),
            "rejected": {k: v for k, v in sorted(astats.items()) if not k.startswith("safety_answer:")},
            "mean_agreement": round(agree_sum / len(pool), 4) if pool else None,
        }
        stats["safety_answers"] = {k.split(":", 1)[1]: v for k, v in astats.items() if k.startswith("safety_answer:")}
        stats["diversity"]["after"] = diversity_report([i.prompt for i in accepted], [i.group for i in accepted])

        # 5. outputs ----------------------------------------------------------------------------------
        fmt = c.output.file_format
        ext = "parquet" if fmt == "parquet" else "jsonl"
        sft_rows = [self._sft_row(i) for i in accepted]
        outputs: dict[str, Artifact] = {}
        n_sft = write_rows(ctx.output_dir / f"sft.{ext}", sft_rows, fmt)
        outputs["sft"] = ctx.artifact("dataset", f"sft.{ext}", rows=n_sft, format=c.output.sft_format)
        if student is not None:
            kto_rows, stats["kto"] = self._kto(accepted, student, teacher, ctx)
            n_kto = write_rows(ctx.output_dir / f"kto.{ext}", kto_rows, fmt)
            outputs["kto"] = ctx.artifact("dataset", f"kto.{ext}", rows=n_kto, **{
                k: stats["kto"].get(k) for k in ("desirable", "undesirable", "ratio")})
        if heldout:
            rows = [{"id": i.id, "prompt": i.prompt, "answer": i.reference, "task": i.group} for i in heldout]
            write_rows(ctx.output_dir / f"eval.{ext}", rows, fmt)
            # what the evaluator's report says about this set: how many training prompts matched a held-out one
            decon = {"held_out": len(rows), "training_prompts_checked": dstats["kept"] + contaminated,
                     "training_prompts_removed": contaminated,
                     "rule": f"same question text, a shared {d.decontam_ngram}-word sequence, or trigram Jaccard "
                             f">= {d.decontam_threshold}"}
            outputs["eval"] = ctx.artifact("dataset", f"eval.{ext}", rows=len(rows), decontamination=decon)
        write_rows(ctx.output_dir / "items.jsonl", (i.to_json() for i in accepted))
        outputs["items"] = ctx.artifact("dataset", "items.jsonl", rows=len(accepted))
        write_rows(ctx.output_dir / "decisions.jsonl", decisions)
        outputs["decisions"] = ctx.artifact("samples", "decisions.jsonl", rows=len(decisions))
        stats["outputs"] = {name: a.meta.get("rows") for name, a in outputs.items()}
        caches = [b for b in (teacher, student) if isinstance(b, CachedChat)]
        stats["cache"] = {"hits": sum(b.hits for b in caches), "misses": sum(b.misses for b in caches)}
        stats["seconds"] = round(time.time() - t0, 2)
        write_json(ctx.output_dir / "stats.json", stats)
        outputs["stats"] = ctx.artifact("metrics", "stats.json")
        ctx.log_metrics(_flat(stats))
        return outputs

    # -- steps -------------------------------------------------------------------------------------------
    def _safety(self, items: list[Item], what: str, rules: RuleList | None, teacher: ChatBackend | None, reject):
        c = self.config.safety
        st: dict[str, Any] = {"checked": len(items), "unsafe_rule": 0, "unsafe_judge": 0, "judge_unparseable": 0,
                              "flagged": 0, "dropped": 0}
        if not c.enabled:
            return items, {"checked": 0}
        texts = [i.prompt if what == "prompt" else (i.answer or "") for i in items]
        unsafe: dict[int, str] = {}
        for k, t in enumerate(texts):
            rule = rules.match(t) if rules else None
            if rule:
                unsafe[k] = f"rule {rule}"
                st["unsafe_rule"] += 1
        if c.judge and teacher is not None:
            todo = [k for k in range(len(items)) if k not in unsafe]
            convs = [[{"role": "user", "content": SAFETY_PROMPT.format(what=what, text=texts[k])}] for k in todo]
            for k, reply in zip(todo, teacher.chat(convs, n=1, temperature=0.0, max_tokens=64, seed=self.config.seed)):
                verdict = parse_safety_verdict(reply[0])
                if verdict is None:
                    st["judge_unparseable"] += 1
                    if c.fail_closed:
                        unsafe[k] = "judge verdict unparseable"
                elif not verdict:
                    st["unsafe_judge"] += 1
                    unsafe[k] = "judge"
        out = []
        for k, item in enumerate(items):
            if k in unsafe:
                if c.action == "flag":  # kept; the flag is in decisions.jsonl and accepted.jsonl
                    item.flags.append(f"unsafe_{what}")
                    st["flagged"] += 1
                    reject(item, f"safety_{what}", "flagged_unsafe", detail=unsafe[k], kept=True)
                else:
                    st["dropped"] += 1
                    reject(item, f"safety_{what}", "unsafe", detail=unsafe[k])
                    continue
            out.append(item)
        return out, st

    def _answer(self, items: list[Item], teacher: ChatBackend | None, counts: Counter, reject):
        """Teacher answers with self-consistency, the verifier and the judge; returns (accepted, sum of agreement)."""
        a = self.config.accuracy
        if teacher is None:  # the oracle teacher: reasoning-gym's exact answers
            for i in items:
                i.answer = oracle_answer(i, a.oracle_reasoning)
                i.final = i.reference
            return items, float(len(items))
        convs = [[{"role": "system", "content": ANSWER_SYSTEM}, {"role": "user", "content": i.prompt}] for i in items]
        temp = a.temperature if a.samples > 1 else 0.0
        replies = teacher.chat(convs, n=a.samples, temperature=temp, max_tokens=a.max_tokens, seed=self.config.seed)
        ok: list[Item] = []
        agree_sum = 0.0
        # the verifier's verdicts on the majority answers, all in one batch (reasoning-gym scoring is one sandbox
        # run); decisions below stay in the items' order
        majority: dict[int, tuple[str | None, float, int]] = {}
        to_verify: dict[int, tuple[Item, str]] = {}
        for k, (item, samples) in enumerate(zip(items, replies)):
            if item.verifier == "humaneval":
                continue
            majority[k] = best, share, idx = agreement(samples)
            if a.verify and item.verifier is not None and best is not None and share >= a.agreement:
                to_verify[k] = (item, samples[idx])
        verdicts = dict(zip(to_verify, verify_many(list(to_verify.values()))))
        for k, (item, samples) in enumerate(zip(items, replies)):
            if item.verifier == "humaneval":  # code: self-consistency by tests passed, not by a final answer
                passing = [s for s in samples if verify(item, s)] if a.verify else samples
                share = len(passing) / len(samples)
                agree_sum += share
                if not passing or share < a.agreement:
                    counts["verifier_failed" if not passing else "no_agreement"] += 1
                    reject(item, "accuracy", "verifier_failed" if not passing else "no_agreement", agreement=share)
                    continue
                item.answer, item.meta["agreement"] = passing[0], share
                ok.append(item)
                continue
            best, share, idx = majority[k]
            agree_sum += share
            if best is None:
                counts["no_answer"] += 1
                reject(item, "accuracy", "no_answer")
                continue
            if share < a.agreement:
                counts["no_agreement"] += 1
                reject(item, "accuracy", "no_agreement", agreement=round(share, 3), majority=best)
                continue
            item.answer, item.final, item.meta["agreement"] = samples[idx], best, round(share, 3)
            if a.verify and item.verifier is not None and not verdicts[k]:
                counts["verifier_failed"] += 1
                reject(item, "accuracy", "verifier_failed", answer=best, reference=item.reference)
                continue
            ok.append(item)
        if a.judge and ok:
            scores = self._judge(ok, [i.answer or "" for i in ok], teacher)
            kept = []
            for item, score in zip(ok, scores):
                item.meta["judge_score"] = score
                if score is None:
                    counts["judge_unparseable"] += 1
                    reject(item, "accuracy", "judge_unparseable")
                elif score < a.judge_threshold:
                    counts["judge_low"] += 1
                    reject(item, "accuracy", "judge_low", score=score)
                else:
                    kept.append(item)
            ok = kept
        return ok, agree_sum

    def _judge(self, items: list[Item], answers: list[str], teacher: ChatBackend) -> list[float | None]:
        a = self.config.accuracy
        convs = [[{"role": "user", "content": JUDGE_PROMPT.format(rubric=a.rubric, prompt=i.prompt, answer=ans)}]
                 for i, ans in zip(items, answers)]
        replies = teacher.chat(convs, n=1, temperature=0.0, max_tokens=96, seed=self.config.seed)
        return [parse_score(r[0]) for r in replies]

    def _messages(self, prompt: str) -> list[dict[str, str]]:
        sp = self.config.output.system_prompt
        return ([{"role": "system", "content": sp}] if sp else []) + [{"role": "user", "content": prompt}]

    def _sft_row(self, item: Item) -> dict[str, Any]:
        if self.config.output.sft_format == "prompt_completion":
            return {"prompt": item.prompt, "completion": item.answer}
        return {"messages": self._messages(item.prompt) + [{"role": "assistant", "content": item.answer}]}

    def _kto_row(self, item: Item, completion: str, label: bool) -> dict[str, Any]:
        if self.config.output.kto_format == "standard":
            return {"prompt": item.prompt, "completion": completion, "label": label}
        return {"prompt": self._messages(item.prompt), "completion": [{"role": "assistant", "content": completion}],
                "label": label}

    def _kto(self, accepted: list[Item], student: ChatBackend, teacher: ChatBackend | None, ctx: StageContext):
        k = self.config.kto
        if k.prompts is not None:
            accepted = accepted[: k.prompts]
        st: dict[str, Any] = {"student": student.identity, "prompts": len(accepted), "samples_per_prompt": k.samples}
        convs = [self._messages(i.prompt) for i in accepted]
        replies: list[list[str]] = []
        with ctx.progress(len(convs), "student answers") as prog:
            step = k.batch_size  # one generate() batch per progress tick: a CPU student is slow
            for start in range(0, len(convs), step):
                replies += student.chat(convs[start : start + step], n=k.samples, temperature=k.temperature,
                                        max_tokens=k.max_tokens, seed=self.config.seed + start)
                prog.update(min(step, len(convs) - start))
        rows: list[dict[str, Any]] = []
        by: Counter = Counter()
        judge_jobs: list[tuple[Item, str]] = []
        to_verify: list[tuple[int, Item, str]] = []
        for item, samples in zip(accepted, replies):
            seen = set()
            for s in samples:
                if not s.strip() or s in seen:
                    by["empty_or_repeat"] += 1
                    continue
                seen.add(s)
                mode = k.label_by
                if mode == "auto":
                    mode = "verifier" if item.verifier else ("teacher_answer" if item.final else "judge")
                if mode == "verifier" and item.verifier:
                    to_verify.append((len(rows), item, s))  # labelled below, in one batch
                    rows.append({})
                elif mode in ("verifier", "teacher_answer") and item.final is not None:
                    rows.append(self._kto_row(item, s, answers_match(extract_answer(s), item.final)))
                elif teacher is not None:
                    judge_jobs.append((item, s))
                    continue
                else:
                    by["unlabelled"] += 1
                    continue
                by[f"by_{mode}"] += 1
        verdicts = verify_many([(item, s) for _, item, s in to_verify])
        for (at, item, s), verdict in zip(to_verify, verdicts):
            rows[at] = self._kto_row(item, s, bool(verdict))
        if judge_jobs:
            scores = self._judge([j[0] for j in judge_jobs], [j[1] for j in judge_jobs], teacher)
            for (item, s), score in zip(judge_jobs, scores):
                if score is None:
                    by["unlabelled"] += 1
                    continue
                rows.append(self._kto_row(item, s, score >= self.config.accuracy.judge_threshold))
                by["by_judge"] += 1
        nd = sum(r["label"] for r in rows)
        st["student_desirable"], st["student_undesirable"] = nd, len(rows) - nd
        filled = 0
        if k.fill_desirable:
            for item in accepted:
                if k.desirable_weight * nd >= k.undesirable_weight * (len(rows) - nd):
                    break
                rows.append(self._kto_row(item, item.answer or "", True))
                nd += 1
                filled += 1
        st["filled_from_teacher"] = filled
        st["labelled"] = dict(by)
        if k.balance:
            rows, info = balance(rows, k.desirable_weight, k.undesirable_weight, self.config.seed)
            st.update(info)
        else:
            nd = sum(r["label"] for r in rows)
            st.update(desirable=nd, undesirable=len(rows) - nd)
        return rows, st


def _flat(d: dict[str, Any], prefix: str = "teacher/") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{key}/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{key}"] = v
    return out
