"""Tests for explorer.core.config (loading, overrides, round trips, error reporting) and the
registry checks that ``explorer.app.validate`` adds for runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from explorer.app.validate import load_run_config, run_config_from_dict
from explorer.core.config import (
    Config,
    ConfigError,
    LearnerConfig,
    config_from_dict,
    config_to_dict,
    format_config,
    load_config,
    save_config,
)


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(data: dict | None = None, overrides: list[str] | None = None) -> list[str]:
    """The problem lines reported for ``data`` (via config_from_dict) or ``overrides``."""
    with pytest.raises(ConfigError) as info:
        if overrides is None:
            run_config_from_dict(data or {})
        else:
            load_run_config(None, overrides)
    lines = str(info.value).splitlines()
    assert lines == info.value.problems
    return lines


def load_problems(path: Path, overrides: list[str]) -> list[str]:
    """The problem lines reported by ``load_config(path, overrides)``."""
    with pytest.raises(ConfigError) as info:
        load_run_config(path, overrides)
    return info.value.problems


# --------------------------------------------------------------------------- happy paths


def test_defaults() -> None:
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.env.id == "MiniGrid-Empty-5x5-v0"
    assert cfg.learner.model.core == "none"
    assert cfg.env.envpool_kwargs == {}


def test_round_trip_is_exact() -> None:
    cfg = load_config(
        None,
        [
            "name=pong",
            "env.id=Pong-v5",
            "env.envpool_kwargs={episodic_life: true, repeat_action_probability: 0.25}",
            "learner.value_clip_coef=0.2",
            "learner.model.core=gru",
            "learner.device=cuda:1",
            "wire.transport=tcp",
        ],
    )
    data = config_to_dict(cfg)
    assert config_from_dict(data) == cfg
    assert config_to_dict(config_from_dict(data)) == data


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    cfg = load_config(None, ["learner.adam_eps=1e-8", "env.max_episode_steps=500"])
    path = tmp_path / "nested" / "config.yaml"
    save_config(cfg, path)
    assert load_config(path) == cfg
    assert path.read_text(encoding="utf-8") == format_config(cfg)


def test_format_config_is_sorted_yaml() -> None:
    text = format_config(Config())
    top_level = [line.split(":")[0] for line in text.splitlines() if not line.startswith(" ")]
    assert top_level == sorted(top_level)
    assert "  lr: 0.0003\n" in text


def test_yaml_file_with_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
name: pong
learner:
  lr: 1e-3          # YAML 1.1 would read this as a string
  epochs: 4
  model: {kind: nature_cnn}
env:
  id: Pong-v5
  envpool_kwargs: {episodic_life: true}
""",
    )
    cfg = load_config(path, ["learner.epochs=2", "actors.num_procs=4"])
    assert cfg.name == "pong"
    assert cfg.learner.lr == pytest.approx(1e-3) and isinstance(cfg.learner.lr, float)
    assert cfg.learner.epochs == 2  # override wins over the file
    assert cfg.learner.model.kind == "nature_cnn"
    assert cfg.learner.gamma == LearnerConfig().gamma  # untouched keys keep defaults
    assert cfg.actors.num_procs == 4
    assert cfg.env.envpool_kwargs == {"episodic_life": True}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3e-4", 3e-4), ("1E5", 1e5), ("+2.5e-3", 2.5e-3), ("2.5E+2", 250.0), ("1", 1.0)],
)
def test_float_override(text: str, expected: float) -> None:
    lr = load_config(None, [f"learner.lr={text}"]).learner.lr
    assert isinstance(lr, float) and lr == expected


def test_nested_dict_override(tmp_path: Path) -> None:
    path = write(tmp_path, "env:\n  id: Pong-v5\n  envpool_kwargs: {episodic_life: true}\n")
    cfg = load_config(path, ["env.envpool_kwargs.noop_max=30", "env.envpool_kwargs.a.b=x"])
    assert cfg.env.envpool_kwargs == {"episodic_life": True, "noop_max": 30, "a": {"b": "x"}}


