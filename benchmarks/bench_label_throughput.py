"""`curate label` vs a raw llama-cpp-python loop over the same items and prompts, in one run. Prints figures and
writes `benchmarks/results/bench_label_throughput.json`; fails if the two sides give different labels.

Each side is a fresh process timed from its start to its last label (interpreter start, imports and model load
included on both):

- **raw**: this file with `--raw-worker`: `llama_cpp.Llama(model_path=..., n_threads=T)` and one Python loop. Per
  item it renders the prompt `curate label` sends (`pipelines.prompt`: system + few-shot + the item, through the
  GGUF's own chat template, then the answer's fixed opening `{"label": "`), decodes under the same label grammar,
  token budget, stop string and greedy settings, records the model's top-k log-probabilities at each step (a logits
  processor: llama.cpp's cheapest way to give them before the grammar), and turns them into label probabilities
  with `pipelines.scoring` (that walk is what a confidence costs). It writes nothing but its labels.
- **curate**: `curate label <config> --limit N` (the CLI: Distilabel pipeline, checkpoint parts, `labels.parquet`,
  progress bar) into an empty run directory.

The CPU is shared, so at each size the sides run back to back, interleaved (raw, curate, raw, curate, ...), the
ratio is taken per pair (curate items/s over the items/s of the raw run just before it), and the load average is
recorded around every run. Both sides use the same llama.cpp thread count (`--threads`; default: what
`curate label` uses, `llm.n_threads` or half the cores). ConvAbuse's valid split has 831 items: above that its items
are cycled with fresh ids (same texts, so the same few-shot examples).

Usage: python benchmarks/bench_label_throughput.py [--config configs/convabuse_demo.yaml] [--sizes 200 1000]
       [--pairs 2] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "bench_label_throughput.json"
Labels = Dict[str, Tuple[Optional[str], Any]]  # item id -> (label, confidence) or (None, failure reason)


def _load() -> List[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---- the raw side (runs in its own process) ---------------------------------------------------------------------

def raw_loop(config_path: Path, n: int, threads: int) -> Labels:
    """Label the config's first `n` items with llama-cpp-python directly, as `curate label` would label them."""
    import numpy as np
    from llama_cpp import Llama, LlamaGrammar, LogitsProcessorList
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from pipelines.llms import answer_grammar, default_gguf_path
    from pipelines.prompt import build_label_spec, item_text
    from pipelines.scoring import AnswerError, label_probabilities, parse_answer
    from workspaces.config import LLMConfig, load_config
    from workspaces.items import load_items

    config = load_config(config_path)
    settings = config.llm or LLMConfig()
    items = load_items(config).head(n)
    question = (settings.questions or [q.name for q in config.questions if q.kind.value in ("label", "rating")])[0]
    spec = build_label_spec(config, question, items)
    k, answer_prefix, stop = settings.top_logprobs, "{" + json.dumps(spec.key) + ': "', '"}'
    model = Llama(model_path=str(default_gguf_path()), n_ctx=settings.n_ctx, n_threads=threads,
                  n_threads_batch=threads, n_gpu_layers=0, verbose=False)
    token = lambda t: model.detokenize([t], special=True).decode("utf-8", errors="ignore")  # noqa: E731
    formatter = Jinja2ChatFormatter(template=model.metadata["tokenizer.chat_template"],
                                    eos_token=token(model.token_eos()), bos_token=token(model.token_bos()))
    grammar = LlamaGrammar.from_string(answer_grammar(spec.labels), verbose=False)
    prefix = spec.prefix()
    labels: Labels = {}
    for row in items.to_dict(orient="records"):
        rendered = formatter(messages=[*prefix, {"role": "user", "content": item_text(config, row)}])
        prompt = model.tokenize((rendered.prompt + answer_prefix).encode("utf-8"),
                                add_bos=not rendered.added_special, special=True)
        steps: List[tuple] = []

        def record(input_ids: Any, scores: Any) -> Any:
            logits = scores.astype(np.float64)
            top = np.argpartition(-logits, k)[:k]
            top = top[np.argsort(-logits[top])]
            shift = logits.max()
            steps.append((top, logits - (shift + np.log(np.exp(logits - shift).sum())), int(input_ids[-1])))
            return scores

        choice = model.create_completion(prompt=prompt, max_tokens=settings.max_new_tokens,
                                         temperature=settings.temperature, top_p=1.0, repeat_penalty=1.0,
                                         grammar=grammar, stop=[stop],
                                         logits_processor=LogitsProcessorList([record]))["choices"][0]
        generation = answer_prefix + choice["text"] + (stop if choice["finish_reason"] == "stop" else "")
        candidates = [[{"token": answer_prefix, "logprob": 0.0}]]
        for index, (top, logprobs, _) in enumerate(steps):
            position = [{"token": token(int(t)), "logprob": float(logprobs[t])} for t in top]
            sampled = steps[index + 1][2] if index + 1 < len(steps) else None
            if sampled is not None and sampled not in set(top.tolist()):
                position.append({"token": token(sampled), "logprob": float(logprobs[sampled])})
            candidates.append(position)
        try:
            answer, _ = parse_answer(generation, spec.labels, key=spec.key)
            probabilities = label_probabilities(generation, candidates, spec.labels, answer, key=spec.key)
            labels[str(row["item_id"])] = (answer, probabilities[answer])
        except AnswerError as exc:
            labels[str(row["item_id"])] = (None, str(exc).split(":")[0])
    return labels


