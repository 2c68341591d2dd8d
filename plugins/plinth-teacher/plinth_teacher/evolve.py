"""Diversity by the teacher: Evol-Instruct rewrites with topic steering, and fresh prompts from a topic list."""

from __future__ import annotations

import re
from collections import Counter

from plinth.lm.chat import ChatBackend

from .answers import parse_json
from .config import EvolveConfig
from .items import Item
from .prompts import DEFAULT_DOMAINS, EVOLVE_HEADER, OPERATORS, TOPIC_PROMPT


def parse_rewrite(text: str | None, original: str) -> str | None:
    """The rewritten prompt from a teacher reply (JSON {"prompt": ...} or plain text), None if unusable."""
    if not text:
        return None
    out = None
    try:
        data = parse_json(text)
        if isinstance(data, dict):
            out = next((data[k] for k in ("prompt", "rewritten_prompt", "instruction", "question") if k in data), None)
    except ValueError:
        pass
    if not isinstance(out, str):
        out = re.sub(r"^\s*#?\s*rewritten prompt\s*#?\s*:?", "", text, flags=re.IGNORECASE).strip()
    out = out.strip().strip('"').strip()
    if len(out) < 8 or out.strip().lower() == original.strip().lower():
        return None
    return out


def evolve(items: list[Item], teacher: ChatBackend, cfg: EvolveConfig, seed: int) -> tuple[list[Item], dict]:
    """`rounds` of rewrites; round r rewrites round r-1's outputs. Operators rotate per item so every operator
    is used evenly; change_domain takes the next steering domain. Returns (new items, counts)."""
    domains = cfg.domains or DEFAULT_DOMAINS
    ops = cfg.operators
    counts: Counter = Counter()
    frontier, made = items, []
    k = 0
    for rnd in range(cfg.rounds):
        jobs = []
        for i, item in enumerate(frontier):
            for p in range(cfg.per_seed):
                op = ops[(i + p + rnd) % len(ops)]
                topic = domains[k % len(domains)]
                k += 1
                method = OPERATORS[op].format(topic=topic)
                jobs.append((item, op, topic, [{"role": "user", "content": EVOLVE_HEADER.format(method=method, prompt=item.prompt)}]))
        replies = teacher.chat([j[3] for j in jobs], n=1, temperature=cfg.temperature, max_tokens=cfg.max_tokens, seed=seed + rnd)
        nxt = []
        for (item, op, topic, _), reply in zip(jobs, replies):
            new = parse_rewrite(reply[0], item.prompt)
            if new is None:
                counts[f"failed:{op}"] += 1
                continue
            counts[op] += 1
            meta = {"parent": item.id, "operator": op, "round": rnd + 1}
            if op == "change_domain":
                meta["domain"] = topic
            nxt.append(Item(id=f"{item.id}>e{rnd + 1}.{op}.{len(nxt)}", prompt=new, source="evolved",
                            group=item.group, meta=meta))
        made += nxt
        frontier = nxt
    stats = {
        "generated": len(made),
        "failed": sum(v for key, v in counts.items() if key.startswith("failed:")),
        "by_operator": {key: v for key, v in sorted(counts.items()) if not key.startswith("failed:")},
    }
    return made, stats


def topic_prompts(topics: list[str], per_topic: int, teacher: ChatBackend, seed: int) -> tuple[list[Item], dict]:
    """Ask the teacher for `per_topic` prompts on each topic (a JSON list; a numbered list also parses)."""
    convs = [[{"role": "user", "content": TOPIC_PROMPT.format(count=per_topic, topic=t)}] for t in topics]
    replies = teacher.chat(convs, n=1, temperature=0.8, max_tokens=128 * per_topic, seed=seed)
    items, failed = [], 0
    for topic, reply in zip(topics, replies):
        text = reply[0]
        try:
            data = parse_json(text)
            prompts = [str(p).strip() for p in data if str(p).strip()] if isinstance(data, list) else []
        except ValueError:
            prompts = [re.sub(r"^\s*(\d+[.)]|[-*])\s*", "", ln).strip() for ln in (text or "").splitlines()]
            prompts = [p for p in prompts if len(p) >= 8]
        if not prompts:
            failed += 1
        for j, p in enumerate(prompts[:per_topic]):
            items.append(Item(id=f"topic:{topic}:{j}", prompt=p, source="topics", group=topic))
    return items, {"topics": len(topics), "prompts": len(items), "failed_topics": failed}