def test_optional_field_accepts_null() -> None:
    cfg = load_config(None, ["learner.reward_clip=1", "learner.reward_clip=null"])
    assert cfg.learner.reward_clip is None


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "# nothing yet\n")) == Config()


# --------------------------------------------------------------------------- errors


def test_unknown_key_with_suggestion() -> None:
    assert problems({"learner": {"lrr": 1e-3}}) == [
        "unknown key 'learner.lrr'; did you mean 'learner.lr'?"
    ]


def test_nested_unknown_key() -> None:
    assert problems({"learner": {"model": {"hiden_size": 32}}}) == [
        "unknown key 'learner.model.hiden_size'; did you mean 'learner.model.hidden_size'?"
    ]


def test_unknown_key_in_wrong_section_points_to_the_right_one() -> None:
    assert problems(overrides=["num_procs=4"]) == [
        "override 'num_procs=4': unknown key 'num_procs'; did you mean 'actors.num_procs'?"
    ]


def test_unknown_key_without_near_match_lists_valid_keys() -> None:
    (line,) = problems({"wire": {"zzz": 1}})
    assert line.startswith("unknown key 'wire.zzz'; valid keys: curve_keys, host, max_message_mb,")


def test_wrong_type() -> None:
    assert problems({"learner": {"lr": "abc"}}) == ["learner.lr: expected float, got 'abc' (str)"]


def test_string_is_not_coerced_to_int() -> None:
    assert problems(overrides=["actors.num_procs='3'"]) == [
        "actors.num_procs: expected int, got '3' (str)"
    ]


def test_bool_is_not_an_int() -> None:
    assert problems({"actors": {"num_procs": True}}) == [
        "actors.num_procs: expected int, got True (bool)"
    ]


def test_null_only_for_optional_fields() -> None:
    assert problems({"learner": {"gamma": None}}) == ["learner.gamma: expected float, got null"]
    assert problems({"learner": {"reward_clip": "big"}}) == [
        "learner.reward_clip: expected float or null, got 'big' (str)"
    ]


def test_section_and_dict_fields_must_be_mappings() -> None:
    assert problems({"learner": 3, "env": {"envpool_kwargs": [1]}}) == [
        "learner: expected mapping, got 3 (int)",
        "env.envpool_kwargs: expected mapping with string keys, got [1] (list)",
    ]


def test_choice_with_suggestion() -> None:
    assert problems({"learner": {"algo": "apo"}}) == [
        "learner.algo: 'apo' is not one of appo, ppo; did you mean 'appo'?"
    ]


def test_device_pattern() -> None:
    assert load_config(None, ["learner.device=cuda:3"]).learner.device == "cuda:3"
    assert problems(overrides=["learner.device=gpu:0"]) == [
        "learner.device: 'gpu:0' is not one of auto, cpu, cuda, cuda:N"
    ]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("learner.lr=0", "learner.lr: must be > 0, got 0.0"),
        ("learner.gamma=1.5", "learner.gamma: must be >= 0 and <= 1, got 1.5"),
        ("actors.num_procs=0", "actors.num_procs: must be >= 1, got 0"),
        ("wire.rollout_port=70000", "wire.rollout_port: must be >= 0 and <= 65535, got 70000"),
        ("learner.model.retrieval.memory_chunks=-1",
         "learner.model.retrieval.memory_chunks: must be >= 0, got -1"),
        ("learner.model.retrieval.memory_inserts=0",
         "learner.model.retrieval.memory_inserts: must be >= 1, got 0"),
        ("learner.clip_coef=.inf", "learner.clip_coef: must be finite, got inf"),
    ],
)
def test_range(override: str, expected: str) -> None:
    assert problems(overrides=[override]) == [expected]


