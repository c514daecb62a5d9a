"""`curate prefer` + publishing a preference config: pure decision logic, config validation, a scripted LLM through
the real pipelines (one model copy per step), and the real model on 3 prompts of each shipped preference config,
published to the real (embedded) Argilla server."""

import json
import math
from pathlib import Path
from typing import Any, List, Optional

import pandas as pd
import pytest
import yaml
from distilabel.models.llms.base import LLM
from distilabel.models.llms.utils import prepare_output

from pipelines.prefer import RATINGS, _exclusive, prefer_items, read_preferences, summarize_preferences
from workspaces.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
HH = ROOT / "configs" / "hh_rlhf_harmless_prefs.yaml"
BANKING = ROOT / "configs" / "banking77_support_prefs.yaml"


def test_outcome_probabilities_are_a_distribution():
    pa = {"1": 0.1, "2": 0.1, "3": 0.2, "4": 0.3, "5": 0.3}
    pb = {"1": 0.5, "2": 0.2, "3": 0.1, "4": 0.1, "5": 0.1}
    outcomes = _exclusive(pa, pb)
    assert sum(outcomes.values()) == pytest.approx(1.0)
    assert outcomes["A"] > outcomes["B"]
    assert outcomes["both-bad"] == pytest.approx(0.2 * 0.7)
    certain = {r: float(r == "5") for r in RATINGS}
    assert _exclusive(certain, certain)["tie"] == pytest.approx(1.0)


def test_summary_compares_judge_and_humans():
    frame = pd.DataFrame([
        {"status": "ok", "chosen": "A", "tie": False, "preference": "A", "margin": 1.0, "human_preferred": "A"},
        {"status": "ok", "chosen": "B", "tie": False, "preference": "B", "margin": -0.5, "human_preferred": "A"},
        {"status": "ok", "chosen": "B", "tie": False, "preference": "B", "margin": -2.0, "human_preferred": "B"},
        {"status": "ok", "chosen": None, "tie": True, "preference": "tie", "margin": 0.0, "human_preferred": "B"},
        {"status": "failed", "chosen": None, "tie": None, "preference": None, "margin": None, "human_preferred": "A"},
    ])
    report = summarize_preferences(frame)
    assert (report["pairs"], report["ok"], report["failed"], report["ties"]) == (5, 4, 1, 1)
    assert report["mean_margin"] == pytest.approx(3.5 / 4)
    agreement = report["human_agreement"]
    assert agreement["compared"] == 3 and agreement["agree"] == 2 and agreement["rate"] == pytest.approx(2 / 3)
    assert agreement["judge_ties"] == 1 and agreement["failed"] == 1


def test_shipped_preference_configs_validate():
    hh, banking = load_config(HH), load_config(BANKING)
    assert hh.preference.candidates == "columns" and hh.preference.human_preferred == "chosen"
    assert banking.preference.candidates == "generate" and banking.preference.num_candidates >= 2
    for config in (hh, banking):
        assert config.data.path.is_file()
        assert {q.name for q in config.questions} == {"rating_a", "rating_b", "preference", "rationale"}


