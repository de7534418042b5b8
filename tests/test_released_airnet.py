"""AirNet's released All.pth loads into the zoo's AirNet and computes the public code's output."""
from __future__ import annotations

import pytest
import torch

import zoo
from released import inputs_and_output, meta, released_state, tolerance, write_released
from zoo.released import ReleasedWeightsError


@pytest.fixture(scope="module")
def all_pth(tmp_path_factory):
    """The fixture's checkpoint written as the authors release it (a plain state_dict)."""
    return write_released("airnet", tmp_path_factory.mktemp("airnet") / "All.pth")


def test_airnet_release_matches_public_code(all_pth):
    model = zoo.load_released("airnet", all_pth, batch_size=meta("airnet")["args"]["opt.batch_size"])
    assert not model.training
    (image,), expected = inputs_and_output("airnet")
    with torch.no_grad():
        ours = model(image)
    difference = (ours - expected).abs().max().item()
    print(f"airnet: max difference {difference:.2e}")
    assert difference <= tolerance(expected)


def test_every_public_tensor_fills_one_zoo_tensor(all_pth):
    state = released_state("airnet")
    model = zoo.load_released("airnet", all_pth)  # batch_size defaults to All.pth's 5
    ours = model.state_dict()
    assert len(ours) == len(state) == len(meta("airnet")["tensors"])
    assert torch.equal(ours["queue"], state["E.E.queue"]) and ours["queue"].shape == (256, 1280)
    assert torch.equal(ours["key_encoder.mlp.2.weight"], state["E.E.encoder_k.mlp.2.weight"])
    assert torch.equal(ours["restorer.groups.4.conv.weight"], state["R.body.4.body.5.weight"])
    assert torch.equal(ours["restorer.body_end.bias"], state["R.body.5.bias"])


def test_wrong_batch_size_names_the_queue_length(all_pth):
    with pytest.raises(ReleasedWeightsError) as error:
        zoo.load_released("airnet", all_pth, batch_size=3)
    message = str(error.value)
    assert "queue: file (256, 1280), model (256, 768)" in message
    assert "queue holds 1280 keys" in message and "pass batch_size=5" in message


def test_non_positive_batch_size_is_refused(all_pth):
    with pytest.raises(ReleasedWeightsError, match="batch_size must be a positive integer"):
        zoo.load_released("airnet", all_pth, batch_size=0)


def test_airnet_file_loaded_as_restormer_names_airnet(all_pth):
    with pytest.raises(ReleasedWeightsError, match="looks like an? airnet checkpoint"):
        zoo.load_released("restormer", all_pth)


def test_queue_keeps_the_public_layout_one_key_per_column():
    model = zoo.create_model("airnet", "tiny")
    embedding, length = model.queue.shape
    assert model.queue_position.shape == (1,) and length == model.config.queue
    keys = torch.randn(3, embedding)
    model.queue_position.fill_(length - 1)  # the batch wraps around the end
    model.enqueue(keys)
    assert torch.equal(model.queue[:, [length - 1, 0, 1]], keys.T)
    assert model.queue_position.item() == 2
