"""An exported Hugging Face folder as a GGUF file that the local LM server (llama.cpp) serves.

llama.cpp's own converter does the work: `convert_hf_to_gguf.py` (with its `conversion/` and `gguf-py/`) from
the source distribution of the llama-cpp-python this environment runs, so the GGUF is one its llama.cpp reads.
It runs in LLM Foundry's environment (torch, transformers) and writes f16; llama.cpp's quantizer
(`llama_model_quantize`, through llama-cpp-python) then makes the Q4_K_M the stock local model ships as.

The converter comes from, in order: $OTLAKE_LLAMA_CPP (a llama.cpp checkout), otlake's cache
(~/.cache/otlake/llama.cpp-VERSION), uv's cache of the source distribution, or PyPI (the sdist's sha256 checked
against PyPI's simple index), unpacked into otlake's cache.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from importlib import metadata
from pathlib import Path

from . import foundry_env
from .errors import TrainError

QUANTS = ("q4_k_m", "q8_0", "f16")
NEEDED = ("convert_hf_to_gguf.py", "conversion", "gguf-py")


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "otlake"


def _complete(folder: Path) -> bool:
    return all((folder / name).exists() for name in NEEDED)


def converter_source() -> Path:
    """A folder holding llama.cpp's convert_hf_to_gguf.py, conversion/ and gguf-py/."""
    configured = os.environ.get("OTLAKE_LLAMA_CPP")
    if configured:
        if not _complete(Path(configured)):
            raise TrainError(f"$OTLAKE_LLAMA_CPP={configured} is not a llama.cpp checkout: it needs "
                             f"{', '.join(NEEDED)}")
        return Path(configured)
    try:
        version = metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        raise TrainError("GGUF export needs llama-cpp-python (the lm dependency group: `make install`)") from None
    cached = _cache_root() / f"llama.cpp-{version}"
    if _complete(cached):
        return cached
    uv_cache = Path(os.environ.get("UV_CACHE_DIR") or Path.home() / ".cache" / "uv")
    for vendor in sorted(uv_cache.glob(f"sdists-v*/pypi/llama-cpp-python/{version}/*/src/vendor/llama.cpp")):
        if _complete(vendor):
            _copy_parts(vendor, cached)
            return cached
    _download(version, cached)
    return cached


def _copy_parts(vendor: Path, dest: Path) -> None:
    tmp = Path(tempfile.mkdtemp(dir=_ensure(dest.parent)))
    for name in NEEDED:
        src = vendor / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp / name)
    _install(tmp, dest)


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _install(tmp: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)  # whole or not at all


def _download(version: str, dest: Path) -> None:
    """llama-cpp-python's sdist from PyPI, hash checked; only the converter's parts are unpacked."""
    index = "https://pypi.org/simple/llama-cpp-python/"
    want = f"llama_cpp_python-{version}.tar.gz"
    try:
        request = urllib.request.Request(index, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        with urllib.request.urlopen(request, timeout=60) as r:
            sdist = next(f for f in json.load(r)["files"] if f["filename"] == want)
        tmp = Path(tempfile.mkdtemp(dir=_ensure(dest.parent)))
        archive = tmp / want
        with urllib.request.urlopen(sdist["url"], timeout=600) as r, archive.open("wb") as out:
            shutil.copyfileobj(r, out)
    except (OSError, ValueError, KeyError, StopIteration) as e:
        raise TrainError(f"could not fetch llama.cpp's converter ({want} from PyPI): {e or 'not listed'}; set "
                         "$OTLAKE_LLAMA_CPP to a llama.cpp checkout instead") from None
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != sdist["hashes"]["sha256"]:
        raise TrainError(f"{want}: sha256 {digest} is not PyPI's {sdist['hashes']['sha256']}")
    parts = tmp / "parts"
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            rel = member.name.split("/vendor/llama.cpp/", 1)
            if len(rel) == 2 and rel[1].split("/", 1)[0] in NEEDED and (member.isfile() or member.isdir()):
                member.name = rel[1]
                tar.extract(member, parts, filter="data")
    if not _complete(parts):
        raise TrainError(f"{want} has no vendor/llama.cpp converter")
    _install(parts, dest)
    shutil.rmtree(tmp, ignore_errors=True)


def quantize(src: Path, out: Path, quant: str) -> None:
    """llama.cpp's quantizer on a GGUF (llama_model_quantize through llama-cpp-python)."""
    try:
        import llama_cpp
    except ImportError:
        raise TrainError("quantizing needs the `lm` dependency group (llama.cpp): run "
                         "`uv sync --inexact --group lm` (`make test` installs it)") from None

    ftype = {"q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M, "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0}[quant]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = os.cpu_count() or 1
    code = llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), ctypes.byref(params))
    if code != 0:
        raise TrainError(f"llama.cpp could not quantize {src} to {quant} (code {code})")


def hf_to_gguf(folder: Path, out: Path, quant: str = "q4_k_m") -> dict:
    """Write out (a .gguf) from a Hugging Face folder; returns what was written."""
    if quant not in QUANTS:
        raise TrainError(f"unknown GGUF type {quant!r}: use one of {', '.join(QUANTS)}")
    folder, out = Path(folder).resolve(), Path(out).resolve()
    if not (folder / "config.json").is_file():
        raise TrainError(f"{folder} is not a Hugging Face folder: it has no config.json")
    source = converter_source()
    started = time.time()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        f16 = Path(tmp) / "model-f16.gguf"
        env = foundry_env.env()
        env["PYTHONPATH"] = str(source / "gguf-py")  # the gguf package of this converter, not PyPI's
        proc = subprocess.run([str(foundry_env.python()), str(source / "convert_hf_to_gguf.py"), str(folder),
                               "--outfile", str(f16), "--outtype", "f16"], capture_output=True, text=True, env=env,
                              check=False)
        if proc.returncode != 0 or not f16.is_file():
            tail = [line for line in proc.stderr.splitlines() if line.strip()][-3:]
            raise TrainError(f"llama.cpp's convert_hf_to_gguf.py could not convert {folder}: {' | '.join(tail)}")
        staged = Path(tmp) / "model.gguf"
        if quant == "f16":
            os.replace(f16, staged)
        else:
            quantize(f16, staged, quant)
        os.replace(staged, out)
    return {"gguf": str(out), "type": quant, "bytes": out.stat().st_size, "seconds": round(time.time() - started, 1),
            "converter": str(source)}
