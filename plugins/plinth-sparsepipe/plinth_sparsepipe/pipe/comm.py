"""Sparse activations and their gradients between pipeline stages, over torch.distributed point-to-point.

torch.distributed.pipelining cannot carry activations whose shape changes with every batch, and a sparse tensor's
does (the number of active voxels). So every message starts with a fixed-size int64 header that gives the sizes of
what follows, and the receiver allocates from it:

    header  int64 [20]: MAGIC, kind, micro-batch, dtype, ndim, shape[0..5], stride, len(offsets), target dtype,
                        target ndim, target shape[0..1], payload bytes, 2 spare
    SPARSE  coords int32 [N, 4], feats [N, C], batch offsets int64 [B + 1], then the target (if any)
    DENSE   the tensor (e.g. [B, C] after a global pool), then the target
    GRAD    the gradient of the features (backward: coordinates never travel back)
    OBJECT  uint8 JSON bytes (per-step loss and metric sums for rank 0)

The receiver rebuilds the SparseTensor with `SparseTensor.from_tensors` (a fresh cache: kernel maps are rebuilt in
the receiving stage, as SparsePipe's runtime does). Sends are `isend` (the sender keeps computing; `Outbox` keeps
each tensor alive until its send completes); receives run ahead of need in one `Inbox` thread per source rank,
which knows from the schedule how many messages that rank will send, so a message is usually there before the
stage asks for it. A receive that waits longer than the timeout, or whose peer closed its connection (a dead
process), raises `PeerFailure` naming the peer.

Under NCCL, which moves only CUDA tensors and ignores tags, and which runs one pair's sends and receives in one
stream (so a send waiting for its receive would hold up a receive queued behind it in the other direction), the
runtime gives each direction between two neighbouring ranks a process group of its own (`make_link_groups`, used
on gloo too, so the tests run that path); OBJECT messages stay on the CPU, where the gloo back end the strategy
puts beside NCCL ("cpu:gloo,cuda:nccl") carries them with their tag.
"""

from __future__ import annotations

import json
import queue
import threading
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

import torch
import torch.distributed as dist

from ..sparse.tensor import SparseTensor

MAGIC = 0x53504950  # "SPIP"
HEADER_LEN = 20
MAX_DIMS = 6  # a dense [B, C, X, Y, Z] grid of the dense baseline has 5
# header fields
H_MAGIC, H_KIND, H_MB, H_DTYPE, H_NDIM, H_SHAPE = 0, 1, 2, 3, 4, 5
H_STRIDE, H_OFFSETS, H_TDTYPE, H_TNDIM, H_TSHAPE, H_BYTES = 11, 12, 13, 14, 15, 17
SPARSE, DENSE, GRAD, OBJECT = 1, 2, 3, 4
KIND_NAMES = {SPARSE: "activation", DENSE: "activation", GRAD: "gradient", OBJECT: "step statistics"}
TAG_FORWARD, TAG_BACKWARD, TAG_OBJECT = 11, 12, 13
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.uint8,
          torch.bool, torch.int16, torch.int8]
NO_TARGET = -1


class PeerFailure(RuntimeError):
    """A message from `peer` did not arrive: `reason` is "timeout" (the peer hangs or is too slow) or "closed"
    (its process is gone), or "protocol" (it sent something this rank did not expect)."""

    def __init__(self, peer: int, what: str, reason: str, detail: str = ""):
        self.peer, self.what, self.reason, self.detail = peer, what, reason, detail
        super().__init__(f"{what} from rank {peer}: {reason}{': ' + detail if detail else ''}")


@dataclass
class Message:
    kind: int
    micro_batch: int
    value: Any  # SparseTensor, Tensor, or a JSON object
    target: torch.Tensor | None
    nbytes: int


def _code(dtype: torch.dtype) -> int:
    try:
        return DTYPES.index(dtype)
    except ValueError:
        raise TypeError(f"cannot send tensors of dtype {dtype} between stages") from None


def _padded(shape: tuple[int, ...], what: str) -> list[int]:
    if len(shape) > MAX_DIMS:
        raise ValueError(f"{what}: at most {MAX_DIMS} dimensions can cross a stage boundary, got shape {tuple(shape)}")
    return list(shape) + [0] * (MAX_DIMS - len(shape))