# ---- the benchmark ----------------------------------------------------------------------------------------------

def write_config(source: Path, n: int, threads: int, folder: Path) -> Path:
    """A copy of the `source` config with absolute data paths, a run directory in `folder`, `llm.n_threads` set,
    and at least `n` items (cycled with fresh ids `<id>~<k>` when the data has fewer)."""
    import pandas as pd

    from workspaces.config import load_config

    config = load_config(source)
    raw = yaml.safe_load(source.read_text())
    data = Path(config.data.path)
    raw["data"]["path"] = str(data)
    raw.setdefault("llm", {})
    raw["llm"]["n_threads"] = threads
    if config.llm is not None and config.llm.few_shot_path is not None:
        raw["llm"]["few_shot_path"] = str(config.llm.few_shot_path)
    if data.suffix == ".jsonl":
        frame = pd.read_json(data, lines=True, dtype={config.data.id_column: str})
        if len(frame) < n:
            copies = [frame] + [frame.assign(**{config.data.id_column: frame[config.data.id_column].astype(str)
                                                + f"~{k}"}) for k in range(1, -(-n // len(frame)))]
            cycled = folder / f"{data.stem}-{n}.jsonl"
            pd.concat(copies, ignore_index=True).head(n).to_json(cycled, orient="records", lines=True,
                                                                 force_ascii=False)
            raw["data"]["path"] = str(cycled)
    raw["run_dir"] = str(folder / f"run-{n}")
    path = folder / f"{source.stem}-{n}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    return path


def _timed(command: List[str]) -> Tuple[float, List[float], List[float]]:
    before = _load()
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return seconds, before, _load()


def run_raw(config: Path, n: int, threads: int, folder: Path) -> Dict[str, Any]:
    out = folder / "raw-labels.json"
    seconds, before, after = _timed([sys.executable, str(Path(__file__).resolve()), "--raw-worker", str(config),
                                     str(n), str(threads), str(out)])
    labels = {k: tuple(v) for k, v in json.loads(out.read_text()).items()}
    return {"seconds": round(seconds, 2), "items_per_second": round(n / seconds, 3), "load_before": before,
            "load_after": after, "labels": labels}


def run_curate(config: Path, n: int) -> Dict[str, Any]:
    from pipelines.label import read_labels
    from workspaces.config import load_config

    run_dir = load_config(config).run_path
    shutil.rmtree(run_dir, ignore_errors=True)
    seconds, before, after = _timed([str(Path(sys.executable).parent / "curate"), "label", str(config),
                                     "--limit", str(n)])
    frame = read_labels(run_dir)
    labels = {str(r.item_id): (r.label, r.confidence) if r.status == "ok" else (None, str(r.error).split(":")[0])
              for r in frame.itertuples()}
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"seconds": round(seconds, 2), "items_per_second": round(n / seconds, 3), "load_before": before,
            "load_after": after, "labels": labels}


def agreement(raw: Labels, curate: Labels) -> Dict[str, int]:
    """Items with the same label, and the same label and confidence (to 1e-9), on both sides."""
    same = [i for i in raw if i in curate and raw[i][0] == curate[i][0]]
    exact = [i for i in same if raw[i][0] is None or abs(raw[i][1] - curate[i][1]) < 1e-9]
    return {"items": len(raw), "same_label": len(same), "same_label_and_confidence": len(exact),
            "ok": sum(label is not None for label, _ in raw.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "convabuse_demo.yaml")
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--pairs", type=int, default=2, help="(raw, curate) pairs per size")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads on both sides "
                        "(default: llm.n_threads, else half the cores, as curate label)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--raw-worker", nargs=4, metavar=("CONFIG", "N", "THREADS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_worker:
        config, n, threads, out = args.raw_worker
        Path(out).write_text(json.dumps(raw_loop(Path(config), int(n), int(threads))))
        return

    from workspaces.config import load_config

    source = args.config.resolve()
    llm = load_config(source).llm
    threads = args.threads or (llm.n_threads if llm is not None and llm.n_threads else None) \
        or max(1, (os.cpu_count() or 2) // 2)
    print(f"machine: {os.cpu_count()} cores, load average {_load()}; {source.name}, {threads} llama.cpp thread(s)")
    command = " ".join(["python", "benchmarks/bench_label_throughput.py", "--config",
                        str(source.relative_to(ROOT)) if source.is_relative_to(ROOT) else str(source),
                        "--sizes", *map(str, args.sizes), "--pairs", str(args.pairs), "--threads", str(threads)])
    report: Dict[str, Any] = {"command": command, "config": source.name, "threads": threads,
                              "cores": os.cpu_count(), "load_start": _load(), "sizes": {}}
    folder = Path(tempfile.mkdtemp(prefix="bench-label-"))
    try:
        for n in args.sizes:
            config = write_config(source, n, threads, folder)
            pairs = []
            for pair in range(1, args.pairs + 1):
                raw = run_raw(config, n, threads, folder)
                print(f"  n={n} pair {pair}: raw    {raw['items_per_second']:.3f} items/s ({raw['seconds']} s, "
                      f"load {raw['load_before'][0]} -> {raw['load_after'][0]})", flush=True)
                cur = run_curate(config, n)
                print(f"  n={n} pair {pair}: curate {cur['items_per_second']:.3f} items/s ({cur['seconds']} s, "
                      f"load {cur['load_before'][0]} -> {cur['load_after'][0]})", flush=True)
                same = agreement(raw["labels"], cur["labels"])
                ratio = cur["items_per_second"] / raw["items_per_second"]
                print(f"  n={n} pair {pair}: ratio {ratio:.3f}; same label on {same['same_label']}/{n}, same "
                      f"label and confidence on {same['same_label_and_confidence']}/{n}", flush=True)
                pairs.append({"raw": {k: v for k, v in raw.items() if k != "labels"},
                              "curate": {k: v for k, v in cur.items() if k != "labels"},
                              "ratio": round(ratio, 3), "agreement": same})
            ratios = sorted(p["ratio"] for p in pairs)
            median = ratios[len(ratios) // 2] if len(ratios) % 2 else sum(ratios[len(ratios) // 2 - 1:
                                                                                 len(ratios) // 2 + 1]) / 2
            report["sizes"][str(n)] = {"pairs": pairs, "ratio_median": round(median, 3), "ratio_min": ratios[0]}
            print(f"n={n}: curate label / raw loop per pair {[p['ratio'] for p in pairs]} (median {median:.3f})",
                  flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report["load_end"] = _load()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    different = {n: p["agreement"] for n, e in report["sizes"].items() for p in e["pairs"]
                 if p["agreement"]["same_label"] != int(n)}
    if different:
        raise SystemExit(f"the two sides gave different labels: {different}")


if __name__ == "__main__":
    main()
