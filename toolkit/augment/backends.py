"""LLM backends behind one small interface: `run(requests)` yields one `LLMResult` per request.

* `OpenAIBackend`: the OpenAI API, or any OpenAI-compatible server through `base_url` (vLLM,
  llama.cpp, Ollama), called from a pool of worker threads with a requests-per-minute limit.
* `HFBackend`: a local transformers causal LM (Phi-2 by default), batched generation.

Sampling is seeded per request: each request carries its own seed, so its answer does not depend on
the order, concurrency or batch it runs in. That is what makes an interrupted run, resumed, end with
the same output as an uninterrupted one.

Both backends keep at most `ANSWER_BYTES_PER_TOKEN` bytes of answer per token asked for
(`max_new_tokens`); a longer answer is cut there and marked `cut`. The openai backend also bounds
every attempt in time and reads at most a bounded body from the server (`bounded_http`).
"""

from __future__ import annotations

import codecs
import dataclasses
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from dcase9.augment.config import BackendConfig, SamplingConfig
from dcase9.errors import ConfigError, Dcase9Error
from dcase9.lazy import require


@dataclass(frozen=True)
class LLMRequest:
    key: str  # identity of the request (see run.py)
    prompt: str  # rendered prompt
    seed: int


@dataclass(frozen=True)
class LLMResult:
    key: str
    status: str  # "ok": text answered; "malformed": an answer we cannot use; "failed": no answer
    text: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    attempts: int = 1
    cut: bool = False  # the answer was longer than the bound (`answer_limit_bytes`): what is kept is its start


class BackendFatalError(Dcase9Error):
    """A problem no retry can fix (bad key, unknown model): the run stops."""


class Backend(Protocol):
    def run(self, requests: Iterable[LLMRequest]) -> Iterator[LLMResult]:
        """Answer every request; yield results as they complete (any order)."""

    def close(self) -> None: ...


#: UTF-8 bytes of answer kept per token asked for. English averages about 4 bytes per token, other
#: scripts up to about 6 (3-byte characters, one or two per token); 16 leaves room for long tokens
#: (runs of spaces or punctuation) and is still small: 4 KiB for the default 256 tokens, at most three
#: copies of it in the logs (the answer, and each piece's raw and cleaned text).
ANSWER_BYTES_PER_TOKEN = 16
#: Bytes of a response body read per byte of answer kept: JSON may write a character as `\u0001`
#: (6 bytes for 1), and a completion's envelope (id, model, usage, finish reason) comes on top.
JSON_ESCAPE_FACTOR = 6
ENVELOPE_BYTES = 64 * 1024


def answer_limit_bytes(max_new_tokens: int) -> int:
    return ANSWER_BYTES_PER_TOKEN * max_new_tokens


def body_limit_bytes(max_new_tokens: int) -> int:
    return JSON_ESCAPE_FACTOR * answer_limit_bytes(max_new_tokens) + ENVELOPE_BYTES


def bound_answer(result: LLMResult, limit_bytes: int) -> LLMResult:
    """`result` with its text cut to `limit_bytes` of UTF-8 (at a character boundary), marked cut if it was longer."""
    if result.text is None:
        return result
    data = result.text.encode("utf-8", "surrogatepass")  # json.loads lets lone surrogates through
    if len(data) <= limit_bytes:
        return result
    text = codecs.getincrementaldecoder("utf-8")("surrogatepass").decode(data[:limit_bytes], final=False)
    return dataclasses.replace(result, text=text, cut=True)


# A key shorter than this is no real key (test servers take "k"); redacting it would garble messages.
MIN_REDACTED_LENGTH = 8
# The start of a key that a cut left at the end of an answer is redacted from this many characters on
# (fewer say nothing: every OpenAI key starts with "sk-").
MIN_REDACTED_PREFIX = 4


class Redactor:
    """Replaces the API key's value in any text that may be printed or logged.

    A server may echo the key it was sent (in an error message, even in an answer), so every
    string that comes back from the API passes through here before it leaves the backend.
    """

    def __init__(self, secret: str | None, name: str):
        self.secret = secret if secret and len(secret) >= MIN_REDACTED_LENGTH else None
        self.mask = f"<value of {name} redacted>"  # no square brackets: rich would read them as markup

    def __call__(self, text: str | None, *, cut: bool = False) -> str | None:
        """`text` without the key; `cut`: the text was cut short, so its end may hold the key's start too."""
        if text is None or self.secret is None:
            return text
        text = text.replace(self.secret, self.mask)
        if cut:
            for length in range(len(self.secret) - 1, MIN_REDACTED_PREFIX - 1, -1):
                if text.endswith(self.secret[:length]):
                    return text[:-length] + self.mask
        return text

    def result(self, result: LLMResult) -> LLMResult:
        return dataclasses.replace(result, text=self(result.text, cut=result.cut), error=self(result.error),
                                   finish_reason=self(result.finish_reason))


