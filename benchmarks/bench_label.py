"""Throughput of `curate label` vs the raw model, and of the embeddings. Prints figures; asserts nothing.

1. `label_items` on N items (default 200) of the ConvAbuse demo with the local model, through Distilabel, from a
   fresh run directory (pipeline start-up and model load included).
2. The raw model doing the same work in one loop outside Distilabel: the same LLM class, prompts (system +
   few-shot + item), generation kwargs (max tokens, grammar, logprobs) and the same parsing + probabilities, model
   load included.
3. Embeddings/s for 5,000 texts with all-MiniLM-L6-v2 (the ConvAbuse user turns, repeated as needed).

Usage: python benchmarks/bench_label.py [--items 200] [--texts 5000]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.embed import embed_texts  # noqa: E402
from pipelines.label import label_items  # noqa: E402
from pipelines.prompt import build_label_spec, item_text  # noqa: E402
from pipelines.llms import build_llm, generation_kwargs  # noqa: E402
from pipelines.scoring import AnswerError, label_probabilities, parse_answer  # noqa: E402
from workspaces.config import load_config  # noqa: E402
from workspaces.items import load_items  # noqa: E402


def bench_pipeline(config, n: int) -> float:
    with tempfile.TemporaryDirectory() as run_dir:
        project = config.model_copy(update={"run_dir": Path(run_dir)})
        started = time.perf_counter()
        run = label_items(project, limit=n)
        seconds = time.perf_counter() - started
    print(f"curate label (Distilabel): {n} items in {seconds:.1f}s = {n / seconds:.2f} items/s "
          f"(ok {run.ok}, failed {run.failed}, {run.distribution()})")
    return n / seconds


def bench_raw(config, n: int) -> float:
    items = load_items(config).head(n)
    question = (config.llm.questions or [config.questions[0].name])[0]
    spec = build_label_spec(config, question, items)
    started = time.perf_counter()
    llm = build_llm(config.llm)
    llm.load()
    kwargs = generation_kwargs(config.llm, max_new_tokens=config.llm.max_new_tokens,
                               temperature=config.llm.temperature, key=spec.key, labels=spec.labels)
    prefix = spec.prefix()
    prompts = [prefix + [{"role": "user", "content": item_text(config, row)}] for row in items.to_dict("records")]
    ok = 0
    for start in range(0, len(prompts), config.llm.batch_size):
        for output in llm.generate(prompts[start:start + config.llm.batch_size], **kwargs):
            generation = output["generations"][0]
            try:
                answer, _ = parse_answer(generation, spec.labels)
                label_probabilities(generation, output["logprobs"][0], spec.labels, answer)
                ok += 1
            except AnswerError:
                pass
    seconds = time.perf_counter() - started
    llm.unload()
    print(f"raw model loop:            {n} items in {seconds:.1f}s = {n / seconds:.2f} items/s (ok {ok})")
    return n / seconds


def bench_embeddings(config, n: int) -> None:
    texts = [str(t) for t in load_items(config)["user"]]
    texts = (texts * (n // len(texts) + 1))[:n]
    started = time.perf_counter()
    vectors = embed_texts(texts)
    seconds = time.perf_counter() - started
    print(f"embeddings: {n} texts in {seconds:.1f}s = {n / seconds:.0f} texts/s ({vectors.shape[1]}-d, model load "
          f"included)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--skip-embeddings", action="store_true")
    args = parser.parse_args()
    config = load_config(ROOT / "configs" / "convabuse_demo.yaml")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    raw = bench_raw(config, args.items)
    piped = bench_pipeline(config, args.items)
    print(f"ratio curate label / raw: {piped / raw:.2f}x (target >= 0.8x)")
    if not args.skip_embeddings:
        bench_embeddings(config, args.texts)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
