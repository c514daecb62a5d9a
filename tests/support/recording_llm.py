"""A Distilabel LLM for tests of what an endpoint would receive: it appends every conversation it is sent to
`log_path` and answers `answer` (JSON, with token logprobs: `answer` at `confidence`, `runner_up` the rest). Its
class is none of the known in-process backends, so the label pipeline treats it as remote."""

from __future__ import annotations

import json
import math
from typing import Any, List, Optional

from distilabel.models.llms.base import LLM
from distilabel.models.llms.utils import prepare_output


class RecordingLLM(LLM):
    """Records each prompt; answers `{"label": answer}` with `confidence`."""

    log_path: str
    answer: str = "a"
    runner_up: str = "b"
    confidence: float = 0.8

    def load(self) -> None:
        super().load()

    @property
    def model_name(self) -> str:
        return "recording-llm"

    def generate(self, inputs: List[Any], num_generations: int = 1, max_new_tokens: int = 16,  # type: ignore[override]
                 temperature: float = 0.0, top_logprobs: Optional[int] = None, answer_prefix: Optional[str] = None,
                 grammar: Optional[str] = None, stop: Optional[List[str]] = None) -> List[Any]:
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(messages) + "\n" for messages in inputs)
        steps = [[{"token": '{"label": "', "logprob": 0.0}],
                 [{"token": self.answer, "logprob": math.log(self.confidence)},
                  {"token": self.runner_up, "logprob": math.log(1 - self.confidence)}],
                 [{"token": '"}', "logprob": 0.0}]]
        return [prepare_output([json.dumps({"label": self.answer})], input_tokens=[10], output_tokens=[3],
                               logprobs=[steps]) for _ in inputs]