def test_bad_env_id_lists_nearest() -> None:
    (line,) = problems({"env": {"id": "MiniGrid-Empty-5x5-v9"}})
    assert line.startswith("env.id: unknown env 'MiniGrid-Empty-5x5-v9'; nearest: ")
    nearest = line.split("nearest: ")[1].split(", ")
    assert len(nearest) == 3 and nearest[0] == "MiniGrid-Empty-5x5-v0"


def test_env_id_is_checked_against_the_chosen_backend() -> None:
    assert load_config(None, ["env.backend=gymnasium", "env.id=CartPole-v1"]).env.id
    (line,) = problems(overrides=["env.backend=gymnasium"])  # default id is EnvPool-only
    assert line.startswith("env.id: unknown env 'MiniGrid-Empty-5x5-v0'; nearest: ")
    assert line.endswith("(envpool knows it: set env.backend to envpool or auto)")


def test_same_tcp_ports_rejected() -> None:
    assert problems(
        overrides=["wire.transport=tcp", "wire.rollout_port=5555", "wire.weights_port=5555"]
    ) == ["wire.weights_port: must differ from wire.rollout_port (5555)"]


@pytest.mark.parametrize("override", ["learner.lr", "=3", "learner..lr=3"])
def test_bad_override_syntax(override: str) -> None:
    assert problems(overrides=[override]) == [
        f"override {override!r}: expected key=value, e.g. learner.lr=3e-4"
    ]


def test_override_into_scalar_and_bad_yaml_value() -> None:
    lines = problems(overrides=["learner.lr.x=1", "learner.lr=[1,"])
    assert lines[0] == "override 'learner.lr.x=1': learner.lr is not a mapping"
    assert lines[1].startswith("override 'learner.lr=[1,': invalid YAML value: line 1")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="config file not found") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: run\nlearner:\n  lr: [1e-3\n  gamma: 0.9\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid YAML: line ")
    assert "line 4" in message


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "learner:\n  lr: 1e-3\n  lr: 1e-4\n")
    with pytest.raises(ConfigError, match=r"line 3, column 3: duplicate key 'lr'"):
        load_config(path)


def test_file_must_hold_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"top level must be a mapping, got \[1, 2\] \(list\)"):
        load_config(write(tmp_path, "[1, 2]\n"))


