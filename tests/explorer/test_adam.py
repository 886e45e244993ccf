"""LightAdam is torch.optim.Adam's update without its import cost: same bits, same state."""

import pytest
import torch

from explorer.core.adam import LightAdam


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def _train(model: torch.nn.Module, optimizer, steps: int, seed: int, lr_of=None) -> None:
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        if lr_of is not None:
            lr_of(optimizer, 1e-2 * (1.0 - step / (2 * steps)))
        x = torch.randn(32, 6, generator=gen)
        loss = model(x).pow(2).mean() + model(x).sin().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _set_torch_lr(optimizer, lr):
    optimizer.param_groups[0]["lr"] = lr


def _set_light_lr(optimizer, lr):
    optimizer.lr = lr


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_bit_identical_to_torch_adam_with_a_changing_lr():
    ours, theirs = _model(0), _model(0)
    _train(ours, LightAdam(ours.parameters(), lr=1e-2, eps=1e-5), 40, 1, _set_light_lr)
    _train(theirs, torch.optim.Adam(theirs.parameters(), lr=1e-2, eps=1e-5), 40, 1,
           _set_torch_lr)
    assert _same(ours, theirs)
    assert not _same(ours, _model(0))  # it did train


@pytest.mark.parametrize("direction", ["ours_to_torch", "torch_to_ours"])
def test_state_dicts_load_across_implementations(direction):
    first, second = _model(3), _model(3)
    first_opt = (LightAdam(first.parameters(), lr=3e-3) if direction == "ours_to_torch"
                 else torch.optim.Adam(first.parameters(), lr=3e-3))
    _train(first, first_opt, 10, 2)
    second.load_state_dict(first.state_dict())
    second_opt = (torch.optim.Adam(second.parameters(), lr=1.0) if direction == "ours_to_torch"
                  else LightAdam(second.parameters(), lr=1.0))
    second_opt.load_state_dict(first_opt.state_dict())
    _train(first, first_opt, 10, 5)
    _train(second, second_opt, 10, 5)
    assert _same(first, second)


def test_a_saved_state_for_another_model_is_a_clear_error():
    opt = LightAdam(_model(0).parameters())
    other = torch.nn.Linear(6, 3)
    saved = torch.optim.Adam(other.parameters()).state_dict()
    with pytest.raises(ValueError, match="2 parameters saved, the model has 4"):
        opt.load_state_dict(saved)
    wrong = _model(0)
    wrong_opt = LightAdam(wrong.parameters())
    _train(wrong, wrong_opt, 1, 0)
    state = wrong_opt.state_dict()
    state["state"][0]["exp_avg"] = torch.zeros(2, 2)
    with pytest.raises(ValueError, match=r"parameter 0 exp_avg has shape \(2, 2\)"):
        opt.load_state_dict(state)


def test_a_parameter_without_gradient_waits_as_in_torch_adam():
    """A head used only from step 5 on keeps still before and counts its own steps."""

    def run(make_optimizer):
        torch.manual_seed(7)
        trunk, late = torch.nn.Linear(4, 4), torch.nn.Linear(4, 1)
        params = [*trunk.parameters(), *late.parameters()]
        optimizer = make_optimizer(params)
        gen = torch.Generator().manual_seed(0)
        for step in range(12):
            h = trunk(torch.randn(8, 4, generator=gen))
            loss = h.pow(2).mean() + (late(h).mean() if step >= 5 else 0.0)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return params, optimizer.state_dict()

    ours, our_state = run(lambda p: LightAdam(p, lr=1e-2))
    theirs, their_state = run(lambda p: torch.optim.Adam(p, lr=1e-2))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    assert [float(s["step"]) for s in our_state["state"].values()] == [12, 12, 7, 7]
    assert [float(s["step"]) for s in their_state["state"].values()] == [12, 12, 7, 7]
