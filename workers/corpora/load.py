"""``prepare(spec, home) -> Corpus``: generate or read a corpus once, cache its tokens on disk.

Cache folder ``$MOE_HARNESS_HOME/corpora/<hash of the checked spec (+ file sizes and mtimes)>``:
``tokens.npy`` (uint16 byte-tokenizer ids, EOS-separated documents), ``meta.json``, and for the
knowledge corpus ``tasks/`` (lm-eval YAMLs + jsonl, see ``workers.corpora.tasks``; the held-out
biographies there also feed the held-out loss measured along training). The folder
appears atomically (written beside, then renamed), so concurrent workers never see half of it.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import attrs
import numpy as np

from moe_schema import capacity
from moe_schema.corpus import check_corpus, corpus_hash
from moe_schema.home import harness_home
from moe_schema.knowledge import FORMAT
from workers.corpora import files, knowledge, tasks


@attrs.frozen
class Corpus:
    path: Path
    tokens: np.ndarray  # uint16, memory-mapped
    meta: dict


def cache_key(spec: dict) -> str:
    if spec["kind"] == "files":  # a changed file makes a new corpus
        stats = [(os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in spec["paths"]]
        return corpus_hash({**spec, "stats": stats, "format": FORMAT})
    return corpus_hash({**spec, "format": FORMAT})


def corpus_dir(spec: dict, home=None) -> Path:
    spec = check_corpus(spec)
    return harness_home(home) / "corpora" / cache_key(spec)


def prepare(spec: dict, home=None, where: str = "job.corpus") -> Corpus:
    """The corpus for ``spec``, from the cache or made now."""
    spec = check_corpus(spec, where)
    final = harness_home(home) / "corpora" / cache_key(spec)
    if not (final / "meta.json").is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir()
            meta = _write(spec, tmp, final)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / "meta.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    meta = json.loads((final / "meta.json").read_text())
    return Corpus(final, np.load(final / "tokens.npy", mmap_mode="r"), meta)


def word_encoder(tokenizer_dir: Path):
    """``encode(docs) -> uint16 tokens`` with the word tokenizer saved in ``tokenizer_dir``, each
    document as ``BOS words EOS`` (the layout ``knowledge.encode`` gives byte tokens)."""
    from tokenizers import Tokenizer

    from moe_schema.tokens import BOS_ID, EOS_ID

    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))

    def encode(docs: list[str]) -> np.ndarray:
        parts = []
        for enc in tok.encode_batch(docs, add_special_tokens=False):
            parts.append(np.concatenate([[BOS_ID], np.asarray(enc.ids, dtype=np.int64), [EOS_ID]]))
        out = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        if out.size and out.max() >= 1 << 16:
            raise ValueError("a token id does not fit uint16")
        return out.astype(np.uint16)

    return encode


def _write_bios(spec: dict, tmp: Path, final: Path) -> dict:
    from moe_schema import bios as profile
    from workers.corpora import bios

    encode, vocab = knowledge.encode, None
    if spec["tokenizer"] == "word":
        from workers.builds.tokenizer import save_word_tokenizer, word_vocab

        encode = word_encoder(save_word_tokenizer(tmp / "tokenizer", profile.vocabulary()))
        vocab = word_vocab(profile.vocabulary())
    tokens, persons, stats = bios.generate(spec, encode, vocab)
    np.save(tmp / "tokens.npy", tokens)
    bios.save_persons(tmp / "persons.npz", persons)
    per = int(stats["exposures"][0])
    value_counts = profile.value_counts()
    fact_bits = spec["entities"] * profile.bits_per_person()
    buckets = {b: {"entities": stop - start, "ranks": [start, stop], "exposures_mean": float(per),
                   "exposures_median": float(per), "exposures_min": per, "exposures_max": per}
               for b, (start, stop) in tasks.bucket_ranges(spec["entities"], spec["buckets"]).items()}
    regime = {"entities": spec["entities"], "corpus_tokens": int(len(tokens)), "profile": "bios",
              "tokenizer": spec["tokenizer"], "value_counts": value_counts,
              "exposures_per_fact": {b: float(per) for b in buckets}, "fact_bits": fact_bits}
    written = tasks.write_tasks(tmp / "tasks", {}, None, bios.heldout_documents(persons, spec), regime)
    for path in (tmp / "tasks").glob("*.yaml"):
        path.write_text(path.read_text().replace(str(tmp.resolve()), str(final.resolve())))
    return {
        "kind": "knowledge", "profile": "bios", "tokenizer": spec["tokenizer"],
        "vocab_size": profile.word_vocab_size() if spec["tokenizer"] == "word" else None,
        "spec": spec, "tokens": int(len(tokens)), "documents": stats["documents"],
        "tokens_per_document": stats["tokens_per_document"], "entities": spec["entities"],
        "value_counts": value_counts, "buckets": buckets, "fact_bits": fact_bits,
        "bits_per_person": profile.bits_per_person(), "name_space": profile.NAME_SPACE,
        "tasks": {name: p.replace(str(tmp.resolve()), str(final.resolve())) for name, p in written.items()
                  if name.startswith("longtail_heldout")},
    }


def _write(spec: dict, tmp: Path, final: Path) -> dict:
    if spec.get("profile") == "bios":
        return _write_bios(spec, tmp, final)
    if spec["kind"] == "files":
        tokens = files.tokenize(spec)
        np.save(tmp / "tokens.npy", tokens)
        return {"kind": "files", "tokenizer": "byte", "spec": spec, "tokens": int(len(tokens)), "documents": None}
    tokens, entities, stats = knowledge.generate(spec)
    np.save(tmp / "tokens.npy", tokens)
    exposures = stats["exposures"]
    buckets = {}
    for b, (start, stop) in tasks.bucket_ranges(spec["entities"], spec["buckets"]).items():
        e = exposures[start:stop]
        buckets[b] = {"entities": stop - start, "ranks": [start, stop], "exposures_mean": float(e.mean()),
                      "exposures_median": float(np.median(e)), "exposures_min": int(e.min()),
                      "exposures_max": int(e.max())}
    value_counts = {a: len(knowledge.ATTRIBUTES[a][0]) for a in spec["attributes"]}
    regime = {"entities": spec["entities"], "corpus_tokens": int(len(tokens)), "zipf": spec["zipf"],
              "value_counts": value_counts, "chance": {a: 1 / v for a, v in value_counts.items()},
              "exposures_per_fact": {b: stats_["exposures_mean"] for b, stats_ in buckets.items()},
              "fact_bits": capacity.fact_bits({"entities": spec["entities"], "value_counts": value_counts})}
    rows = tasks.questions(entities, exposures, spec)
    written = tasks.write_tasks(tmp / "tasks", rows, tasks.value_questions(entities, rows, spec),
                                tasks.heldout_documents(entities, exposures, spec), regime)
    # Paths inside the YAMLs must name the final folder, not the temporary one.
    for path in (tmp / "tasks").glob("*.yaml"):
        path.write_text(path.read_text().replace(str(tmp.resolve()), str(final.resolve())))
    return {
        "kind": "knowledge", "tokenizer": "byte", "spec": spec, "tokens": int(len(tokens)),
        "documents": stats["documents"],
        "entities": spec["entities"],
        "value_counts": value_counts, "buckets": buckets, "fact_bits": regime["fact_bits"],
        "tasks": {name: p.replace(str(tmp.resolve()), str(final.resolve())) for name, p in written.items()},
    }
