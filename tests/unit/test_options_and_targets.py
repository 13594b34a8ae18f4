"""Declared options: a target takes what its backend and the int8 engine declare, and nothing else."""
from __future__ import annotations

import pytest

from edgec import options
from edgec.errors import InputError, UnsupportedError
from edgec.targets import available, describe, load_target


def test_values_come_from_declarations_then_the_target_then_the_user():
    tflite = load_target("tflite-arm")
    values = options.resolve(tflite, {"io_layout": "nhwc"})
    assert values.io_layout == "nhwc" and values.io_dtype == "float32" and values.calibration_method == "auto"
    assert options.resolve(load_target("tvm-x86"), {}).tune_trials == 0


@pytest.mark.parametrize("target, given, takers", [
    ("onnxruntime", {"io_layout": "nhwc"}, "tflite-arm"),
    ("tflite-arm", {"quantizer": "nncf"}, "openvino-cpu"),
    ("openvino-cpu", {"tune_trials": 8}, "tvm-rpi4, tvm-rpi5, tvm-x86"),
    ("tvm-x86", {"calibration_method": "entropy"}, "onnxruntime, openvino-cpu, tensorrt-gpu, tensorrt-jetson, tflite-arm"),  # tvm builds no int8
])
def test_an_option_the_target_does_not_take_is_refused_naming_those_that_do(target, given, takers):
    with pytest.raises(UnsupportedError) as err:
        options.resolve(load_target(target), given)
    assert f"target {target} does not take --" in str(err.value) and f"targets that take it: {takers}" in str(err.value)


@pytest.mark.parametrize("given, words", [
    ({"io_layout": "nwhc"}, "io_layout must be one of nchw, nhwc"),
    ({"io_dtype": 8}, "io_dtype must be str"),
])
def test_values_are_checked(given, words):
    with pytest.raises(InputError, match=words):
        options.resolve(load_target("tflite-arm"), given)


def test_one_name_is_one_option_for_every_backend():
    from edgec.backends import REGISTRY

    # an option two backends share (tensorrt, tensorrt-dla) is one declaration
    declared = list(dict.fromkeys([o for entry in REGISTRY.values() for o in entry.options]
                                  + list(options.COMMON + options.INT8)))
    assert len({o.name for o in declared}) == len(declared)
    assert len({o.cli_flag for o in declared}) == len(declared)


def write_target(tmp_path, extra: str):
    path = tmp_path / "board.toml"
    path.write_text('name = "board"\nbackend = "tflite"\nprecisions = ["fp32", "int8"]\n' + extra)
    return str(path)


@pytest.mark.parametrize("extra, words", [
    ('[options]\ndelegate = "XNNPACK"\n', "[options] delegate is not an option of the tflite backend"),
    ('[options]\nio_layout = 4\n', "io_layout must be str"),
    ("threads = \"four\"\n", "threads: expected an integer"),
    ("colour = \"red\"\n", "unknown field 'colour'"),
    ('precision = "int4"\n', "precisions must be among fp32, fp16, int8"),
])
def test_target_files_are_checked_when_they_load(tmp_path, extra, words):
    with pytest.raises(InputError) as err:
        load_target(write_target(tmp_path, extra))
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_target_file_may_set_option_defaults(tmp_path):
    target = load_target(write_target(tmp_path, '[options]\nio_layout = "nhwc"\n'))
    assert options.resolve(target, {}).io_layout == "nhwc"
    assert options.resolve(target, {"io_layout": "nchw"}).io_layout == "nchw"


def test_targets_list_their_options():
    listed = {t["name"]: t for t in map(describe, available())}
    flags = {o["flag"] for o in listed["tflite-arm"]["options"]}
    assert {"--io-layout", "--io-dtype", "--calibration-method", "--preprocess"} <= flags
    assert "--quantizer" not in flags and "--tune-trials" in {o["flag"] for o in listed["tvm-x86"]["options"]}
    assert listed["tvm-rpi4"]["refused"]["fp16"]
