"""Evaluation worker: genome -> MLP controller -> one episode -> fitness, position, frame.

A worker is a DEALER on the search driver's ROUTER. It announces itself with an empty result,
then answers each ``eval_task`` with one ``eval_result`` (same ids, same order). Episodes are
deterministic (HardMaze has no noise, reset seed fixed), so any worker, or a restarted one,
returns the same result for a genome: a re-evaluation after a crash changes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import zmq

from actors.evaluator_entry import EvaluatorArgs
from actors.hardmaze import TopDownRenderer, make_search_env
from explorer.core.curve import SocketSecurity
from explorer.core.wire import DropCounter, Message, WireError, decode, encode
from explorer.novelty.controller import MLPController
from explorer.novelty.protocol import KIND_EVAL_RESULT, task_schema

__all__ = ["EpisodeResult", "evaluator_main", "run_episode"]

_POLL_MS = 100
_RESET_SEED = 0


@dataclass(frozen=True)
class EpisodeResult:
    """One evaluated genome."""

    #: Episode return (sparse goal reward: > 0 only when the goal was reached).
    fitness: float
    #: Final robot position in maze units, ``(2,)``.
    position: np.ndarray
    reached: bool
    steps: int
    #: ``(H, H)`` uint8 top-down final frame, or None.
    frame: np.ndarray | None = None


def run_episode(env: gym.Env, controller: MLPController, genome: np.ndarray,
                renderer: TopDownRenderer | None = None) -> EpisodeResult:
    """Runs ``genome``'s controller for one episode (until goal or time limit)."""
    layers = controller.unpack(genome)
    obs, _ = env.reset(seed=_RESET_SEED)
    total, steps, info = 0.0, 0, {}
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(controller.act(layers, obs))
        total += float(reward)
        steps += 1
        done = terminated or truncated
    position = np.asarray(env.unwrapped.env.robot.location, np.float64)
    frame = renderer.frame(position) if renderer is not None else None
    return EpisodeResult(fitness=total, position=position,
                         reached=bool(info.get("reached_goal", False)), steps=steps, frame=frame)


def _result_message(args: EvaluatorArgs, seq: int, ids: np.ndarray,
                    results: list[EpisodeResult]) -> Message:
    n = len(results)
    arrays = {"ids": np.asarray(ids, np.int64),
              "fitness": np.array([r.fitness for r in results], np.float64).reshape(n),
              "positions": np.array([r.position for r in results], np.float64).reshape(n, 2),
              "reached": np.array([r.reached for r in results], bool).reshape(n)}
    if args.frames:
        arrays["frames"] = np.array([r.frame for r in results], np.uint8).reshape(
            n, args.frame_size, args.frame_size)
    return Message(kind=KIND_EVAL_RESULT, arrays=arrays, actor_id=args.worker_id, seq=seq,
                   env_steps=sum(r.steps for r in results),
                   meta={"incarnation": args.incarnation})


def evaluator_main(args: EvaluatorArgs) -> None:
    """Serve evaluation tasks until ``args.stop_event`` is set."""
    env = make_search_env(args.env_id, args.max_episode_steps)
    controller = MLPController(env.observation_space.shape[0], env.action_space.shape[0],
                               args.hidden_sizes, output="sigmoid")
    renderer = TopDownRenderer(env, args.frame_size) if args.frames else None
    schema = task_schema(controller.genome_size)
    dropped = DropCounter()

    def beat() -> None:
        if args.heartbeats is not None:
            args.heartbeats[args.worker_id] = time.monotonic()

    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IDENTITY, f"{args.worker_id}.{args.incarnation}".encode())
    SocketSecurity(ctx, args.curve).connect(sock)  # a client's side starts no thread
    sock.connect(args.address)
    seq = 0
    sock.send_multipart(encode(_result_message(args, seq, np.zeros(0, np.int64), [])))
    try:
        while not args.stop_event.is_set():
            beat()
            if not sock.poll(_POLL_MS):
                continue
            frames = sock.recv_multipart(copy=False)
            try:
                task = decode(frames, schema)
            except WireError as err:
                dropped.record(err)
                continue
            results = []
            for genome in task.arrays["genomes"]:
                results.append(run_episode(env, controller, genome, renderer))
                beat()
                if args.stop_event.is_set():
                    return
            seq += 1
            sock.send_multipart(encode(_result_message(args, seq, task.arrays["ids"], results)))
    finally:
        sock.close(0)
        env.close()