def test_all_errors_reported_together(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
learner:
  lrr: 1e-3
  algo: apo
  gamma: 2
actors:
  num_procs: false
env:
  id: MiniGrid-Empty-5x5-v9
""",
    )
    lines = load_problems(path, ["learner.epochs=0", "oops"])
    assert lines[:2] == [
        "override 'oops': expected key=value, e.g. learner.lr=3e-4",
        "unknown key 'learner.lrr'; did you mean 'learner.lr'?",
    ]
    assert set(lines[2:-1]) == {
        "learner.algo: 'apo' is not one of appo, ppo; did you mean 'appo'?",
        "learner.gamma: must be >= 0 and <= 1, got 2.0",
        "learner.epochs: must be >= 1, got 0",
        "actors.num_procs: expected int, got False (bool)",
    }
    assert lines[-1].startswith("env.id: unknown env 'MiniGrid-Empty-5x5-v9'")


# --------------------------------------------------------------------------- llm_labeler


def test_labeler_needs_a_text_source_and_a_known_name() -> None:
    lines = problems(overrides=["llm_labeler.labeler=embeding"])
    assert any(line.startswith("llm_labeler.labeler: needs text.source") for line in lines)
    assert any("unknown labeler 'embeding'; did you mean 'embedding'?" in line
               for line in lines)


def test_labeler_import_path_must_name_an_importable_module() -> None:
    lines = problems(overrides=["text.source=babyai_mission",
                                "llm_labeler.labeler=no_such_pkg.mod:Labeler"])
    assert lines == ["llm_labeler.labeler: cannot find module 'no_such_pkg.mod' of "
                     "'no_such_pkg.mod:Labeler'"]


def test_external_labeler_needs_fixed_addresses_and_reward_model_is_a_choice() -> None:
    lines = problems(overrides=["text.source=babyai_mission", "llm_labeler.labeler=rules",
                                "llm_labeler.external=true", "llm_labeler.reward_model=rank"])
    assert any(line.startswith("llm_labeler.external: needs fixed") for line in lines)
    assert any("llm_labeler.reward_model" in line for line in lines)
    cfg = load_config(None, ["text.source=babyai_mission", "llm_labeler.labeler=rules",
                             "llm_labeler.backend.default=1"])
    assert cfg.llm_labeler.backend == {"default": 1}


def test_text_units_set_the_ids_per_step_on_the_wire() -> None:
    assert load_config(None, []).text.wire_units() == 0  # no text source: nothing on the wire
    assert load_config(None, ["text.source=babyai_mission"]).text.wire_units() == 1
    cfg = load_config(None, ["text.source=nethack_message", "text.units=sentences",
                             "text.max_units=3"])
    assert cfg.text.wire_units() == 3
    assert any(line.startswith("text.units") and "'sentence'" in line
               for line in problems(overrides=["text.units=sentence"]))


# --------------------------------------------------------------------------- layers and registries


def test_core_checks_the_schema_only_and_the_app_adds_registries() -> None:
    """The core imports no env or labeler registry: an unknown env id passes its schema check
    and is caught by the run checks of the app layer."""
    assert load_config(None, ["env.id=NoSuchEnv-v0"]).env.id == "NoSuchEnv-v0"
    (line,) = problems(overrides=["env.id=NoSuchEnv-v0"])
    assert line.startswith("env.id: unknown env 'NoSuchEnv-v0'")


def test_integral_floats_are_accepted_as_counts() -> None:
    cfg = load_config(None, ["total_env_steps=1e7", "actors.num_procs=2.0"])
    assert cfg.total_env_steps == 10_000_000 and isinstance(cfg.total_env_steps, int)
    assert cfg.actors.num_procs == 2 and isinstance(cfg.actors.num_procs, int)
    (line,) = problems(overrides=["total_env_steps=2.5"])
    assert line.startswith("total_env_steps: ")
    (line,) = problems(overrides=["total_env_steps=.inf"])
    assert line.startswith("total_env_steps: ")


def test_unknown_field_rule_is_an_error_not_ignored() -> None:
    from explorer.core.config import _field

    with pytest.raises(TypeError, match=r"unknown config field rule.*gte"):
        _field(1, gte=0)


def test_unknown_bonus_name_names_the_key_and_the_nearest() -> None:
    (line,) = problems(overrides=["intrinsic=[{name: rndd}]"])
    assert line.startswith("intrinsic[0].name: unknown intrinsic reward 'rndd'; "
                           "did you mean 'rnd'?")
    lines = problems(overrides=["intrinsic=[{name: rnd}, {name: nope.mod:Bonus}]"])
    assert lines == ["intrinsic[1].name: cannot import intrinsic reward 'nope.mod:Bonus': "
                     "No module named 'nope'"]


def test_unknown_text_source_names_the_key() -> None:
    (line,) = problems(overrides=["text.source=mypkg.nope:f"])
    assert line.startswith("text.source: cannot import text source 'mypkg.nope:f'")
    (line,) = problems(overrides=["text.source=nethack_mesage"])
    assert line.startswith("text.source: unknown text source 'nethack_mesage'; "
                           "did you mean 'nethack_message'?")


def test_separate_critic_with_a_core_is_one_line() -> None:
    for model in ({"core": "gru"}, {"retrieval": {"k": 3}}):
        core = model.get("core", "retrieval")
        with pytest.raises(ConfigError, match=rf"^learner\.model\.separate_critic: needs a "
                                              rf"feed-forward model, not the {core} core.*"
                                              r"separate_critic=false"):
            run_config_from_dict({"learner": {"model": {"separate_critic": True, **model}}})
