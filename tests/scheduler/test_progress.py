"""A job's progress moves through a graph of image nodes, which ComfyUI reports only as each
node starting (0 of 1) and finishing (1 of 1), as it moves through a sampler's steps."""

from __future__ import annotations

from pathlib import Path

from comfy.client import ComfyClient
from comfy.simulator import SimulatedComfy
from comfy.workflow import render_workflow
from orchestration.pipelines import load_pipeline_spec
from scheduler.events import JobProgress

REPO = Path(__file__).resolve().parents[2]


async def test_the_bar_moves_node_by_node_through_the_demo_base_step():
    [base, *_] = load_pipeline_spec(REPO / "pipelines" / "cpu-demo").steps
    workflow = render_workflow(base.workflow, {"seed": 5, "tint": 0x3366CC,
                                               "output_prefix": "run-0001/base/job-1"})
    progress = JobProgress(1, 1, 1, "sim", nodes=len(workflow))
    seen: list[float] = []

    def report(node: str, value: float, maximum: float) -> None:
        progress.report(node, value, maximum)
        seen.append(progress.fraction)

    async with SimulatedComfy(duration=0.01) as sim, ComfyClient(sim.url) as client:
        result = await client.follow(await client.submit(workflow), report)
    assert result.status == "success"
    assert seen == sorted(seen) and seen[0] == 0 and seen[-1] == 1.0
    assert len(set(seen)) == len(workflow) + 1  # a step per node finished


def test_a_sampler_counts_within_its_node_and_an_unknown_graph_shows_the_last_node():
    progress = JobProgress(1, 1, 1, "gpu", nodes=4)
    for node in ("4", "5"):
        progress.report(node, 1.0, 1.0)
    progress.report("3", 10.0, 20.0)  # KSampler, half way
    assert progress.fraction == 2.5 / 4
    recovered = JobProgress(1, 1, 1, "gpu")
    recovered.report("3", 5.0, 20.0)
    assert recovered.fraction == 0.25
