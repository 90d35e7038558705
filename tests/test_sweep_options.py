"""decaylab.sweep's signature, the command line and the declarations of ``decaylab.sweeps.options`` agree: the same
names, defaults and ranges; a test here fails when one of them drifts from the others."""

import argparse
import inspect

import pytest

import decaylab
from decaylab._options import Default
from decaylab.cli import build_parser, main
from decaylab.cli import sweep as cli_sweep
from decaylab.cli.options import Reader, shown
from decaylab.sweeps.options import SWEEP_OPTIONS, USES

NOT_ON_CLI = {"no_decay_types", "test_data"}       # Python classes and arrays: no command-line text for them


def sweep_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["sweep"]


def actions_by_dest() -> dict[str, list[argparse.Action]]:
    found: dict[str, list[argparse.Action]] = {}
    for action in sweep_parser()._actions:
        found.setdefault(action.dest, []).append(action)
    return found


def test_the_signature_holds_every_declared_option_with_its_default():
    params = inspect.signature(decaylab.sweep).parameters
    keywords = {n: p for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert set(keywords) == set(SWEEP_OPTIONS)
    for name, param in keywords.items():
        assert isinstance(param.default, Default), name
        assert param.default.value == SWEEP_OPTIONS[name].default, name
        assert repr(param.default) == repr(SWEEP_OPTIONS[name].default), name       # help(sweep) shows the value
    assert [n for n, p in params.items() if p.kind is not inspect.Parameter.KEYWORD_ONLY] == ["model", "data",
                                                                                          "lambdas"]


def test_every_option_is_used_by_a_method_and_the_evidence_options_by_marglik_only():
    assert USES["grid"] | USES["marglik"] == set(SWEEP_OPTIONS)
    assert {"hessian", "per_layer", "marglik_frequency"} == set(SWEEP_OPTIONS) - USES["grid"]


def test_every_option_of_the_api_is_a_flag_with_its_name_choices_and_default():
    actions = actions_by_dest()
    assert {n for n in SWEEP_OPTIONS if n not in actions} == NOT_ON_CLI
    for name, option in SWEEP_OPTIONS.items():
        if name in NOT_ON_CLI:
            continue
        action = next(a for a in actions[name] if option.flag in a.option_strings)
        expected = cli_sweep.CLI_DEFAULTS.get(name, argparse.SUPPRESS)
        assert action.default == expected, name                  # left out: the API's declared default applies
        if option.kind == "bool":
            assert isinstance(action, argparse.BooleanOptionalAction), name
            assert f"--no-{option.flag[2:]}" in action.option_strings, name
            continue
        assert isinstance(action.type, Reader) and action.type.option is option, name
        if option.kind == "choice":
            assert list(action.type.choices.values()) == list(option.choices), name
        if name not in ("store",):
            assert f"(default: {shown(option.default)})" in action.help, name


def test_the_command_line_has_no_option_the_api_lacks():
    own = {"help", "data", "target", "task", "model", "lambdas", "out", "func"}
    assert set(actions_by_dest()) - set(SWEEP_OPTIONS) == own - {"func"}
    assert set(cli_sweep.CLI_ONLY) <= own and set(cli_sweep.CLI_DEFAULTS) <= set(SWEEP_OPTIONS)


def test_a_command_line_without_flags_passes_no_option():
    args = sweep_parser().parse_args(["moons"])
    given = {n for n in SWEEP_OPTIONS if hasattr(args, n)}
    assert given == set(cli_sweep.CLI_DEFAULTS)


@pytest.mark.parametrize("name", [n for n, o in SWEEP_OPTIONS.items() if o.kind in ("real", "int")])
def test_the_command_line_refuses_what_the_declaration_refuses(name, capsys, tmp_path):
    option = SWEEP_OPTIONS[name]
    interval = option.interval
    outside = (interval.low - 1 if interval.low is not None else
               interval.high + 1 if interval.high is not None else float("nan"))
    with pytest.raises(ValueError):
        option.check(outside)
    code = main(["sweep", "moons", option.flag, str(outside), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"argument {option.flag}" in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag, text, value", [
    ("--dtype", "float64", "torch.float64"), ("--betas", "0.8,0.99", (0.8, 0.99)),
    ("--no-decay-names", "*bias,head.*", ("*bias", "head.*")), ("--seeds", "0,2", [0, 2]), ("--seed", "3", [3]),
    ("--decay-scaling", "corrected", "corrected"), ("--no-per-layer", None, False), ("--global-prior", None, False),
    ("--no-progress", None, False), ("--cautious", None, True), ("--hidden", "8,4", [8, 4]),
])
def test_flags_read_the_values_the_api_takes(flag, text, value):
    args = sweep_parser().parse_args(["moons", flag] + ([text] if text is not None else []))
    dest = next(a.dest for a in sweep_parser()._actions if flag in a.option_strings)
    got = getattr(args, dest)
    assert (str(got) if flag == "--dtype" else got) == value