def make_backend(config: BackendConfig, sampling: SamplingConfig) -> Backend:
    if config.kind == "openai":
        return OpenAIBackend(config, sampling)
    return HFBackend(config, sampling)


# --------------------------------------------------------------------------------------------------
# OpenAI API and compatible servers


class RateLimiter:
    """Spaces request starts evenly so that at most `per_minute` start in any minute."""

    def __init__(self, per_minute: float | None):
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self, stop: threading.Event | None = None) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        delay = slot - now
        if delay > 0:
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)


_DONE = object()


class OpenAIBackend:
    """Chat completions from the OpenAI API or an OpenAI-compatible server."""

    def __init__(self, config: BackendConfig, sampling: SamplingConfig):
        self.openai = require("openai", extra="augment", purpose="The openai backend of `dcase9 augment`")
        self.config, self.sampling = config, sampling
        self.model = config.resolved_model()
        api_key = os.environ.get(config.api_key_env)
        if not api_key:
            if config.base_url is None:
                raise ConfigError(f"the OpenAI API needs a key: set the environment variable {config.api_key_env} "
                                  f"(or name another one with --api-key-env)")
            api_key = "unused"  # local servers (vLLM, llama.cpp, Ollama) accept any key
        self.redact = Redactor(os.environ.get(config.api_key_env), config.api_key_env)
        from dcase9.augment.bounded_http import BoundedTransport

        # The client's timeout is per read; the transport ends every attempt (one HTTP request, each of
        # the client's retries and ours) `timeout_s` after it starts, and reads a bounded body.
        self.answer_limit = answer_limit_bytes(sampling.max_new_tokens)
        transport = BoundedTransport(timeout_s=config.timeout_s, connections=config.concurrency,
                                     max_body_bytes=body_limit_bytes(sampling.max_new_tokens))
        http_client = self.openai.DefaultHttpxClient(transport=transport, timeout=config.timeout_s)
        self.client = self.openai.OpenAI(api_key=api_key, base_url=config.base_url, timeout=config.timeout_s,
                                         max_retries=config.max_retries, http_client=http_client)
        self.limiter = RateLimiter(config.requests_per_minute)
        self._stop = threading.Event()

    def close(self) -> None:
        self._stop.set()
        self.client.close()

    def run(self, requests: Iterable[LLMRequest]) -> Iterator[LLMResult]:
        """Worker threads take requests from a short queue; results come back as they complete.

        Threads are daemons: on Ctrl-C the caller stops reading, and requests still in flight are
        abandoned (their answers are not logged, so a resumed run asks again).
        """
        workers = self.config.concurrency
        todo: queue.Queue[Any] = queue.Queue(maxsize=2 * workers)
        done: queue.Queue[Any] = queue.Queue()
        stop = self._stop = threading.Event()

        def feed() -> None:
            try:
                for request in requests:
                    while not stop.is_set():
                        try:
                            todo.put(request, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
            finally:
                for _ in range(workers):
                    while not stop.is_set():
                        try:
                            todo.put(_DONE, timeout=0.1)
                            break
                        except queue.Full:
                            continue

        def work() -> None:
            while not stop.is_set():
                try:
                    request = todo.get(timeout=0.1)
                except queue.Empty:
                    continue
                if request is _DONE:
                    break
                try:
                    done.put(self.call(request))
                except BaseException as exc:  # a bug or a fatal API error: hand it to the reader
                    done.put(exc)
            done.put(_DONE)

        threads = [threading.Thread(target=feed, daemon=True, name="augment-feed")]
        threads += [threading.Thread(target=work, daemon=True, name=f"augment-worker-{i}") for i in range(workers)]
        for thread in threads:
            thread.start()
        finished = 0
        try:
            while finished < workers:
                try:
                    item = done.get(timeout=0.2)  # short waits keep Ctrl-C responsive
                except queue.Empty:
                    continue
                if item is _DONE:
                    finished += 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            stop.set()

    def call(self, request: LLMRequest) -> LLMResult:
        """One request (see `_call`); the API key's value is redacted from everything that comes back, then
        the answer is bounded (after: a cut must not leave half a key where the mask would have been)."""
        try:
            return bound_answer(self.redact.result(self._call(request)), self.answer_limit)
        except BackendFatalError as exc:
            raise BackendFatalError(str(self.redact(str(exc)))) from None
        except Exception as exc:
            if self.redact.secret is None or self.redact.secret not in str(exc):
                raise
            raise BackendFatalError(f"the LLM client failed: {type(exc).__name__}: {self.redact(str(exc))}") from None

    def _call(self, request: LLMRequest) -> LLMResult:
        """One request, with our retries on top of the client's for errors that may pass."""
        from dcase9.augment.bounded_http import BODY_CUT

        openai = self.openai
        retryable = (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError,
                     openai.InternalServerError, openai.ConflictError)
        fatal = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)
        attempts = 0
        last_error = ""
        while True:
            attempts += 1
            self.limiter.wait(self._stop)
            try:
                raw = self.client.chat.completions.with_raw_response.create(
                    model=self.model,
                    messages=[{"role": "user", "content": request.prompt}],
                    temperature=self.sampling.temperature,
                    top_p=self.sampling.top_p,
                    max_tokens=self.sampling.max_new_tokens,
                    seed=request.seed,
                    n=1,
                )
                if raw.http_response.extensions.get(BODY_CUT):
                    return _result_from_cut_body(request.key, raw.http_response.content, attempts)
                response = raw.parse()
            except fatal as exc:
                raise BackendFatalError("the LLM server refused the request: "
                                        + _describe_api_error(exc, self.redact)) from None
            except retryable as exc:
                last_error = _describe_api_error(exc, self.redact)
                if attempts > self.config.retry_attempts or self._stop.is_set():
                    return LLMResult(request.key, "failed", error=last_error, attempts=attempts)
                self._stop.wait(min(self.config.retry_backoff_s * 2 ** (attempts - 1), 60.0))
                continue
            except openai.APIStatusError as exc:  # other 4xx: this request is at fault, not the server
                return LLMResult(request.key, "failed", error=_describe_api_error(exc, self.redact), attempts=attempts)
            except (ValueError, openai.APIResponseValidationError) as exc:  # a body that is not a completion
                return LLMResult(request.key, "malformed",
                                 error=f"unreadable response: {str(self.redact(str(exc)))[:300]}", attempts=attempts)
            return _result_from_completion(request.key, response, attempts)


