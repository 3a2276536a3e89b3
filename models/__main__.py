"""Command line: ``python -m models build|import|list|show|verify|bench|export-triton``.

User errors (bad data, unknown model, unsupported engine, ...) print one line to stderr and exit 2;
``verify`` exits 1 when a checksum does not match.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from contract import layout
from contract.engines import EngineError
from contract.layout import ArtifactError
from contract.publish import verify_files
from models.architectures import ArchitectureError
from models.artifacts import GateError
from models.data import DatasetError
from models.export import ExportError
from models.recipes import FORMATS, RecipeError, checked_formats
from models.signatures import ImportRefused
from models.spec import FamilySpec, builtin_families, builtin_spec, load_spec

USER_ERRORS = (
    DatasetError, ArtifactError, RecipeError, ArchitectureError, EngineError, GateError, ExportError, ImportRefused,
    ValueError,
)  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m models", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser(
        "build", help="train, compress, evaluate and publish every variant of a family"
    )
    build.add_argument(
        "family", nargs="?", help=f"a built-in family ({', '.join(builtin_families())}); or --family-file"
    )
    build.add_argument(
        "--family-file", type=Path, metavar="SPEC.yaml", help="a family spec (docs/families.md)"
    )
    build.add_argument("--registry", type=Path, required=True)
    build.add_argument("--epochs", type=int, help="training epochs for every stage (fast runs)")
    build.add_argument("--limit", type=int, help="use only the first N training samples (fast runs)")
    build.add_argument("--seed", type=int)
    build.add_argument(
        "--data-dir", type=Path, help="directory of MNIST IDX files instead of the built-in set"
    )
    build.add_argument(
        "--formats",
        type=_formats,
        help=f"comma-separated artifact formats to publish (default: all of {','.join(FORMATS)})",
    )
    build.add_argument("--force", action="store_true", help="rebuild even when the registry is up to date")
    build.add_argument("--no-progress", action="store_true", help="no progress bars")

    importing = commands.add_parser(
        "import", help="publish a pre-built ONNX, OpenVINO or TorchScript artifact as a new version"
    )
    importing.add_argument("name", metavar="FAMILY-VARIANT")
    importing.add_argument(
        "--file", type=Path, required=True, help="model.onnx | model.xml (+ .bin) | model.pt"
    )
    importing.add_argument("--registry", type=Path, required=True)
    importing.add_argument(
        "--eval-data",
        type=Path,
        help=".npz: 'inputs' (rows in the input shape), optional 'labels' (class indices)",
    )
    importing.add_argument(
        "--labels", type=_names, help="comma-separated class names (default: the family's)"
    )
    importing.add_argument(
        "--input-shape", type=_shape, help="per row, like 1,28,28 (TorchScript; checked for other formats)"
    )
    importing.add_argument(
        "--input-name", help="input tensor name (TorchScript; default: the family's or INPUT__0)"
    )
    importing.add_argument(
        "--output-name", help="output tensor name (TorchScript; default: the family's or OUTPUT__0)"
    )
    importing.add_argument(
        "--precision", choices=("fp32", "fp16", "int8"), help="default: read from the artifact"
    )
    importing.add_argument(
        "--engine", default="x86", help="TorchScript int8: the quantized engine (x86, qnnpack)"
    )
    importing.add_argument("--max-batch-size", type=int, default=64)
    importing.add_argument("--default", action="store_true", help="declare it the family's default variant")

    listing = commands.add_parser("list", help="models and versions in a registry")
    listing.add_argument("--registry", type=Path, required=True)

    show = commands.add_parser("show", help="print the model card of NAME[:VERSION] (latest by default)")
    show.add_argument("model", metavar="NAME[:VERSION]")
    show.add_argument("--registry", type=Path, required=True)

    verify = commands.add_parser("verify", help="check the sha256 of every published file")
    verify.add_argument("--registry", type=Path, required=True)
    verify.add_argument("name", nargs="?")

    bench = commands.add_parser("bench", help="multi-seed compression benchmark written as markdown")
    bench.add_argument("family", nargs="?", help=f"a built-in family ({', '.join(builtin_families())})")
    bench.add_argument("--family-file", type=Path, metavar="SPEC.yaml")
    bench.add_argument("--seeds", type=int, default=3)
    bench.add_argument("--out", type=Path, default=Path("benchmarks/compression.md"))

    triton = commands.add_parser("export-triton", help="write chosen variants as a Triton model repository")
    triton.add_argument("--registry", type=Path, required=True)
    triton.add_argument("--out", type=Path, required=True)
    triton.add_argument("--variants", nargs="+", metavar="NAME", help="model or variant names; default: fp32")
    triton.add_argument("--gpu", action="store_true", help="instance_group KIND_GPU (int8 is refused)")
    triton.add_argument("--python-backend", action="store_true", help=argparse.SUPPRESS)
    return parser


def _formats(text: str) -> tuple[str, ...]:
    try:
        return checked_formats([name.strip() for name in text.split(",") if name.strip()])
    except RecipeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _shape(text: str) -> list[int]:
    try:
        dims = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected positive integers like 1,28,28, got {text!r}") from None
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 1,28,28, got {text!r}")
    return dims


def _parse_model(reference: str) -> tuple[str, int | None]:
    name, sep, version = reference.partition(":")
    if not sep:
        return name, None
    return name, layout.parse_version(version)


def _family(args: argparse.Namespace) -> FamilySpec:
    """The family named on the command line, or the spec file given: exactly one of the two."""
    if (args.family is None) == (args.family_file is None):
        raise RecipeError("name a built-in family or give --family-file SPEC.yaml (one of the two)")
    return builtin_spec(args.family) if args.family_file is None else load_spec(args.family_file)


def _build(args: argparse.Namespace) -> int:
    from models.pipeline import build

    spec = _family(args)
    result = build(
        spec, args.registry, data_dir=args.data_dir, epochs=args.epochs, limit=args.limit,
        seed=args.seed, formats=args.formats, force=args.force, progress=not args.no_progress,
    )  # fmt: skip
    status = "up to date" if result.up_to_date else f"built in {result.seconds:.0f} s"
    print(f"{spec.name}: {status} (recipe {result.recipe_digest[:12]})")
    print(result.table())
    return 0


def _import(args: argparse.Namespace) -> int:
    from models.importer import Declared, import_artifact

    declared = Declared(
        input_name=args.input_name, input_shape=args.input_shape, output_name=args.output_name,
        labels=args.labels, precision=args.precision, engine=args.engine, max_batch_size=args.max_batch_size,
        default=args.default,
    )  # fmt: skip
    version = import_artifact(args.registry, args.name, args.file, declared, args.eval_data)
    card = version.card
    accuracy = card.metrics.get("accuracy")
    measured = f"accuracy {accuracy:.4f}, " if accuracy is not None else ""
    print(
        f"{card.name}:{card.version} {card.format} {card.precision}: {measured}{card.metrics['bytes']:,} bytes, "
        f"batch-1 p50 {card.metrics['latency_p50_batch1_seconds'] * 1e3:.3f} ms, "
        f"batch-32 {card.metrics['throughput_batch32_per_second']:,.0f}/s"
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    for name, found in layout.list_models(args.registry).items():
        card = layout.latest(args.registry, name).card
        accuracy = card.metrics.get("accuracy")
        shown = f"accuracy {accuracy:.4f}" if isinstance(accuracy, float) else ""
        print(
            f"{name}\tversions {','.join(map(str, found))}\tlatest {found[-1]} {card.format} {card.precision} {shown}"
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    name, version = _parse_model(args.model)
    print(layout.read_card(layout.version_dir(args.registry, name, version)).to_json(), end="")
    return 0


def _verify(args: argparse.Namespace) -> int:
    models = layout.list_models(args.registry)
    if args.name is not None:  # a model (mnist-teacher-fp32) or a family (mnist: each of its variants)
        chosen = [n for n in models if n == args.name] or [n for n in models if n.startswith(f"{args.name}-")]
        if not chosen:
            raise ArtifactError(
                f"{args.name}: no such model or family in {args.registry} (models: {', '.join(models)})"
            )
        models = {name: models[name] for name in chosen}
    failures = 0
    for name, found in models.items():
        for version in found:
            directory = args.registry / name / str(version)
            try:
                verify_files(layout.ModelVersion(directory, layout.read_card(directory)))
                print(f"OK   {name}:{version}")
            except ArtifactError as exc:
                failures += 1
                print(f"FAIL {name}:{version}: {exc}")
    return 1 if failures else 0


def _bench(args: argparse.Namespace) -> int:
    from models.bench import bench

    command = "python -m models " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else ""
    print(bench(_family(args), args.seeds, args.out, command=command))
    return 0


def _export_triton(args: argparse.Namespace) -> int:
    from models.export_triton import export_triton

    for name in export_triton(args.registry, args.out, args.variants, args.gpu, args.python_backend):
        print(f"{name}\t{args.out / name}")
    return 0


HANDLERS = {
    "build": _build, "import": _import, "list": _list, "show": _show, "verify": _verify, "bench": _bench,
    "export-triton": _export_triton,
}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    try:
        return HANDLERS[args.command](args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
