"""Learner side of the distributed APPO/PPO trainer: models, losses and the training loop."""