def _describe_api_error(exc: Exception, redact: Redactor) -> str:
    status = getattr(exc, "status_code", None)
    message = str(getattr(exc, "message", "") or exc)
    if exc.__cause__ is not None and str(exc.__cause__):  # "Request timed out." says less than its cause
        message = f"{message.rstrip('.')}: {exc.__cause__}"
    message = str(redact(message))  # before shortening: no half key is left
    return f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "") + f": {message[:300]}"


def _result_from_cut_body(key: str, body: bytes, attempts: int) -> LLMResult:
    """What a completion cut at the body bound still holds: the start of its text (and, rarely, the rest)."""
    from dcase9.augment.bounded_http import parse_json_prefix

    try:
        completion = parse_json_prefix(body)
    except ValueError as exc:
        return LLMResult(key, "malformed", error=f"unreadable response, cut at {len(body):,} bytes: {exc}",
                         attempts=attempts, cut=True)
    document = completion if isinstance(completion, dict) else {}
    choices = document.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else None
    usage = document.get("usage") if isinstance(document.get("usage"), dict) else {}
    finish_reason = choice.get("finish_reason")
    counts = {name: usage[name] for name in ("prompt_tokens", "completion_tokens")
              if isinstance(usage.get(name), int) and not isinstance(usage.get(name), bool)}
    if not isinstance(text, str):
        return LLMResult(key, "malformed", error=f"the response was cut at {len(body):,} bytes before any answer text",
                         attempts=attempts, cut=True, **counts)
    return LLMResult(key, "ok", text=text, finish_reason=finish_reason if isinstance(finish_reason, str) else None,
                     attempts=attempts, cut=True, **counts)


def _result_from_completion(key: str, response: Any, attempts: int) -> LLMResult:
    usage = getattr(response, "usage", None)
    prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
    try:
        choice = response.choices[0]
        text = choice.message.content
        finish_reason = choice.finish_reason
    except (AttributeError, IndexError, TypeError) as exc:
        return LLMResult(key, "malformed", error=f"no answer in the response ({type(exc).__name__})",
                         prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, attempts=attempts)
    if not isinstance(text, str):
        return LLMResult(key, "malformed", error="the answer has no text", finish_reason=finish_reason,
                         prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, attempts=attempts)
    return LLMResult(key, "ok", text=text, finish_reason=finish_reason, prompt_tokens=prompt_tokens,
                     completion_tokens=completion_tokens, attempts=attempts)


# --------------------------------------------------------------------------------------------------
# Local transformers causal LM


