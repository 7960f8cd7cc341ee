"""Load a real `tokenizers.Tokenizer` from a file, a folder, a gzipped copy or a Hub model id."""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where a file is parsed: a no-op build never loads it
    from tokenizers import Tokenizer

from shardprep.errors import TokenizerError

_JSON_NAMES = ("tokenizer.json", "tokenizer.json.gz")


@dataclass(frozen=True)
class LoadedTokenizer:
    tokenizer: Tokenizer
    source: str
    path: str
    sha256: str
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    def special_id(self, key: str) -> int | None:
        """Id of `bos_token` / `eos_token` / `pad_token` as tokenizer_config.json names it."""
        tok = self.config.get(key)
        if isinstance(tok, dict):
            tok = tok.get("content")
        if not isinstance(tok, str):
            return None
        return self.tokenizer.token_to_id(tok)

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "path": self.path,
            "sha256": self.sha256,
            "vocab_size": self.vocab_size,
            "bos_id": self.special_id("bos_token"),
            "eos_id": self.special_id("eos_token"),
            "pad_id": self.special_id("pad_token"),
        }


# The largest real tokenizer.json files are about 35 MB (256k-token vocabularies); a file that
# is, or decompresses to, more than this is refused before it is held in memory (a 6 MB .gz can
# expand to gigabytes).
MAX_TOKENIZER_BYTES = 256 * 1024 * 1024


def read_tokenizer_json(path: Path) -> bytes:
    """The bytes of a tokenizer.json, decompressing a `.gz`: at most MAX_TOKENIZER_BYTES, and a
    damaged or non-gzip `.gz` is a TokenizerError naming the file."""
    too_large = TokenizerError(
        f"{path}: the tokenizer file {'decompresses to' if path.name.endswith('.gz') else 'is'} "
        f"more than {MAX_TOKENIZER_BYTES // (1024 * 1024)} MiB; no tokenizer.json is that large"
    )
    try:
        if not path.name.endswith(".gz"):
            if path.stat().st_size > MAX_TOKENIZER_BYTES:
                raise too_large
            return path.read_bytes()
        with gzip.open(path, "rb") as f:
            data = f.read(MAX_TOKENIZER_BYTES + 1)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        cause = (
            "it is truncated (the gzip stream ends early)"
            if isinstance(exc, EOFError)
            else f"it is not a valid gzip file ({exc})"
        )
        raise TokenizerError(f"cannot read {path}: {cause}") from exc
    except OSError as exc:  # BadGzipFile is an OSError too: caught above
        raise TokenizerError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_TOKENIZER_BYTES:
        raise too_large
    return data


def _read_config(path: Path) -> dict[str, Any]:
    """tokenizer_config.json as a JSON object; anything else is a TokenizerError naming it."""
    try:
        if path.stat().st_size > MAX_TOKENIZER_BYTES:
            raise TokenizerError(
                f"{path} is more than {MAX_TOKENIZER_BYTES // (1024 * 1024)} MiB; no "
                "tokenizer_config.json is that large"
            )
        config = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise TokenizerError(
            f"cannot read {path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start})"
        ) from exc
    except json.JSONDecodeError as exc:
        raise TokenizerError(f"cannot read {path}: {exc}") from exc
    except OSError as exc:
        raise TokenizerError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not isinstance(config, dict):
        raise TokenizerError(
            f"cannot read {path}: it holds a JSON {type(config).__name__}, not an object of "
            "settings (chat_template, bos_token, ...)"
        )
    return config


