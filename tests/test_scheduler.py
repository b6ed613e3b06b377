import pytest
import torch

from mobile_sdk.config import SchedulerConfig
from mobile_sdk.errors import ConfigError
from mobile_sdk.scheduler import RectifiedFlowScheduler


def test_default_is_four_uniform_steps():
    s = RectifiedFlowScheduler()
    assert s.timesteps == [1.0, 0.75, 0.5, 0.25]
    assert s.step_sizes == [-0.25] * 4


def test_shift_keeps_endpoints_and_moves_steps_to_high_noise():
    s = RectifiedFlowScheduler(SchedulerConfig(shift=3.0))
    s.set_timesteps(8)
    assert s.timesteps[0] == 1.0 and s.sigmas[-1] == 0.0
    assert sum(s.step_sizes) == pytest.approx(-1.0)
    assert s.timesteps[4] > 0.5


def test_fixed_timesteps_for_distilled_models():
    s = RectifiedFlowScheduler(SchedulerConfig(timesteps=(1.0, 0.9, 0.6, 0.3)))
    assert s.timesteps == [1.0, 0.9, 0.6, 0.3]
    s.set_timesteps(2)  # other step counts fall back to uniform
    assert s.timesteps == [1.0, 0.5]
    with pytest.raises(ConfigError, match="strictly descending"):
        s.set_timesteps(2, timesteps=[0.5, 0.9])


def test_step_is_euler_on_the_velocity():
    s = RectifiedFlowScheduler()
    x0, noise = torch.randn(2, 3), torch.randn(2, 3)
    x = noise
    for t in s.timesteps:  # the exact velocity brings noise to the data in any number of steps
        x = s.step(RectifiedFlowScheduler.velocity(x0, noise), t, x).prev_sample
    torch.testing.assert_close(x, x0)
    xt = RectifiedFlowScheduler.add_noise(x0, noise, torch.tensor([0.25, 0.25]))
    torch.testing.assert_close(xt, 0.75 * x0 + 0.25 * noise)


def test_unknown_timestep_is_an_error():
    with pytest.raises(ConfigError, match="not one of the scheduler's timesteps"):
        RectifiedFlowScheduler().step(torch.zeros(1), 0.33, torch.zeros(1))
