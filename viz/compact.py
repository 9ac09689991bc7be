"""A compact, numpy-only copy of a :class:`interir.Trace` that the app keeps per session.

Images are stored as 8-bit RGB, the solver's variables as float16, the binary masks bit-packed;
everything a panel needs (slider, selectors, report) is read from here, never from the model.
A 512×512 image traced by the tiny model takes about 15 MB.
"""
from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from interir.trace import bundle_arrays, jsonable, trace_summary, write_bundle

__all__ = ["CompactTrace", "LayerName", "parse_layer", "compact_trace", "to_uint8_hwc"]


def to_uint8_hwc(img: Any) -> np.ndarray:
    """torch (1,3,H,W)/(3,H,W) or numpy (H,W,3) float in [0,1] (or uint8) -> uint8 (H,W,3)."""
    if hasattr(img, "detach"):  # torch tensor, without importing torch here
        t = img.detach().cpu()
        t = t[0] if t.dim() == 4 else t
        if t.dim() == 3 and t.shape[0] == 3 and t.shape[-1] != 3 and t.is_floating_point():
            # in torch (both cores, in place): the same float32 operations as the numpy path below
            import torch  # already loaded: img is a tensor

            t = t.float().nan_to_num(0.0).clamp_(0.0, 1.0).mul_(255.0).add_(0.5)
            return t.to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
        img = t.float().numpy()
    arr = np.asarray(img)
    if arr.ndim == 4:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = np.transpose(arr, (1, 2, 0))
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    return (np.clip(np.nan_to_num(arr.astype(np.float32)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@dataclass(frozen=True)
class LayerName:
    """A recorded explainable conv's name split generically into group and remainder.

    ``blocks.0.resm.ep_v.conv2`` -> group ``blocks.0``, rest ``resm.ep_v.conv2``;
    ``final_resm.ep_v.conv2`` -> group ``final_resm``, rest ``ep_v.conv2``.
    """

    full: str
    group: str
    rest: str
    index: int | None  # the integer in the group (``blocks.3`` -> 3), if any


_GROUP = re.compile(r"^([A-Za-z_]\w*)\.(\d+)(?:\.(.*))?$")


def parse_layer(name: str) -> LayerName:
    """Split a module name into its group prefix (``<list>.<int>`` or first token) and the rest."""
    m = _GROUP.match(name)
    if m:
        return LayerName(name, f"{m.group(1)}.{m.group(2)}", m.group(3) or "", int(m.group(2)))
    head, _, rest = name.partition(".")
    return LayerName(name, head, rest, None)


@dataclass
class CompactTrace:
    """What the explorer keeps of one traced image (see module docstring)."""

    input: np.ndarray                      # (H, W, 3) uint8: the image the model saw
    output: np.ndarray                     # (H, W, 3) uint8: the restored image (clamped)
    images: np.ndarray                     # (n+1, H, W, 3) uint8 early-exit decodes
    fidelity: np.ndarray                   # (n+1,) float64
    step_norm: np.ndarray                  # (n+1,) float64
    I: np.ndarray                          # (n+1, C, h, w) float16
    A: np.ndarray                          # (n+1, C, h, h) float16
    B: np.ndarray                          # (n+1, C, w, w) float16
    Lambda: np.ndarray                     # (n+1, C, h, w) float16
    layers: list[str]                      # recorded explainable convs, in model order
    mask_bits: dict[str, np.ndarray]       # name -> np.packbits of the (C, h, w) mask, in the
    mask_shape: dict[str, tuple[int, int, int]]   # order of mask_order ("chw" unless named)
    mask_rate: dict[str, np.ndarray]       # name -> (C,) fraction of positions with M = 1
    attention: dict[str, np.ndarray]       # name -> (C, K, K) float32
    tau: dict[str, np.ndarray]             # name -> (C,) float32
    embedding: np.ndarray                  # (D,) float32
    config: dict[str, Any]
    summary: dict[str, Any]
    reference: np.ndarray | None = None    # (H, W, 3) uint8 clean reference, if known
    psnr: np.ndarray | None = None         # (n+1,) per-iteration PSNR vs reference
    ssim: np.ndarray | None = None         # (n+1,) per-iteration SSIM vs reference (or None)
    input_psnr: float | None = None
    input_ssim: float | None = None
    notes: list[str] = field(default_factory=list)
    name: str = "image"
    # name -> "hwc" where the bits were packed in (h, w, C) order (a channels-last mask, packed as
    # it lies in memory: no transposed copy of it at restore time); absent: (C, h, w)
    mask_order: dict[str, str] = field(default_factory=dict)
    # derived views (figures, spectra, PCA bases), computed once: only through memo()/forget()
    _memo: dict[Any, Any] = field(default_factory=dict, repr=False)
    _memo_lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per key for this trace (thread-safe); later calls return the value."""
        with self._memo_lock:
            if key not in self._memo:
                self._memo[key] = compute()
            return self._memo[key]

    def forget(self, key: Any) -> None:
        """Drop one memoised value (e.g. a figure that depends on metrics that changed)."""
        with self._memo_lock:
            self._memo.pop(key, None)

    # ------------------------------------------------------------------ basic properties
    @property
    def n_iter(self) -> int:
        """Number of recorded iterations (n + 1)."""
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        return int(self.A.shape[1])

    @property
    def has_masks(self) -> bool:
        return bool(self.layers)

    def nbytes(self) -> int:
        """Approximate memory held by the arrays."""
        total = sum(a.nbytes for a in (self.input, self.output, self.images, self.I, self.A,
                                       self.B, self.Lambda, self.embedding))
        total += sum(a.nbytes for a in self.mask_bits.values())
        if self.reference is not None:
            total += self.reference.nbytes
        return int(total)

    def mask(self, name: str) -> np.ndarray:
        """The (C, h, w) binary mask of one layer, unpacked to bool."""
        if name not in self.mask_bits:
            raise KeyError(f"no recorded mask named {name!r}")
        c, h, w = shape = self.mask_shape[name]
        bits = np.unpackbits(self.mask_bits[name], count=int(np.prod(shape))).view(bool)
        if self.mask_order.get(name, "chw") == "hwc":
            return np.ascontiguousarray(bits.reshape(h, w, c).transpose(2, 0, 1))
        return bits.reshape(shape)

    def groups(self) -> dict[str, list[str]]:
        """Layer names grouped by prefix (``blocks.0``, ..., ``final_resm``), in model order."""
        out: dict[str, list[str]] = {}
        for name in self.layers:
            out.setdefault(parse_layer(name).group, []).append(name)
        return out

    def with_reference(self, reference: np.ndarray | None, all_ssim: bool = False) -> "CompactTrace":
        """Attach (or drop) a clean reference and compute metrics against it.

        PSNR is computed at once for every iteration; SSIM (about 10× slower) only with
        ``all_ssim`` — otherwise :meth:`complete_ssim` computes it when first needed.
        """
        from interir.metrics import psnr  # numpy-only metrics; no model involved

        self.reference = None if reference is None else to_uint8_hwc(reference)
        self.psnr = self.ssim = None
        self.input_psnr = self.input_ssim = None
        self.forget("curves_fig")
        if self.reference is None:
            return self
        if self.reference.shape != self.input.shape:
            raise ValueError(f"reference is {self.reference.shape[1]}x{self.reference.shape[0]}, "
                             f"image is {self.input.shape[1]}x{self.input.shape[0]}")
        self.psnr = np.array([psnr(im, self.reference) for im in self.images], dtype=np.float64)
        self.input_psnr = float(psnr(self.input, self.reference))
        if min(self.input.shape[:2]) >= 11:  # SSIM's 11×11 window
            self.ssim = np.full(self.n_iter, np.nan)
            if all_ssim:
                self.complete_ssim()
        return self

    def complete_ssim(self, last_only: bool = False) -> None:
        """Compute the SSIM of the input and of every iteration not computed yet (only of the
        output with ``last_only``); no-op without a reference or for images under 11 px."""
        if self.ssim is None or self.reference is None:
            return
        from interir.metrics import ssim

        if self.input_ssim is None:
            self.input_ssim = float(ssim(self.input, self.reference))
        missing = np.nonzero(np.isnan(self.ssim))[0]
        if last_only:
            missing = missing[missing == self.n_iter - 1]
        for k in missing:
            self.ssim[k] = ssim(self.images[k], self.reference)
        if missing.size:
            self.forget("curves_fig")

    # ------------------------------------------------------------------ export
    def to_arrays(self) -> dict[str, np.ndarray]:
        """The bundle layout of :meth:`interir.Trace.to_arrays` (:func:`interir.trace.bundle_arrays`).

        Values are stored at display precision: images 8-bit (returned as float32 in [0,1],
        shape (1,3,H,W)), the solver's variables float16 (returned as float32).
        """
        def chw(img: np.ndarray) -> np.ndarray:
            return (img.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]

        its = [{"image": chw(self.images[k]),
                **{key: getattr(self, key)[k][None].astype(np.float32) for key in ("I", "A", "B", "Lambda")}}
               for k in range(self.n_iter)]
        out = bundle_arrays(chw(self.input), chw(self.output), self.embedding.astype(np.float32), its,
                            self.fidelity, self.step_norm,
                            {n: self.mask(n)[None].astype(np.uint8) for n in self.layers},
                            {n: self.attention[n][None] for n in self.layers},
                            {n: self.tau[n] for n in self.layers})
        if self.reference is not None:
            out["reference"] = chw(self.reference)
        return out

    def summary_dict(self) -> dict[str, Any]:
        """The trace's JSON summary plus what the explorer added (metrics, notes)."""
        out = dict(self.summary)
        out["image"] = {"name": self.name, "width": int(self.input.shape[1]),
                        "height": int(self.input.shape[0])}
        if self.psnr is not None:
            out["psnr"] = [float(v) for v in self.psnr]
            out["input_psnr"] = self.input_psnr
        if self.ssim is not None:
            self.complete_ssim()
            out["ssim"] = [float(v) for v in self.ssim]
            out["input_ssim"] = self.input_ssim
        out["notes"] = list(self.notes)
        out["precision"] = "images 8-bit, solver variables float16 (explorer export)"
        return out

    def save_npz(self, path: Any, half: bool = True, level: int = 1) -> None:
        """Write the bundle with :func:`interir.trace.write_bundle` (float16 solver variables,
        their stored precision; zlib level 1, ~5× faster than numpy's default)."""
        write_bundle(path, self.to_arrays(), self.summary_dict(), half=half, level=level)


def _np(t: Any, dtype: Any = np.float32) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().cpu().numpy()
    return np.asarray(t).astype(dtype, copy=False)


def _np16(t: Any) -> np.ndarray:
    """float16 numpy of a tensor or array (a torch tensor converts in torch: several times
    faster than numpy's float32 -> float16 on the CPU)."""
    if hasattr(t, "detach"):
        return t.detach().cpu().half().numpy()
    return np.asarray(t).astype(np.float16)


def _pack_mask(t: Any) -> tuple[np.ndarray, tuple[int, ...], np.ndarray, str | None]:
    """One recorded (1, C, H, W) mask: its packed bits, (C, H, W), per-channel rate, bit order
    (``"hwc"`` when it lies channels-last and is packed as it lies, else ``None``: CHW)."""
    m = (t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t))[0]
    m = m if m.dtype == bool else m != 0
    shape = tuple(int(s) for s in m.shape)
    hwc = m.transpose(1, 2, 0)
    if not m.flags.c_contiguous and hwc.flags.c_contiguous:  # channels-last: pack as it lies
        flat = hwc.reshape(-1, m.shape[0])
        bits, order = np.packbits(flat.reshape(-1)), "hwc"
        counts = flat.view(np.uint8).sum(axis=0, dtype=np.int64)  # ~2x count_nonzero(axis=)
    else:
        bits, order = np.packbits(m.reshape(-1)), None
        counts = m.reshape(m.shape[0], -1).view(np.uint8).sum(axis=1, dtype=np.int64)
    return bits, shape, (counts / max(1, m[0].size)).astype(np.float32), order


def compact_trace(trace: Any, name: str = "image", reference: np.ndarray | None = None,
                  notes: list[str] | None = None) -> CompactTrace:
    """Convert an :class:`interir.Trace` (or anything with the same attributes) to numpy."""
    its = trace.iterations
    if not its:
        raise ValueError("trace has no iterations")
    images = np.stack([to_uint8_hwc(it.image) for it in its])
    stack16 = lambda key: np.stack([_np16(getattr(it, key))[0] for it in its])  # noqa: E731
    layers = list(trace.masks.keys())
    mask_bits, mask_shape, mask_rate, mask_order = {}, {}, {}, {}
    # numpy packs and counts without the GIL: the layers on two threads (~2x on 2 cores)
    with ThreadPoolExecutor(max_workers=2) as workers:
        packed = list(workers.map(_pack_mask, (trace.masks[lname] for lname in layers)))
    for lname, (bits, shape, rate, order) in zip(layers, packed):
        mask_bits[lname], mask_shape[lname], mask_rate[lname] = bits, shape, rate
        if order is not None:
            mask_order[lname] = order
    attention = {k: _np(v)[0] for k, v in trace.attention.items()}
    tau = {k: _np(v).reshape(-1) for k, v in trace.tau.items()}
    config = dict(getattr(trace, "config", {}) or {})
    # Trace.summary()'s dict, from what we already hold (summary() re-reads every mask as float)
    summary = trace_summary(config, trace.input.shape, [it.fidelity for it in its],
                            [it.step_norm for it in its], {k: float(v.mean()) for k, v in mask_rate.items()},
                            {k: float(np.mean(v)) for k, v in tau.items()}, _np(trace.embedding).size)
    ct = CompactTrace(
        input=to_uint8_hwc(trace.input), output=to_uint8_hwc(trace.output), images=images,
        fidelity=np.array([float(it.fidelity) for it in its]),
        step_norm=np.array([float(it.step_norm) for it in its]),
        I=stack16("I"), A=stack16("A"), B=stack16("B"), Lambda=stack16("Lambda"),
        layers=layers, mask_bits=mask_bits, mask_shape=mask_shape, mask_rate=mask_rate,
        attention=attention, tau=tau, embedding=_np(trace.embedding).reshape(-1),
        config=config, summary=jsonable(summary),
        notes=list(notes or []), name=name, mask_order=mask_order)
    if reference is not None:
        ct.with_reference(reference)
    return ct
