"""A test that builds random models should not shift the random state the tests after it start from
(several tests initialise small models from the global RNG and were tuned in the suite's order)."""
import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def keep_global_rng():
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    yield
    torch.set_rng_state(states[0])
    np.random.set_state(states[1])
    random.setstate(states[2])
