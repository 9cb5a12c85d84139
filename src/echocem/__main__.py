"""Command line: `python -m echocem <command> ...` (also installed as `echocem`).

Commands are looked up lazily so that `--help` stays fast.
"""
from __future__ import annotations

import importlib
import sys

# command -> (module, function, one-line help); each function takes argv and returns an exit code
COMMANDS = {
    "validate-submission": ("echocem.seg.submission", "cli_validate", "check a submission CSV before upload"),
    "audit": ("echocem.audit", "cli_audit", "prove where a submission came from"),
    "check-params": ("echocem.params", "cli_check", "validate params.yaml"),
    "set-params": ("echocem.params_overlay", "cli", "apply a preset (settings/*.yaml) or KEY=VALUE to params.yaml"),
    "transport-map": ("echocem.transport.maps", "cli", "apply a trained transport map to points (.npy)"),
    "run-stage": ("echocem.stage_job", "cli_run_stage", "run one DVC stage and record it (a Snakemake job)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = "\n".join(f"  {name:<22}{doc}" for name, (_, _, doc) in COMMANDS.items())
        print(f"usage: python -m echocem <command> [args]\n\ncommands:\n{lines}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module, func, _ = COMMANDS[argv[0]]
    return int(getattr(importlib.import_module(module), func)(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