@pytest.mark.parametrize("change, message", [
    ({"preference": None}, "needs a `preference` section"),
    ({"preference": {"prompt_field": "nope", "candidates": "columns", "response_columns": ["chosen", "rejected"]}},
     "prompt_field"),
    ({"preference": {"prompt_field": "prompt", "candidates": "columns", "response_columns": ["chosen"]}},
     "exactly two"),
    ({"preference": {"prompt_field": "prompt", "human_preferred": "chosen"}}, "candidates: columns"),
    ({"questions": [{"name": "preference", "kind": "label", "labels": {"A": "a", "B": "b"}}]}, "rating"),
])
def test_preference_config_errors_name_the_key(tmp_path, change, message):
    raw = yaml.safe_load(HH.read_text())
    raw["data"]["path"] = str(ROOT / "data" / "hh_rlhf" / "harmless_test_pairs_200.jsonl")
    for key, value in change.items():
        if value is None:
            raw.pop(key)
        else:
            raw[key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def _copy(config: Path, tmp_path: Path, **preference) -> Path:
    raw = yaml.safe_load(config.read_text())
    raw["data"]["path"] = str((config.parent / raw["data"]["path"]).resolve())
    raw["run_dir"] = str(tmp_path / "run")
    raw["preference"].update(preference)
    raw["argilla"]["dataset"] = f"{raw['argilla']['dataset']}-{tmp_path.name[-12:].lower().replace('_', '-')}"
    path = tmp_path / config.name
    path.write_text(yaml.safe_dump(raw))
    return path


def _check_pairs(frame: pd.DataFrame) -> None:
    assert len(frame) == 3
    for row in frame.itertuples():
        assert row.status == "ok", row.error
        assert row.rating_a in range(1, 6) and row.rating_b in range(1, 6)
        for probabilities in (row.rating_probabilities_a, row.rating_probabilities_b):
            assert set(probabilities) == set(RATINGS) and sum(probabilities.values()) == pytest.approx(1.0)
        assert row.margin == pytest.approx(row.expected_rating_a - row.expected_rating_b)
        assert row.preference in {"A", "B", "tie", "both-bad"} and 0.0 <= row.preference_score <= 1.0
        if row.tie:
            assert pd.isna(row.chosen) and abs(row.margin) < 1.0
        else:
            assert {row.chosen, row.rejected} == {"A", "B"}
            assert row.chosen_response == getattr(row, f"response_{row.chosen.lower()}")


class TemperatureLoggingLLM(LLM):
    """Writes each candidate as `reply at T=<the temperature it was asked for>` and rates a reply 4 when it was
    written at T=0.3, else 2; logs `<candidate|judge> <temperature>` per call in `log_path` (steps run in other
    processes)."""

    log_path: str

    @property
    def model_name(self) -> str:
        return "temperature-llm"

    def generate(self, inputs: List[Any], num_generations: int = 1, max_new_tokens: int = 16,  # type: ignore[override]
                 temperature: float = 0.0, top_logprobs: Optional[int] = None, answer_prefix: Optional[str] = None,
                 grammar: Optional[str] = None, stop: Optional[List[str]] = None) -> List[Any]:
        judging = answer_prefix is not None
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.writelines(f"{'judge' if judging else 'candidate'} {temperature}\n" for _ in inputs)
        outputs = []
        for messages in inputs:
            if not judging:
                outputs.append(prepare_output([f"reply at T={temperature}"], input_tokens=[10], output_tokens=[4]))
                continue
            rating, other = ("4", "2") if "reply at T=0.3" in messages[-1]["content"] else ("2", "4")
            steps = [[{"token": '{"rating": "', "logprob": 0.0}],
                     [{"token": rating, "logprob": math.log(0.9)}, {"token": other, "logprob": math.log(0.1)}],
                     [{"token": '", "rationale": "ok"}', "logprob": 0.0}]]
            outputs.append(prepare_output([f'{{"rating": "{rating}", "rationale": "ok"}}'], input_tokens=[10],
                                          output_tokens=[3], logprobs=[steps]))
        return outputs


def test_each_candidate_step_gets_its_own_copy_of_a_given_llm(tmp_path):
    """A caller's LLM is copied per step: every candidate is written at its own temperature, the judge at 0."""
    config = load_config(_copy(BANKING, tmp_path, max_new_tokens=24))
    assert config.preference.temperatures == [0.3, 1.0]
    log = tmp_path / "calls.log"
    llm = TemperatureLoggingLLM(log_path=str(log))
    run = prefer_items(config, limit=3, llm=llm)
    frame = read_preferences(tmp_path / "run")
    _check_pairs(frame)
    assert (frame["response_a"] == "reply at T=0.3").all() and (frame["response_b"] == "reply at T=1.0").all()
    assert (frame["model_a"] == "temperature-llm@T=0.3").all() and (frame["model_b"] == "temperature-llm@T=1.0").all()
    assert (frame["chosen"] == "A").all() and (frame["judge_model"] == "temperature-llm").all()
    calls = sorted(log.read_text().splitlines())
    assert calls == ["candidate 0.3"] * 3 + ["candidate 1.0"] * 3 + ["judge 0.0"] * 6
    assert llm.generation_kwargs == {} and run.report["ok"] == 3  # the given LLM is left as it was


@pytest.mark.slow
def test_hh_rlhf_pairs_judged_compared_with_humans_and_published(tmp_path, argilla_client):
    import argilla as rg

    from workspaces.argilla_io.preference import publish_preferences
    from workspaces.argilla_io.records import display_text, source_text

    config = load_config(_copy(HH, tmp_path))
    run = prefer_items(config, limit=3)
    frame = read_preferences(tmp_path / "run")
    _check_pairs(frame)
    source = pd.read_json(config.data.path, lines=True).set_index("id")
    for row in frame.itertuples():  # A/B are the human chosen/rejected in the recorded order
        human = source.loc[row.item_id]
        assert getattr(row, f"response_{row.human_preferred.lower()}") == human["chosen"]
        assert {row.response_a, row.response_b} == {human["chosen"], human["rejected"]}
    report = json.loads(run.report_path.read_text())
    assert report["human_agreement"]["compared"] + report["human_agreement"]["judge_ties"] == 3
    assert report["judge_model"] == "SmolLM2-135M-Instruct.Q4_1"

    result = publish_preferences(config, argilla_client)
    assert result.records == 3 and result.suggestions >= 9
    dataset = argilla_client.datasets(name=config.argilla.dataset, workspace=config.argilla.workspace)
    records = list(dataset.records(with_suggestions=True))
    assert {r.id for r in records} == set(frame["item_id"])
    by_id = frame.set_index("item_id")
    for record in records:
        expected = by_id.loc[record.id]
        rating = record.suggestions["rating_a"]
        assert rating.value == expected["rating_a"] and rating.agent == "SmolLM2-135M-Instruct.Q4_1"
        assert rating.score == pytest.approx(expected["confidence_a"], abs=1e-6)
        assert record.suggestions["preference"].value == expected["preference"]
        assert record.fields["response_a"] == display_text(expected["response_a"])  # escaped: shown as written
        assert source_text(record.fields["response_a"]) == expected["response_a"]  # and back, byte for byte
        assert record.metadata["human_preferred"] == expected["human_preferred"]
    assert isinstance(dataset.settings.questions["preference"], rg.LabelQuestion)
    # Publishing again updates in place.
    assert publish_preferences(config, argilla_client).created is False
    assert len(list(dataset.records)) == 3


@pytest.mark.slow
def test_banking77_candidates_written_by_the_model(tmp_path):
    config = load_config(_copy(BANKING, tmp_path, max_new_tokens=24))
    run = prefer_items(config, limit=3)
    frame = read_preferences(tmp_path / "run")
    _check_pairs(frame)
    assert frame["model_a"].str.endswith("@T=0.3").all() and frame["model_b"].str.endswith("@T=1.0").all()
    assert run.report["human_agreement"] is None
    # Re-running reuses candidates and judgements.
    again = prefer_items(config, limit=3)
    pd.testing.assert_frame_equal(again.preferences, run.preferences)
    assert not math.isnan(run.report["mean_margin"])
