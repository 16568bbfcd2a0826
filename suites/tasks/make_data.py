"""Write the data of the local smoke tasks (deterministic: same files on every run).

    python suites/tasks/make_data.py

smoke_mc: "what comes next in this arithmetic sequence?" with four numeric choices.
smoke_ppl: short sentences from a tiny grammar, scored as rolling log-likelihood.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def mc_doc(rng: random.Random) -> dict:
    """Four choices with distinct leading digits, like most multiple-choice tasks (ARC, HellaSwag),
    whose choices differ from their first token on."""
    start, step = rng.randint(0, 30), rng.randint(1, 9)
    seq = [start + i * step for i in range(4)]
    answer = seq[-1] + step
    near = [answer + d for d in (-40, -30, -20, -10, 10, 20, 30, 40, 50) if 0 < answer + d < 100]
    choices, leads = [answer], {str(answer)[0]}
    for x in rng.sample(near, len(near)):
        if str(x)[0] not in leads and len(choices) < 4:
            choices.append(x)
            leads.add(str(x)[0])
    rng.shuffle(choices)
    return {
        "question": ", ".join(str(x) for x in seq),
        "choices": [str(c) for c in choices],
        "label": choices.index(answer),
    }


WORDS = {
    "det": ["the", "a", "every", "one"],
    "noun": ["cat", "dog", "bird", "river", "stone", "tree", "child", "ship"],
    "verb": ["sees", "likes", "follows", "finds", "carries", "hears"],
    "adj": ["small", "red", "quiet", "old", "bright", "heavy"],
}


def sentence(rng: random.Random) -> str:
    def phrase():
        words = [rng.choice(WORDS["det"])]
        if rng.random() < 0.5:
            words.append(rng.choice(WORDS["adj"]))
        return words + [rng.choice(WORDS["noun"])]

    words = phrase() + [rng.choice(WORDS["verb"])] + phrase()
    return " ".join(words).capitalize() + "."


def ppl_doc(rng: random.Random) -> dict:
    return {"text": " ".join(sentence(rng) for _ in range(rng.randint(3, 8)))}


def write(path: Path, docs: list[dict]) -> None:
    path.write_text("".join(json.dumps(d, sort_keys=True) + "\n" for d in docs), encoding="utf-8")


def main() -> None:
    DATA.mkdir(exist_ok=True)
    rng = random.Random(1234)
    write(DATA / "smoke_mc_train.jsonl", [mc_doc(rng) for _ in range(50)])
    write(DATA / "smoke_mc_test.jsonl", [mc_doc(rng) for _ in range(200)])
    write(DATA / "smoke_ppl_test.jsonl", [ppl_doc(rng) for _ in range(50)])


if __name__ == "__main__":
    main()