def _pick_device(setting: str) -> str:
    from dcase9.devices import resolve_device

    return str(resolve_device(setting))


def _pick_dtype(setting: str, device: str) -> Any:
    """fp32 on CPU; bf16 on GPUs that have it (Phi-2's attention can overflow in fp16), else fp32."""
    import torch

    if setting != "auto":
        return getattr(torch, setting)
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


class SeededRowSampler:
    """A logits processor that samples every row of a batch with that row's own random generator.

    Temperature and nucleus (top-p) filtering, then the Gumbel-max trick: adding Gumbel noise and
    taking the arg-max draws from the softmax. The arg-max is what greedy decoding picks, so
    `generate(do_sample=False)` with this processor samples, and each row's draws come from its own
    generator, seeded per request: a request's answer is the same in any batch.
    """

    def __init__(self, seeds: list[int], temperature: float, top_p: float):
        import torch

        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        scores = scores.float()
        if self.temperature == 0:
            return scores  # greedy
        scores = scores / self.temperature
        if self.top_p < 1.0:
            sorted_scores, order = scores.sort(dim=-1, descending=True)
            probs = sorted_scores.softmax(dim=-1)
            # Drop a token when the tokens ranked above it already cover top_p (the first always stays).
            drop = probs.cumsum(dim=-1) - probs >= self.top_p
            sorted_scores = sorted_scores.masked_fill(drop, float("-inf"))
            scores = torch.full_like(scores, float("-inf")).scatter(-1, order, sorted_scores)
        uniform = torch.stack([torch.rand(scores.shape[-1], generator=g, dtype=torch.float64)
                               for g in self.generators]).to(scores.device)
        gumbel = -torch.log(-torch.log(uniform.clamp(min=1e-300))).float()
        return scores + gumbel


class HFBackend:
    """A local causal LM through transformers, prompts wrapped in `prompt_format`, left-padded batches."""

    def __init__(self, config: BackendConfig, sampling: SamplingConfig):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        self.config, self.sampling = config, sampling
        self.model_name = config.resolved_model()
        self.device = _pick_device(config.device)
        self.dtype = _pick_dtype(config.dtype, self.device)
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_name, padding_side="left",
                                                           trust_remote_code=config.trust_remote_code)
            self.model = AutoModelForCausalLM.from_pretrained(self.model_name, dtype=self.dtype,
                                                              trust_remote_code=config.trust_remote_code)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load the LLM '{self.model_name}': {exc}. Offline, pass a local folder "
                              f"with --model (or download it first with `hf download {self.model_name}`)") from exc
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.tokenizer.padding_side = "left"  # generation continues from the right end of every row
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.to(self.device).eval()
        self._torch = torch

    def close(self) -> None:
        pass

    def run(self, requests: Iterable[LLMRequest]) -> Iterator[LLMResult]:
        batch: list[LLMRequest] = []
        for request in requests:
            batch.append(request)
            if len(batch) == self.config.batch_size:
                yield from self._generate(batch)
                batch = []
        if batch:
            yield from self._generate(batch)

    def _generate(self, batch: list[LLMRequest]) -> list[LLMResult]:
        from transformers import LogitsProcessorList

        torch = self._torch
        texts = [self.config.prompt_format.replace("{prompt}", r.prompt) for r in batch]
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True).to(self.device)
        sampler = SeededRowSampler([r.seed for r in batch], self.sampling.temperature, self.sampling.top_p)
        eos = self.tokenizer.eos_token_id
        try:
            with torch.inference_mode():
                output = self.model.generate(
                    **encoded,
                    do_sample=False,  # the sampler draws; greedy decoding takes its arg-max
                    logits_processor=LogitsProcessorList([sampler]),
                    max_new_tokens=self.sampling.max_new_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=eos,
                )
        except torch.cuda.OutOfMemoryError:
            raise BackendFatalError(f"out of GPU memory generating {len(batch)} answers at once; answers so far "
                                    f"are kept, run again with a smaller --batch-size") from None
        prompt_length = encoded["input_ids"].shape[1]
        results = []
        for row, request in enumerate(batch):
            new_tokens = output[row, prompt_length:].tolist()
            stopped = eos is not None and eos in new_tokens
            if stopped:
                new_tokens = new_tokens[: new_tokens.index(eos)]
            results.append(bound_answer(LLMResult(
                request.key, "ok",
                text=self.tokenizer.decode(new_tokens, skip_special_tokens=True),
                finish_reason="stop" if stopped else "length",
                prompt_tokens=int(encoded["attention_mask"][row].sum()),
                completion_tokens=len(new_tokens),
            ), answer_limit_bytes(self.sampling.max_new_tokens)))
        return results
