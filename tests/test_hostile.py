"""Hostile inputs: each one gets its named refusal at once, in bounded memory, without a traceback.

One line per case in a table. A case builds its input under a temporary folder and returns the
command's arguments; the runner checks the exit code, a fragment of the message, that nothing
leaked (`forbid`: text that must appear neither in the output nor in any file the command wrote),
and that no traceback was printed. Where memory is the failure mode (`memory_mb`), the command
runs in a subprocess whose address space is limited (`resource.setrlimit(RLIMIT_AS)`) to what it
had after importing the CLI plus `memory_mb`: a command that inflates the input dies there.

To add a case: write a builder `make(tmp, stack) -> args` (`stack` is an ExitStack for servers
and other things to stop afterwards) and one `Case(...)` line.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from submission.pdf import one_page_pdf
from toolkit.cli import app

REPO = Path(__file__).resolve().parents[1]
FAKE_OPENAI_KEY = "sk-" + "H0st1leT3st" * 4  # the openai-api-key format of the shipped profile
ECHOED_KEY = "sk-hostile-echo-0123456789abcdef"
REDACTED = "<value of OPENAI_API_KEY redacted>"
LABEL = "Evil_HACK_task9_1"
META = f"task9/{LABEL}/{LABEL}.meta.yaml"
REPORT = "task9/Evil_HACK_task9.technical_report.pdf"
OUTPUT = f"task9/{LABEL}/eval_real/case-0.wav"

Builder = Callable[[Path, ExitStack], list[str]]


@dataclass(frozen=True)
class Case:
    name: str
    make: Builder  # writes the hostile input under the folder; returns the CLI arguments
    exit_code: int
    expect: str  # a fragment of the output
    memory_mb: int | None = None  # run in a subprocess under this much address space beyond the imports
    forbid: str | None = None  # must appear nowhere: not in the output, not in any file written
    env: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Builders


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs" document: 9 levels of 9 aliases expand to 387 million strings."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def yaml_file(text: str) -> Callable[[Path], Path]:
    return lambda tmp: write(tmp / "hostile.yaml", text)


def zip_of(entries: dict[str, bytes], path: Path, *, comment: bytes = b"",
           infos: dict[str, zipfile.ZipInfo] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.comment = comment
        for name, data in entries.items():
            archive.writestr((infos or {}).get(name, name), data)
    return path


def pdf_with_flate_text(text: bytes) -> bytes:
    """A PDF whose page text sits in a FlateDecode stream, split by kerning as pdflatex writes it."""
    half = len(text) // 2
    content = b"BT /F1 10 Tf 56 700 Td [(" + text[:half] + b")-27(" + text[half:] + b")] TJ ET"
    stream = zlib.compress(content)
    return (b"%PDF-1.5\n1 0 obj\n<< /Length " + str(len(stream)).encode() + b" /Filter /FlateDecode >>\nstream\n"
            + stream + b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n")


def pdf_with_utf16_title(text: str) -> bytes:
    """A PDF whose /Title is a UTF-16BE hex text string (<FEFF...>), as PDF writers encode non-ASCII titles."""
    title = b"<FEFF" + text.encode("utf-16-be").hex().upper().encode() + b">"
    return one_page_pdf("A report").replace(b"/Producer (dcase9)", b"/Producer (dcase9) /Subject " + title)


def check_zip(make_entries: Callable[[Path], Path]) -> Builder:
    def make(tmp: Path, stack: ExitStack) -> list[str]:
        return ["package", "--check", str(make_entries(tmp))]
    return make


def build_with_report(report: bytes) -> Builder:
    """`package` of a config whose technical report is `report` (nothing else needs to exist:
    the pre-check lists every problem, the report's secrets among them)."""
    def make(tmp: Path, stack: ExitStack) -> list[str]:
        write(tmp / "report.pdf", report)
        config = write(tmp / "submission.yaml", """
submitter: {lastname: Evil, abbreviation: HACK}
authors: [{lastname: Evil, firstname: E, email: e@example.org, corresponding: true,
           affiliation: {abbreviation: HACK, institute: Example, location: Nowhere}}]
technical_report: report.pdf
systems:
  - {index: 1, name: S, abbreviation: S, parameters: {total: 1},
     development_results: {sdr: 1.0, sdri: 1.0, sisdr: 1.0}, estimates: {eval-synth: none, eval-real: none}}
""")
        return ["package", "--config", str(config), "--out", str(tmp / "out.zip")]
    return make


def zip_bomb(tmp: Path, inflated_mib: int = 2048, claimed: int = 320 * 1024) -> Path:
    """One entry whose deflate stream inflates to `inflated_mib` MiB of zeros (about 1 KiB each)
    while its headers claim `claimed` bytes, with the CRC of the claimed prefix: a reader that
    trusts the stream allocates it all; one that trusts the header and CRC accepts 320 KB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = compressor.compress(b"\0" * 2**20) + compressor.flush(zlib.Z_FULL_FLUSH)  # history reset:
    data = block * inflated_mib + compressor.flush()  # every MiB compresses to the same bytes
    name = OUTPUT.encode()
    # version 2.0, no flags, deflate, 1980-01-01 00:00, CRC, sizes: shared by both headers
    fields = struct.pack("<5H3L", 20, 0, zipfile.ZIP_DEFLATED, 0, 0x21, zlib.crc32(b"\0" * claimed), len(data), claimed)
    local = b"PK\x03\x04" + fields + struct.pack("<2H", len(name), 0) + name
    central = b"PK\x01\x02" + struct.pack("<H", 20) + fields + struct.pack("<5H2L", len(name), 0, 0, 0, 0, 0, 0) + name
    body = local + data
    end = b"PK\x05\x06" + struct.pack("<4H2LH", 0, 0, 1, 1, len(central), len(body), 0)
    return write(tmp / "bomb.zip", body + central + end)


def meta_bomb_zip(tmp: Path) -> Path:
    return zip_of({META: alias_bomb().encode(), REPORT: one_page_pdf("A report")}, tmp / "meta-bomb.zip")


def echoing_server(status: int) -> Builder:
    """`dcase9 augment` against a server that repeats the API key it was sent in its error message."""
    def make(tmp: Path, stack: ExitStack) -> list[str]:
        pytest.importorskip("openai")
        pytest.importorskip("bert_score")
        from augment_support import DOG, MINILM_ARGS, FakeLLMServer, minilm_path, write_captions

        server = stack.enter_context(FakeLLMServer())
        server.always_fail = {DOG: status}
        server.echo_key = True
        captions = write_captions(tmp / "captions.json", [{"wav": "dog.wav", "caption": DOG}])
        config = write(tmp / "augment.yaml", f"""
inputs: [{{captions: {captions}, dataset: fsd50k}}]
backend: {{kind: openai, model: fake-gpt, base_url: '{server.base_url}', timeout_s: 2, max_retries: 0,
           retry_attempts: 0}}
bertscore: {{model: '{MINILM_ARGS[1]}', model_path: '{minilm_path()}', num_layers: {MINILM_ARGS[3]}}}
""")
        return ["augment", "--config", str(config), "-o", str(tmp / "out")]
    return make


# --------------------------------------------------------------------------------------------
# The table (submission packaging, YAML, secrets, zip bombs, augment)

SUBMISSION_CASES = [
    Case("YAML bomb in submission.yaml",
         lambda t, s: ["package", "-c", str(yaml_file(alias_bomb())(t)), "-o", str(t / "o.zip")],
         2, "alias expansion exceeds 100,000 nodes", memory_mb=400),
    Case("YAML bomb in a meta file inside the zip", check_zip(meta_bomb_zip), 1,
         "refused YAML: alias expansion exceeds 100,000 nodes", memory_mb=400),
    Case("YAML bomb as the profile",
         lambda t, s: ["package", "--check", str(meta_bomb_zip(t)), "--profile", str(yaml_file(alias_bomb())(t))],
         2, "alias expansion exceeds", memory_mb=400),
    Case("YAML bomb as the meta template",
         lambda t, s: ["package", "--check", str(meta_bomb_zip(t)), "--template", str(yaml_file(alias_bomb())(t))],
         2, "alias expansion exceeds", memory_mb=400),
    Case("YAML bomb as a training config",
         lambda t, s: ["train", "--config", str(yaml_file(alias_bomb())(t)), "--out", str(t / "run"),
                       "--print-config"], 2, "alias expansion exceeds", memory_mb=400),
    Case("YAML bomb as a system config",
         lambda t, s: ["infer", "--system", "mixture", "--system-config", str(yaml_file(alias_bomb())(t)),
                       "--data", str(t), "--out", str(t / "out")], 2, "alias expansion exceeds", memory_mb=400),
    Case("YAML bomb as an augment config",
         lambda t, s: ["augment", "--config", str(yaml_file(alias_bomb())(t)), "-o", str(t / "out")],
         2, "alias expansion exceeds", memory_mb=400),
    Case("YAML bomb as a prompt file",
         lambda t, s: ["augment", str(write(t / "c.json", '{"data": [{"wav": "a.wav", "caption": "A dog barks."}]}')),
                       "-d", "fsd50k", "--prompt", str(yaml_file(alias_bomb())(t)), "--dry-run", "-o", str(t / "out")],
         2, "alias expansion exceeds", memory_mb=400),
    Case("a recursive alias in submission.yaml",
         lambda t, s: ["package", "-c", str(yaml_file("submitter: &s {lastname: *s}\n")(t)), "-o", str(t / "o.zip")],
         2, "refers to a node that contains it"),
    Case("YAML nested 10,000 levels deep",
         lambda t, s: ["package", "-c", str(yaml_file("[" * 10_000 + "]" * 10_000)(t)), "-o", str(t / "o.zip")],
         2, "nesting deeper than 100 levels"),
    Case("a key in a compressed PDF stream (package)", build_with_report(pdf_with_flate_text(FAKE_OPENAI_KEY.encode())),
         1, "openai-api-key format in a PDF text string in a compressed PDF stream", forbid=FAKE_OPENAI_KEY),
    Case("a key in a compressed PDF stream (--check)",
         check_zip(lambda t: zip_of({REPORT: pdf_with_flate_text(FAKE_OPENAI_KEY.encode())}, t / "p.zip")),
         1, "openai-api-key format in a PDF text string in a compressed PDF stream", forbid=FAKE_OPENAI_KEY),
    Case("a key in a UTF-16 PDF text string",
         check_zip(lambda t: zip_of({REPORT: pdf_with_utf16_title(FAKE_OPENAI_KEY)}, t / "p.zip")),
         1, "openai-api-key format in a PDF text string", forbid=FAKE_OPENAI_KEY),
    Case("a key in the zip comment",
         check_zip(lambda t: zip_of({REPORT: one_page_pdf("A report")}, t / "p.zip", comment=FAKE_OPENAI_KEY.encode())),
         1, "the zip comment contains text in the openai-api-key format", forbid=FAKE_OPENAI_KEY),
    Case("a key in an entry comment",
         check_zip(lambda t: zip_of({REPORT: b"%PDF-"}, t / "p.zip", infos={REPORT: _info(comment=FAKE_OPENAI_KEY)})),
         1, "its entry comment contains text in the openai-api-key format", forbid=FAKE_OPENAI_KEY),
    Case("a key in an extra field",
         check_zip(lambda t: zip_of({REPORT: b"%PDF-"}, t / "p.zip", infos={REPORT: _info(extra=FAKE_OPENAI_KEY)})),
         1, "its extra field contains text in the openai-api-key format", forbid=FAKE_OPENAI_KEY),
    Case("zip bomb: 2 GiB behind a header that claims 320 KB", check_zip(zip_bomb), 1,
         "inflates past its declared size of 327,680 bytes", memory_mb=400),
    Case("augment: a 401 that echoes the API key", echoing_server(401), 2, f"you sent Bearer {REDACTED}",
         forbid=ECHOED_KEY, env={"OPENAI_API_KEY": ECHOED_KEY}),
    Case("augment: a 500 that echoes the API key", echoing_server(500), 1, f"you sent Bearer {REDACTED}",
         forbid=ECHOED_KEY, env={"OPENAI_API_KEY": ECHOED_KEY}),
]


def _info(*, comment: str = "", extra: str = "") -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(REPORT, date_time=(1980, 1, 1, 0, 0, 0))
    info.comment = comment.encode()
    if extra:  # one extra-field record: an unassigned header id, then the data
        info.extra = struct.pack("<2H", 0x6666, len(extra)) + extra.encode()
    return info


# --------------------------------------------------------------------------------------------
# The runner

# Imports the CLI, then limits the address space to what the process has plus the case's allowance.
_LIMITED = """
import resource, sys
from toolkit.cli import main
import submission, submission.check, submission.package, soundfile
size = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize:"))
limit = size + int(sys.argv[1]) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.argv = ["dcase9", *sys.argv[2:]]
main()
"""


def run_case(case: Case, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    with ExitStack() as stack:
        args = case.make(tmp, stack)
        if case.memory_mb is None:
            for name, value in case.env.items():
                monkeypatch.setenv(name, value)
            result = CliRunner().invoke(app, args)
            assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
            return result.exit_code, result.output
        env = {**os.environ, "COLUMNS": "200", **case.env}
        done = subprocess.run([sys.executable, "-c", _LIMITED, str(case.memory_mb), *args], capture_output=True,
                              text=True, cwd=tmp, env=env, timeout=300)
        return done.returncode, done.stdout + done.stderr


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="the memory limit reads /proc")
@pytest.mark.parametrize("case", SUBMISSION_CASES, ids=[case.name for case in SUBMISSION_CASES])
def test_hostile_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, output = run_case(case, tmp_path, monkeypatch)
    text = " ".join(output.split())
    assert "Traceback" not in output and "MemoryError" not in output, output[-3000:]
    assert code == case.exit_code, output[-3000:]
    assert case.expect in text, output[-3000:]
    if case.forbid is not None:
        assert case.forbid not in output
        for path in tmp_path.rglob("*"):
            if path.is_file() and path.suffix not in (".zip", ".pdf", ".yaml"):  # the inputs hold it on purpose
                assert case.forbid.encode() not in path.read_bytes(), path
