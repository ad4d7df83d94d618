"""How `infer serve --engines N` lays out its engines: names, sockets, threads, GPUs.

Invariants: every engine has its own ipc socket in the launcher's private
directory; CPU threads are split evenly, at least one each, unless
`--threads` names the count per engine; on a machine with GPUs each engine
gets one device of its own (CUDA_VISIBLE_DEVICES), and more engines than
visible devices is refused rather than silently sharing one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class EngineSlot:
    """One engine process of the launcher."""

    name: str  # "engine" alone, else "engine-0", "engine-1", ...
    socket: Path
    threads: int | None  # --threads for this engine (None: the engine's own choice)
    env: dict[str, str] = field(default_factory=dict)  # added to the engine's environment

    @property
    def endpoint(self) -> str:
        return f"ipc://{self.socket}"


def cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def visible_gpus(env: Mapping[str, str]) -> list[str]:
    """The GPU ids engines may be given: CUDA_VISIBLE_DEVICES when set, else what NVML sees."""
    if "CUDA_VISIBLE_DEVICES" in env:
        return [part.strip() for part in env["CUDA_VISIBLE_DEVICES"].split(",") if part.strip()]
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver, no library: no GPU
        return []


def plan_engines(
    count: int, workdir: Path, device: str | None, threads: int | None, gpus: list[str], cpus: int
) -> list[EngineSlot]:
    """The engine slots of `count` engines; ValueError with the reason when it cannot be done."""
    if count == 1:
        return [EngineSlot("engine", workdir / "engine.ipc", threads)]
    on_gpu = device != "cpu" and bool(gpus)
    if device is not None and device.startswith("cuda") and not gpus:
        raise ValueError(f"--engines {count} with --device {device}: no GPU is visible")
    if on_gpu and device not in (None, "auto", "cuda"):
        raise ValueError(
            f"--engines {count} gives each engine a GPU of its own: use --device cuda or auto, "
            f"not {device} (CUDA_VISIBLE_DEVICES chooses the GPUs)"
        )
    if on_gpu and count > len(gpus):
        raise ValueError(
            f"--engines {count} needs one GPU per engine, {len(gpus)} visible "
            "(fewer engines, or --device cpu)"
        )
    per_engine = threads if threads is not None else max(1, cpus // count)
    slots = []
    for index in range(count):
        env = {"CUDA_VISIBLE_DEVICES": gpus[index]} if on_gpu else {}
        slots.append(
            EngineSlot(
                f"engine-{index}",
                workdir / f"engine-{index}.ipc",
                None if on_gpu and threads is None else per_engine,
                env,
            )
        )
    return slots
