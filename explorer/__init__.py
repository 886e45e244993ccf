"""Explorer: distributed APPO/PPO training with EnvPool actors and a PyTorch learner."""
