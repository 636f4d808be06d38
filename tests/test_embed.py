"""Embedding backends inside Spark: SSCD (the real models), VGG16 with weights built here, any ONNX model."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from dedup.devkit.synth import jpeg_bytes, product_image
from dedup.embed import cached_embedder, load_embedder, resize_square, stage_model_files, task_device
from dedup.features import compute_features
from dedup.settings import EmbedSettings, default_table
from dedup.vectors import from_bytes, stack


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    """An original, an edited copy of it (cropped and re-encoded) and three other products."""
    photo = product_image(5).resize((224, 224))
    cropped = photo.crop((12, 10, 214, 216)).resize((224, 224))
    others = {f"other{i}": jpeg_bytes(product_image(40 + i).resize((224, 224))) for i in range(3)}
    return {"original": jpeg_bytes(photo), "copy": jpeg_bytes(cropped, quality=70), **others, "broken": b"\xff\xd8\xff"}


def _embed_in_spark(spark, images: dict[str, bytes], settings: EmbedSettings) -> dict[str, dict]:
    frame = spark.createDataFrame(
        [(key, f"http://x/{key}", data) for key, data in images.items()],
        "productId string, image_url string, image_bytes binary",
    ).repartition(2)
    rows = compute_features(frame, default_table("features"), settings).collect()
    return {row["productId"]: row.asDict() for row in rows}


def _cosine(rows: dict[str, dict], a: str, b: str, dim: int) -> float:
    return float(from_bytes(rows[a]["embedding"], dim) @ from_bytes(rows[b]["embedding"], dim))


@pytest.mark.parametrize("backend", ["sscd", "sscd_distilled"])
def test_sscd_inside_spark_finds_the_edited_copy(spark, images, backend):
    settings = default_table("embed", backend=backend, device="auto", batch_size=2, dtype="float32")
    rows = _embed_in_spark(spark, images, settings)
    assert rows["broken"]["feature_status"] == "failed" and rows["broken"]["embedding"] is None
    vectors = stack([rows[k]["embedding"] for k in images if k != "broken"], 512)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    copy = _cosine(rows, "original", "copy", 512)
    others = [_cosine(rows, "original", f"other{i}", 512) for i in range(3)]
    assert copy > max(others) + 0.2, (copy, others)  # a synthetic drawing: margins, not absolutes
    # the same model outside Spark gives the same vectors: the UDF adds no preprocessing of its own
    local = load_embedder(default_table("embed", backend=backend, device="cpu"))
    pixels = np.asarray(Image.open(io.BytesIO(images["copy"])).convert("RGB"))
    direct = local.embed(resize_square(pixels, 224)[None])[0]
    assert float(direct @ from_bytes(rows["copy"]["embedding"], 512)) > 0.999


def test_a_noisy_copy_is_embedded_denoised_and_clean_photos_as_they_are(spark, images):
    """At the default ``embed.denoise_from`` a copy with heavy grain is denoised before the model sees
    it, which brings it back near its original; clean images are embedded exactly as before."""
    photo = np.asarray(product_image(5).resize((224, 224)))
    grain = np.random.default_rng(1).normal(0, 12, photo.shape)
    noisy = {"noisy": jpeg_bytes(Image.fromarray(np.clip(photo + grain, 0, 255).astype(np.uint8)), quality=95)}
    batch = {**images, **noisy}
    settings = default_table("embed", backend="sscd_distilled", dtype="float32")
    assert settings.denoise_from > 0  # the default
    denoised = _embed_in_spark(spark, batch, settings)
    plain = _embed_in_spark(spark, batch, dataclasses.replace(settings, denoise_from=0.0))
    before, after = _cosine(plain, "original", "noisy", 512), _cosine(denoised, "original", "noisy", 512)
    assert after > before + 0.2 and after > 0.7, (before, after)
    for key in ("original", "copy", "other0", "other1", "other2"):
        assert denoised[key]["embedding"] == plain[key]["embedding"], key


def test_float16_storage_halves_the_bytes(spark, images):
    rows = _embed_in_spark(spark, images, default_table("embed", backend="sscd_distilled", dtype="float16"))
    assert len(rows["original"]["embedding"]) == 2 * 512
    assert _cosine(rows, "original", "copy", 512) > _cosine(rows, "original", "other0", 512) + 0.2


@pytest.fixture(scope="module")
def vgg16_weights(tmp_path_factory) -> str:
    """VGG16 with Keras' random initial weights, saved the way a cluster would stage a weights file."""
    tf = pytest.importorskip("tensorflow")
    path = tmp_path_factory.mktemp("vgg16") / "vgg16-test.weights.h5"
    tf.keras.utils.set_random_seed(3)
    tf.keras.applications.VGG16(weights=None).save_weights(str(path))
    return str(path)


