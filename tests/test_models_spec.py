"""Specs and the registry: YAML round trips, validation, and the published listings."""

import dataclasses

import pytest
import yaml

from emkit.errors import InputError
from emkit.models import ConvNetSpec, LayerSpec, RSUNetSpec, UNetSpec
from emkit.models.architectures import (
    ARCHITECTURES,
    DESCRIPTIONS,
    FAMILIES,
    dict_to_spec,
    get_spec,
)
from emkit.models.spec import spec_to_dict


def test_registry_is_a_plain_dict_of_the_issue_names():
    assert type(ARCHITECTURES) is dict
    assert {"n4", "vd2d", "vd2d3d", "unet2d", "unet3d", "rsunet"} <= set(ARCHITECTURES)
    assert set(DESCRIPTIONS) == set(ARCHITECTURES)
    assert type(FAMILIES) is dict
    assert {name: f.name for name, f in FAMILIES.items()} == {n: n for n in FAMILIES}
    # every preset sits in its family's folder and is of its family's spec class
    for family in FAMILIES.values():
        assert family.spec.__module__ == f"emkit.models.{family.name}.spec"
        assert family.builder.startswith(f"emkit.models.{family.name}.build:")
        for spec, _ in family.presets.values():
            assert type(spec) is family.spec
    for name, spec in ARCHITECTURES.items():
        assert spec.name == name


def test_n4_is_the_thesis_listing():
    # conv4x48, pool2, conv5x48, pool2, conv4x48, pool2, conv4x48, pool2, conv3x200 (+ 1x1 head)
    n4 = ARCHITECTURES["n4"]
    listing = [(layer.type, layer.size, layer.filters) for layer in n4.layers]
    # fmt: off
    assert listing == [
        ("conv", 4, 48), ("pool", 2, None),
        ("conv", 5, 48), ("pool", 2, None),
        ("conv", 4, 48), ("pool", 2, None),
        ("conv", 4, 48), ("pool", 2, None),
        ("conv", 3, 200),
    ]
    # fmt: on
    assert all(layer.stride is None for layer in n4.layers)  # pool stride = window
    assert n4.out_channels == 1 and n4.ndim == 2


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_registered_spec_round_trips_through_yaml(name):
    spec = ARCHITECTURES[name]
    text = yaml.safe_dump(spec_to_dict(spec), sort_keys=False)
    assert dict_to_spec(yaml.safe_load(text)) == spec


def test_recipe_style_arch_plus_overrides():
    spec = dict_to_spec({"arch": "rsunet", "out_channels": 12, "input_shape": [18, 160, 160]})
    assert isinstance(spec, RSUNetSpec)
    assert spec.out_channels == 12 and spec.input_shape == (18, 160, 160)
    assert spec.widths == ARCHITECTURES["rsunet"].widths


def test_family_spec_from_yaml_text():
    text = """
    family: convnet
    ndim: 3
    layers:
      - {type: conv, size: [1, 3, 3], filters: 8}
      - {type: pool, size: 2, stride: [1, 2, 2]}
      - {type: conv, size: 3, filters: 4}
    out_channels: 3
    """
    spec = dict_to_spec(yaml.safe_load(text))
    assert spec.layers[0] == LayerSpec("conv", (1, 3, 3), 8)
    assert spec.layers[1] == LayerSpec("pool", 2, None, (1, 2, 2))
    assert spec.layers[2].size == 3
    assert spec.out_channels == 3


def test_unknown_key_names_the_key_and_the_allowed_ones():
    with pytest.raises(InputError, match=r"unknown key 'widht_factor'.*allowed:.*width_factor"):
        dict_to_spec({"arch": "n4", "widht_factor": 2})
    with pytest.raises(InputError, match=r"layers\[1\]: unknown key 'kernel'"):
        dict_to_spec(
            {
                "family": "convnet",
                "layers": [
                    {"type": "conv", "size": 3, "filters": 2},
                    {"type": "pool", "kernel": 2},
                ],
            }
        )
    with pytest.raises(InputError, match=r"family: got 'resnet'; allowed: convnet, unet, rsunet"):
        dict_to_spec({"family": "resnet"})
    with pytest.raises(InputError, match=r"arch: unknown architecture 'n5'"):
        dict_to_spec({"arch": "n5"})
    with pytest.raises(InputError, match=r"needs 'arch'"):
        dict_to_spec({"ndim": 2})
    with pytest.raises(InputError, match=r"unknown key 'depth'"):
        get_spec("n4", depth=3)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: UNetSpec(padding="full"), r"padding: got 'full'; allowed: valid, same"),
        (lambda: UNetSpec(ndim=3, kernel=[3, 3]), r"kernel: expected 3 sizes"),
        (
            lambda: UNetSpec(depth=2, pool=[[2, 2], [2, 2], [2, 2]]),
            r"pool: a per-level list needs one entry per level \(depth=2\), got 3",
        ),
        (
            lambda: UNetSpec(upsample="bilinear"),
            r"upsample: got 'bilinear'; allowed: transpose, nearest",
        ),
        (lambda: ConvNetSpec(layers=()), r"layers: a convnet needs at least one layer"),
        (
            lambda: ConvNetSpec(layers=(LayerSpec("pool", 2),)),
            r"layers\[0\]: a convnet starts with a conv",
        ),
        (
            lambda: ConvNetSpec(layers=(LayerSpec("conv", 3),)),
            r"layers\[0\].filters: expected an int >= 1, got None",
        ),
        (
            lambda: ConvNetSpec(ndim=4, layers=(LayerSpec("conv", 3, 1),)),
            r"ndim: got 4; allowed: 2, 3",
        ),
        (
            lambda: ConvNetSpec(layers=(LayerSpec("conv", 3, 1),), input_shape=(9, 9, 9)),
            r"input_shape: expected 2 positive ints",
        ),
        (
            lambda: RSUNetSpec(block_kernels=[(1, 2, 2), 3]),
            r"block_kernels: same padding needs odd kernel sizes",
        ),
        (lambda: RSUNetSpec(residual="yes"), r"residual: expected true or false, got 'yes'"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(make, message):
    with pytest.raises(InputError, match=message):
        make()


def test_sizes_are_canonical_so_equal_specs_compare_equal():
    assert UNetSpec(kernel=[3, 3]) == UNetSpec(kernel=3)
    assert UNetSpec(ndim=3, pool=[1, 2, 2]).pool == (1, 2, 2)
    # Identical per-level entries collapse, so overriding depth keeps working.
    spec = UNetSpec(ndim=3, depth=2, pool=[[1, 2, 2], [1, 2, 2]])
    assert spec.pool == (1, 2, 2)
    assert dataclasses.replace(spec, depth=3).pool_factors() == ((1, 2, 2),) * 3
    mixed = UNetSpec(ndim=3, depth=2, pool=[[1, 2, 2], 2])
    assert mixed.pool_factors() == ((1, 2, 2), (2, 2, 2))


def test_family_mismatch_is_an_error():
    with pytest.raises(InputError, match=r"family: 'n4' is a convnet, got family 'unet'"):
        dict_to_spec({"arch": "n4", "family": "unet"})
