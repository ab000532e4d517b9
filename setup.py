"""Package metadata for keras_mtmm."""

from setuptools import find_packages, setup

TEST = [
    "pytest>=8,<10",
    "pytest-xdist>=3",
    "pytest-randomly>=3.15",
    "pandas>=2",
    "matplotlib>=3.8",
    "hypothesis>=6.100",
    "keras-tuner[bayesian]>=1.4.7,<2",
]

setup(
    name="keras_mtmm",
    version="0.1.0",
    description="Multi-task, multi-modal deep learning on Keras 3 / TensorFlow, served by TF Serving.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["keras_mtmm", "keras_mtmm.*"]),
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.10,<4",
        "tensorflow-hub>=0.16,<0.17",
        "tensorboard>=2.21,<2.22",  # TensorBoard logs (tensorflow 2.21 no longer pulls it in)
        "numpy>=1.26,<3",
        "pyyaml>=6,<7",
        # CSV and Parquet files are read by pyarrow's C++ readers (keras_mtmm.data.csv_fast, .parquet).
        "pyarrow>=20",
        # models.config and warmup records are TF Serving protos (and the gRPC client's stubs).
        "tensorflow-serving-api>=2.21,<2.22",
    ],
    extras_require={
        # pandas: the DataFrame path of `data.source: memory` is tested, not required.
        # pytest-xdist: the suite is mostly single-threaded graph tracing; 2 workers halve it on 2 cores.
        # matplotlib: the run report's figures (`mtmm report`), tested by the default suite.
        # hypothesis: the property-based fuzz of the config loader and the CSV reader (tests/reliability).
        # pytest-randomly: every run takes a new test order (printed as --randomly-seed=N), so an
        # order-dependent test shows up instead of hiding.
        "test": TEST,
        "dev": [*TEST, "ruff>=0.6"],
        # keras-tuner: `mtmm tune`'s search (tested by the default suite); imported lazily. [bayesian]: scipy,
        # for KerasTuner's Gaussian process (`tune.algorithm: bayesian`).
        "tune": ["keras-tuner[bayesian]>=1.4.7,<2"],
        # The HTML run report (`mtmm report`, and at the end of `mtmm train`); imported lazily.
        "report": ["matplotlib>=3.8"],
        # Peers measured side by side in benchmarks/ (imported lazily there).
        "bench": ["deepctr==0.9.4"],
    },
    entry_points={"console_scripts": ["mtmm=keras_mtmm.cli:main"]},
)