def encode(kind: int, micro_batch: int, value: Any, target: torch.Tensor | None = None,
           device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """The tensors of one message, header first."""
    h = [0] * HEADER_LEN
    h[H_MAGIC], h[H_KIND], h[H_MB] = MAGIC, kind, micro_batch
    parts: list[torch.Tensor] = []
    if kind == SPARSE:
        coords, feats, stride, offsets = value.to_tensors()
        data = feats
        h[H_STRIDE], h[H_OFFSETS] = int(stride.reshape(-1)[0]), offsets.numel()
        parts = [coords.to(torch.int32).contiguous(), feats.detach().contiguous(), offsets.to(torch.int64)]
    elif kind in (DENSE, GRAD):
        data = value.detach().contiguous()
        parts = [data]
    elif kind == OBJECT:
        data = torch.frombuffer(bytearray(json.dumps(value).encode()), dtype=torch.uint8)
        parts = [data]
    else:
        raise ValueError(f"unknown message kind {kind}")
    h[H_DTYPE], h[H_NDIM] = _code(data.dtype), data.dim()
    h[H_SHAPE:H_SHAPE + MAX_DIMS] = _padded(tuple(data.shape), "tensor")
    if target is None:
        h[H_TDTYPE] = NO_TARGET
    else:
        if target.dim() > 2:
            raise ValueError(f"a target crossing a stage boundary has at most 2 dimensions, not {tuple(target.shape)}")
        h[H_TDTYPE], h[H_TNDIM] = _code(target.dtype), target.dim()
        h[H_TSHAPE:H_TSHAPE + 2] = (list(target.shape) + [0, 0])[:2]
        parts.append(target.contiguous())
    if kind == OBJECT:  # a few hundred bytes of JSON: always on the CPU, where gloo carries it beside NCCL
        device = "cpu"
    parts = [p.to(device) for p in parts]
    h[H_BYTES] = sum(p.numel() * p.element_size() for p in parts)
    return [torch.tensor(h, dtype=torch.int64, device=device), *parts]


def _wait(work, timeout_s: float, peer: int, what: str) -> None:
    try:
        work.wait(timedelta(seconds=timeout_s))
    except RuntimeError as exc:
        raise _failure(exc, peer, what, timeout_s) from None


def _failure(exc: Exception, peer: int, what: str, timeout_s: float) -> PeerFailure:
    """gloo's error as a PeerFailure. gloo words a timeout "Timed out ..." for this op, or "Application timeout
    caused pair closure" when an earlier op on the same pair timed out and closed it: both mean the peer sent
    nothing in time, not that it died."""
    text = str(exc)
    if "timed out" in text.lower() or "timeout" in text.lower():
        return PeerFailure(peer, what, "timeout", f"nothing arrived within {timeout_s:g} s")
    return PeerFailure(peer, what, "closed", _short(text))


def _short(text: str) -> str:
    """gloo's messages start with a source path in brackets; keep what a user can act on."""
    text = text.strip().splitlines()[0] if text.strip() else text
    if text.startswith("[") and "] " in text:
        text = text.split("] ", 1)[1]
    return text.split(". This is typically")[0]


def recv_message(src: int, tag: int, timeout_s: float, device: torch.device | str = "cpu",
                 what: str = "message", group=None) -> Message:
    """Receive one message from `src` (blocking, at most `timeout_s` per part)."""
    header = torch.empty(HEADER_LEN, dtype=torch.int64, device=device)
    _wait(dist.irecv(header, src, group=group, tag=tag), timeout_s, src, what)
    h = header.tolist()
    if h[H_MAGIC] != MAGIC or h[H_KIND] not in KIND_NAMES:
        raise PeerFailure(src, what, "protocol", f"malformed header {h[:3]}")
    kind, mb = h[H_KIND], h[H_MB]
    dtype, shape = DTYPES[h[H_DTYPE]], tuple(h[H_SHAPE:H_SHAPE + h[H_NDIM]])
    bufs: list[torch.Tensor] = []
    if kind == SPARSE:
        n = shape[0]
        bufs = [torch.empty((n, 4), dtype=torch.int32, device=device), torch.empty(shape, dtype=dtype, device=device),
                torch.empty(h[H_OFFSETS], dtype=torch.int64, device=device)]
    else:
        bufs = [torch.empty(shape, dtype=dtype, device=device)]
    has_target = h[H_TDTYPE] != NO_TARGET
    if has_target:
        bufs.append(torch.empty(tuple(h[H_TSHAPE:H_TSHAPE + h[H_TNDIM]]), dtype=DTYPES[h[H_TDTYPE]], device=device))
    works = [dist.irecv(b, src, group=group, tag=tag) for b in bufs]
    for w in works:
        _wait(w, timeout_s, src, what)
    target = bufs.pop() if has_target else None
    if kind == SPARSE:
        coords, feats, offsets = bufs
        value: Any = SparseTensor.from_tensors(coords, feats, h[H_STRIDE], offsets)
    elif kind == OBJECT:
        value = json.loads(bytes(bufs[0].cpu().numpy().tobytes()).decode())
    else:
        value = bufs[0]
    return Message(kind, mb, value, target, h[H_BYTES] + HEADER_LEN * 8)


class Outbox:
    """Non-blocking sends. Each message's tensors stay referenced until its isend completes; `flush` waits.
    `links` maps (dst, tag) to the process group a stream travels in (default: `group`)."""

    def __init__(self, timeout_s: float, device: torch.device | str = "cpu", group=None,
                 links: dict[tuple[int, int], Any] | None = None):
        self.timeout_s, self.device, self.group, self.links = timeout_s, device, group, links or {}
        self.pending: deque[tuple[list, list[torch.Tensor], int, str]] = deque()
        self.bytes_sent: dict[str, int] = {}

    def send(self, dst: int, tag: int, kind: int, micro_batch: int, value: Any,
             target: torch.Tensor | None = None, what: str = "message") -> int:
        tensors = encode(kind, micro_batch, value, target, self.device)
        try:
            group = self.links.get((dst, tag), self.group)
            works = [dist.isend(t, dst, group=group, tag=tag) for t in tensors]
        except RuntimeError as exc:  # gloo refuses to post on a pair the peer already closed
            raise _failure(exc, dst, what, self.timeout_s) from None
        self.pending.append((works, tensors, dst, what))
        nbytes = sum(t.numel() * t.element_size() for t in tensors)
        key = KIND_NAMES[kind]
        self.bytes_sent[key] = self.bytes_sent.get(key, 0) + nbytes
        self._reap()
        return nbytes

    def _reap(self) -> None:
        while self.pending and all(w.is_completed() for w in self.pending[0][0]):
            works, _, dst, what = self.pending.popleft()
            for w in works:
                _wait(w, self.timeout_s, dst, what)  # completed: raises only if it failed

    def flush(self) -> None:
        """Wait for every send (at most the timeout each): the receivers have taken them."""
        while self.pending:
            works, _, dst, what = self.pending.popleft()
            for w in works:
                _wait(w, self.timeout_s, dst, what)


class Inbox:
    """Receives, in order and ahead of need, the `count` messages the schedule says `src` sends this rank.

    One thread per source rank: gloo runs a receive only once both sides have posted it, so a receive posted
    early is what lets the transfer overlap this stage's compute. The thread stops after `count` messages (or the
    first failure), so no receive is left posted between epochs.
    """

    def __init__(self, src: int, tag: int, count: int, timeout_s: float, device: torch.device | str = "cpu",
                 what: str = "message", on_message: Callable[[Message], None] | None = None, group=None):
        self.src, self.tag, self.count, self.timeout_s, self.device = src, tag, count, timeout_s, device
        self.what, self.group, self.on_message = what, group, on_message
        self.queue: queue.Queue = queue.Queue()
        self.received = 0
        self.bytes_received = 0
        self.thread = threading.Thread(target=self._run, name=f"inbox-from-{src}-tag{tag}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        if torch.device(self.device).type == "cuda":  # a new thread starts on cuda:0; NCCL works on the stage's GPU
            torch.cuda.set_device(self.device)
        for _ in range(self.count):
            try:
                msg = recv_message(self.src, self.tag, self.timeout_s, self.device, self.what, self.group)
            except PeerFailure as exc:
                self.queue.put(exc)
                return
            except Exception as exc:  # noqa: BLE001 - handed to the stage thread, which raises it
                self.queue.put(_failure(exc, self.src, self.what, self.timeout_s))
                return
            self.bytes_received += msg.nbytes
            if self.on_message is not None:
                self.on_message(msg)
            self.queue.put(msg)

    def get(self, micro_batch: int | None = None, timeout_s: float | None = None) -> Message:
        """The next message (it must be for `micro_batch` when given); raises PeerFailure."""
        if self.received >= self.count:
            raise PeerFailure(self.src, self.what, "protocol", f"asked for more than the {self.count} expected")
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        try:
            # the thread's own wait times out first; this one only guards against a thread that never returns
            item = self.queue.get(timeout=timeout_s * 2 + 5)
        except queue.Empty:
            raise PeerFailure(self.src, self.what, "timeout", f"nothing arrived within {timeout_s:g} s") from None
        if isinstance(item, PeerFailure):
            raise item
        self.received += 1
        if micro_batch is not None and item.micro_batch != micro_batch:
            raise PeerFailure(self.src, self.what, "protocol",
                              f"expected micro-batch {micro_batch}, received {item.micro_batch}")
        return item

    def close(self, timeout_s: float = 5.0) -> None:
        self.thread.join(timeout=timeout_s)


def wait_all(works: list, timeout_s: float, peer: int, what: str) -> None:
    for w in works:
        _wait(w, timeout_s, peer, what)
