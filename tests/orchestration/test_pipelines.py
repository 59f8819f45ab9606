"""Importing pipelines from files, and every way a file can be wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.models import Pipeline, PipelineStep
from orchestration.errors import Conflict
from orchestration.pipelines import PipelineFileError, list_pipelines, load_pipeline_spec
from tests.committed import import_pipeline
from tests.factories import base_workflow, child_workflow, write_pipeline

REPO = Path(__file__).resolve().parents[2]


async def count_rows(session) -> tuple[int, int]:
    return (await session.scalar(select(func.count()).select_from(Pipeline)),
            await session.scalar(select(func.count()).select_from(PipelineStep)))


async def test_import_folder_with_yaml(session, tmp_path):
    result = await import_pipeline(session, write_pipeline(tmp_path / "p", steps=3, name="three"))
    assert result.created and result.name == "three"
    assert result.steps == ["step 1", "step 2", "step 3"]
    assert result.variables == ["prompt"]
    steps = list(await session.scalars(select(PipelineStep).order_by(PipelineStep.position)))
    assert [s.slug for s in steps] == ["01-step-1", "02-step-2", "03-step-3"]
    assert steps[0].workflow == base_workflow()
    # Importing the same files again is harmless.
    again = await import_pipeline(session, tmp_path / "p")
    assert not again.created and again.pipeline_id == result.pipeline_id
    assert await count_rows(session) == (1, 3)
    listed = await list_pipelines(session)
    assert [(p.name, p.steps, p.variables) for p in listed] == [
        ("three", ["step 1", "step 2", "step 3"], ["prompt"])]


async def test_import_single_yaml_file_and_plain_folder(session, tmp_path):
    folder = write_pipeline(tmp_path / "p", steps=2, name="from-yaml")
    yaml_file = tmp_path / "p" / "pipeline.yaml"
    assert (await import_pipeline(session, yaml_file)).name == "from-yaml"
    plain = tmp_path / "plain-two"
    plain.mkdir()
    (plain / "01-base.json").write_text(json.dumps(base_workflow()))
    (plain / "02-refine.json").write_text(json.dumps(child_workflow()))
    result = await import_pipeline(session, plain)
    assert result.name == "plain-two" and result.steps == ["base", "refine"]
    assert folder.exists()


async def test_changed_pipeline_under_same_name_refused(session, tmp_path):
    await import_pipeline(session, write_pipeline(tmp_path / "a", steps=2, name="same"))
    with pytest.raises(Conflict, match="another name"):
        await import_pipeline(session, write_pipeline(tmp_path / "b", steps=3, name="same"))
    assert await count_rows(session) == (1, 2)


def ui_export() -> dict:
    return {"last_node_id": 9, "last_link_id": 9, "nodes": [{"id": 1, "type": "SaveImage"}],
            "links": [], "version": 0.4}


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ('{"1": {"class_type": "SaveImage", "inputs": {}', r"not valid JSON \(line 1, column"),
        (json.dumps(ui_export()), "UI format .* Export \\(API\\)"),
        (json.dumps({"1": {"class_type": "EmptyImage", "inputs": {}}}), "no image output node"),
        (json.dumps([1, 2]), "API format"),
        (json.dumps({"1": {"inputs": {}}}), "no 'class_type'"),
    ],
)
async def test_malformed_workflow_refused_nothing_stored(session, tmp_path, content, words):
    folder = write_pipeline(tmp_path / "p", steps=2)
    (folder / "step2.json").write_text(content)
    with pytest.raises(PipelineFileError, match=words) as err:
        await import_pipeline(session, folder)
    assert "step 2 “step 2”" in str(err.value)
    assert await count_rows(session) == (0, 0)


async def test_missing_step_file_and_path(session, tmp_path):
    folder = write_pipeline(tmp_path / "p", steps=2)
    (folder / "step2.json").unlink()
    with pytest.raises(PipelineFileError, match="step2.json does not exist"):
        await import_pipeline(session, folder)
    with pytest.raises(PipelineFileError, match="does not exist"):
        await import_pipeline(session, tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(PipelineFileError,
                       match="expected a folder with pipeline.yaml .*, a .yaml file naming"):
        await import_pipeline(session, tmp_path / "notes.txt")
    (tmp_path / "ui.json").write_text(json.dumps(ui_export()))
    with pytest.raises(PipelineFileError, match="UI format"):
        await import_pipeline(session, tmp_path / "ui.json")
    assert await count_rows(session) == (0, 0)


@pytest.mark.parametrize("where", ["../outside.json", "{tmp}/outside.json", "/etc/nowhere.json",
                                   "sub/../../outside.json"])
async def test_a_pipeline_names_only_files_inside_its_folder(session, tmp_path, where):
    """Whether the named file exists outside is never told: the refusal is the same."""
    folder = tmp_path / "p"
    folder.mkdir()
    (tmp_path / "outside.json").write_text(json.dumps(base_workflow()))
    (folder / "pipeline.yaml").write_text(
        f"name: p\nsteps:\n  - workflow: {where.format(tmp=tmp_path)}\n")
    with pytest.raises(PipelineFileError) as refused:
        await import_pipeline(session, folder)
    assert str(refused.value) == (
        "step 1: a pipeline may name only workflow files inside its own folder; "
        f"move the file into {folder.name}/ and name it by a path relative to pipeline.yaml")
    assert await count_rows(session) == (0, 0)


async def test_single_workflow_json_is_a_one_step_pipeline(session, tmp_path):
    (tmp_path / "portrait.json").write_text(json.dumps(base_workflow()))
    result = await import_pipeline(session, tmp_path / "portrait.json")
    assert (result.name, result.steps) == ("portrait", ["portrait"])


async def test_bad_yaml(session, tmp_path):
    folder = write_pipeline(tmp_path / "p", steps=2)
    (folder / "pipeline.yaml").write_text("name: x\nsteps: [\n")
    with pytest.raises(PipelineFileError, match="not valid YAML"):
        await import_pipeline(session, folder)
    (folder / "pipeline.yaml").write_text("name: x\nsteps: []\n")
    with pytest.raises(PipelineFileError, match="at least one step"):
        await import_pipeline(session, folder)
    (folder / "pipeline.yaml").write_text("name: x\nsteps:\n  - {name: a}\n")
    with pytest.raises(PipelineFileError, match="step 1 needs a 'workflow'"):
        await import_pipeline(session, folder)


async def test_parent_image_rules(session, tmp_path):
    folder = write_pipeline(tmp_path / "p", steps=2)
    (folder / "step1.json").write_text(json.dumps(child_workflow()))
    with pytest.raises(PipelineFileError, match="step 1 makes base images"):
        await import_pipeline(session, folder)
    folder = write_pipeline(tmp_path / "q", steps=2, name="q")
    (folder / "step2.json").write_text(json.dumps(base_workflow()))
    result = await import_pipeline(session, folder)
    assert any("does not use {{parent_image}}" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("name", "variables"),
    [("cpu-demo", ["tint"]), ("sdxl-refine-upscale", ["checkpoint", "negative_prompt", "prompt"])],
)
def test_shipped_examples_are_valid(name, variables):
    spec = load_pipeline_spec(REPO / "pipelines" / name)
    assert len(spec.steps) == 3
    assert spec.warnings == []
    assert spec.variables == variables


async def test_a_workflow_over_the_size_limit_is_refused_and_nothing_stored(session, tmp_path):
    workflow = base_workflow()
    workflow["99"] = {"class_type": "Note", "inputs": {"text": "x" * (5 * 2**20)}}
    (tmp_path / "huge.json").write_text(json.dumps(workflow))
    with pytest.raises(PipelineFileError) as refused:
        await import_pipeline(session, tmp_path / "huge.json")
    assert str(refused.value) == (
        "step 1 “huge”: huge.json is 5.0 MB; a workflow may be at most 5 MB "
        "(export it in API format, without images)")
    assert await count_rows(session) == (0, 0)


@pytest.mark.parametrize("depth", [150, 5000, 200_000])
async def test_a_workflow_nested_too_deep_is_refused_and_nothing_stored(session, tmp_path, depth):
    workflow = base_workflow()
    nested = "[" * depth + "]" * depth
    note = f'"99": {{"class_type": "Note", "inputs": {{"x": {nested}}}}}'
    text = json.dumps(workflow)[:-1] + ", " + note + "}"
    (tmp_path / "deep.json").write_text(text)
    with pytest.raises(PipelineFileError) as refused:
        await import_pipeline(session, tmp_path / "deep.json")
    assert str(refused.value) == (
        "step 1 “deep”: deep.json: nested more than 100 levels deep; "
        "a workflow may not be")
    assert await count_rows(session) == (0, 0)
    ok = json.dumps(workflow)[:-1] + ', "99": {"class_type": "Note", "inputs": {"x": ' + (
        "[" * 96 + "]" * 96) + "}}}"
    (tmp_path / "fine.json").write_text(ok)
    assert (await import_pipeline(session, tmp_path / "fine.json")).created


@pytest.mark.parametrize("yaml_text, words", [
    ("name: " + "n" * 101 + "\nsteps:\n  - workflow: a.json\n", "has 101 characters"),
    ("name: p\nsteps:\n  - workflow: a.json\n    name: " + "s" * 101 + "\n",
     "a step name may be at most 100 characters"),
])
async def test_names_longer_than_discord_shows_are_refused(session, tmp_path, yaml_text, words):
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(base_workflow()))
    (folder / "pipeline.yaml").write_text(yaml_text)
    with pytest.raises(PipelineFileError, match=words) as refused:
        await import_pipeline(session, folder)
    assert len(str(refused.value)) < 200
    assert await count_rows(session) == (0, 0)


async def test_an_unknown_placeholder_is_warned_about_by_name(session, tmp_path):
    folder = write_pipeline(tmp_path / "p", steps=1)
    (folder / "step1.json").write_text(json.dumps(base_workflow("{{promt}}, {{style}}")))
    result = await import_pipeline(session, folder)
    [typo] = [w for w in result.warnings if "{{promt}}" in w]
    assert "did you mean {{prompt}}?" in typo
    assert "prompt, negative_prompt, seed, parent_image, output_prefix" in typo
    [own] = [w for w in result.warnings if "{{style}}" in w]
    assert "variables: style=" in own and "did you mean" not in own
    assert result.variables == ["promt", "style"]  # a deliberate new variable stays possible


async def test_a_single_brace_placeholder_is_warned_about(session, tmp_path):
    folder = write_pipeline(tmp_path / "p", steps=1)
    workflow = base_workflow("a cat, {style}")
    workflow["3"]["inputs"]["seed"] = "{seed}"
    (folder / "step1.json").write_text(json.dumps(workflow))
    result = await import_pipeline(session, folder)
    [seed] = [w for w in result.warnings if "{seed}" in w]
    assert "{{seed}}" in seed and "sent to ComfyUI as it is" in seed
    assert any("{style}" in w for w in result.warnings)


async def test_a_link_to_a_missing_node_is_refused_and_nothing_stored(session, tmp_path):
    folder = write_pipeline(tmp_path / "p", steps=1)
    workflow = base_workflow()
    workflow["4"]["inputs"]["images"] = ["7", 0]
    (folder / "step1.json").write_text(json.dumps(workflow))
    with pytest.raises(PipelineFileError,
                       match=r"node 4 \(SaveImage\) input 'images' links to node 7"):
        await import_pipeline(session, folder)
    assert await count_rows(session) == (0, 0)


async def test_duplicate_step_names_are_refused_and_nothing_stored(session, tmp_path):
    folder = write_pipeline(tmp_path / "p", steps=3, step_names=["base", "refine", "refine"])
    with pytest.raises(PipelineFileError, match="steps 2 and 3 are both named “refine”"):
        await import_pipeline(session, folder)
    assert await count_rows(session) == (0, 0)


async def test_a_blank_pipeline_name_is_refused(session, tmp_path):
    folder = write_pipeline(tmp_path / "p", steps=1, name="'   '")
    with pytest.raises(PipelineFileError, match="give it a name of 1 to 100"):
        await import_pipeline(session, folder)
    assert await count_rows(session) == (0, 0)


async def test_a_declared_variable_is_not_warned_about(session, tmp_path):
    folder = write_pipeline(tmp_path / "p", steps=1, name="styled")
    (folder / "step1.json").write_text(json.dumps(base_workflow("{{prompt}}, {{style}}")))
    yaml_file = folder / "pipeline.yaml"
    yaml_file.write_text(yaml_file.read_text().replace("steps:", "variables: [style]\nsteps:"))
    result = await import_pipeline(session, folder)
    assert result.warnings == [] and result.variables == ["prompt", "style"]
    yaml_file.write_text(yaml_file.read_text().replace("[style]", "style"))
    with pytest.raises(PipelineFileError, match="'variables' must list"):
        load_pipeline_spec(folder)


async def test_a_declared_variable_may_have_a_default_a_run_can_override(session, tmp_path):
    from orchestration.runs import RunSettings
    from tests.committed import create_run

    folder = write_pipeline(tmp_path / "p", steps=1, name="styled")
    (folder / "step1.json").write_text(json.dumps(base_workflow("{{prompt}}, {{style}}")))
    yaml_file = folder / "pipeline.yaml"
    yaml_file.write_text(yaml_file.read_text().replace(
        "steps:", "variables:\n  style: soft light\n  unused: 3\nsteps:"))
    result = await import_pipeline(session, folder)
    assert result.warnings == [] and result.variables == ["prompt", "style"]
    [listed] = await list_pipelines(session)
    assert listed.defaults == {"style": "soft light", "unused": 3}
    plain = await create_run(session, "styled", "plain", {"prompt": "a cat"}, RunSettings())
    own = await create_run(session, "styled", "own", {"prompt": "a cat", "style": "noir"},
                           RunSettings())
    assert plain.variables == {"prompt": "a cat", "style": "soft light", "unused": 3}
    assert own.variables["style"] == "noir"

    yaml_file.write_text(yaml_file.read_text().replace("soft light", "hard light"))
    with pytest.raises(Conflict, match="A different pipeline named “styled”"):
        await import_pipeline(session, folder)
    yaml_file.write_text(yaml_file.read_text().replace("hard light", "[1, 2]"))
    with pytest.raises(PipelineFileError, match="default of 'style' must be"):
        load_pipeline_spec(folder)


def test_a_variable_listed_without_a_default_stays_one_a_run_must_give(tmp_path):
    folder = write_pipeline(tmp_path / "p", steps=1, name="styled")
    (folder / "step1.json").write_text(json.dumps(base_workflow("{{prompt}}, {{style}}")))
    yaml_file = folder / "pipeline.yaml"
    yaml_file.write_text(yaml_file.read_text().replace(
        "steps:", "variables:\n  style:\n  light: soft\nsteps:"))
    spec = load_pipeline_spec(folder)
    assert spec.warnings == [] and spec.defaults == {"light": "soft"}
