import pytest

from mobile_sdk.config import config_from_yaml_text, load_preset, preset_names
from mobile_sdk.errors import ConfigError


def test_presets_load_and_name_their_defaults():
    assert {"tiny", "small", "snapgen-v-0.6b"} <= set(preset_names())
    for name in preset_names():
        cfg = load_preset(name)
        assert cfg.name == name
        cfg.check_size(cfg.height, cfg.width, cfg.num_frames)


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ConfigError, match="unknown preset 'huge'.*tiny"):
        load_preset("huge")


def test_unknown_key_names_the_key_and_source():
    text = "name: x\nunet: {block_chanels: [8]}\ntext_encoder: {}\nvae: {}\n"
    with pytest.raises(ConfigError, match=r"my.yaml: unet: unknown key\(s\) \['block_chanels'\]"):
        config_from_yaml_text(text, "my.yaml")


def test_wrong_type_is_reported():
    text = "name: x\nunet: {layers_per_block: two}\ntext_encoder: {}\nvae: {}\n"
    with pytest.raises(ConfigError, match="layers_per_block: expected an integer"):
        config_from_yaml_text(text, "my.yaml")


def test_mismatched_attention_stages():
    text = "name: x\nunet: {block_channels: [32, 64], attention_stages: [true]}\ntext_encoder: {}\nvae: {}\n"
    with pytest.raises(ConfigError, match="attention_stages has 1 entries"):
        config_from_yaml_text(text, "my.yaml")


def test_size_must_fit_the_downsampling(tiny_config):
    assert tiny_config.pixel_multiple == 16
    with pytest.raises(ConfigError, match="multiples of 16"):
        tiny_config.check_size(40, 32, 4)
    with pytest.raises(ConfigError, match="num_frames"):
        tiny_config.check_size(32, 32, 0)
