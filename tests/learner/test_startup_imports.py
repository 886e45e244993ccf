"""The learner's path to its first weights stays light: no torch._dynamo, no FAISS.

Every actor waits for the learner's first weights, so what the learner imports before it
publishes is start-up time of the whole run (benchmarks/time_to_solve.py): torch.optim
imports torch._dynamo (~0.85 s of CPU) and FAISS costs ~0.1 s, and a plain run needs neither.
"""

import subprocess
import sys

CODE = """
import sys, torch
from actors.envs import make_vec_env
from explorer.core.config import load_config
from learner.algo import Learner
import learner.worker  # noqa: F401  (everything the learner process imports)

cfg = load_config("configs/quickstart.yaml", ["env.id=MiniGrid-KeyCorridorS3R1-v0"])
learner = Learner(cfg, make_vec_env(cfg.env, 2, 0).spec, torch.device("cpu"))
print("built", "torch._dynamo" in sys.modules, "faiss" in sys.modules)
"""

TRAIN = """
from tests.learner.minigrid_batches import minigrid_batch
learner.train(minigrid_batch())
print("trained", "torch._dynamo" in sys.modules, "faiss" in sys.modules)
"""


def test_building_and_training_the_learner_imports_neither_torch_dynamo_nor_faiss():
    out = subprocess.run([sys.executable, "-c", CODE + TRAIN], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split("\n")[:2] == ["built False False", "trained False False"]
