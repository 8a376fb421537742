"""``python -m hqc.export {export,run,scaling}``: a checkpoint to device-ready files and runs.

Its own entry point rather than a LightningCLI subcommand: LightningCLI subcommands are Trainer
methods whose arguments come from the method's signature, while export needs its own (output
folder, targets, backend, shots) and no Trainer. Arguments it does not know (``--config``
overrides such as ``--data.init_args.source DIR``) are passed to the config parser of
:mod:`hqc.main`, so a checkpoint is rebuilt from exactly the config it was trained with.

    python -m hqc.export export --config configs/hybrid.yaml --ckpt_path CKPT --out export/hybrid
    python -m hqc.export run --config configs/hybrid.yaml --ckpt_path CKPT --out runs/fez \
        --backend fake:FakeFez --shots 1024 --limit 640
    python -m hqc.export scaling --out results/export

``run`` takes a built-in target name, ``fake:<FakeBackend>`` or the class path of any
``BackendV2``; a cloud backend is created by its provider's own classes (see
:mod:`hqc.export.backend_run`). ``--on_device core`` (default) puts only the core's quantum
stages on the device and keeps the sQEs exact on this CPU, as the paper does; ``all`` puts
every stage there. Every target, the stages' widths and the backend are checked before
anything is written or run. Each command prints what it wrote as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hqc.errors import UserError, run_guarded
from hqc.export.backend_run import SamplerEvaluator, evaluate_test_split
from hqc.export.circuit_layer import ON_DEVICE, device_layers, quantum_layers
from hqc.export.export import export_model, load_checkpoint
from hqc.export.report import head_report
from hqc.export.scaling import plot_scaling, scaling_rows
from hqc.export.targets import BUILTIN_TARGETS, check_fits, resolve_target

#: Shots per circuit and sentence when neither ``--shots`` nor the config sets them.
DEFAULT_SHOTS = 1024


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hqc.export", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        (
            "export",
            "QPY + OpenQASM 3 + manifest of every quantum stage, resource tables per target",
        ),
        ("run", "evaluate the test split on a BackendV2 through BackendSamplerV2"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--config", action="append", required=True, help="training config(s)")
        command.add_argument("--ckpt_path", required=True, help="a checkpoint written by fit")
        command.add_argument("--out", required=True, help="output folder")
        command.add_argument(
            "--on_device",
            default="core",
            choices=ON_DEVICE,
            help="quantum stages on the device: the core (the sQEs stay exact, as in the paper) "
            "or all",
        )
    export, run = commands.choices["export"], commands.choices["run"]
    export.add_argument(
        "--targets",
        nargs="+",
        default=list(BUILTIN_TARGETS),
        help=f"built-in {list(BUILTIN_TARGETS)} or class paths of Target/BackendV2",
    )
    export.add_argument("--power_w", type=float, help="system power replacing the documented one")
    run.add_argument(
        "--backend",
        default="heavy_hex",
        help="heavy_hex, heavy_hex_generic, fake:<FakeBackend> or a BackendV2 class path",
    )
    run.add_argument(
        "--shots",
        type=int,
        help=f"shots per circuit and sentence (default: the config's "
        f"model.init_args.execution.shots, else {DEFAULT_SHOTS})",
    )
    run.add_argument("--seed", type=int, default=0, help="transpiler and simulator seed")
    run.add_argument(
        "--limit",
        type=int,
        help="evaluate only the first LIMIT test sentences (rounded up to whole batches)",
    )
    scaling = commands.add_parser("scaling", help="plot fidelity and time vs qubits")
    scaling.add_argument("--out", required=True)
    scaling.add_argument("--qubits", type=int, nargs="+", default=[4, 6, 8, 10, 12, 16, 20, 24])
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    """Run one command; returns what it wrote (manifest, metrics or scaling rows)."""
    args, overrides = _parser().parse_known_args(argv)
    if argv is None:  # the config parser gets its arguments explicitly, not from sys.argv
        sys.argv = sys.argv[:1]
    if args.command == "scaling":
        devices = [resolve_target(name) for name in BUILTIN_TARGETS]
        rows = scaling_rows(args.qubits, devices)
        return {"rows": rows, "plot": str(plot_scaling(rows, args.out))}
    # every name is checked before the (slow) checkpoint load, and every width before writing
    devices = [
        resolve_target(name)
        for name in (args.targets if args.command == "export" else [args.backend])
    ]
    if args.command == "run":
        if devices[0].backend is None:
            raise UserError(f"--backend {args.backend!r} is a Target without a backend to run on")
        if args.limit is not None and args.limit < 1:
            raise UserError(f"--limit must be >= 1, got {args.limit}")
    cli_args = [item for config in args.config for item in ("--config", config)] + overrides
    model, cli = load_checkpoint(cli_args, args.ckpt_path)
    on_chip = device_layers(model, args.on_device)  # fails before anything is written
    layers = quantum_layers(model) if args.command == "export" else on_chip
    for device in devices:
        for _, layer in layers:
            check_fits(layer.circuit.num_qubits, device)
    out = Path(args.out)
    if args.command == "export":
        manifest = export_model(model, cli, out)
        texts = cli.datamodule.test_data.texts
        _, summary = head_report(model, list(texts), devices, out, args.power_w, args.on_device)
        return {
            "manifest": str(out / "manifest.json"),
            "stages": [stage["module"] for stage in manifest["quantum_stages"]],
            "summary": summary,
        }
    (device,) = devices
    shots = args.shots or _config_shots(cli.config) or DEFAULT_SHOTS
    evaluate = SamplerEvaluator(device.backend, shots, out / "cache", args.seed)
    batches = None
    sentences = len(cli.datamodule.test_data.texts)
    if args.limit is not None:
        batches = -(-args.limit // cli.datamodule.batch_size)
        sentences = min(sentences, batches * cli.datamodule.batch_size)
    start = time.perf_counter()
    metrics = evaluate_test_split(model, cli.datamodule, evaluate, batches, args.on_device)
    result = {
        "backend": device.name,
        "on_device": [name for name, _ in on_chip],
        "shots": shots,
        "sentences": sentences,
        "pubs_run": evaluate.pubs_run,
        "seconds": time.perf_counter() - start,
        **metrics,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


def _config_shots(config: Any) -> int | None:
    """``model.init_args.execution.shots`` of a parsed config, where it is set."""
    execution = (config.model.get("init_args") or {}).get("execution")
    return None if execution is None else execution.get("shots")


def _print_main() -> None:
    print(json.dumps(main(), indent=2, default=str))


if __name__ == "__main__":
    run_guarded(_print_main)