@pytest.mark.slow
def test_vgg16_fc2_inside_spark_with_a_staged_weights_file(spark, images, vgg16_weights):
    settings = stage_model_files(
        spark, default_table("embed", backend="vgg16", weights=vgg16_weights, batch_size=4, dtype="float32")
    )
    rows = _embed_in_spark(spark, {k: images[k] for k in ("original", "copy", "other0")}, settings)
    vectors = stack([row["embedding"] for row in rows.values()], 4096)
    assert vectors.shape == (3, 4096)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    # fc2 of the same weights computed here, outside Spark, from the same pixels
    local = load_embedder(default_table("embed", backend="vgg16", weights=vgg16_weights, device="cpu"))
    pixels = np.asarray(Image.open(io.BytesIO(images["original"])).convert("RGB"))
    direct = local.embed(resize_square(pixels, 224)[None])[0]
    assert float(direct @ from_bytes(rows["original"]["embedding"], 4096)) > 0.999


@pytest.fixture(scope="module")
def mean_colour_onnx(tmp_path_factory) -> str:
    """A float NCHW ONNX model whose 'embedding' is each channel's mean: simple to check by hand."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["pixels"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["embedding"]),
        ],
        "mean_colour",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 3, 64, 64])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("onnx") / "mean_colour.onnx"
    onnx.save(model, str(path))
    return str(path)


def test_any_onnx_model_by_path(spark, mean_colour_onnx):
    red = jpeg_bytes(Image.new("RGB", (100, 80), (200, 30, 30)), quality=95)
    settings = stage_model_files(
        spark, default_table("embed", backend="onnx", model_path=mean_colour_onnx, batch_size=8, dtype="float32")
    )
    rows = _embed_in_spark(spark, {"red": red}, settings)
    expected = (np.array([200, 30, 30]) / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    expected /= np.linalg.norm(expected)
    assert np.allclose(from_bytes(rows["red"]["embedding"], 3), expected, atol=0.02)
    onnx_settings = default_table("embed", backend="onnx", model_path=mean_colour_onnx)
    assert load_embedder(onnx_settings).input_size == 64  # read off the model


def test_bad_backend_settings_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match=r"embed\.backend must be one of"):
        load_embedder(default_table("embed", backend="resnet"))
    with pytest.raises(ValueError, match="model_path"):
        load_embedder(default_table("embed", backend="onnx", model_path=""))
    with pytest.raises(FileNotFoundError):
        load_embedder(default_table("embed", backend="onnx", model_path=str(tmp_path / "missing.onnx")))


def test_model_is_loaded_once_per_process_and_cpu_outside_spark_resources():
    settings = default_table("embed", backend="sscd_distilled", device="auto", batch_size=8)
    assert cached_embedder(settings) is cached_embedder(dataclasses.replace(settings, batch_size=64, region=False))
    assert cached_embedder(settings) is not cached_embedder(dataclasses.replace(settings, device="cpu"))
    assert task_device("auto") == ("cpu", 0)  # no Spark task, no GPU assigned
    assert task_device("cpu") == ("cpu", 0)