def _find_in_folder(folder: Path) -> Path | None:
    for name in _JSON_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def _resolve_hub(model_id: str) -> Path:
    """tokenizer.json of a Hub model: from the huggingface_hub cache under HF_HUB_OFFLINE,
    otherwise downloaded (or found current); a TokenizerError says why not."""
    from shardprep import hub_access

    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - huggingface_hub comes with datasets
        raise TokenizerError(
            f"tokenizer {model_id!r}: a Hub model id needs huggingface_hub (pip install "
            "huggingface_hub), or point `tokenizer:` at a folder with tokenizer.json"
        ) from None

    def cached() -> Path | None:
        try:
            return Path(hf_hub_download(model_id, "tokenizer.json", local_files_only=True))
        except Exception:
            return None

    if hub_access.offline():
        found = cached()
        if found is None:
            raise TokenizerError(
                f"tokenizer {model_id!r} is neither a local path nor a Hub model found in the "
                "huggingface_hub cache (HF_HUB_OFFLINE is set: download it once with network "
                "access, or point `tokenizer:` at a folder with tokenizer.json)"
            )
        return found
    # Without this, huggingface_hub retries an unreachable Hub for a minute and more.
    reason = hub_access.unreachable()
    if reason is not None:
        where = hub_access.unreachable_message(f"tokenizer {model_id!r}", reason)
        if cached() is not None:
            raise TokenizerError(
                f"{where}; the huggingface_hub cache holds it: {hub_access.OFFLINE_HINT}"
            )
        raise TokenizerError(
            f"{where}, and the huggingface_hub cache does not hold it: download it once with "
            "network access, or point `tokenizer:` at a folder with tokenizer.json"
        )
    try:
        return Path(hf_hub_download(model_id, "tokenizer.json"))
    except Exception as exc:
        raise TokenizerError(
            f"tokenizer {model_id!r} is neither a local path nor a Hub model whose tokenizer.json "
            f"could be downloaded ({type(exc).__name__}: {exc}); check the model id, or point "
            "`tokenizer:` at a folder with tokenizer.json"
        ) from exc


def resolve_tokenizer_path(spec: str, *, base_dir: Path | None = None) -> Path:
    """Turn a recipe's `tokenizer:` value into the path of a tokenizer.json(.gz)."""
    candidate = Path(spec).expanduser()
    if not candidate.is_absolute() and base_dir is not None:
        candidate = base_dir / candidate
    if candidate.is_file():
        return candidate
    if candidate.is_dir():
        found = _find_in_folder(candidate)
        if found is None:
            raise TokenizerError(
                f"tokenizer folder {candidate} holds no tokenizer.json (or tokenizer.json.gz)"
            )
        return found
    if "/" in spec and not spec.startswith((".", "/", "~")) and spec.count("/") == 1:
        return _resolve_hub(spec)
    raise TokenizerError(f"tokenizer path {candidate} does not exist")


def local_tokenizer_files(spec: str, *, base_dir: Path | None = None) -> list[Path] | None:
    """Every local file whose presence or bytes decide what `spec` loads (resolve_tokenizer_path
    and the tokenizer_config.json beside it; for a folder, each name it would pick), absolute;
    None when `spec` is not a local file or folder (a Hub id resolves through the cache)."""
    candidate = Path(spec).expanduser()
    if not candidate.is_absolute() and base_dir is not None:
        candidate = base_dir / candidate
    candidate = candidate.absolute()
    if candidate.is_file():
        return [candidate, candidate.parent / "tokenizer_config.json"]
    if candidate.is_dir():
        return [*(candidate / n for n in _JSON_NAMES), candidate / "tokenizer_config.json"]
    return None


def load_tokenizer(spec: str, *, base_dir: Path | None = None) -> LoadedTokenizer:
    # Absolute but not resolved: in the HF cache tokenizer.json is a symlink into blobs/, and its
    # tokenizer_config.json is the one beside the link, not beside the blob it points to.
    path = resolve_tokenizer_path(spec, base_dir=base_dir).absolute()
    st = path.stat()
    cfg = path.parent / "tokenizer_config.json"
    cfg_stamp = (cfg.stat().st_size, cfg.stat().st_mtime_ns) if cfg.is_file() else None
    loaded = _load_cached(str(path), st.st_size, st.st_mtime_ns, cfg_stamp)
    return LoadedTokenizer(loaded.tokenizer, spec, loaded.path, loaded.sha256, loaded.config)


@functools.lru_cache(maxsize=8)
def _load_cached(
    path_s: str, size: int, mtime_ns: int, cfg_stamp: tuple[int, int] | None
) -> LoadedTokenizer:
    """Parsing a real tokenizer.json takes most of a second: once per process per file version."""
    path = Path(path_s)
    raw = read_tokenizer_json(path)
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_str(raw.decode("utf-8"))
    except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
        raise TokenizerError(f"cannot load tokenizer {path}: {exc}") from exc
    config: dict[str, Any] = {}
    cfg_path = path.parent / "tokenizer_config.json"
    if cfg_path.is_file():
        config = _read_config(cfg_path)
    return LoadedTokenizer(
        tokenizer=tok,
        source=path_s,
        path=path_s,
        sha256=hashlib.sha256(raw).hexdigest(),
        config=config,
    )
